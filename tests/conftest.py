import os

import pytest

# Unit tests must not write into the repository's results/ or figures/, nor reuse a user's model cache.
_NOTEBOOK_TIMES: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch, request):
    if request.node.get_closest_marker("notebooks"):
        return  # the notebook harness manages its own environment
    monkeypatch.setenv("NUP_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("NUP_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NUP_PROGRESS", "0")


@pytest.fixture
def notebook_times():
    return _NOTEBOOK_TIMES


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_TIMES:
        return
    terminalreporter.section("notebook times (quick profile, nbval)")
    for name, secs in _NOTEBOOK_TIMES.items():
        terminalreporter.write_line(f"{name:36s} {secs:7.1f} s")
    terminalreporter.write_line(f"{'total':36s} {sum(_NOTEBOOK_TIMES.values()):7.1f} s")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``needs_data`` read the offline data copy. Without NUP_DATA_DIR they are skipped
    with a message naming it, so `make test-unit` works on a fresh clone; `make test` and CI set
    NUP_REQUIRE_DATA=1, where a missing copy fails them instead (no silent skip in CI)."""
    if shared_data_dir() or os.environ.get("NUP_REQUIRE_DATA") == "1":
        return
    skip = pytest.mark.skip(reason="needs the offline data: set NUP_DATA_DIR=../shared/data (see README)")
    for item in items:
        if item.get_closest_marker("needs_data"):
            item.add_marker(skip)


def shared_data_dir():
    value = os.environ.get("NUP_DATA_DIR")
    return value if value and os.path.isdir(value) else None


@pytest.fixture
def dry(tmp_path, monkeypatch):
    """A dry run (nup_utils.dryrun) writing its ledger to a temporary file (returned); batches not capped."""
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("NUP_DRY_RUN", "1")
    monkeypatch.setenv("NUP_DRY_LEDGER", str(ledger))
    monkeypatch.delenv("NUP_DRY_MAX_BATCH", raising=False)
    monkeypatch.delenv("NUP_DRY_MAX_STEPS", raising=False)
    return ledger
