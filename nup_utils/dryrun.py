"""Dry runs (issue #17): a profile's code paths at its real sizes, every long loop cut to its first steps.

``python -m nup_utils.run --profile full --dry-run`` executes notebooks with the full profile's parameters
(architectures, widths, input sizes, training batch sizes, attack settings) on whatever device is here,
with ``NUP_DRY_RUN=1``. Library loops written as ``for i in dryrun.loop(n, "what", **key)`` then run only
their first :data:`STEPS` iterations; each cut loop appends one line to the ledger (``NUP_DRY_LEDGER``, JSON
lines): what it is, iterations planned and run, seconds per iteration measured here (the first iteration,
which pays for allocation and kernel selection, is left out when there is a second) and FLOPs per iteration
(torch's FLOP formulas, on the first one). :func:`estimate` turns a ledger into the profile's time on
this device: each loop's planned iterations × its measured seconds per iteration, plus the time the dry run
spent outside cut loops (that code ran in full).

Loops inside loops multiply: an outer loop cut to one pass (:func:`outer`, e.g. epochs) or a cut
:func:`loop` scales the planned count of every loop inside it, and an outer loop's own time excludes the time
of the loops it contains. Outputs that a cut loop would have produced are padded by repetition
(:func:`pad`), so shapes downstream are the real ones while the numbers mean nothing; results of a dry run
are written under build/ and every verdict is forced to ``inconclusive`` (``verdicts.smoke_guard``).

Outside a dry run every function here is a no-op wrapper: ``loop(n)`` is ``range(n)``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

STEPS = 2  # iterations a cut loop runs: the first pays for warm-up, the second is timed
EVAL_BATCH = 64  # predict()'s batch in a dry run: a few small batches time inference without a minute per model
_STACK: list[dict] = []  # enclosing loops of the current one: {"n": planned, "inner_s": time in nested loops}


def active() -> bool:
    """True in a dry run (``NUP_DRY_RUN=1``, set by the runner's ``--dry-run``)."""
    return os.environ.get("NUP_DRY_RUN", "0") == "1"


def batch_cap(batch: int) -> int:
    """The batch a dry run actually runs: ``batch``, or at most ``NUP_DRY_MAX_BATCH`` when that is set (a CPU
    dry run in CI checks code paths in seconds; its time per image is then scaled up, see :func:`loop`)."""
    raw = os.environ.get("NUP_DRY_MAX_BATCH", "").strip()
    if not active() or not raw:
        return batch
    if not raw.isdigit() or int(raw) < 2:
        raise ValueError(f"NUP_DRY_MAX_BATCH={raw!r}; expected an integer >= 2 (batch norm needs two samples)")
    return min(batch, int(raw))


def steps_cap(steps: int) -> int:
    """Iterations a cut loop runs: ``steps``, or at most ``NUP_DRY_MAX_STEPS`` when that is set (a code-path check
    in CI: one iteration per loop, whose time then includes the warm-up the second iteration would leave out)."""
    raw = os.environ.get("NUP_DRY_MAX_STEPS", "").strip()
    if not raw:
        return steps
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"NUP_DRY_MAX_STEPS={raw!r}; expected an integer >= 1")
    return min(steps, int(raw))


def planned_dir() -> Path | None:
    """Folder of markers, one per model configuration this dry run has planned (``NUP_DRY_PLANNED``; the runner
    empties it when a dry run starts): a model planned by an earlier notebook is a cache hit, as in a real run."""
    value = os.environ.get("NUP_DRY_PLANNED", "").strip()
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def ledger_path() -> Path | None:
    value = os.environ.get("NUP_DRY_LEDGER", "").strip()
    return Path(value) if value else None


def _sync() -> None:
    # time device work, not its launch: CUDA runs asynchronously (only when CUDA is already in use)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _multiplier() -> float:  # planned/run ratios of the enclosing loops (e.g. 500 steps run 2: 250.0)
    return math.prod(f["n"] for f in _STACK)


def _write(record: dict) -> None:
    path = ledger_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:  # one short line per cut loop; appends from one kernel process
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def replay(records: list[dict]) -> None:
    """Append ``records`` (from an earlier cut loop, e.g. a model the dry run's cache reused for another
    seed) to the ledger again, scaled by the loops enclosing the call: the work is planned again."""
    if not active():
        return
    mult = _multiplier()
    for r in records:
        _write({**r, "planned_total": r["planned_total"] * mult, "replayed": True, "measured_s": 0.0})


class _Recorder:
    """Collects the records written while it is open (the dry run's cache keeps them with a model)."""

    def __init__(self):
        self.records: list[dict] = []
        self.mult = 1.0

    def __enter__(self):
        self.mult = _multiplier()  # the loops enclosing the recording, which a replay applies again
        _RECORDERS.append(self)
        return self

    def __exit__(self, *exc):
        _RECORDERS.remove(self)
        return False


_RECORDERS: list[_Recorder] = []


def recording() -> _Recorder:
    """``with dryrun.recording() as rec: ...``: ``rec.records`` are the ledger lines written inside, their
    ``planned_total`` per call (divided by the loops enclosing the ``with``, e.g. 01's seeds: a replay multiplies
    by the loops enclosing it, and a dry cache kept from an earlier dry run must not count them twice)."""
    return _Recorder()


class _FlopCount(TorchDispatchMode):
    """FLOPs of the aten ops run inside (torch's FLOP formulas: convolutions, matmuls, attention; a multiply-add
    counts 2). torch's ``FlopCounterMode`` also tracks modules with backward hooks, which breaks
    ``torch.autograd.grad`` on a leaf (every input-gradient attack); this counts without them."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def loop(
    n: int, what: str, *, steps: int = STEPS, scale: float = 1.0, parallel: int = 1, host: bool = False, **key
) -> Iterator[int]:
    """``range(n)``; in a dry run only its first ``steps`` indices, timed, and a ledger line.

    ``what``: a short label ("train step"); ``key``: what the cost depends on (model, input size, batch);
    ``scale``: real work per iteration / work run (a batch cut by :func:`batch_cap`), applied to the measured
    time and the counted FLOPs; ``parallel``: iterations the real run executes at once (worker processes, e.g.
    notebook 06's fits), dividing the time per iteration but not its FLOPs; ``host``: work that runs on the CPU
    whatever the device (06's L-BFGS fits), so :func:`estimate` keeps its measured time rather than
    translating its FLOPs to an accelerator's rate."""
    if not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel={parallel!r}; expected a positive int")
    n = int(n)
    if not active() or n <= 0:
        yield from range(n)
        return
    run = min(n, max(1, steps_cap(int(steps))))
    frame = {"n": n / run, "inner_s": 0.0, "inner_flops": 0}  # inner loops' planned counts scale by n/run
    times, inner, flops = [], [], None
    _STACK.append(frame)
    start = time.perf_counter()
    try:
        for i in range(run):
            _sync()
            t0, inner0 = time.perf_counter(), frame["inner_s"]
            if i == 0:
                with _FlopCount() as fc:
                    yield i
                    _sync()
                # nested counters both see an op: leave out what the loops inside counted themselves
                flops = max(0, fc.total - frame["inner_flops"])
            else:
                yield i
                _sync()
            times.append(time.perf_counter() - t0)
            inner.append(frame["inner_s"] - inner0)
    finally:
        _STACK.pop()
        measured = time.perf_counter() - start
        if _STACK:
            _STACK[-1]["inner_s"] += measured
            counted = (flops or 0) * len(times) + frame["inner_flops"]  # what the enclosing loop's counter saw
            _STACK[-1]["inner_flops"] = _STACK[-1].get("inner_flops", 0) + counted
        if times:
            own = [t - c for t, c in zip(times, inner, strict=True)]
            per_iter = max(0.0, sum(own[1:]) / (len(own) - 1) if len(own) > 1 else own[0])  # mean after warm-up
            record = {
                "what": what,
                "key": key,
                "planned": n,
                "run": len(times),
                "planned_total": n * _multiplier(),
                "s_per_iter": per_iter * scale / parallel,
                "flops_per_iter": None if flops is None else int(flops * scale),
                "scale": scale,
                "parallel": parallel,
                "host": bool(host),
                "measured_s": measured - sum(inner),
            }
            _write(record)
            for rec in _RECORDERS:  # kept per call (without the enclosing loops): replay() scales it where it runs
                rec.records.append({**record, "planned_total": record["planned_total"] / rec.mult})


def batches(n: int, batch_size: int, what: str, *, steps: int = 1, **key) -> Iterator[slice]:
    """Slices ``[0:B], [B:2B], ...`` covering ``range(n)``: the library's batch loops. In a dry run the batch is
    capped (:func:`batch_cap`) and only the first ``steps`` batches run (a :func:`loop` labelled ``what``);
    the caller pads what it collected back to ``n`` rows with :func:`pad`."""
    bs = batch_cap(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive integer")
    for b in loop(math.ceil(n / bs), what, steps=steps, **key):
        yield slice(b * bs, (b + 1) * bs)


def outer(items: Iterable) -> Iterator:
    """An outer loop (e.g. epochs) that a dry run cuts to its first item; loops inside it count ``len(items)``
    times. Outside a dry run: the items."""
    items = list(items)
    if not active() or len(items) <= 1:
        yield from items
        return
    frame = {"n": len(items), "inner_s": 0.0}
    _STACK.append(frame)
    start = time.perf_counter()
    try:
        yield items[0]
    finally:
        _STACK.pop()
        if _STACK:
            _STACK[-1]["inner_s"] += time.perf_counter() - start


def attacked(ok: torch.Tensor) -> torch.Tensor:
    """The images an attack works on: ``ok`` (bool (N,), e.g. the clean-correct ones, which a trained model makes
    most of them); in a dry run every image. Its untrained models classify about a tenth correctly, so filtering
    on them would time and plan the attacks on a tenth of a real run's images (on an H200, 04's AutoAttack
    calls saw about 90 of 1,000 images). Every image is the upper bound of a real run's work."""
    return torch.ones_like(ok, dtype=torch.bool) if active() else ok


def pad(t: torch.Tensor | list, n: int) -> torch.Tensor | list:
    """A cut loop's output (m, ...) padded to its real length n by repeating it (dry runs only; elsewhere
    the length must already be n). A tensor (rows) or a list (e.g. decoded answers)."""
    if len(t) == n:
        return t
    if not active() or len(t) == 0 or len(t) > n:
        raise ValueError(f"pad: got {len(t)} rows, expected {n}" + ("" if active() else " (not a dry run)"))
    reps = math.ceil(n / len(t))
    if isinstance(t, list):
        return (t * reps)[:n]
    return t.repeat(reps, *([1] * (t.dim() - 1)))[:n]


# ---------------------------------------------------------------- reading a ledger
def read(path: str | Path) -> list[dict]:
    """A ledger's lines (a ``.jsonl`` file, or ``.jsonl.gz`` as committed); [] when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    if path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode()
    else:
        text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def estimate(records: list[dict], wall_s: float, *, flops_per_s: float | None = None) -> dict:
    """The full run's time from a dry run's ledger and wall time: Σ planned × measured s/iteration over the
    cut loops, plus the dry run's time outside them (which ran in full). With ``flops_per_s`` also the
    time at that sustained rate from the counted FLOPs (an assumption, for a device not measured)."""
    loops_s = sum(r["planned_total"] * r["s_per_iter"] for r in records)
    measured = sum(r.get("measured_s", 0.0) for r in records)
    rest = max(0.0, wall_s - measured)
    flops = sum(r["planned_total"] * (r["flops_per_iter"] or 0) for r in records)
    out = {
        "loops": len(records),
        "loops_s": loops_s,
        "outside_loops_s": rest,
        "total_s": loops_s + rest,
        "flops": flops,
        "uncounted_loops": sum(1 for r in records if not r["flops_per_iter"]),
    }
    if flops_per_s:  # host loops (CPU-only work) keep their measured time: the rate is an accelerator's
        host_s = sum(r["planned_total"] * r["s_per_iter"] for r in records if r.get("host"))
        device_flops = sum(r["planned_total"] * (r["flops_per_iter"] or 0) for r in records if not r.get("host"))
        out["host_loops_s"] = host_s
        out["at_rate_s"] = device_flops / flops_per_s + host_s + rest
        out["rate_flops_per_s"] = flops_per_s
    return out


ENGINE_FIELDS = ("precision", "channels_last")  # chosen per device (benchmark.resolve_engine): not the work itself


def _match_key(r: dict) -> str:
    key = {k: v for k, v in r["key"].items() if k not in ENGINE_FIELDS}
    return json.dumps([r["what"], key], sort_keys=True, default=str)


# An attack part's gradient-step equivalents (AutoAttack._dry, Square) run at the rate PGD steps achieved on the
# reference device: a reference dry run made before the attacks were timed as upper bounds (commit f95b1d7) timed
# their parts on a few images each, so its own "autoattack" and "square" lines are not evidence of a rate
RATE_PROXY = {"autoattack": "pgd step", "square": "pgd step"}


def calibrated(records: list[dict], reference: list[dict], *, outside_s: float, notebook: str | None = None) -> dict:
    """The time of the work in ``records`` (a dry run's ledger from here) on the device where ``reference`` (a
    dry run's ledger at the real batch sizes) was measured, loop by loop, most direct evidence first:

    * ``matched``: a reference loop with the same label and cost key (the engine fields, chosen per device,
      left out): its measured seconds per iteration there, when it counted the same FLOPs per iteration;
      when it counted other FLOPs (a key that does not name the batch, cut here by ``--dry-max-batch``, so
      the loop runs more, smaller iterations), this loop's FLOPs at *that* loop's rate there (when several
      match, those of the same ``notebook`` if any, e.g. not 01's MNIST attacks for 04's CIFAR ones, and of
      those the one whose planned work, iterations x FLOPs, is nearest: a batch cut keeps the work);
    * ``by_rate``: else the FLOPs counted here at the FLOP rate that reference loops with the same label (an
      attack: PGD steps, :data:`RATE_PROXY`) achieved there over all their planned work (no such loop: the rate
      of all reference loops together);
    * ``here``: CPU-only work (``host``) without a reference loop of its key, or no FLOPs counted and no
      reference loop with the label: the time measured here.

    ``outside_s``: the time outside cut loops, taken from the reference run of the same notebook (code that
    ran in full there). Returns the total and each part, so a reader sees how much of it was measured there, and
    ``attack_bound_s``: the part of ``by_rate`` spent in AutoAttack's parts and Square, which a dry run times on
    every image (a real run's later parts see only the images the earlier ones left): an upper bound."""
    ref_s: dict[str, list[tuple[float, float, float]]] = {}  # match key -> [(s/iteration, FLOPs/iteration, work)]
    own = {_match_key(r) for r in reference if notebook is not None and r.get("notebook") == notebook}
    work: dict[str, list[float]] = {}  # what -> [planned FLOPs, planned seconds] over loops with counted FLOPs
    slowest: dict[tuple[str, bool], float] = {}  # (label, FLOPs uncounted) -> slowest seconds per iteration there
    for r in reference:
        f = r.get("flops_per_iter") or 0.0
        k = _match_key(r)
        if k in own and r.get("notebook") != notebook:
            continue  # the same key measured in this notebook: only those loops
        ref_s.setdefault(k, []).append((r["s_per_iter"], f, f * r["planned_total"]))
        if f > 0 and r["s_per_iter"] > 0:
            w = work.setdefault(r["what"], [0.0, 0.0])
            w[0] += r["planned_total"] * f
            w[1] += r["planned_total"] * r["s_per_iter"]
        # uncounted work: the slowest loop of its label there, among the uncounted ones when there are any (an
        # EOT attack's step loop counts no FLOPs, its draws do: a counted PGD step is not its time)
        tag = (r["what"], not f)
        slowest[tag] = max(r["s_per_iter"], slowest.get(tag, 0.0))
    every = [sum(w[0] for w in work.values()), sum(w[1] for w in work.values())]

    def rate(what: str) -> float | None:
        f, s = work.get(RATE_PROXY.get(what, what)) or every
        return f / s if f > 0 and s > 0 else None

    def matched_s(hit: list[tuple[float, float, float]], flops: float, planned: float) -> float:
        """Seconds per iteration of this loop from the reference loops with its key."""
        same = [s for s, f, _ in hit if not (flops and f) or abs(f / flops - 1) < 0.01]
        if same:  # the same work per iteration (or FLOPs not counted on one side): the time there
            return sum(same) / len(same)
        s, f, _ = min(hit, key=lambda h: abs(math.log(h[2] / (flops * planned))))  # nearest in planned work
        return flops * s / f

    parts = {"matched": 0.0, "by_rate": 0.0, "here": 0.0}
    bound = 0.0  # of by_rate: attack parts (RATE_PROXY) timed on every image, an upper bound of a real run's
    for r in records:
        hit = None if r["what"] in RATE_PROXY else ref_s.get(_match_key(r))
        flops = r.get("flops_per_iter") or 0
        if hit:
            parts["matched"] += r["planned_total"] * matched_s(hit, flops, r["planned_total"])
        elif flops and rate(r["what"]):
            parts["by_rate"] += r["planned_total"] * flops / rate(r["what"])
            bound += r["planned_total"] * flops / rate(r["what"]) if r["what"] in RATE_PROXY else 0.0
        elif r.get("host"):  # CPU-only work (bootstrap resamples, 06's fits) not measured there: its time here
            parts["here"] += r["planned_total"] * r["s_per_iter"]
        elif (r["what"], True) in slowest or (r["what"], False) in slowest:  # uncounted (e.g. a sampling loop)
            parts["matched"] += r["planned_total"] * slowest.get((r["what"], True), slowest.get((r["what"], False)))
        else:
            parts["here"] += r["planned_total"] * r["s_per_iter"]
    total = sum(parts.values()) + outside_s
    out = {f"{k}_s": v for k, v in parts.items()}
    return {**out, "attack_bound_s": bound, "outside_loops_s": outside_s, "total_s": total}


def by_what(records: list[dict]) -> list[tuple[str, float, float]]:
    """(label, estimated s, FLOPs) per ``what``, largest first: where the time goes."""
    agg: dict[str, list[float]] = {}
    for r in records:
        a = agg.setdefault(r["what"], [0.0, 0.0])
        a[0] += r["planned_total"] * r["s_per_iter"]
        a[1] += r["planned_total"] * (r["flops_per_iter"] or 0)
    return sorted(((k, v[0], v[1]) for k, v in agg.items()), key=lambda t: -t[1])
