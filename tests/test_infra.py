"""Cache, results, paper table, report, runtime, paths, plotting."""

import ast
import json

import matplotlib.pyplot as plt
import pytest
import torch

from nup_utils import cache, metrics, paper, paths, plotting, report, results, runtime, verdicts


# ------------------------------------------------------------------ runtime
def test_resolve_profile(monkeypatch):
    monkeypatch.delenv("NUP_PROFILE", raising=False)
    expected = "full" if torch.cuda.is_available() else "quick"
    assert runtime.resolve_profile("auto") == expected
    for p in runtime.PROFILES:
        assert runtime.resolve_profile(p) == p
    with pytest.raises(ValueError, match="allowed values: smoke, quick, cpu, full, auto"):
        runtime.resolve_profile("medium")
    monkeypatch.setenv("NUP_PROFILE", "smoke")
    assert runtime.resolve_profile("auto") == "smoke" and runtime.resolve_profile("quick") == "quick"
    monkeypatch.setenv("NUP_PROFILE", "huge")
    with pytest.raises(ValueError, match="NUP_PROFILE"):
        runtime.resolve_profile("auto")


def test_pick_seed_and_device():
    assert runtime.pick("smoke", smoke=1, quick=2, full=3) == 1
    assert runtime.pick("cpu", smoke=1, quick=2, full=3, cpu=4) == 4
    assert runtime.pick("cpu", smoke=1, quick=2, full=3, cpu=None) is None  # None is a value, not "absent"
    with pytest.raises(ValueError, match="no cpu tier"):
        runtime.pick("cpu", smoke=1, quick=2, full=3)  # a notebook without a cpu tier
    with pytest.raises(ValueError):
        runtime.seed_everything(None)
    g1, g2 = runtime.seed_everything(5), runtime.make_generator(5)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert runtime.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        runtime.resolve_device("tpu")
    v = runtime.versions()
    assert v["torch"].startswith("2.13.0") and v["torchvision"] is not None


# ------------------------------------------------------------------ paths
def test_atomic_write_and_env_redirect(tmp_path):
    assert paths.results_dir("quick") == tmp_path / "results" / "quick"
    p = paths.atomic_write_json(tmp_path / "a" / "x.json", {"t": torch.tensor([1, 2])})
    assert json.loads(p.read_text()) == {"t": [1, 2]}
    assert not list((tmp_path / "a").glob("*.tmp"))


# ------------------------------------------------------------------ cache
def test_config_hash_stable_and_sensitive():
    a = cache.config_hash({"arch": "resnet18", "lr": 0.1, "seed": 0})
    assert a == cache.config_hash({"seed": 0, "lr": 0.1, "arch": "resnet18"})
    assert a != cache.config_hash({"arch": "resnet18", "lr": 0.1, "seed": 1})


def test_editing_training_code_invalidates_the_cache(tmp_path, monkeypatch):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(paths.REPO_ROOT / "nup_utils", pkg)
    assert cache.code_hash(pkg) == cache.code_hash()
    before = cache.config_hash({"seed": 0})
    with open(pkg / "training.py", "a") as f:
        f.write("\n# a one-line edit of the training code\n")
    assert cache.code_hash(pkg) != cache.code_hash()
    path_before = cache.model_path("m", {"seed": 0})
    real = cache.code_hash
    monkeypatch.setattr(cache, "code_hash", lambda folder=None: real(pkg))  # as if the package were edited
    assert cache.config_hash({"seed": 0}) != before
    assert cache.model_path("m", {"seed": 0}) != path_before  # a new file: the old model is not reused


def test_cached_model_hit_miss_and_corrupt_file():
    calls = []

    def build():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2)

    def fit(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.fill_(len(calls))
        return {"loss": [1.0, 0.5]}

    cfg = {"arch": "linear", "seed": 0}
    m1, h1, hit1 = cache.cached_model("lin", cfg, build, fit)
    m2, h2, hit2 = cache.cached_model("lin", cfg, build, fit)
    assert (hit1, hit2) == (False, True) and len(calls) == 1 and h2 == {"loss": [1.0, 0.5]}
    assert torch.equal(m1.weight, m2.weight)
    cache.model_path("lin", cfg).write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="retraining"):
        m3, _, hit3 = cache.cached_model("lin", cfg, build, fit)
    assert not hit3 and len(calls) == 2 and m3.weight[0, 0].item() == 2.0
    with pytest.raises(ValueError, match="name"):
        cache.model_path("a/b", cfg)


# ------------------------------------------------------------------ results
def _m(v=0.5):
    return metrics.metric(v, v - 0.1, v + 0.1, 10, "test")


def test_claim_validation():
    c = results.claim("C1", "s", "reproduced", {"acc": _m()}, paper_keys=("p3_sbde_acc",), reason="a check")
    assert c["headline"] == "acc" and c["rule"] is None and c["reason"] == "a check"
    with pytest.raises(ValueError, match="verdict"):
        results.claim("C1", "s", "true", {"acc": _m()}, reason="r")
    with pytest.raises(ValueError, match="reason"):
        results.claim("C1", "s", "reproduced", {"acc": _m()})  # no rule and no reason
    with pytest.raises(ValueError, match="ci95"):
        results.claim("C1", "s", "reproduced", {"acc": {"value": 0.5}}, reason="r")
    with pytest.raises(ValueError, match="metrics"):
        results.claim("C1", "s", "reproduced", {}, reason="r")
    with pytest.raises(KeyError):
        results.claim("C1", "s", "reproduced", {"acc": _m()}, paper_keys=("nope",), reason="r")
    with pytest.raises(ValueError, match="headline"):
        results.claim("C1", "s", "reproduced", {"acc": _m()}, headline="auc", reason="r")
    with pytest.raises(ValueError, match="rule"):
        results.claim("C1", "s", 0.5, {"acc": _m()})


def test_write_load_compare(tmp_path):
    rule = verdicts.Superiority("acc", min_effect=0.1)
    claims = [results.claim("C1", "s", rule, {"acc": _m(0.5)}, profile="quick")]
    p = results.write_results(
        "99-test",
        "quick",
        claims,
        params={"a": 1},
        data_source="synthetic",
        wall_time_s=1.234,
        device="cpu",
        rules={"C1": rule},
    )
    doc = json.loads(p.read_text())
    for key in (
        "notebook",
        "profile",
        "claims",
        "params",
        "versions",
        "git_commit",
        "device",
        "data_source",
        "wall_time_s",
        "tolerance",
        "threads",
        "pre_registration",
    ):
        assert key in doc
    assert doc["pre_registration"]["rules"]["C1"] == rule.spec() and len(doc["pre_registration"]["hash"]) == 16
    assert doc["claims"][0]["verdict"] == "reproduced" and doc["claims"][0]["borderline"] is False
    assert results.load_results("quick", "99-test") == doc
    assert results.compare(doc, doc) == []
    with pytest.raises(ValueError, match="profile"):
        results.write_results("99-test", "auto", claims, params={}, data_source="", wall_time_s=0, device="cpu")
    with pytest.raises(ValueError, match="tolerance"):
        results.write_results(
            "99-test",
            "quick",
            claims,
            params={},
            data_source="",
            wall_time_s=0,
            device="cpu",
            tolerance={"abs": 0.1, "rel": 0.1},
        )
    # NaN and infinity are not JSON: the error names where they are
    bad = {"summary": {"rho": [0.1, float("nan")]}, "ok": 1.0, "top": float("inf")}
    with pytest.raises(ValueError, match=r"extra\.summary\.rho\[1\], extra\.top"):
        results.write_results(
            "99-test", "quick", claims, params={}, data_source="", wall_time_s=0, device="cpu", extra=bad
        )
    assert results.non_finite({"a": [1.0, {"b": -float("inf")}], "c": "nan"}) == ["a[1].b"]


# ------------------------------------------------------------------ paper table and report
def test_paper_table_labelled_and_sourced():
    for key, e in paper.PAPER_NUMBERS.items():
        assert e["label"] in paper.LABELS and e["source"] and isinstance(e["value"], (int, float)), key
    assert paper.get("p3_sbde_acc")["value"] == 95.63
    assert "(paper)" in paper.fmt("p3_sbde_acc")
    with pytest.raises(KeyError):
        paper.get("p9_unknown")


def test_report_markdown_and_readme_update(tmp_path):
    rule = verdicts.Superiority("gain", min_effect=0.7)
    claims = [
        results.claim(
            "sbde-gain",
            "s",
            rule,
            {"gain": _m(0.01)},
            paper_keys=("p3_sbde_acc",),
            profile="quick",
            regime="width 8 vs the paper's 64",
        )
    ]
    results.write_results("02-sbde-accuracy", "quick", claims, params={}, data_source="x", wall_time_s=1, device="cpu")
    md = report.markdown(root=tmp_path / "results")
    assert "02-sbde-accuracy | sbde-gain" in md and "**not_reproduced**: " in md and "not run yet" in md
    assert claims[0]["reason"] in md and "quick: width 8 vs the paper's 64" in md
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nSTALE-TABLE\n{report.END}\noutro\n")
    assert report.update_readme(readme) is True
    assert "STALE-TABLE" not in readme.read_text() and "outro" in readme.read_text()


def test_committed_readme_table_is_generated_from_committed_results():
    # the README's table must be exactly what the committed results produce (never typed by hand)
    assert report.main(["--check"]) == 0


# ------------------------------------------------------------------ plotting
def test_savefig_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = plotting.savefig(fig, "99-test")
    assert {p.suffix for p in out} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in out)
    assert out[0].parent == tmp_path / "figures"
    with pytest.raises(ValueError, match="name"):
        plotting.savefig(fig, "sub/99.png")
    plt.close(fig)


# ------------------------------------------------------------------ notebooks: static checks
NOTEBOOKS = sorted(paths.notebooks_dir().glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_parameters_cell(nb_path):
    nb = json.loads(nb_path.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(params[0]["source"]))
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, "parameters cell: one assignment per line"
        # literals only (numbers, strings, tuples/lists of literals, None, negative numbers)
        ast.literal_eval(stmt.value)
        names.append(stmt.targets[0].id)
    assert names[:2] == ["PROFILE", "SEED"]
    values = {n: ast.literal_eval(s.value) for n, s in zip(names, tree.body)}
    assert values["PROFILE"] == "auto" and values["SEED"] == 0
    assert not [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]


# ------------------------------------------------------------------ small helpers
def test_timer_eval_mode_device_name():
    with runtime.Timer() as t:
        sum(range(1000))
    assert t.seconds > 0
    m = torch.nn.Dropout().train()
    with runtime.eval_mode(m):
        assert not m.training
    assert m.training
    assert runtime.device_name("cpu").startswith("cpu")


def test_report_rows_not_run_yet(tmp_path):
    rows = report.rows(root=tmp_path / "empty")
    names = report.notebook_names()
    assert {r["notebook"] for r in rows} == set(names)
    assert all(r["quick"] == "not run yet" for r in rows)
    assert report.fmt_metric(metrics.metric(0.9563, 0.95, 0.96, 5, "t")) == "0.956 [0.950, 0.960]"


def test_errorbar_points():
    fig, ax = plt.subplots()
    plotting.errorbar_points(ax, ["a", "b"], [1.0, 2.0], [0.5, 1.5], [1.5, 2.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    plt.close(fig)


def test_atomic_write_permissions(tmp_path):
    import os
    import stat

    p = paths.atomic_write_bytes(tmp_path / "f.bin", b"x")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    assert mode == 0o666 & ~paths._UMASK and mode & 0o044  # readable by others, not 0600


def test_headless_switches_off_widgets_and_bars(monkeypatch):
    monkeypatch.delenv("NUP_PROGRESS", raising=False)
    monkeypatch.setenv("NUP_HEADLESS", "1")
    assert runtime.headless() and not runtime.widgets_enabled() and runtime.progress_disabled()
    monkeypatch.setenv("NUP_PROGRESS", "1")
    assert not runtime.progress_disabled()
    monkeypatch.setenv("NUP_HEADLESS", "0")
    monkeypatch.delenv("NUP_PROGRESS")
    assert runtime.widgets_enabled() and not runtime.progress_disabled()
