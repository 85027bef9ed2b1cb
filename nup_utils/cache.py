"""Trained-model cache shared across notebooks.

A model is keyed by a hash of its full configuration (architecture, data subset, seed,
hyper-parameters, ...), the library version and the source code of the modules that define models,
data, training and the papers' methods (:data:`CODE_MODULES`), so editing training code never
silently reuses a model trained by the old code. Stored under ``<cache>/models`` and loaded with
``weights_only=True``. A file that fails to load or whose stored config differs is rebuilt. A dry run
(:mod:`dryrun`) keeps its few-step models apart, in ``<cache>/models-dry``, one per configuration without
the seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import __version__, dryrun, paths, runtime

# modules whose code decides what a cached model is (reporting, verdicts and plotting do not)
CODE_MODULES = (
    "models",
    "data",
    "training",
    "attacks",
    "defenses",
    "sbde",
    "uncertainty",
    "piexp",
    "functions",
    "factworld",
    "llm_probe",
    "cache",
    # per-notebook modules whose code wires a training run (what is trained, with what init and data)
    "relation",
    "conjmask_study",
    "factworld_study",
)


def code_hash(folder: Path | None = None) -> str:
    """16-hex hash of the source of :data:`CODE_MODULES` (in ``folder``, default this package)."""
    folder = folder or Path(__file__).parent
    h = hashlib.sha256()
    for name in CODE_MODULES:
        path = folder / f"{name}.py"
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return h.hexdigest()[:16]


def config_hash(config: dict) -> str:
    """Stable 16-hex hash of a JSON-able config (key order does not matter), the library version and
    the code that trains the model (:func:`code_hash`)."""
    try:
        text = json.dumps({"config": config, "nup": __version__, "code": code_hash()}, sort_keys=True, default=str)
    except TypeError as exc:
        raise TypeError(f"config must be JSON-serializable: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_path(name: str, config: dict) -> Path:
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"name={name!r}; expected a short identifier without slashes or spaces")
    return paths.cache_dir() / "models" / f"{name}-{config_hash(config)}.pt"


def _canonical(config: dict) -> dict:
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def cached_model(
    name: str,
    config: dict,
    build: Callable[[], nn.Module],
    fit: Callable[[nn.Module], dict],
    *,
    device: torch.device | str = "cpu",
    refresh: bool = False,
) -> tuple[nn.Module, dict, bool]:
    """Return ``(model, history, cache_hit)``.

    ``build()`` makes an untrained model; on a miss it is moved to ``device`` and ``fit(model)``
    trains it and returns its history (tensors, numbers, lists, dicts), which is stored alongside.
    """
    # A dry run (dryrun.active()) trains a few steps per distinct model: seeds share one file, and a model it
    # plans for the first time (another seed) has its planned training replayed into the ledger; one already
    # planned in this dry run (a later notebook reusing it) costs nothing more, as in a real run. A model the
    # real cache already holds is loaded and costs nothing: the estimate is that of resuming.
    real_path = model_path(name, config)
    dry = dryrun.active() and not real_path.exists()
    marker = None
    if dry:
        planned = dryrun.planned_dir()
        marker = planned / config_hash(config) if planned is not None else None
        config = {k: v for k, v in config.items() if k != "seed"}
        path = paths.cache_dir() / "models-dry" / f"dry-{config_hash(config)}.pt"
    else:
        path = real_path
    model = build().to(device)
    if path.exists() and not refresh:
        try:
            blob = torch.load(path, map_location=device, weights_only=True)
            if blob.get("config") != _canonical(config):
                raise ValueError("stored config differs from the requested one")
            model.load_state_dict(blob["state_dict"])
            model.eval()
            if dry and not (marker is not None and marker.exists()):
                dryrun.replay(blob.get("history", {}).get("dry_ledger", []))
            if marker is not None:
                marker.touch()
            return model, blob.get("history", {}), True
        except Exception as exc:  # corrupt, truncated or foreign: never trust it
            warnings.warn(f"model cache {path.name} unusable ({type(exc).__name__}: {exc}); retraining", stacklevel=2)
            path.unlink(missing_ok=True)
    runtime.check_deadline(f"training {name}")  # a chunked run stops here; what is cached stays
    with dryrun.recording() as rec:
        history = fit(model)
    if dry:
        history["dry_ledger"] = rec.records
        if marker is not None:
            marker.touch()
    model.eval()
    buf = io.BytesIO()
    torch.save(
        {
            "config": _canonical(config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": history,
        },
        buf,
    )
    paths.atomic_write_bytes(path, buf.getvalue())
    return model, history, False
