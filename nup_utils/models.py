"""Models. Every model takes inputs in [0, 1] pixel space and normalizes inside (a buffer layer),
so attacks, masks and expansions all work in pixel space.

* ``resnet18(stem="cifar"|"imagenet", width=64)``: ResNet-18 with BasicBlocks. stem="cifar" is the
  3x3/stride-1 stem without max-pool; stem="imagenet" is torchvision's 7x7/stride-2 conv + max-pool
  (at width 64 it *is* ``torchvision.models.resnet18``). ``width`` scales every stage (64 -> 64,128,256,512).
* ``SmallCNN``: two conv layers + MLP for MNIST.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STEMS = ("cifar", "imagenet")


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):  # (N, C, H, W) in [0,1]
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 body (2-2-2-2 BasicBlocks) with a choice of stem and a width multiplier."""

    def __init__(self, stem: str = "cifar", width: int = 64, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}; allowed values: {', '.join(STEMS)}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r}; expected a positive int (64 = standard ResNet-18)")
        self.stem_kind = stem
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers, c_in = [], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)))
            c_in = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(chans[-1], num_classes)
        for m in self.modules():  # torchvision's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):  # x: normalized (N, C, H, W)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SmallCNN(nn.Module):
    """MNIST CNN: conv(32)-pool-conv(64)-pool-fc(hidden)-fc(10). ``width`` scales the channels."""

    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 128, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):  # (N, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def with_normalization(net: nn.Module, mean, std) -> nn.Sequential:
    """Prepend a Normalize layer: the returned model eats [0, 1] pixels."""
    return nn.Sequential(Normalize(mean, std), net)


def resnet18(
    stem: str = "cifar",
    width: int = 64,
    num_classes: int = 10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
) -> nn.Sequential:
    """ResNet-18 on [0,1] inputs. stem='imagenet' & width=64 -> torchvision's resnet18 exactly."""
    if stem == "imagenet" and width == 64:
        import torchvision

        net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    else:
        net = ResNet18(stem=stem, width=width, num_classes=num_classes, in_channels=len(mean))
    return with_normalization(net, mean, std)


def small_cnn(
    num_classes: int = 10, width: int = 32, hidden: int = 128, mean=(0.1307,), std=(0.3081,)
) -> nn.Sequential:
    return with_normalization(SmallCNN(num_classes, width, hidden, len(mean)), mean, std)


ARCHS = {"resnet18": resnet18, "small_cnn": small_cnn}


def build(arch: str, **kwargs) -> nn.Sequential:
    """Build a model by name; the model cache keys on (arch, kwargs)."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}; allowed values: {', '.join(ARCHS)}")
    return ARCHS[arch](**kwargs)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
