"""Throughput of the project's vision models on this machine (issue #17), a record, not a timed test.

Per model × input size × precision × memory format, two workloads on random data:
  * ``train``:  forward, cross-entropy backward and an SGD step on a batch (images per second);
  * ``attack``: forward and the input gradient in eval mode, one PGD step (images × steps per second).
``precision`` "bf16" is ``torch.autocast(dtype=bfloat16)`` (the CPU's AMX/AVX-512-BF16 units where it has
them); "fp32" is plain float32. ``channels_last`` converts the model and the batch. Every row is the
median of ``repeats`` timed blocks after a warm-up, so one slow block (another process) does not decide.

    python -m nup_utils.benchmark [--grid quick|full] [--seconds 1.5] [--device auto] [--out DIR]

writes ``results/benchmarks/<device-slug>.json`` (atomically) and prints a table. The numbers depend on
the machine and on what else runs on it: run it alone.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import torch
import torch.nn.functional as F

from . import dryrun, models, paths, runtime

PRECISIONS = ("fp32", "bf16")
WORKLOADS = ("train", "attack")
# (stem, width, input px, batch): the models of notebooks 02-04 in quick and in full
GRIDS = {
    "quick": [
        ("imagenet", 8, 32, 128),
        ("imagenet", 16, 32, 128),
        ("imagenet", 32, 32, 128),
        ("imagenet", 8, 64, 128),
        ("imagenet", 16, 64, 128),
        ("cifar", 8, 32, 128),
        ("cifar", 16, 32, 128),
    ],
    "full": [
        ("imagenet", 64, 32, 256),
        ("imagenet", 64, 64, 256),
        ("imagenet", 64, 96, 256),
        ("cifar", 64, 32, 256),
        ("cifar", 64, 64, 256),
    ],
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo), empty where unknown."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_native(device: torch.device) -> bool:
    """bf16 arithmetic in hardware: a CUDA device with bf16 support, or a CPU with AMX-BF16 or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def _step(model, x, y, workload: str, precision: str, opt) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if workload == "train":
            loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xr).float(), y), xr)
            x = (x + 1e-3 * g.sign()).clamp(0, 1)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def measure(
    stem: str,
    width: int,
    px: int,
    batch: int,
    *,
    workload: str,
    precision: str,
    channels_last: bool,
    device,
    seconds: float = 1.5,
    repeats: int = 3,
    seed: int = 0,
) -> dict:
    """One row: median images per second over ``repeats`` blocks of about ``seconds`` each."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload={workload!r}; allowed values: {', '.join(WORKLOADS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed values: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = models.resnet18(stem=stem, width=width).to(device)
    gen = runtime.make_generator(seed)
    x = torch.rand(batch, 3, px, px, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    model.train(workload == "train")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for _ in range(2):  # warm-up: allocator, kernels, oneDNN primitives
        _step(model, x, y, workload, precision, opt)
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < seconds:
            _step(model, x, y, workload, precision, opt)
            n += 1
        rates.append(n * batch / (time.perf_counter() - t0))
    return {
        "stem": stem,
        "width": width,
        "px": px,
        "batch": batch,
        "workload": workload,
        "precision": precision,
        "channels_last": channels_last,
        "images_per_s": statistics.median(rates),
        "spread": [min(rates), max(rates)],
    }


def run(grid: str = "quick", *, device="auto", seconds: float = 1.5, repeats: int = 3, log=print) -> dict:
    """Every row of ``grid`` × workloads × precisions × memory formats, with the machine's description."""
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r}; allowed values: {', '.join(GRIDS)}")
    dev = runtime.resolve_device(device)
    rows = []
    for stem, width, px, batch in GRIDS[grid]:
        for workload in WORKLOADS:
            for precision in PRECISIONS:
                for cl in (False, True):
                    r = measure(stem, width, px, batch, workload=workload, precision=precision, channels_last=cl,
                                device=dev, seconds=seconds, repeats=repeats)  # fmt: skip
                    rows.append(r)
                    log(line(r))
    return {
        **machine(dev),
        "grid": grid,
        "seconds_per_block": seconds,
        "repeats": repeats,
        "rows": rows,
    }


def machine(dev: torch.device) -> dict:
    """What every benchmark record names: the device, CPU model, native bf16, threads, versions and commit."""
    return {
        "device": runtime.device_name(dev),
        "cpu_model": runtime.cpu_model(),
        "bf16_native": bf16_native(dev),
        "threads": runtime.threads_info(),
        "versions": runtime.versions(),
        "git_commit": runtime.git_commit(),
    }


def line(r: dict) -> str:
    unit = "images/s" if r["workload"] == "train" else "images × steps/s"
    fmt = "channels_last" if r["channels_last"] else "contiguous"
    return (
        f"{r['stem']:8s} w{r['width']:<3d} {r['px']:3d}px b{r['batch']:<4d} {r['workload']:6s} {r['precision']:4s} "
        f"{fmt:13s} {r['images_per_s']:9.0f} {unit} [{r['spread'][0]:.0f}, {r['spread'][1]:.0f}]"
    )


def best(record: dict, stem: str, width: int, px: int, workload: str = "train") -> dict:
    """The fastest (precision, memory format) row for one model and input size in a benchmark record."""
    rows = [r for r in record["rows"] if (r["stem"], r["width"], r["px"], r["workload"]) == (stem, width, px, workload)]
    if not rows:
        raise KeyError(f"no benchmark row for stem={stem!r}, width={width}, px={px}, workload={workload!r}")
    return max(rows, key=lambda r: r["images_per_s"])


def _matches_this_machine(record: dict, device: torch.device) -> bool:
    """A record measured on this CPU model, with this many torch threads and the same bf16 support."""
    return (
        record.get("cpu_model") == runtime.cpu_model()
        and record.get("threads", {}).get("torch_threads") == torch.get_num_threads()
        and record.get("bf16_native") == bf16_native(device)
    )


def committed_records(folder=None) -> list[dict]:
    """The benchmark records committed under ``results/benchmarks`` (never the run's own results folder:
    the engine choice of a published run must be reproducible from the repository)."""
    folder = paths.REPO_ROOT / "results" / "benchmarks" if folder is None else folder
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def fastest(
    stem: str,
    width: int,
    px: int,
    *,
    device,
    batch: int = 128,
    seconds: float = 0.5,
    repeats: int = 3,
    records: list[dict] | None = None,
    log=print,
) -> dict:
    """The engine settings that train this model fastest here: ``{"precision", "channels_last", "source",
    "images_per_s"}``, for ``training.train``'s ``precision=``/``channels_last=`` (issue #17's "auto").

    * CUDA: bf16 autocast + channels_last (tensor cores), not measured.
    * A dry run (:mod:`dryrun`) on a CPU: fp32 + channels_last, not measured.
    * CPU: the train rows of a committed benchmark record of this CPU model and thread count
      (:func:`committed_records`), when it has this (stem, width, px); else measured now (each precision ×
      memory format, ``repeats`` blocks of ``seconds``; bf16 only where it is native, emulated bf16 is
      never faster) and remembered in ``<cache>/engine/`` so later runs on this machine choose the same.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return {"precision": "bf16", "channels_last": True, "source": "cuda default", "images_per_s": None}
    if dryrun.active():  # a dry run checks code paths: no minutes spent measuring engines nobody will train
        return {"precision": "fp32", "channels_last": True, "source": "dry run (not measured)", "images_per_s": None}
    key = f"{stem}-w{width}-{px}px"
    for rec in committed_records() if records is None else records:
        if _matches_this_machine(rec, device):
            try:
                top = best(rec, stem, width, px, "train")
            except KeyError:
                continue
            n_threads, commit = rec["threads"]["torch_threads"], rec["git_commit"][:7]
            src = f"benchmark record ({rec['cpu_model']}, {n_threads} threads, {commit})"
            return {**{k: top[k] for k in ("precision", "channels_last", "images_per_s")}, "source": src}
    memo = paths.cache_dir() / "engine" / f"{slug(runtime.cpu_model())}-{torch.get_num_threads()}-threads.json"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if key not in known:
        precisions = PRECISIONS if bf16_native(device) else ("fp32",)
        rows = [
            measure(
                stem,
                width,
                px,
                batch,
                workload="train",
                precision=p,
                channels_last=cl,
                device=device,
                seconds=seconds,
                repeats=repeats,
            )  # fmt: skip
            for p in precisions
            for cl in (False, True)
        ]
        top = max(rows, key=lambda r: r["images_per_s"])
        known[key] = {k: top[k] for k in ("precision", "channels_last", "images_per_s")}
        paths.atomic_write_json(memo, known)
        log(f"engine for {key}: measured " + "; ".join(line(r) for r in rows))
    return {**known[key], "source": f"measured on this machine ({memo.name})"}


def resolve_engine(precision, channels_last, *, stem: str, width: int, px: int, device, batch: int = 128) -> dict:
    """A recipe's ``precision`` ("auto" | "fp32" | "bf16") and ``channels_last`` ("auto" | bool) for one model:
    each "auto" becomes the fastest measured for (stem, width, px) here (:func:`fastest`); returns
    ``{"precision", "channels_last", "source"}`` (the values go into the model's cache key and its history)."""
    if "auto" not in (precision, channels_last):
        return {"precision": precision, "channels_last": bool(channels_last), "source": "recipe"}
    top = fastest(stem, width, px, device=device, batch=batch)
    return {
        "precision": top["precision"] if precision == "auto" else precision,
        "channels_last": top["channels_last"] if channels_last == "auto" else bool(channels_last),
        "source": top["source"],
    }


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="quick", choices=tuple(GRIDS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=1.5, help="length of one timed block")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per row (the median is kept)")
    ap.add_argument("--out", default=str(paths.results_root() / "benchmarks"))
    a = ap.parse_args(argv)
    rec = run(a.grid, device=a.device, seconds=a.seconds, repeats=a.repeats)
    name = slug(f"{rec['device']}-{a.grid}")
    path = paths.atomic_write_json(f"{a.out}/{name}.json", rec)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
