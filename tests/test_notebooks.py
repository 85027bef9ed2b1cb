"""Tier 2: every notebook executed headlessly in the quick profile under nbval (lax mode: only the
cells tagged ``nbval-check-output`` — the verdict cells — are compared with the committed outputs),
then its fresh results compared with the committed ``results/quick/<name>.json`` statistically
(``results.compare``): same claim ids; every metric's value and interval end points within
k·sqrt(SE_ref² + SE_new²) + abs of the committed ones (k and abs stated in that file); the same
verdicts except for claims the committed file marks borderline. The verdict cells' invariants are
asserted by the notebooks themselves and their printed lines compared by nbval.

Outputs go to a temporary folder (``NUP_RESULTS_DIR``/``NUP_FIGURES_DIR``), never over the committed
files. Notebooks run in file order, so 03 finds the models 02 cached. nbval compares a verdict cell's
claim ids; the verdict words and borderline flags, which may differ on another CPU, are masked by
``tests/nbval-sanitize.cfg`` and compared by ``results.compare``.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from nup_utils import paths, results, run

NOTEBOOKS = sorted(paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))
SANITIZE = paths.REPO_ROOT / "tests" / "nbval-sanitize.cfg"  # verdict words -> compared by results.compare


def _sanitized(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_sanitizer_hides_verdict_words_but_not_claim_ids():
    """nbval compares the claim ids of a verdict cell; a verdict or borderline flag that differs on another
    CPU is left to results.compare. Anything else in the cell (ids, other lines) is still compared."""
    committed = "a-claim: not_reproduced\nb-claim: reproduced (borderline)\n"
    other_cpu = "a-claim: not_reproduced (borderline)\nb-claim: inconclusive (borderline)\n"
    assert _sanitized(committed) == _sanitized(other_cpu)
    assert _sanitized(committed) != _sanitized(committed.replace("b-claim", "c-claim"))
    assert _sanitized("note: 3 models\n") == "note: 3 models\n"
    assert _sanitized("a-claim: reproduced") != "a-claim: reproduced"  # the pattern is live


def _checked_cells(nb_path):
    nb = json.loads(nb_path.read_text())
    return [c for c in nb["cells"] if "nbval-check-output" in c.get("metadata", {}).get("tags", [])]


@pytest.fixture(scope="session")
def nb_outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("nb-outputs")


@pytest.mark.notebooks
@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_quick(nb_path, nb_outputs, notebook_times):
    data_dir = os.environ.get("NUP_DATA_DIR")
    assert data_dir and os.path.isdir(data_dir), (
        "NUP_DATA_DIR must point at the offline data (e.g. ../shared/data) for the notebook tests"
    )
    checked = _checked_cells(nb_path)
    assert checked, f"{nb_path.name} has no verdict cell tagged 'nbval-check-output'"
    assert all(c.get("outputs") for c in checked), (
        f"{nb_path.name}: the verdict cell has no committed output; publish a quick run first "
        "(python -m nup_utils.run --profile quick --only NN --publish)"
    )

    env = dict(
        os.environ,
        NUP_PROFILE="quick",
        NUP_PROGRESS="0",
        NUP_HEADLESS="1",
        NUP_RESULTS_DIR=str(nb_outputs / "results"),
        NUP_FIGURES_DIR=str(nb_outputs / "figures"),
    )
    # a hung cell fails the test instead of eating CI's time: a generous multiple of the measured time
    cell_timeout = run.cell_timeout(nb_path.stem, "quick")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        str(nb_path),
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        f"--nbval-cell-timeout={cell_timeout}",
        f"--nbval-sanitize-with={SANITIZE}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    notebook_times[nb_path.stem] = time.perf_counter() - t0
    assert proc.returncode == 0, (
        f"nbval failed for {nb_path.name} (per-cell limit {cell_timeout} s, "
        f"ran {notebook_times[nb_path.stem]:.0f} s):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    )

    if nb_path.stem.startswith("00-"):
        return  # the overview writes no results file
    fresh = results.load_results("quick", nb_path.stem, root=nb_outputs / "results")
    committed = results.load_results("quick", nb_path.stem, root=paths.REPO_ROOT / "results")
    assert fresh is not None, f"{nb_path.name} wrote no results/quick/{nb_path.stem}.json"
    assert committed is not None, f"results/quick/{nb_path.stem}.json is not committed"
    problems = results.compare(fresh, committed)
    assert not problems, f"{nb_path.name} did not reproduce its committed results:\n" + "\n".join(problems)


# issue #17: the full profile's code paths dry-run on a CPU in CI, every notebook that runs an experiment (01-06):
# batches cut to 2 and loops to one iteration, about 3 minutes on 2 cores (01-03 alone at batch 8 took 1.5). Batches
# of 2 also make degenerate statistics (constant scores, one class only) that a real run may meet: three such bugs
# (a NaN p-value in 04, a missing AUROC in 05's limits, NaN means of an arm with no successful fit in 06) stopped the
# dry runs of 04, 05 and 06 when they were first run here; a full run meeting them would have stopped too
DRY_RUN = tuple(p.stem[:2] for p in NOTEBOOKS if not p.stem.startswith("00-"))
DRY_MAX_BATCH = 2  # every batch cut to this (batch norm needs two samples)
DRY_MAX_STEPS = 1  # and every cut loop to one iteration: code paths, not timings (the CI budget)


@pytest.mark.notebooks
def test_full_profile_dry_run(tmp_path, notebook_times):
    """The full profile's code paths (real architectures, widths, input sizes, attack settings; every loop cut
    to DRY_MAX_STEPS iterations, batches to DRY_MAX_BATCH) run on this CPU, so a shape, dtype or device bug in full
    cannot wait for a GPU; the runner prints the full profile's estimated time from what it measured and counted,
    and on the GPU whose dry run is committed."""
    env = dict(os.environ, NUP_PROGRESS="0", NUP_HEADLESS="1")
    cmd = [sys.executable, "-m", "nup_utils.run", "--profile", "full", "--only", ",".join(DRY_RUN), "--dry-run"]
    cmd += ["--dry-max-batch", str(DRY_MAX_BATCH), "--dry-max-steps", str(DRY_MAX_STEPS)]
    cmd += ["--out", str(tmp_path), "--no-readme"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    notebook_times["full dry run " + ",".join(DRY_RUN)] = time.perf_counter() - t0
    assert proc.returncode == 0, f"full dry run failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    est = json.loads((tmp_path / "dry-full" / "estimate.json").read_text())
    assert est["complete"] and sorted(est["notebooks"]) == sorted(p.stem for p in NOTEBOOKS if p.stem[:2] in DRY_RUN)
    for name, nb in est["notebooks"].items():
        assert nb["loops"] > 0 and nb["total_s"] > 0, f"{name}: the dry run cut no loop"
        # 06 fits float64 MLPs with LBFGS, host loops whose FLOPs are not counted; every other notebook's are
        assert nb["flops"] > 0 or name.startswith("06-"), f"{name}: the dry run counted no FLOP"
    # 02 plans the training of every model; 03 reuses them, as a real run does from the cache (no second cost)
    whats = {nb: {w for w, _, _ in v["by_what"]} for nb, v in est["notebooks"].items()}
    assert "train step" in whats["02-sbde-accuracy"] and "train step" not in whats["03-mask-projection"]
    assert "autoattack" in whats["03-mask-projection"]
    assert {"mc batch", "train step", "pgd step"} <= whats["01-uncertainty-relation"]
    assert {"train step", "autoattack", "square", "eot draw"} <= whats["04-conjmask-logitreg"]
    assert {"probe batch", "greedy decode batch", "LM train step"} <= whats["05-llm-probe"]
    # the same work on the GPU whose dry run is committed (results/benchmarks), from its measured throughput: the
    # cut batches and steps here change only the time measured here, not the work counted or matched
    assert est["total_min_on"].get("NVIDIA H200", 0) > 0
    for line in proc.stdout.splitlines():  # the estimates, into the CI log
        if "estimate" in line or "on NVIDIA" in line:
            print(line)
