import gzip
import io
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from nup_utils import data


def _jpeg(color):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _make_zip(path, extra_member=None):
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", 3), ("test", 2)):
            for cls, color in (("bird", (0, 0, 255)), ("airplane", (255, 0, 0))):
                for i in range(n):
                    zf.writestr(f"{split}/{cls}/{i:04d}.jpg", _jpeg(color))
        if extra_member:
            zf.writestr(extra_member, b"x")
    return path


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ["../evil.jpg", "/abs/x.jpg", "train/../../x.jpg", "C:/x.jpg", "\\abs\\x.jpg"])
def test_safe_member_name_refuses_escapes(name):
    with pytest.raises(ValueError, match="unsafe path"):
        data.safe_member_name(name)


def test_safe_member_name_accepts_relative():
    assert data.safe_member_name("train/cat/0001.jpg").parts == ("train", "cat", "0001.jpg")


def test_read_imagefolder_zip_labels_follow_sorted_classes(tmp_path):
    z = _make_zip(tmp_path / "c.zip")
    x, y = data.read_imagefolder_zip(z, "train")
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 0, 1, 1, 1]  # airplane < bird
    assert x[0, 0].float().mean() > 200 and x[-1, 2].float().mean() > 200  # red airplanes, blue birds


def test_zip_with_dotdot_member_is_refused(tmp_path):
    z = _make_zip(tmp_path / "c.zip", extra_member="../outside.jpg")
    with pytest.raises(ValueError, match="unsafe path"):
        data.read_imagefolder_zip(z, "train")


def test_load_cifar10_offline_zip_and_cache(tmp_path, monkeypatch):
    _make_zip(tmp_path / "cifar10-jpeg.zip")
    monkeypatch.setenv("NUP_DATA_DIR", str(tmp_path))
    s = data.load_cifar10("test")
    assert s.source == "cifar10-jpeg" and len(s) == 4
    cached = list((tmp_path / "cache" / "data").glob("*.pt"))
    assert len(cached) == 1
    cached[0].write_bytes(b"corrupt")  # a corrupt cache file is rebuilt, not trusted
    s2 = data.load_cifar10("test")
    assert torch.equal(s.x, s2.x) and torch.equal(s.y, s2.y)


def test_missing_data_folder_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("NUP_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(data.DataNotFoundError, match="NUP_DATA_DIR"):
        data.load_cifar10("train")
    monkeypatch.setenv("NUP_DATA_DIR", str(tmp_path))  # exists but empty
    with pytest.raises(data.DataNotFoundError, match="NUP_DATA_DIR"):
        data.load_cifar10("train")
    with pytest.raises(data.DataNotFoundError, match="NUP_DATA_DIR"):
        data.load_mnist("test")


def test_bad_split_is_an_error():
    with pytest.raises(ValueError, match="split='val'"):
        data.load_cifar10("val")


def test_mnist_offline_test_split_is_resplit_disjointly(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(200, 28, 28))
    labels = np.repeat(np.arange(10), 20)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("NUP_DATA_DIR", str(tmp_path))
    s = data.load_mnist("test")
    assert s.x.shape == (200, 1, 28, 28) and torch.equal(s.x[5, 0], torch.from_numpy(imgs[5].astype(np.uint8)))
    with pytest.raises(data.DataNotFoundError):
        data.load_mnist("train")
    tr, te = data.mnist_subsets(100, 50, seed=3)
    assert "re-split" in tr.source and len(tr) == 100 and len(te) == 50
    assert torch.bincount(tr.y).tolist() == [10] * 10
    rows_tr = {r.numpy().tobytes() for r in tr.x}
    assert not rows_tr & {r.numpy().tobytes() for r in te.x}  # disjoint


def test_balanced_indices_deterministic_balanced_and_exclusive():
    labels = torch.arange(10).repeat_interleave(30)
    a = data.balanced_indices(labels, 53, seed=1)
    assert torch.equal(a, data.balanced_indices(labels, 53, seed=1))
    assert not torch.equal(a, data.balanced_indices(labels, 53, seed=2))
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 53
    b = data.balanced_indices(labels, 100, seed=1, exclude=a)
    assert not set(a.tolist()) & set(b.tolist())
    with pytest.raises(ValueError, match="only"):
        data.balanced_indices(labels, 400, seed=0)


def test_to_float_range_and_dtype():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert data.to_float(x).tolist() == [[[[0.0, 1.0]]]]
    with pytest.raises(TypeError):
        data.to_float(x.float())


def test_train_test_subsets_with_two_splits_and_describe():
    train = data.Split(torch.zeros(40, 1, 2, 2, dtype=torch.uint8), torch.arange(4).repeat(10), "synthetic")
    test = data.Split(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.arange(4).repeat(5), "synthetic")
    tr, te = data.train_test_subsets(train, test, 8, None, seed=0)
    assert len(tr) == 8 and len(te) == 20 and torch.bincount(tr.y).tolist() == [2, 2, 2, 2]
    assert "per class [2, 2, 2, 2]" in data.describe(tr) and "synthetic" in data.describe(tr)
    with pytest.raises(ValueError, match="required"):
        data.train_test_subsets(train, None, None, 5, seed=0)


@pytest.mark.needs_data
def test_real_offline_cifar10_subsets():
    """On the offline copy CI uses (NUP_DATA_DIR): balanced, deterministic, source recorded."""
    import os

    root = os.environ.get("NUP_DATA_DIR")
    assert root and os.path.isfile(os.path.join(root, "cifar10-jpeg.zip")), (
        "set NUP_DATA_DIR to the offline data folder (../shared/data) to run the tests"
    )
    tr, te = data.cifar10_subsets(100, 50, seed=0)
    tr2, _ = data.cifar10_subsets(100, 50, seed=0)
    assert tr.source == "cifar10-jpeg" and torch.equal(tr.x, tr2.x)
    assert torch.bincount(tr.y).tolist() == [10] * 10 and torch.bincount(te.y).tolist() == [5] * 10
    assert tr.x.shape[1:] == (3, 32, 32) and tr.x.dtype == torch.uint8
