"""Reproducible within a machine, consistent across machines (issue #11): the statistical re-run
comparison, borderline claims, thread selection, and the runner's provenance guard and timeouts."""

import json
import subprocess

import nbformat
import pytest
import torch

from nup_utils import metrics, results, run, runtime, verdicts

RULE = verdicts.Superiority("gain", min_effect=0.02)


def _m(v, half):
    return metrics.metric(v, v - half, v + half, 3, "test")


def _doc(tmp_path, value, half=0.01, name="99-x"):
    claims = [results.claim("gain-claim", "s", RULE, {"gain": _m(value, half)}, profile="quick")]
    path = results.write_results(
        name,
        "quick",
        claims,
        params={},
        data_source="synthetic",
        wall_time_s=1.0,
        device="cpu",
        rules={"gain-claim": RULE},
    )
    return json.loads(path.read_text())


def _rerun(doc, value, half=None):
    fresh = json.loads(json.dumps(doc))
    m = fresh["claims"][0]["metrics"]["gain"]
    h = half if half is not None else (m["ci95"][1] - m["ci95"][0]) / 2
    m.update(value=value, ci95=[value - h, value + h])
    fresh["claims"][0]["verdict"] = RULE.decide(fresh["claims"][0]["metrics"]).verdict
    return fresh


# ------------------------------------------------------------------ statistical comparison
def test_consistent_rerun_passes(tmp_path):
    ref = _doc(tmp_path, 0.10, half=0.02)  # SE ~ 0.0102; allowed shift k*sqrt(2)*SE + abs ~ 0.044
    assert results.compare(_rerun(ref, 0.10 + 0.03), ref) == []
    assert results.compare(_rerun(ref, 0.10 - 0.03), ref) == []


def test_inconsistent_rerun_fails(tmp_path):
    ref = _doc(tmp_path, 0.10, half=0.02)
    problems = results.compare(_rerun(ref, 0.10 + 0.08), ref)
    assert problems and "gain" in problems[0] and "SE" in problems[0]
    # the interval may not silently shrink or grow beyond the tolerance either
    assert results.compare(_rerun(ref, 0.10, half=0.2), ref)
    renamed = json.loads(json.dumps(ref))
    renamed["claims"][0]["id"] = "other"
    assert any("claim ids" in p for p in results.compare(renamed, ref))


def test_degenerate_interval_uses_abs_floor(tmp_path):
    ref = _doc(tmp_path, 0.5, half=0.0)
    assert results.compare(_rerun(ref, 0.5 + 0.0005, half=0.0), ref) == []
    assert results.compare(_rerun(ref, 0.5 + 0.01, half=0.0), ref)


def test_borderline_flip_passes_only_when_marked(tmp_path):
    ref = _doc(tmp_path, 0.035, half=0.014)  # lower end 0.021, just above min_effect 0.02: reproduced
    assert ref["claims"][0]["verdict"] == "reproduced" and ref["claims"][0]["borderline"] is True
    fresh = _rerun(ref, 0.033)  # consistent re-run whose lower end falls below 0.02
    assert fresh["claims"][0]["verdict"] == "inconclusive"
    assert results.compare(fresh, ref) == []
    unmarked = json.loads(json.dumps(ref))
    unmarked["claims"][0]["borderline"] = False
    assert any("verdict" in p and "borderline" in p for p in results.compare(fresh, unmarked))


def test_clear_claim_is_not_borderline(tmp_path):
    ref = _doc(tmp_path, 0.30, half=0.02)
    assert ref["claims"][0]["verdict"] == "reproduced" and ref["claims"][0]["borderline"] is False


def test_smoke_guard_applied_once_in_claim():
    c = results.claim("g", "s", RULE, {"gain": _m(0.3, 0.01)}, profile="smoke")
    assert c["verdict"] == "inconclusive" and "smoke" in c["reason"]
    bad = results.claim("g", "s", RULE, {"gain": _m(0.3, 0.01)}, profile="quick")
    with pytest.raises(ValueError, match="smoke"):
        results.write_results("99-x", "smoke", [bad], params={}, data_source="", wall_time_s=0, device="cpu")


def test_verdict_lines_show_borderline():
    claims = [{"id": "a", "verdict": "reproduced", "borderline": True}, {"id": "b", "verdict": "inconclusive"}]
    assert results.verdict_lines(claims) == "a: reproduced (borderline)\nb: inconclusive"


# ------------------------------------------------------------------ threads
def test_threads_default_to_available_cores(monkeypatch):
    import os

    monkeypatch.delenv("NUP_THREADS", raising=False)
    assert runtime.available_cores() == len(os.sched_getaffinity(0))
    assert runtime.thread_count() == (runtime.available_cores(), "sched_getaffinity")


def test_threads_override_and_bad_value(monkeypatch):
    prev = torch.get_num_threads()
    try:
        monkeypatch.setenv("NUP_THREADS", "1")
        assert runtime.thread_count() == (1, "NUP_THREADS")
        assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
        info = runtime.threads_info()
        assert info["torch_threads"] == 1 and info["source"] == "NUP_THREADS"
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("NUP_THREADS", bad)
            with pytest.raises(ValueError, match="NUP_THREADS"):
                runtime.thread_count()
    finally:
        torch.set_num_threads(prev)


# ------------------------------------------------------------------ provenance and the runner
def _git_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "results").mkdir()
    (repo / "results" / "r.json").write_text("{}\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def test_dirty_files_names_changes_and_skips_generated(tmp_path):
    repo = _git_repo(tmp_path)
    assert runtime.dirty_files(root=repo) == []
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("")
    (repo / "results" / "r.json").write_text('{"a": 1}\n')
    assert sorted(runtime.dirty_files(root=repo)) == ["code.py", "new.py"]
    assert "results/r.json" in runtime.dirty_files(root=repo, include_generated=True)


def test_publish_refuses_a_dirty_tree(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(runtime, "dirty_files", lambda **kw: ["nup_utils/piexp.py", "notebooks/06-x.ipynb"])
    code = run.main(["--profile", "quick", "--only", "06", "--publish", "--no-readme", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "clean work tree" in err and "nup_utils/piexp.py" in err
    assert not (tmp_path / "quick").exists()  # nothing ran


def test_git_commit_pinned_by_runner(monkeypatch):
    monkeypatch.setenv("NUP_GIT_COMMIT", "a" * 40)
    assert runtime.git_commit() == "a" * 40


def test_cell_timeout_sized_from_measured_time(tmp_path):
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "07-a.json").write_text(json.dumps({"wall_time_s": 300.0}))
    assert run.cell_timeout("07-a", "quick", root=tmp_path) == run.TIMEOUT_FACTOR * 300
    assert run.cell_timeout("08-none", "quick", root=tmp_path) == run.TIMEOUT_FLOOR_S
    assert run.cell_timeout("07-a", "full", root=tmp_path) is None


def test_timeout_message_names_the_cell(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('PROFILE = "auto"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("import time\ntime.sleep(30)")]
    nbformat.write(nb, str(nbs / "01-slow.ipynb"))
    code = run.main(
        ["--profile", "smoke", "--dir", str(nbs), "--out", str(tmp_path / "b"), "--no-readme", "--timeout", "2"]
    )
    out = capsys.readouterr().out
    assert code == 1 and "timed out" in out and "'import time'" in out and "cell" in out
