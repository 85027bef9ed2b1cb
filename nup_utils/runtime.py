"""Profiles, devices, seeds and provenance (versions, git commit, device name)."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import time
from contextlib import contextmanager

import numpy as np
import torch

from . import __version__
from .paths import REPO_ROOT

PROFILES = ("smoke", "quick", "full")
PROFILE_CHOICES = PROFILES + ("auto",)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_profile(profile: str) -> str:
    """'auto' -> ``$NUP_PROFILE`` when set (the test harness pins 'quick'), else 'full' when CUDA is
    available and 'quick' otherwise. Anything unknown is an error."""
    if not isinstance(profile, str) or profile not in PROFILE_CHOICES:
        raise ValueError(f"PROFILE={profile!r} is not a profile; allowed values: {', '.join(PROFILE_CHOICES)}")
    if profile == "auto":
        forced = os.environ.get("NUP_PROFILE", "").strip()
        if forced:
            if forced not in PROFILES:
                raise ValueError(f"NUP_PROFILE={forced!r} is not a profile; allowed values: {', '.join(PROFILES)}")
            return forced
        return "full" if torch.cuda.is_available() else "quick"
    return profile


def pick(profile: str, *, smoke, quick, full):
    """Choose a value by (resolved) profile; the notebooks' derived-values cell uses this."""
    resolved = resolve_profile(profile)
    return {"smoke": smoke, "quick": quick, "full": full}[resolved]


def resolve_device(device: str = "auto") -> torch.device:
    if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
        raise ValueError(f"device={device!r}; allowed values: {', '.join(DEVICE_CHOICES)} or 'cuda:N'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available")
    return torch.device(device)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a CPU ``torch.Generator`` seeded with ``seed``.

    A ``None`` seed is refused: randomness in this project is always explicit.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}; expected a non-negative int (None never means 'use the clock')")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}; expected a non-negative int")
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def versions() -> dict:
    import matplotlib
    import sklearn

    out = {
        "nup": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
    }
    for name in ("torchvision", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not needed by every notebook; report its absence rather than fail
            out[name] = None
    return out


def git_commit() -> str:
    """HEAD's commit of this repository, with '-dirty' when the tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Switch to eval for the block and restore the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def headless() -> bool:
    """True in batch runs: the runner and the notebook tests set NUP_HEADLESS=1."""
    return os.environ.get("NUP_HEADLESS", "0") == "1"


def widgets_enabled() -> bool:
    """Show ipywidgets explorers only in interactive sessions. Batch runs skip them (and show a
    static example instead): nbclient, which papermill and nbval use, can wait forever on widget
    messages (seen here: ~1 in 8 headless runs of a notebook with an explorer hung)."""
    if headless():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_disabled() -> bool:
    """tqdm bars are off when NUP_PROGRESS=0, and by default in headless batch runs (in a kernel,
    tqdm.auto draws widget bars, see :func:`widgets_enabled`)."""
    value = os.environ.get("NUP_PROGRESS")
    return value == "0" if value is not None else headless()
