"""Provenance of what is committed: results name a clean commit that exists in history, and each
published notebook's verdict cell shows exactly the verdicts of its committed results file."""

import json
import re
import subprocess

import pytest

from nup_utils import paths, results, runtime

# published profiles only (results/smoke/ is throw-away and git-ignored)
RESULT_FILES = sorted(
    p for prof in runtime.PUBLISHED for p in (paths.REPO_ROOT / "results" / prof).glob("[0-9][0-9]-*.json")
)
NOTEBOOKS = [p for p in sorted(paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb")) if not p.stem.startswith("00-")]


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("path", RESULT_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in RESULT_FILES])
def test_results_name_a_clean_commit_in_history(path):
    commit = json.loads(path.read_text())["git_commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit), (
        f"{path.relative_to(paths.REPO_ROOT)} records commit {commit!r}: results must come from a clean "
        "commit (python -m nup_utils.run --profile ... --publish on a clean tree)"
    )
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        return  # a shallow clone lacks old commits; the clean-hash check above still applies
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, f"commit {commit} is not in this history"
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (
        f"commit {commit} is not an ancestor of HEAD"
    )


def _verdict_cell_text(nb_path) -> str:
    nb = json.loads(nb_path.read_text())
    cells = [c for c in nb["cells"] if "nbval-check-output" in c.get("metadata", {}).get("tags", [])]
    assert cells, f"{nb_path.name} has no verdict cell tagged 'nbval-check-output'"
    return "".join(
        "".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_published_verdict_cell_matches_committed_results(nb_path):
    doc = results.load_results("quick", nb_path.stem, root=paths.REPO_ROOT / "results")
    assert doc is not None, f"results/quick/{nb_path.stem}.json is not committed"
    shown = _verdict_cell_text(nb_path).splitlines()
    expected = results.verdict_lines(doc["claims"]).splitlines()
    missing = [line for line in expected if line not in shown]
    assert not missing, (
        f"{nb_path.name}: its verdict cell does not show the committed verdicts {missing}; "
        "publish the notebook and its results from the same run"
    )
    claim_like = [
        ln for ln in shown if re.match(r"^[\w .-]+: (reproduced|partially_reproduced|not_reproduced|inconclusive)", ln)
    ]
    assert len(claim_like) == len(expected), f"{nb_path.name}: verdict cell shows {claim_like}, results say {expected}"


@pytest.mark.parametrize("nb_path", sorted(paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb")), ids=lambda p: p.stem)
def test_published_notebook_is_lean(nb_path):
    from nup_utils import run

    size = nb_path.stat().st_size
    assert size <= run.MAX_NOTEBOOK_BYTES, (
        f"{nb_path.name} is {size // 1024} KB (> {run.MAX_NOTEBOOK_BYTES // 1024} KB)"
    )
    text = nb_path.read_text()
    assert "widget-state" not in text and run.WIDGET_MIME not in text, f"{nb_path.name} carries saved widget state"
