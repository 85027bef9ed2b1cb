"""Batch runner: execute notebooks headlessly with papermill, keep going past failures, summarize.

    python -m nup_utils.run --profile quick --only 02,03
    python -m nup_utils.run --profile smoke                # every notebook, seconds each
    python -m nup_utils.run --profile quick --publish      # also write outputs back into notebooks/

Executed copies go to ``build/<profile>/`` (never over the sources); smoke figures to
``build/smoke/figures``. ``--publish`` (quick profile on
a CPU machine only, where PROFILE='auto' resolves to the same run) copies the executed notebooks back
into ``notebooks/`` without papermill's injected cell, so the committed notebooks carry the outputs
of the same run as ``results/quick`` and ``figures/``. Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import paths, report, runtime


def discover(only: str | None = None, root: Path | None = None) -> list[Path]:
    """Notebooks ``NN-*.ipynb`` in order; ``only='02,03'`` keeps those numbers (unknown numbers are an error)."""
    nbs = sorted((root or paths.notebooks_dir()).glob("[0-9][0-9]-*.ipynb"))
    if only:
        wanted = [w.strip().zfill(2) for w in only.split(",") if w.strip()]
        have = {p.name[:2] for p in nbs}
        missing = [w for w in wanted if w not in have]
        if missing:
            raise ValueError(f"--only {only!r}: no notebook numbered {', '.join(missing)}; have {', '.join(sorted(have))}")
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


def execute(src: Path, out: Path, profile: str, *, timeout: int | None = None) -> tuple[bool, float, str]:
    """Run one notebook with papermill into ``out``; returns (ok, seconds, error message)."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(out), parameters={"PROFILE": profile}, cwd=str(src.parent),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            execution_timeout=timeout)
        return True, time.perf_counter() - t0, ""
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        msg = str(exc).strip().splitlines()
        return False, time.perf_counter() - t0, (msg[-1] if msg else type(exc).__name__)[:300]


def publish(executed: Path, src: Path) -> None:
    import nbformat

    nb = strip_papermill(nbformat.read(str(executed), as_version=4))
    paths.atomic_write_bytes(src, (nbformat.writes(nb) + "\n").encode())


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
            lines.append(f"{head if i == 0 else ' ' * len(head)}  {c['id']}: {h} = {report.fmt_metric(c['metrics'][h])}"
                         f" | paper {paper_txt} | {c['verdict']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="auto", help=f"one of {', '.join(runtime.PROFILE_CHOICES)}")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,03")
    ap.add_argument("--dir", default=None, help="folder of notebooks (default: notebooks/)")
    ap.add_argument("--out", default=str(paths.REPO_ROOT / "build"), help="folder for executed copies")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: 300 smoke, 1800 quick, none full)")
    ap.add_argument("--publish", action="store_true", help="write executed notebooks back into notebooks/ (quick profile, CPU only)")
    ap.add_argument("--no-readme", action="store_true", help="do not refresh README's results table")
    args = ap.parse_args(argv)
    try:
        profile = runtime.resolve_profile(args.profile)
        notebooks = discover(args.only, Path(args.dir) if args.dir else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.publish and (profile != "quick" or runtime.resolve_profile("auto") != "quick"):
        print("error: --publish needs the quick profile on a machine without CUDA (where PROFILE='auto' is quick)",
              file=sys.stderr)
        return 2
    print(f"profile {profile} ({args.profile}); {len(notebooks)} notebook(s); executed copies in {args.out}/{profile}",
          flush=True)
    os.environ["NUP_HEADLESS"] = "1"  # inherited by the kernels: no widgets, no widget progress bars
    if profile == "smoke" and not os.environ.get("NUP_FIGURES_DIR"):
        # smoke figures are throw-away: keep them out of figures/, which holds the published run's
        os.environ["NUP_FIGURES_DIR"] = str(Path(args.out) / profile / "figures")
    # per-cell limit: a hung cell fails its notebook instead of blocking the batch
    timeout = args.timeout if args.timeout is not None else {"smoke": 300, "quick": 1800}.get(profile)
    statuses = []
    for src in notebooks:
        out = Path(args.out) / profile / src.name
        print(f"-> {src.name} ...", flush=True)
        ok, secs, err = execute(src, out, profile, timeout=timeout)
        print(f"   {'ok' if ok else 'FAILED'} in {secs:.0f}s{'' if ok else ': ' + err}", flush=True)
        if ok and args.publish:
            publish(out, src)
        statuses.append({"name": src.stem, "ok": ok, "seconds": secs, "error": err})
    if not args.no_readme and profile in ("quick", "full") and paths.results_root() == paths.REPO_ROOT / "results":
        try:
            report.update_readme()
        except (OSError, ValueError) as exc:
            print(f"warning: README table not refreshed: {exc}", file=sys.stderr)
    print("\n" + summary(statuses, profile))
    failed = [s["name"] for s in statuses if not s["ok"]]
    print(f"\n{len(statuses) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
