"""Where things live: repository, data, cache, results, figures.

Every location can be overridden by one environment variable, so CI and tests can redirect
outputs without touching the notebooks:

    NUP_DATA_DIR     offline data folder (e.g. ../shared/data); unset -> download with torchvision
    NUP_CACHE_DIR    decoded datasets and trained models (default ~/.cache/nup)
    NUP_RESULTS_DIR  results/<profile>/NN-name.json (default <repo>/results)
    NUP_FIGURES_DIR  figures/NN-*.png|pdf (default <repo>/figures)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_UMASK = os.umask(0)
os.umask(_UMASK)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def data_dir() -> Path | None:
    """The offline data folder from ``NUP_DATA_DIR``, or None (online: torchvision downloads)."""
    return _env_path("NUP_DATA_DIR")


def cache_dir() -> Path:
    path = _env_path("NUP_CACHE_DIR") or Path("~/.cache/nup").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root() -> Path:
    return _env_path("NUP_RESULTS_DIR") or REPO_ROOT / "results"


def results_dir(profile: str) -> Path:
    path = results_root() / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    path = _env_path("NUP_FIGURES_DIR") or REPO_ROOT / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def _json_default(obj):
    # numpy / torch scalars and arrays -> plain Python
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
