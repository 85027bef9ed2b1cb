"""Batch runner: execute notebooks headlessly with papermill, keep going past failures, summarize.

    python -m nup_utils.run --profile quick --only 02,03
    python -m nup_utils.run --profile smoke                # every notebook, seconds each
    python -m nup_utils.run --profile quick --publish      # also write outputs back into notebooks/

Executed copies go to ``build/<profile>/`` (never over the sources); smoke figures to
``build/smoke/figures``. ``--publish`` marks a run whose outputs will be committed: it refuses a
work tree with uncommitted changes (results must name a clean commit that exists in history) and,
for the quick profile on a CPU machine (where PROFILE='auto' resolves to the same run), copies the
executed notebooks back into ``notebooks/`` without papermill's injected cell, so the committed
notebooks carry the outputs of the same run as ``results/quick`` and ``figures/``.

``--dry-run`` (issue #17) executes a profile's notebooks with every long loop cut to its first steps
(:mod:`dryrun`): every code path at the profile's real sizes, in minutes, with outputs under
``build/dry-<profile>/``; it prints the profile's estimated time on this device from the throughput it
measured, and the FLOPs it counted. A real ``full`` run first makes that estimate (one dry run, kept in
``build/dry-full/estimate.json`` for the same commit, device and notebooks) and refuses to start above
``--budget-min`` minutes.

Notebooks run one at a time (never two heavy ones at once on a 2-core machine); each kernel gets
``NUP_THREADS`` (torch threads, default: the cores this process may use) and ``NUP_GIT_COMMIT``
(the commit checked once at the start, so outputs written by earlier notebooks do not make later
ones look dirty). Per-cell timeouts are a safety net sized from each notebook's last measured wall
time (:func:`cell_timeout`). Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from . import benchmark, dryrun, paths, report, runtime


def discover(only: str | None = None, root: Path | None = None) -> list[Path]:
    """Notebooks ``NN-*.ipynb`` in order; ``only='02,03'`` keeps those numbers (unknown numbers are an error)."""
    nbs = sorted((root or paths.notebooks_dir()).glob("[0-9][0-9]-*.ipynb"))
    if only:
        wanted = [w.strip().zfill(2) for w in only.split(",") if w.strip()]
        have = {p.name[:2] for p in nbs}
        missing = [w for w in wanted if w not in have]
        if missing:
            raise ValueError(
                f"--only {only!r}: no notebook numbered {', '.join(missing)}; have {', '.join(sorted(have))}"
            )
        nbs = [p for p in nbs if p.name[:2] in wanted]
    return nbs


def strip_papermill(nb):
    """Drop papermill's injected-parameters cell and metadata (for publishing into notebooks/)."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    nb.metadata.pop("papermill", None)
    for c in nb.cells:
        c.metadata.pop("papermill", None)
        c.metadata.pop("execution", None)
    return nb


TIMEOUT_FACTOR, TIMEOUT_FLOOR_S = 6, 1200  # ours: a generous multiple of the measured time


def cell_timeout(name: str, profile: str, root: Path | None = None) -> int | None:
    """Per-cell limit in seconds: TIMEOUT_FACTOR x the notebook's last measured wall time (from its
    committed results file), at least TIMEOUT_FLOOR_S. Smoke: the floor. Full (GPU) and cpu (hours): none."""
    if profile in ("full", "cpu"):
        return None
    from . import results

    doc = results.load_results(profile, name, root=root or paths.REPO_ROOT / "results")
    measured = float(doc["wall_time_s"]) if doc else 0.0
    return int(max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * measured))


def _failed_cell(src: Path, out: Path, exc: Exception) -> str:
    """'cell N ('first line') stopped after S s: ' for the cell that failed or timed out: from
    papermill's per-cell metadata in the (auto-saved) output, else from the cell preview that
    nbclient puts into a timeout's message, matched against the source notebook."""
    import datetime as dt

    import nbformat

    def first_line(text):
        return next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("---")), "")[:60]

    try:
        nb = nbformat.read(str(out), as_version=4)
        for i, c in enumerate(nb.cells):
            meta = c.get("metadata", {}).get("papermill", {})
            if meta.get("status") in ("running", "failed") or meta.get("exception"):
                ran = ""
                if meta.get("start_time"):
                    start = dt.datetime.fromisoformat(meta["start_time"].replace("Z", "+00:00"))
                    end = (
                        dt.datetime.fromisoformat(meta["end_time"].replace("Z", "+00:00"))
                        if meta.get("end_time")
                        else dt.datetime.now(dt.UTC)
                    )
                    ran = f" after {(end - start).total_seconds():.0f} s"
                return f"cell {i} ({first_line(c.source)!r}) stopped{ran}: "
    except Exception:
        pass
    text = str(exc)
    marker = "preview of the cell contents:"
    if marker in text:
        preview = first_line(text.split(marker, 1)[1])
        try:
            cells = nbformat.read(str(src), as_version=4).cells
            idx = next((i for i, c in enumerate(cells) if preview and preview in c.source), "?")
        except Exception:
            idx = "?"
        return f"cell {idx} ({preview!r}) stopped: "
    return ""


def execute(src: Path, out: Path, profile: str, *, timeout: int | None = None) -> tuple[bool, float, str]:
    """Run one notebook with papermill into ``out``; returns (ok, seconds, error message naming the
    cell that failed or timed out, and how long it ran)."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(src),
            str(out),
            parameters={"PROFILE": profile},
            cwd=str(src.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
        )
        return True, time.perf_counter() - t0, ""
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        msg = [ln for ln in str(exc).strip().splitlines() if ln.strip() and not ln.startswith("---")]
        text = (msg[-1] if msg else type(exc).__name__)[:300]
        if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
            text = msg[0][:300] if msg else text
            text = f"timed out (per-cell limit {timeout} s): {text}"
        return False, time.perf_counter() - t0, _failed_cell(src, out, exc) + text


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MAX_NOTEBOOK_BYTES = 400 * 1024  # published notebooks stay small enough to review and to load on a repository page


def lean(nb):
    """Drop what a reader cannot use and a diff should not carry: saved widget state, widget views
    (progress bars, explorers: their text fallback stays), and stderr streams (tqdm, warnings)."""
    nb.metadata.pop("widgets", None)
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        kept = []
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                continue
            data = o.get("data", {})
            if WIDGET_MIME in data:
                data.pop(WIDGET_MIME)
                if not data:
                    continue
            kept.append(o)
        c.outputs = kept
    return nb


RESULTS_CELL_TAGS = ("results-glance", "results-overview")


def refresh_results_cells(nb, name: str):
    """Re-render the cells that show committed results (tag ``results-glance``: this notebook's last
    published verdicts; ``results-overview``: every notebook's) from ``results/`` as it is now, so a
    published notebook shows the run it was published with, not the one before it."""
    import nbformat

    for c in nb.cells:
        tags = c.get("metadata", {}).get("tags", [])
        if c.cell_type != "code" or not any(t in RESULTS_CELL_TAGS for t in tags):
            continue
        md = report.overview() if "results-overview" in tags else report.glance(name)
        data = {"text/markdown": md, "text/plain": "<IPython.core.display.Markdown object>"}
        c.outputs = [nbformat.v4.new_output("display_data", data=data)]
    return nb


def refresh_notebooks(root: Path | None = None) -> list[Path]:
    """Apply :func:`refresh_results_cells` to every committed notebook in place (no execution)."""
    import nbformat

    changed = []
    for path in discover(None, root):
        nb = nbformat.read(str(path), as_version=4)
        before = nbformat.writes(nb)
        after = nbformat.writes(refresh_results_cells(nb, path.stem))
        if after != before:
            paths.atomic_write_bytes(path, (after + "\n").encode())
            changed.append(path)
    return changed


def publish(executed: Path, src: Path) -> None:
    """Write the executed notebook back over its source: without papermill's cell, lean (:func:`lean`),
    and refusing one over :data:`MAX_NOTEBOOK_BYTES` (shrink its figures instead)."""
    import nbformat

    nb = refresh_results_cells(lean(strip_papermill(nbformat.read(str(executed), as_version=4))), src.stem)
    payload = (nbformat.writes(nb) + "\n").encode()
    if len(payload) > MAX_NOTEBOOK_BYTES:
        raise ValueError(
            f"{src.name}: published notebook would be {len(payload) // 1024} KB "
            f"(> {MAX_NOTEBOOK_BYTES // 1024} KB); render its figures smaller"
        )
    paths.atomic_write_bytes(src, payload)


def summary(statuses: list[dict], profile: str) -> str:
    results = report.load_all(profile)
    lines = [f"{'notebook':34s} {'status':7s} {'time':>7s}  claim / ours / paper / verdict"]
    for s in statuses:
        doc = results.get(s["name"]) if s["ok"] else None
        head = f"{s['name']:34s} {'ok' if s['ok'] else 'FAILED':7s} {s['seconds']:6.0f}s"
        if not s["ok"]:
            lines.append(f"{head}  {s['error']}")
            continue
        claims = (doc or {}).get("claims", [])
        if not claims:
            lines.append(f"{head}  (no results file)")
        for i, c in enumerate(claims):
            h = c["headline"]
            paper_txt = "; ".join(report.paper.fmt(k) for k in c.get("paper_keys", [])) or "—"
            lines.append(
                f"{head if i == 0 else ' ' * len(head)}  {c['id']}: {h} = {report.fmt_metric(c['metrics'][h])}"
                f" | paper {paper_txt} | {c['verdict']}"
            )
    return "\n".join(lines)


FULL_BUDGET_MIN = 60.0  # issue #17: all of full on one GPU (an H100 in the issue) in an hour
# FLOP rate used only to translate a dry run's counted FLOPs into a time on a device that was not measured:
# ours, an assumption (about a quarter of an H100's 989 dense bf16 TFLOP/s), printed beside the measured estimate.
# A floor, not an estimate: on an H200 (results/benchmarks/dry-run-full-nvidia-h200.json) the measured estimate
# of 01-04 and 06 was 626 min against 41.9 min at this rate (attacks and small models run far below it)
ASSUMED_RATE = ("H100 at an assumed sustained 250 TFLOP/s (ours, not measured; a floor)", 250e12)


def reference_runs(profile: str, folder: Path | None = None) -> list[dict]:
    """The committed dry runs of ``profile`` made on an accelerator at the real batch sizes, with their ledgers:
    ``results/benchmarks/dry-run-<profile>-<device>.json`` and the folder ``…-ledgers/`` beside it (one gzipped
    ledger per notebook). Each as {"device", "commit", "record" (file name), "ledger" (every notebook's loops
    pooled: the same work on the same device costs the same in any notebook; each loop tagged with its
    ``notebook``), "outside_s" {notebook: seconds}}."""
    import json

    folder = paths.REPO_ROOT / "results" / "benchmarks" if folder is None else folder
    refs = []
    for rec in sorted(folder.glob(f"dry-run-{profile}-*.json")):
        doc = json.loads(rec.read_text())
        ledgers = rec.with_name(rec.stem + "-ledgers")
        cut = doc.get("max_batch") or doc.get("max_steps")  # batches or steps cut: not the real run's times
        if doc.get("device", "cpu").startswith("cpu") or cut or not ledgers.is_dir():
            continue
        pooled = [
            {**r, "notebook": f.name.split(".")[0].removeprefix("ledger-")}
            for f in sorted(ledgers.glob("ledger-*.jsonl*"))
            for r in dryrun.read(f)
        ]
        if pooled:
            outside = {k: v["outside_loops_s"] for k, v in doc["notebooks"].items() if v.get("ok")}
            refs.append(
                {
                    "device": doc["device"],
                    "commit": doc["commit"],
                    "record": rec.name,
                    "ledger": pooled,
                    "outside_s": outside,
                }
            )
    return refs


def dry_lines(stem: str, records: list[dict], wall_s: float, refs: list[dict] | None = None) -> tuple[dict, list[str]]:
    """One notebook's estimate from its dry run (:func:`dryrun.estimate`), its time on each reference device
    (:func:`reference_runs`, :func:`dryrun.calibrated`) and lines saying where its time goes."""
    est = dryrun.estimate(records, wall_s, flops_per_s=ASSUMED_RATE[1])
    lines = [
        f"   estimate {stem}: {est['total_s'] / 60:.1f} min here ({est['loops']} cut loops "
        f"{est['loops_s'] / 60:.1f} min + {est['outside_loops_s'] / 60:.1f} min outside them, which ran in full); "
        f"{est['flops'] / 1e15:.2f} PFLOP counted -> {est['at_rate_s'] / 60:.1f} min on an {ASSUMED_RATE[0]}"
        + (f", of which {est['host_loops_s'] / 60:.1f} min CPU-only work timed here" if est["host_loops_s"] else "")
    ]
    est["calibrated"] = {}
    for ref in refs or []:
        # time outside the cut loops: the reference's own for this notebook, else this dry run's (ran in full here)
        outside = ref["outside_s"].get(stem, est["outside_loops_s"])
        cal = dryrun.calibrated(records, ref["ledger"], outside_s=outside, notebook=stem)
        cal["reference"] = ref["record"]
        est["calibrated"][ref["device"]] = cal
        lines.append(
            f"   on {ref['device']} (its measured throughput, {ref['record']}, commit {ref['commit'][:8]}): "
            f"{cal['total_s'] / 60:.1f} min = {cal['matched_s'] / 60:.1f} min of loops measured there "
            f"+ {cal['by_rate_s'] / 60:.1f} min of FLOPs at rates measured there "
            f"+ {cal['here_s'] / 60:.1f} min timed here "
            f"+ {cal['outside_loops_s'] / 60:.1f} min outside the loops"
            + (
                f"; {cal['attack_bound_s'] / 60:.1f} min of it AutoAttack and Square parts timed on every image "
                "(an upper bound)"
                if cal["attack_bound_s"]
                else ""
            )
        )
    for what, secs, flops in dryrun.by_what(records)[:4]:
        lines.append(f"      {what:18s} {secs / 60:8.1f} min here  {flops / 1e15:8.3f} PFLOP")
    return est, lines


def estimable(notebooks: list[Path]) -> list[Path]:
    """The notebooks a dry run executes and estimates: all but the overview (00), which only reads results."""
    return [p for p in notebooks if not p.stem.startswith("00-")]


def _estimate_record(
    profile: str, per_nb: dict, max_batch: int | None, *, complete: bool, max_steps: int | None = None
) -> dict:
    """The estimate of a dry run as written to ``estimate.json``; ``complete``: every notebook asked for has
    run (each one's own ``ok`` says whether its dry run passed)."""
    return {
        "profile": profile,
        "commit": runtime.git_commit(),
        "device": runtime.device_name(runtime.resolve_device("auto")),
        "notebooks": per_nb,
        "total_min": sum(v["total_s"] for v in per_nb.values()) / 60,
        "total_min_at_assumed_rate": sum(v["at_rate_s"] for v in per_nb.values()) / 60,
        # the same work on each reference device, from the throughput measured there (reference_runs)
        "total_min_on": {
            dev: sum(v["calibrated"][dev]["total_s"] for v in per_nb.values()) / 60
            for dev in {d for v in per_nb.values() for d in v.get("calibrated", {})}
            if all(dev in v.get("calibrated", {}) for v in per_nb.values())
        },
        "assumed_rate": {"label": ASSUMED_RATE[0], "flops_per_s": ASSUMED_RATE[1]},
        "complete": complete and all(v["ok"] for v in per_nb.values()),
        "max_batch": max_batch,  # None: the real batch sizes (the estimate to trust on a GPU)
        "max_steps": max_steps,  # None: the dry run's own steps (warm-up left out of the timing)
    }


def dry_run(
    notebooks: list[Path],
    profile: str,
    out_root: Path,
    *,
    max_batch: int | None = None,
    max_steps: int | None = None,
) -> tuple[list[dict], dict]:
    """Execute ``notebooks`` as a dry run of ``profile`` (see :mod:`dryrun`); returns (statuses, estimate).
    ``max_batch``: cut every batch to this size too (a CPU check of code paths; the estimate scales up);
    ``max_steps``: run at most this many iterations of each cut loop (1: code paths only, timed with warm-up)."""
    base = out_root / f"dry-{profile}"
    kept = estimable(notebooks)
    for src in (p for p in notebooks if p not in kept):
        print(f"-> {src.name}: skipped, it runs no experiment (nothing to dry-run or estimate)", flush=True)
    notebooks = kept
    os.environ["NUP_DRY_RUN"] = "1"
    if max_batch:
        os.environ["NUP_DRY_MAX_BATCH"] = str(max_batch)
    if max_steps:
        os.environ["NUP_DRY_MAX_STEPS"] = str(max_steps)
    planned = base / "planned"  # models planned so far in this dry run (see cache.cached_model)
    shutil.rmtree(planned, ignore_errors=True)
    os.environ["NUP_DRY_PLANNED"] = str(planned)
    os.environ["NUP_RESULTS_DIR"] = str(base / "results")
    os.environ["NUP_FIGURES_DIR"] = str(base / "figures")
    statuses, per_nb = [], {}
    refs = reference_runs(profile)
    try:
        for src in notebooks:
            ledger = base / f"ledger-{src.stem}.jsonl"
            ledger.unlink(missing_ok=True)
            os.environ["NUP_DRY_LEDGER"] = str(ledger)
            print(f"-> {src.name} (dry run of {profile}) ...", flush=True)
            ok, secs, err = execute(src, base / src.name, profile, timeout=None)
            print(f"   {'ok' if ok else 'FAILED'} in {secs:.0f}s{'' if ok else ': ' + err}", flush=True)
            records = dryrun.read(ledger)
            if ok and not records:
                ok, err = False, "the dry run cut no loop (no ledger lines): nothing was estimated"
                print(f"   FAILED: {err}", flush=True)
            est, lines = dry_lines(src.stem, records, secs, refs)
            print("\n".join(lines), flush=True)
            per_nb[src.stem] = {**est, "dry_run_s": secs, "ok": ok, "by_what": dryrun.by_what(records)}
            statuses.append({"name": src.stem, "ok": ok, "seconds": secs, "error": err})
            # kept after every notebook (complete: false until the last): a dry run stopped part-way (a lease
            # running out) still leaves the estimates it made
            done = len(per_nb) == len(notebooks)
            estimate = _estimate_record(profile, per_nb, max_batch, complete=done, max_steps=max_steps)
            paths.atomic_write_json(base / "estimate.json", estimate)
    finally:
        for var in (
            "NUP_DRY_RUN",
            "NUP_DRY_LEDGER",
            "NUP_DRY_MAX_BATCH",
            "NUP_DRY_MAX_STEPS",
            "NUP_DRY_PLANNED",
            "NUP_RESULTS_DIR",
            "NUP_FIGURES_DIR",
        ):
            os.environ.pop(var, None)
    estimate = _estimate_record(profile, per_nb, max_batch, complete=True, max_steps=max_steps)
    paths.atomic_write_json(base / "estimate.json", estimate)
    print(
        f"\nestimated {profile} time on {estimate['device']}: {estimate['total_min']:.1f} min "
        f"({len(per_nb)} notebook(s); from this dry run's measured throughput); "
        f"{estimate['total_min_at_assumed_rate']:.1f} min on an {ASSUMED_RATE[0]}; written to {base / 'estimate.json'}",
        flush=True,
    )
    for dev, minutes in sorted(estimate["total_min_on"].items()):
        bound = sum(v["calibrated"][dev].get("attack_bound_s", 0.0) for v in per_nb.values()) / 60
        print(
            f"estimated {profile} time on {dev}: {minutes:.1f} min (this dry run's work at the throughput measured "
            f"there, {bound:.1f} min of it attack parts counted as upper bounds; budget {FULL_BUDGET_MIN:g} min)",
            flush=True,
        )
    return statuses, estimate


def budget_check(notebooks: list[Path], out_root: Path, budget_min: float) -> tuple[bool, str]:
    """Before a real full run: the estimate for these notebooks on this device (a dry run, or the one kept
    from an earlier call with the same commit, device and notebooks), compared with ``budget_min``."""
    import json

    path = out_root / "dry-full" / "estimate.json"
    device = runtime.device_name(runtime.resolve_device("auto"))
    names = [p.stem for p in estimable(notebooks)]
    est = json.loads(path.read_text()) if path.is_file() else None
    kept = (est or {}).get("notebooks", {})
    # a kept estimate serves when it was made here, from this commit, at the real batch sizes, and its dry run
    # passed for every notebook asked for now (it may cover more: a dry run of all, then a run of some)
    if not (
        est
        and est.get("commit") == runtime.git_commit()
        and est.get("device") == device
        and not est.get("max_batch")
        and not est.get("max_steps")
        and all(kept.get(n, {}).get("ok") for n in names)
    ):
        statuses, est = dry_run(notebooks, "full", out_root)
        if not est["complete"]:
            return False, "the dry run failed, so there is no estimate: " + "; ".join(
                f"{s['name']}: {s['error']}" for s in statuses if not s["ok"]
            )
        kept = est["notebooks"]
    total_min = sum(kept[n]["total_s"] for n in names) / 60
    msg = f"estimated full time {total_min:.1f} min on {device} for {len(names)} notebook(s); budget {budget_min:g} min"
    return total_min <= budget_min, msg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="auto", help=f"one of {', '.join(runtime.PROFILE_CHOICES)}")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,03")
    ap.add_argument("--dir", default=None, help="folder of notebooks (default: notebooks/)")
    ap.add_argument("--out", default=str(paths.REPO_ROOT / "build"), help="folder for executed copies")
    ap.add_argument(
        "--timeout",
        type=int,
        default=None,
        help=f"per-cell timeout in seconds (default: {TIMEOUT_FACTOR}x the notebook's last measured time, "
        f"at least {TIMEOUT_FLOOR_S} s; none for full)",
    )
    ap.add_argument(
        "--publish",
        action="store_true",
        help="outputs to be committed: needs a clean work tree; quick on a CPU machine also writes "
        "the executed notebooks back into notebooks/",
    )
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="every loop cut to its first steps (nup_utils.dryrun): the profile's code paths at its real sizes, "
        "outputs under build/dry-<profile>/, and the profile's estimated time on this device",
    )
    ap.add_argument(
        "--dry-max-batch",
        type=int,
        default=None,
        help="with --dry-run: cut every batch to this size too (code paths in seconds on a CPU; the estimate is "
        "scaled up and coarser)",
    )
    ap.add_argument(
        "--dry-max-steps",
        type=int,
        default=None,
        help="with --dry-run: run at most this many iterations of each cut loop (1: a code-path check, as in CI; its "
        "times include each loop's warm-up)",
    )
    ap.add_argument(
        "--budget-min",
        type=float,
        default=FULL_BUDGET_MIN,
        help=f"a full run refuses to start when its estimated time here exceeds this (default {FULL_BUDGET_MIN:g})",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="a resumable chunk: start no training after this many minutes (a notebook that would train more "
        "stops, exit status 3); the same command again resumes from the model cache",
    )
    ap.add_argument("--no-readme", action="store_true", help="do not refresh README's results table")
    ap.add_argument(
        "--refresh-results-cells",
        action="store_true",
        help="only re-render the committed notebooks' results-glance/overview cells from results/ (no run)",
    )
    args = ap.parse_args(argv)
    if args.refresh_results_cells:
        changed = refresh_notebooks(Path(args.dir) if args.dir else None)
        print(f"refreshed {len(changed)} notebook(s): {', '.join(p.name for p in changed) or 'none changed'}")
        return 0
    try:
        profile = runtime.resolve_profile(args.profile)
        notebooks = discover(
            args.only or ",".join(runtime.TIERS.get(profile, ())) or None, Path(args.dir) if args.dir else None
        )
        outside = [p.name for p in notebooks if not report.has_tier(profile, p.stem)]
        if outside:
            raise ValueError(
                f"--only: {', '.join(outside)} has no {profile} tier; the {profile} tier covers notebooks "
                f"{', '.join(runtime.TIERS[profile])}"
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    commit = runtime.git_commit()
    if args.dry_run:
        if profile == "smoke":
            print("error: --dry-run: smoke has nothing to cut", file=sys.stderr)
            return 2
        if args.publish and runtime.dirty_files(include_generated=True):
            print("error: --dry-run --publish needs a clean work tree (the record names its commit)", file=sys.stderr)
            return 2
        os.environ["NUP_HEADLESS"] = "1"
        os.environ["NUP_GIT_COMMIT"] = commit
        statuses, est = dry_run(
            notebooks, profile, Path(args.out), max_batch=args.dry_max_batch, max_steps=args.dry_max_steps
        )
        failed = [s["name"] for s in statuses if not s["ok"]]
        tail = f": {', '.join(failed)}" if failed else ""
        print(f"\n{len(statuses) - len(failed)} passed, {len(failed)} failed{tail}")
        if args.publish and not failed:  # the estimate, with its inputs, as a committed benchmark record
            name = f"dry-run-{profile}-{benchmark.slug(est['device'])}.json"
            out = paths.atomic_write_json(paths.REPO_ROOT / "results" / "benchmarks" / name, est)
            print(f"estimate record written to {out.relative_to(paths.REPO_ROOT)}")
        return 1 if failed else 0
    if args.publish:
        if profile == "smoke":
            print(
                "error: --publish: smoke runs are never published (their figures and results are throw-away)",
                file=sys.stderr,
            )
            return 2
        dirty = runtime.dirty_files(include_generated=True)
        if dirty:
            shown = ", ".join(dirty[:12]) + (f" and {len(dirty) - 12} more" if len(dirty) > 12 else "")
            print(
                f"error: --publish needs a clean work tree, so the results name a commit that exists; "
                f"commit or stash first. Uncommitted: {shown}",
                file=sys.stderr,
            )
            return 2
    write_back = args.publish and profile == "quick" and runtime.resolve_profile("auto") == "quick"
    threads, source = runtime.thread_count()
    print(
        f"profile {profile} ({args.profile}); {len(notebooks)} notebook(s); executed copies in {args.out}/{profile}; "
        f"commit {commit}; {threads} torch thread(s) ({source})",
        flush=True,
    )
    os.environ["NUP_HEADLESS"] = "1"  # inherited by the kernels: no widgets, no widget progress bars
    os.environ["NUP_THREADS"] = str(threads)
    os.environ["NUP_GIT_COMMIT"] = commit
    if profile == "smoke" and not os.environ.get("NUP_FIGURES_DIR"):
        # smoke figures are throw-away: keep them out of figures/, which holds the published run's
        os.environ["NUP_FIGURES_DIR"] = str(Path(args.out) / profile / "figures")
    if profile == "full":  # issue #17: estimated first, refused above the budget; auto falls back to quick
        fits, msg = budget_check(notebooks, Path(args.out), args.budget_min)
        print(msg, flush=True)
        if not fits and args.profile == "auto":
            print(f"auto: {msg}, over the budget, so quick runs instead (--profile full --budget-min N to insist)")
            profile = "quick"
        elif not fits:
            print(f"error: {msg}: not started (raise --budget-min to run anyway)", file=sys.stderr)
            return 2
    # (after the budget check: auto may have fallen back to quick)
    if profile in ("cpu", "full") and not os.environ.get("NUP_FIGURES_DIR"):
        # the cpu and full tiers' figures sit beside quick's (figures/ holds the quick run the notebooks show)
        os.environ["NUP_FIGURES_DIR"] = str(paths.REPO_ROOT / "figures" / profile)
    if args.max_minutes:  # a chunk: no training starts after this; the model cache makes a rerun resume
        os.environ["NUP_DEADLINE"] = str(time.time() + 60 * args.max_minutes)
    statuses = []
    for src in notebooks:
        if args.max_minutes and time.time() > float(os.environ["NUP_DEADLINE"]):
            statuses.append({"name": src.stem, "ok": False, "seconds": 0.0, "error": "not started: chunk deadline"})
            continue
        out = Path(args.out) / profile / src.name
        # per-cell limit: a hung cell fails its notebook instead of blocking the batch
        timeout = args.timeout if args.timeout is not None else cell_timeout(src.stem, profile)
        print(f"-> {src.name} (per-cell limit {timeout or 'none'} s) ...", flush=True)
        ok, secs, err = execute(src, out, profile, timeout=timeout)
        print(f"   {'ok' if ok else 'FAILED'} in {secs:.0f}s{'' if ok else ': ' + err}", flush=True)
        if ok and write_back:
            try:
                publish(out, src)
            except ValueError as exc:
                ok, err = False, str(exc)
                print(f"   NOT PUBLISHED: {err}", flush=True)
        statuses.append({"name": src.stem, "ok": ok, "seconds": secs, "error": err})
    if not args.no_readme and profile in runtime.PUBLISHED and paths.results_root() == paths.REPO_ROOT / "results":
        try:
            report.update_readme()
        except (OSError, ValueError) as exc:
            print(f"warning: README table not refreshed: {exc}", file=sys.stderr)
    print("\n" + summary(statuses, profile))
    failed = [s["name"] for s in statuses if not s["ok"]]
    paused = [s["name"] for s in statuses if not s["ok"] and "chunk deadline" in s["error"]]
    print(
        f"\n{len(statuses) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
    )
    if paused and len(paused) == len(failed):
        print(f"paused at the chunk deadline ({', '.join(paused)}): run the same command again to resume")
        return 3
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
