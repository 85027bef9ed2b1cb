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

Notebooks run one at a time (never two heavy ones at once on a 2-core machine); each kernel gets
``NUP_THREADS`` (torch threads, default: the cores this process may use) and ``NUP_GIT_COMMIT``
(the commit checked once at the start, so outputs written by earlier notebooks do not make later
ones look dirty). Per-cell timeouts are a safety net sized from each notebook's last measured wall
time (:func:`cell_timeout`). Exit status 1 if any notebook failed.
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
    if profile == "cpu" and not os.environ.get("NUP_FIGURES_DIR"):
        # the cpu tier's figures sit beside quick's (figures/ holds the quick run the notebooks show)
        os.environ["NUP_FIGURES_DIR"] = str(paths.REPO_ROOT / "figures" / "cpu")
    statuses = []
    for src in notebooks:
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
    print(
        f"\n{len(statuses) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
