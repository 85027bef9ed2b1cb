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

PROFILES = ("smoke", "quick", "cpu", "full")
PROFILE_CHOICES = PROFILES + ("auto",)
PUBLISHED = ("quick", "cpu", "full")  # profiles whose results are committed under results/<profile>/
# notebooks with a tier in a profile that not every notebook has (issue #17): the cpu tier (<= 2 hours on 2 cores)
# carries the vision notebooks' CPU verdicts at >= 75% baselines; the other notebooks' CPU verdicts are quick's
TIERS = {"cpu": ("02", "03", "04")}
_NOT_GIVEN = object()
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_profile(profile: str) -> str:
    """'auto' -> ``$NUP_PROFILE`` when set (the test harness pins 'quick'), else 'full' when CUDA is
    available and 'quick' otherwise ('cpu', the longer CPU tier, is only ever asked for by name).
    The batch runner (``python -m nup_utils.run``) runs 'auto' as full only when full's estimated time on
    that GPU is within its budget (``--budget-min``), else as quick. Anything unknown is an error."""
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


def pick(profile: str, *, smoke, quick, full, cpu=_NOT_GIVEN):
    """Choose a value by (resolved) profile; the notebooks' derived-values cell uses this. ``cpu`` is given
    only by the notebooks that have a cpu tier (:data:`TIERS`); asking another for it is an error."""
    resolved = resolve_profile(profile)
    if resolved == "cpu" and cpu is _NOT_GIVEN:
        raise ValueError(
            "PROFILE='cpu': this notebook has no cpu tier (the cpu tier covers notebooks "
            f"{', '.join(TIERS['cpu'])}); use quick or full"
        )
    return {"smoke": smoke, "quick": quick, "cpu": cpu, "full": full}[resolved]


def trained(profile: str) -> bool:
    """True when this run's models were trained for real: not smoke (seconds) and not a dry run (loops cut,
    :mod:`dryrun`). The invariants that need trained models (e.g. above-chance accuracy) apply only then."""
    from . import dryrun

    return resolve_profile(profile) != "smoke" and not dryrun.active()


class DeadlineReached(RuntimeError):
    """A chunked run (``python -m nup_utils.run --max-minutes M``) reached its deadline before starting
    more training: what was trained is cached, and running the same command again resumes."""


def check_deadline(what: str) -> None:
    """Raise :class:`DeadlineReached` when ``$NUP_DEADLINE`` (Unix time, set by the runner's ``--max-minutes``)
    has passed; called before work that would be lost if the command were killed (a model's training)."""
    raw = os.environ.get("NUP_DEADLINE", "").strip()
    if raw and time.time() > float(raw):
        raise DeadlineReached(f"chunk deadline reached before {what}; run the same command again to resume")


def resolve_device(device: str = "auto") -> torch.device:
    if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
        raise ValueError(f"device={device!r}; allowed values: {', '.join(DEVICE_CHOICES)} or 'cuda:N'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available")
    return torch.device(device)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict),
    not the machine's count: two threads per process on two shared cores collapse under load."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_count() -> tuple[int, str]:
    """(torch threads to use, where that number comes from): ``$NUP_THREADS`` when set, else
    :func:`available_cores`. A bad ``NUP_THREADS`` is an error naming it."""
    raw = os.environ.get("NUP_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"NUP_THREADS={raw!r}; expected a positive integer (or unset: the available cores)")
        return int(raw), "NUP_THREADS"
    return available_cores(), "sched_getaffinity"


def configure_threads() -> int:
    """Set torch's intra-op thread count explicitly (see :func:`thread_count`); returns it. Called
    when this module is imported, so every notebook, test and runner process does it."""
    n, _ = thread_count()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def threads_info() -> dict:
    """What results files record next to the device: threads used, cores available, and why."""
    n, source = thread_count()
    return {
        "torch_threads": torch.get_num_threads(),
        "configured": n,
        "source": source,
        "available_cores": available_cores(),
    }


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows: results from
    different CPUs differ in low-order bits, so the files say which one ran."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


GENERATED = ("results/", "figures/", "README.md")  # written by runs; never the code behind a number


def dirty_files(*, include_generated: bool = False, root=REPO_ROOT) -> list[str]:
    """Paths git reports as modified, staged or untracked (not ignored) in the repository at
    ``root``. Generated outputs (results/, figures/, README.md's table) are left out unless asked for."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    names = [line[3:].split(" -> ")[-1].strip('"') for line in out.splitlines() if line.strip()]
    return [n for n in names if include_generated or not n.startswith(GENERATED)]


def git_commit() -> str:
    """The commit of the code behind a number: ``$NUP_GIT_COMMIT`` when the batch runner set it
    (it checks the tree once, before the first notebook writes any output), else HEAD with '-dirty'
    when anything but generated outputs differs from it."""
    pinned = os.environ.get("NUP_GIT_COMMIT", "").strip()
    if pinned:
        return pinned
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty_files() else "")
    except Exception:
        return "unknown"


class Timer:
    """``with Timer() as t: ...; t.seconds``, or across notebook cells ``t = Timer.started()`` ... ``t.stop()``."""

    @classmethod
    def started(cls) -> Timer:
        return cls().__enter__()

    def stop(self) -> float:
        """Stop the clock; returns (and keeps in ``seconds``) the time since the start."""
        self.__exit__(None, None, None)
        return self.seconds

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


configure_threads()


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
