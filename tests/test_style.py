"""Reviewability: ruff (lint and format) is clean, and every notebook's jupytext twin is in sync."""

import subprocess
import sys

import pytest

from nup_utils import paths

NOTEBOOKS = sorted(paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))
LINTED = ["nup_utils", "tests", "scripts", "notebooks"]


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_lint_clean():
    proc = _ruff("check", *LINTED)
    assert proc.returncode == 0, f"ruff check found problems (fix, or `ruff check --fix`):\n{proc.stdout[-4000:]}"


def test_ruff_format_clean():
    proc = _ruff("format", "--check", *LINTED)
    assert proc.returncode == 0, f"ruff format would change files (run `ruff format`):\n{proc.stdout[-4000:]}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_jupytext_twin_in_sync(nb_path):
    import jupytext

    twin = nb_path.with_suffix(".py")
    assert twin.is_file(), f"{nb_path.name} has no paired {twin.name}: run `make sync` (jupytext --sync)"
    expected = jupytext.writes(jupytext.read(nb_path), fmt="py:percent")
    assert twin.read_text() == expected, (
        f"{twin.name} is out of sync with {nb_path.name}: edit one, then "
        "`make sync` (jupytext --sync notebooks/*.ipynb)"
    )


def test_twin_check_detects_a_stale_pair(tmp_path):
    """The sync check is not vacuous: a twin edited without syncing differs from the notebook's text."""
    import jupytext

    nb = jupytext.reads("# %%\nx = 1\n", fmt="py:percent")
    jupytext.write(nb, tmp_path / "01-a.ipynb")
    stale = "# %%\nx = 2\n"
    assert jupytext.writes(jupytext.read(tmp_path / "01-a.ipynb"), fmt="py:percent") != stale
