"""CIFAR-10 and MNIST as uint8 tensors, online (torchvision) or offline (``NUP_DATA_DIR``).

Sources, in order:
  * ``NUP_DATA_DIR`` set: torchvision layouts inside it (``cifar-10-batches-py``, ``MNIST/raw``),
    else ``cifar10-jpeg.zip`` (a lossy JPEG re-encoding; source ``"cifar10-jpeg"``).
  * ``NUP_DATA_DIR`` unset: torchvision with ``download=True`` into ``<cache>/torchvision``.
Missing data raises :class:`DataNotFoundError`; there is never a fallback to random data.

Decoded images are cached as uint8 tensors (N, C, H, W) in ``<cache>/data``.
Everything returns ``Split(x, y, source)``: x uint8 (N, C, H, W), y int64 (N,).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from . import paths

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
SPLITS = ("train", "test")

_HELP = (
    "Set the environment variable NUP_DATA_DIR to a folder holding the offline copies "
    "(e.g. NUP_DATA_DIR=../shared/data with cifar10-jpeg.zip and MNIST/raw/*.gz), or unset it "
    "to let torchvision download CIFAR-10/MNIST (needs internet)."
)


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available from any configured source."""


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)
    source: str

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> Split:
        return Split(self.x[idx], self.y[idx], self.source)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed values: {', '.join(SPLITS)}")


# ---------------------------------------------------------------- safe zip reading
def safe_member_name(name: str) -> PurePosixPath:
    """Refuse absolute paths, drive letters and '..' components in archive members."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]) or ".." in p.parts:
        raise ValueError(f"unsafe path in archive: {name!r} (absolute paths and '..' are refused)")
    return p


def read_imagefolder_zip(zip_path: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``<split>/<class>/*.jpg`` members of an ImageFolder-layout zip -> (uint8 NCHW, int64).

    Classes are the sorted folder names (CIFAR-10's label order); files within a class are sorted
    by name so the order is the same on every machine. Every member name is validated first.
    """
    from PIL import Image

    _check_split(split)
    with zipfile.ZipFile(zip_path) as zf:
        members = [(safe_member_name(info.filename), info) for info in zf.infolist()]
        files = [
            (p, info)
            for p, info in members
            if not info.is_dir()
            and len(p.parts) >= 3
            and p.parts[-3] == split
            and p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        if not files:
            raise DataNotFoundError(f"{zip_path} has no '{split}/<class>/*.jpg' members. {_HELP}")
        classes = sorted({p.parts[-2] for p, _ in files})
        label_of = {c: i for i, c in enumerate(classes)}
        files.sort(key=lambda t: (label_of[t[0].parts[-2]], t[0].name))
        xs = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
        ys = np.empty(len(files), dtype=np.int64)
        for i, (p, info) in enumerate(files):
            with Image.open(io.BytesIO(zf.read(info))) as im:
                arr = np.asarray(im.convert("RGB"))
            if arr.shape != (32, 32, 3):
                raise ValueError(f"{p}: expected a 32x32 RGB image, got {arr.shape}")
            xs[i] = arr
            ys[i] = label_of[p.parts[-2]]
    return torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(ys)


def read_idx_gz(path: str | Path) -> np.ndarray:
    """Read an MNIST idx file (gzip or plain) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated idx file")
    return data.reshape(shape)


# ---------------------------------------------------------------- cache of decoded tensors
def _file_key(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _cached_tensors(key: str, build) -> tuple[torch.Tensor, torch.Tensor]:
    path = paths.cache_dir() / "data" / f"{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return blob["x"], blob["y"]
        except Exception:  # corrupt or foreign file: rebuild, never trust it
            path.unlink(missing_ok=True)
    x, y = build()
    buf = io.BytesIO()
    torch.save({"x": x, "y": y}, buf)
    paths.atomic_write_bytes(path, buf.getvalue())
    return x, y


# ---------------------------------------------------------------- datasets
def load_cifar10(split: str) -> Split:
    """CIFAR-10 ``split`` ('train' or 'test') as uint8 (N, 3, 32, 32)."""
    _check_split(split)
    root = paths.data_dir()
    if root is not None:
        if not root.is_dir():
            raise DataNotFoundError(f"NUP_DATA_DIR={root} is not a folder. {_HELP}")
        if (root / "cifar-10-batches-py").is_dir():
            return _cifar10_torchvision(root, split, download=False)
        zip_path = root / "cifar10-jpeg.zip"
        if zip_path.is_file():
            key = f"cifar10-jpeg-{split}-{_file_key(zip_path)}"
            x, y = _cached_tensors(key, lambda: read_imagefolder_zip(zip_path, split))
            return Split(x, y, "cifar10-jpeg")
        raise DataNotFoundError(
            f"CIFAR-10 not found in NUP_DATA_DIR={root} (looked for cifar-10-batches-py/ and cifar10-jpeg.zip). {_HELP}"
        )
    return _cifar10_torchvision(paths.cache_dir() / "torchvision", split, download=True)


def _cifar10_torchvision(root: Path, split: str, download: bool) -> Split:
    import torchvision

    try:
        ds = torchvision.datasets.CIFAR10(str(root), train=(split == "train"), download=download)
    except Exception as exc:  # network errors, missing files
        raise DataNotFoundError(f"torchvision could not load CIFAR-10 from {root}: {exc}. {_HELP}") from exc
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return Split(x, torch.tensor(ds.targets, dtype=torch.int64), "torchvision")


def load_mnist(split: str) -> Split:
    """MNIST ``split`` as uint8 (N, 1, 28, 28).

    Offline, only the test split exists (``MNIST/raw/t10k-*``); asking for 'train' then raises
    :class:`DataNotFoundError` — use :func:`mnist_train_test`, which re-splits the test set.
    """
    _check_split(split)
    root = paths.data_dir()
    if root is None:
        import torchvision

        tv_root = paths.cache_dir() / "torchvision"
        try:
            ds = torchvision.datasets.MNIST(str(tv_root), train=(split == "train"), download=True)
        except Exception as exc:
            raise DataNotFoundError(f"torchvision could not download MNIST: {exc}. {_HELP}") from exc
        return Split(ds.data.unsqueeze(1).contiguous(), ds.targets.to(torch.int64), "torchvision")
    prefix = "train" if split == "train" else "t10k"
    raw = root / "MNIST" / "raw"
    img = next(
        (p for p in (raw / f"{prefix}-images-idx3-ubyte.gz", raw / f"{prefix}-images-idx3-ubyte") if p.is_file()), None
    )
    lab = next(
        (p for p in (raw / f"{prefix}-labels-idx1-ubyte.gz", raw / f"{prefix}-labels-idx1-ubyte") if p.is_file()), None
    )
    if img is None or lab is None:
        raise DataNotFoundError(
            f"MNIST {split} split not found in {raw} (expected {prefix}-images-idx3-ubyte.gz "
            f"and {prefix}-labels-idx1-ubyte.gz). {_HELP}"
        )
    x = torch.from_numpy(read_idx_gz(img).copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx_gz(lab).astype(np.int64))
    return Split(x, y, "mnist-idx")


# ---------------------------------------------------------------- deterministic subsets
def balanced_indices(labels: torch.Tensor, n: int, seed: int, *, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` indices with (as near as possible) equal counts per class; same (labels, n, seed) -> same indices.

    The first ``n % C`` classes (in label order) get one extra sample. Sorted output.
    """
    labels = torch.as_tensor(labels)
    classes = torch.unique(labels)
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n={n!r}; expected a positive int")
    gen = torch.Generator().manual_seed(seed)
    available = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        available[exclude] = False
    per, extra = divmod(n, len(classes))
    chosen = []
    for i, c in enumerate(classes.tolist()):
        pool = torch.nonzero((labels == c) & available).flatten()
        want = per + (1 if i < extra else 0)
        if want > len(pool):
            raise ValueError(f"n={n}: class {c} has only {len(pool)} samples available (needs {want})")
        chosen.append(pool[torch.randperm(len(pool), generator=gen)[:want]])
    return torch.sort(torch.cat(chosen)).values


def train_test_subsets(
    train: Split, test: Split | None, train_size: int | None, test_size: int | None, seed: int
) -> tuple[Split, Split]:
    """Balanced subsets. ``None`` size -> the whole split. With ``test=None`` the train split is
    divided into disjoint train/test parts (used for MNIST offline, where only 10k images exist).

    The subsets keep the source order (indices sorted), and the offline CIFAR-10 copy is stored
    class by class: a prefix ``x[:n]`` is then NOT a balanced sample. Draw a sub-subset with
    :func:`balanced_indices` (and shuffle with a seeded generator if order matters)."""
    if test is None:
        if train_size is None or test_size is None:
            raise ValueError("train_size and test_size are required when re-splitting one split")
        te = balanced_indices(train.y, test_size, seed + 1)
        tr = balanced_indices(train.y, train_size, seed, exclude=te)
        return train.subset(tr), train.subset(te)
    tr = torch.arange(len(train)) if train_size is None else balanced_indices(train.y, train_size, seed)
    te = torch.arange(len(test)) if test_size is None else balanced_indices(test.y, test_size, seed + 1)
    return train.subset(tr), test.subset(te)


def cifar10_subsets(train_size: int | None, test_size: int | None, seed: int) -> tuple[Split, Split]:
    return train_test_subsets(load_cifar10("train"), load_cifar10("test"), train_size, test_size, seed)


def mnist_subsets(train_size: int, test_size: int, seed: int) -> tuple[Split, Split]:
    """MNIST train/test subsets. Offline (test split only) both come, disjoint, from the 10k test
    images and the source says so: ``"mnist-idx (test split re-split)"``."""
    test = load_mnist("test")
    try:
        train = load_mnist("train")
    except DataNotFoundError:
        tr, te = train_test_subsets(test, None, train_size, test_size, seed)
        source = f"{test.source} (test split re-split)"
        return Split(tr.x, tr.y, source), Split(te.x, te.y, source)
    return train_test_subsets(train, test, train_size, test_size, seed)


def to_float(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1] on ``device``."""
    if x.dtype != torch.uint8:
        raise TypeError(f"x must be uint8 images, got {x.dtype}")
    return x.to(device=device).float().div_(255.0)


def describe(split: Split) -> str:
    counts = torch.bincount(split.y).tolist()
    return f"{len(split)} images {tuple(split.x.shape[1:])}, per class {counts}, source {split.source}"
