"""The batch runner: executes with papermill, goes on past a failing notebook, exits non-zero."""

import nbformat
import pytest

from nup_utils import run


def _nb(path, code):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('PROFILE = "auto"\nSEED = 0')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(path))


def test_runner_reports_failure_and_continues(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "01-boom.ipynb", "raise RuntimeError('deliberate failure')")
    _nb(nbs / "02-fine.ipynb", "assert PROFILE == 'smoke'\nprint('ran')")
    code = run.main(["--profile", "smoke", "--dir", str(nbs), "--out", str(tmp_path / "build"), "--no-readme"])
    out = capsys.readouterr().out
    assert code == 1
    assert "01-boom" in out and "FAILED" in out and "deliberate failure" in out
    assert (tmp_path / "build" / "smoke" / "02-fine.ipynb").exists()  # the second one still ran
    assert "1 passed, 1 failed" in out
    assert not (nbs / "02-fine.ipynb").read_text().count("injected-parameters")  # sources untouched


def test_runner_bad_arguments(tmp_path, capsys):
    assert run.main(["--profile", "medium", "--no-readme"]) == 2
    assert "allowed values" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no notebook numbered 42"):
        run.discover("42")


def test_strip_papermill_removes_injected_cell():
    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell("PROFILE = 'quick'")
    c.metadata["tags"] = ["injected-parameters"]
    nb.cells = [c, nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["papermill"] = {"parameters": {}}
    out = run.strip_papermill(nb)
    assert len(out.cells) == 1 and "papermill" not in out.metadata


def test_publish_writes_clean_copy(tmp_path):
    src, executed = tmp_path / "01-x.ipynb", tmp_path / "exec.ipynb"
    _nb(src, "print(1)")
    nb = nbformat.read(str(src), as_version=4)
    inj = nbformat.v4.new_code_cell("PROFILE = 'quick'")
    inj.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(1, inj)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nbformat.write(nb, str(executed))
    run.publish(executed, src)
    out = nbformat.read(str(src), as_version=4)
    assert len(out.cells) == 2 and out.cells[-1].outputs[0]["text"] == "1\n"


def test_summary_lists_failures():
    text = run.summary([{"name": "01-a", "ok": False, "seconds": 1.0, "error": "boom"}], "smoke")
    assert "FAILED" in text and "boom" in text


def test_publish_strips_widget_state_and_stderr(tmp_path):
    src, executed = tmp_path / "01-x.ipynb", tmp_path / "exec.ipynb"
    _nb(src, "print(1)")
    nb = nbformat.read(str(src), as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells[-1].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="100%|####| 5/5\n"),
        nbformat.v4.new_output("display_data", data={run.WIDGET_MIME: {"model_id": "x"}, "text/plain": "bar"}),
        nbformat.v4.new_output("display_data", data={run.WIDGET_MIME: {"model_id": "y"}}),
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
    ]
    nbformat.write(nb, str(executed))
    run.publish(executed, src)
    out = nbformat.read(str(src), as_version=4)
    assert "widgets" not in out.metadata
    assert [o.get("name", o["output_type"]) for o in out.cells[-1].outputs] == ["display_data", "stdout"]
    assert run.WIDGET_MIME not in src.read_text()


def test_publish_refuses_an_oversized_notebook(tmp_path):
    src, executed = tmp_path / "01-x.ipynb", tmp_path / "exec.ipynb"
    _nb(src, "print(1)")
    nb = nbformat.read(str(src), as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * (run.MAX_NOTEBOOK_BYTES + 10))]
    nbformat.write(nb, str(executed))
    with pytest.raises(ValueError, match="KB"):
        run.publish(executed, src)


def test_results_cells_are_rendered_from_committed_results(tmp_path):
    """The glance cell of a published notebook shows the results it was published with."""
    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell("display(Markdown(report.glance('02-sbde-accuracy')))")
    c.metadata["tags"] = ["results-glance"]
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale\n")]
    other = nbformat.v4.new_code_cell("x = 1")
    other.outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    nb.cells = [c, other]
    out = run.refresh_results_cells(nb, "02-sbde-accuracy")
    md = out.cells[0].outputs[0]["data"]["text/markdown"]
    assert "Verdicts at a glance" in md and "stale" not in md and out.cells[1].outputs[0]["text"] == "kept\n"
    path = tmp_path / "02-sbde-accuracy.ipynb"
    nbformat.write(nb, str(path))
    assert run.refresh_notebooks(tmp_path) == []  # already fresh: nothing rewritten


def test_cpu_tier_runs_only_its_notebooks(tmp_path, capsys, monkeypatch):
    """--profile cpu runs the notebooks of runtime.TIERS['cpu'] (02-04), refuses another one by name, has no
    per-cell limit (hours), and keeps its figures beside quick's (figures/cpu), never over them."""
    from nup_utils import paths, report, runtime

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("01-a", "02-b", "03-c", "04-d", "05-e"):
        _nb(nbs / f"{name}.ipynb", "import os\nassert PROFILE == 'cpu'\nprint(os.environ['NUP_FIGURES_DIR'])")
    assert run.main(["--profile", "cpu", "--only", "01", "--dir", str(nbs), "--no-readme"]) == 2
    assert "01-a.ipynb has no cpu tier" in capsys.readouterr().err
    monkeypatch.delenv("NUP_FIGURES_DIR", raising=False)
    code = run.main(["--profile", "cpu", "--dir", str(nbs), "--out", str(tmp_path / "build"), "--no-readme"])
    out = capsys.readouterr().out
    assert code == 0 and "3 notebook(s)" in out and "3 passed, 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "build" / "cpu").glob("*.ipynb")) == [
        "02-b.ipynb",
        "03-c.ipynb",
        "04-d.ipynb",
    ]
    assert str(paths.REPO_ROOT / "figures" / "cpu") in (tmp_path / "build" / "cpu" / "02-b.ipynb").read_text()
    assert run.cell_timeout("02-sbde-accuracy", "cpu") is None and run.cell_timeout("02-sbde-accuracy", "quick")
    assert report.has_tier("cpu", "02-sbde-accuracy") and not report.has_tier("cpu", "05-llm-probe")
    assert report.not_run("cpu", "05-llm-probe") == "no cpu tier" and report.not_run("full", "05-x") == "not run yet"
    assert set(runtime.TIERS["cpu"]) <= {p.name[:2] for p in paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb")}


def test_dry_run_skips_the_overview(tmp_path, capsys):
    """A dry run of every notebook (or a full run's budget check) leaves out 00-overview, which runs no
    experiment and so cuts no loop (it was reported as a failed dry run and made the estimate incomplete)."""
    from pathlib import Path

    nbs = [Path("00-overview.ipynb"), Path("02-b.ipynb"), Path("10-c.ipynb")]
    assert run.estimable(nbs) == nbs[1:]
    _nb(tmp_path / "00-overview.ipynb", "raise RuntimeError('the overview must not be executed in a dry run')")
    statuses, est = run.dry_run([tmp_path / "00-overview.ipynb"], "full", tmp_path / "build")
    assert statuses == [] and est["notebooks"] == {} and est["complete"]
    assert "00-overview.ipynb: skipped, it runs no experiment" in capsys.readouterr().out
