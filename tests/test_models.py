import pytest
import torch
import torchvision

from nup_utils import models


def test_imagenet_stem_width64_is_torchvision_resnet18():
    m = models.resnet18("imagenet", 64)
    assert isinstance(m[1], torchvision.models.ResNet)
    ours = models.ResNet18(stem="imagenet", width=64)  # our re-implementation matches its size exactly
    assert models.num_params(ours) == models.num_params(m[1])


@pytest.mark.parametrize("stem,size", [("cifar", 32), ("cifar", 64), ("imagenet", 32), ("imagenet", 64)])
def test_resnet_shapes(stem, size):
    m = models.resnet18(stem, width=4).eval()
    assert m(torch.rand(2, 3, size, size)).shape == (2, 10)


def test_cifar_stem_keeps_resolution():
    net = models.ResNet18(stem="cifar", width=4)
    assert isinstance(net.maxpool, torch.nn.Identity) and net.conv1.stride == (1, 1)
    net = models.ResNet18(stem="imagenet", width=4)
    assert isinstance(net.maxpool, torch.nn.MaxPool2d) and net.conv1.stride == (2, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stem"):
        models.resnet18("vgg")
    with pytest.raises(ValueError, match="width"):
        models.ResNet18(width=0)
    with pytest.raises(ValueError, match="arch"):
        models.build("transformer")


def test_normalize_layer_and_small_cnn():
    m = models.small_cnn(width=4, hidden=8).eval()
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    n = models.Normalize((0.5,), (0.25,))
    assert torch.allclose(n(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))


def test_build_by_name():
    m = models.build("small_cnn", width=2, hidden=4)
    assert m(torch.rand(1, 1, 28, 28)).shape == (1, 10)
