"""Dry runs (issue #17): loops cut to their first steps, a ledger of planned work, and the estimate from it."""

import json

import nbformat
import pytest
import torch
from torch import nn

from nup_utils import cache, dryrun, results, run, training, verdicts


def test_outside_a_dry_run_nothing_is_cut(tmp_path, monkeypatch):
    monkeypatch.delenv("NUP_DRY_RUN", raising=False)
    assert list(dryrun.loop(5, "x")) == [0, 1, 2, 3, 4]
    assert list(dryrun.outer(range(1, 4))) == [1, 2, 3]
    t = torch.arange(6)
    assert dryrun.pad(t, 6) is t
    with pytest.raises(ValueError, match="expected 7"):
        dryrun.pad(t, 7)  # a short output outside a dry run is a bug, never padded


def test_loops_are_cut_and_nested_counts_multiply(dry):
    assert list(dryrun.loop(10, "flat", k=1)) == [0, 1]
    for _ in dryrun.outer(range(5)):  # e.g. epochs: one pass, five planned
        assert list(dryrun.loop(4, "inner")) == [0, 1]
    for _ in dryrun.loop(3, "batches", steps=1):  # one of three batches runs
        list(dryrun.loop(6, "pgd step"))
    recs = {r["what"]: r for r in dryrun.read(dry)}
    assert recs["flat"]["planned"] == 10 and recs["flat"]["run"] == 2 and recs["flat"]["key"] == {"k": 1}
    assert recs["inner"]["planned_total"] == 20
    assert recs["pgd step"]["planned_total"] == 18 and recs["batches"]["planned_total"] == 3
    assert list(dryrun.loop(0, "empty")) == []
    assert dryrun.pad(torch.arange(3), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_max_steps_cuts_every_loop_to_fewer_iterations(dry, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_STEPS", "1")
    assert list(dryrun.loop(10, "step")) == [0]  # STEPS would run two
    assert list(dryrun.loop(500, "bootstrap", steps=8)) == [0]
    (rec, boot) = dryrun.read(dry)
    assert rec["run"] == 1 and rec["planned_total"] == 10 and boot["planned_total"] == 500
    monkeypatch.setenv("NUP_DRY_MAX_STEPS", "0")
    with pytest.raises(ValueError, match="NUP_DRY_MAX_STEPS"):
        list(dryrun.loop(3, "x"))


def test_batches_cover_every_index_once_and_are_cut_in_a_dry_run(monkeypatch, tmp_path):
    monkeypatch.delenv("NUP_DRY_RUN", raising=False)
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "8")  # ignored outside a dry run
    slices = list(dryrun.batches(23, 10, "batch"))
    assert [(s.start, s.stop) for s in slices] == [(0, 10), (10, 20), (20, 30)]
    assert torch.cat([torch.arange(23)[s] for s in slices]).tolist() == list(range(23))
    assert list(dryrun.batches(0, 10, "batch")) == []
    with pytest.raises(ValueError, match="batch_size=0"):
        list(dryrun.batches(5, 0, "batch"))
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("NUP_DRY_RUN", "1")
    monkeypatch.setenv("NUP_DRY_LEDGER", str(ledger))
    (only,) = dryrun.batches(23, 10, "cut batch", model="m")  # capped to 8, first batch only
    assert (only.start, only.stop) == (0, 8)
    (r,) = dryrun.read(ledger)
    assert r["what"] == "cut batch" and r["planned"] == 3 and r["run"] == 1 and r["key"] == {"model": "m"}


def test_time_per_iteration_is_the_mean_after_the_warm_up(dry):
    """Iterations that differ (e.g. 06's fits of different arms) are averaged; the first (warm-up) is left out."""
    import time

    for i in dryrun.loop(10, "uneven", steps=3):
        time.sleep((0.3, 0.05, 0.15)[i])
    (r,) = dryrun.read(dry)
    assert 0.1 <= r["s_per_iter"] < 0.15  # the mean of 0.05 and 0.15 s; the last alone would be >= 0.15


def test_flops_are_counted_and_time_is_extrapolated(dry):
    lin = nn.Linear(8, 4)
    x = torch.randn(16, 8)
    for _ in dryrun.loop(100, "forward"):
        lin(x)
    (r,) = dryrun.read(dry)
    assert r["flops_per_iter"] == 2 * 16 * 8 * 4
    est = dryrun.estimate([r], wall_s=r["measured_s"] + 1.0, flops_per_s=1e9)
    assert est["loops_s"] == pytest.approx(100 * r["s_per_iter"])
    assert est["outside_loops_s"] == pytest.approx(1.0)
    assert est["flops"] == 100 * 2 * 16 * 8 * 4
    assert est["at_rate_s"] == pytest.approx(est["flops"] / 1e9 + 1.0)


def test_host_loops_keep_their_measured_time_at_an_assumed_rate(dry):
    """CPU-only work (06's fits, run by worker processes) is not translated to an accelerator's FLOP rate."""
    lin = nn.Linear(8, 4)
    x = torch.randn(16, 8)
    for _ in dryrun.loop(10, "device work"):
        lin(x)
    for _ in dryrun.loop(40, "host work", parallel=4, host=True):
        lin(x)
    dev, host = dryrun.read(dry)
    assert host["host"] and not dev["host"] and host["parallel"] == 4
    est = dryrun.estimate([dev, host], wall_s=dev["measured_s"] + host["measured_s"], flops_per_s=1e9)
    assert est["host_loops_s"] == pytest.approx(40 * host["s_per_iter"])
    assert est["at_rate_s"] == pytest.approx(10 * dev["flops_per_iter"] / 1e9 + est["host_loops_s"])
    with pytest.raises(ValueError, match="parallel=0"):
        list(dryrun.loop(3, "bad", parallel=0))


def test_flops_are_counted_through_autograd_grad(dry):
    """Input gradients (every attack) use torch.autograd.grad on a leaf, which torch's FlopCounterMode breaks."""
    lin = nn.Linear(8, 4)
    x = torch.randn(16, 8, requires_grad=True)
    for _ in dryrun.loop(3, "grad"):
        (g,) = torch.autograd.grad(lin(x).sum(), x)
    (r,) = dryrun.read(dry)
    assert g.shape == x.shape and r["flops_per_iter"] >= 2 * (2 * 16 * 8 * 4)  # forward + input gradient


def test_nested_flops_are_not_counted_twice(dry):
    lin = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    for _ in dryrun.loop(3, "outer", steps=1):
        lin(x)
        for _ in dryrun.loop(5, "inner"):
            lin(x)
    recs = {r["what"]: r for r in dryrun.read(dry)}
    assert recs["inner"]["flops_per_iter"] == 2 * 2 * 8 * 4
    assert recs["outer"]["flops_per_iter"] == 2 * 2 * 8 * 4  # its own forward only


def test_batch_cap_scales_the_measured_work(dry, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "4")
    x, y = torch.rand(40, 3, 8, 8), torch.randint(0, 10, (40,))
    seen = []

    def loss(logits, t):
        seen.append(len(t))
        return nn.functional.cross_entropy(logits, t)

    training.train(_tiny(), x, y, epochs=2, batch_size=20, lr=0.1, seed=0, loss_fn=loss, progress=False)
    (r,) = [r for r in dryrun.read(dry) if r["what"] == "train step"]
    assert seen == [4, 4] and r["scale"] == 5 and r["key"]["batch"] == 20 and r["planned_total"] == 4
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "1")
    with pytest.raises(ValueError, match="NUP_DRY_MAX_BATCH"):
        dryrun.batch_cap(8)


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def test_training_and_prediction_in_a_dry_run(dry):
    x, y = torch.rand(80, 3, 8, 8), torch.randint(0, 10, (80,))
    calls = []

    def loss(logits, t):
        calls.append(1)
        return nn.functional.cross_entropy(logits, t)

    hist = training.train(
        _tiny(), x, y, epochs=3, batch_size=8, lr=0.1, seed=0, loss_fn=loss, checkpoint_epochs=(1, 3), progress=False
    )
    assert len(calls) == 2  # 2 of 3 x 10 steps
    assert sorted(hist["checkpoints"]) == [1, 3]  # the skipped epoch's checkpoint exists (the weights it has)
    logits = training.predict(_tiny(), x, batch_size=500)
    assert logits.shape == (80, 10)  # padded to the real length
    recs = {r["what"]: r for r in dryrun.read(dry)}
    assert recs["train step"]["planned_total"] == 30 and recs["train step"]["key"]["batch"] == 8
    assert recs["predict batch"]["planned"] == 80 // dryrun.EVAL_BATCH + 1


def test_dry_cache_shares_a_model_across_seeds_and_replays_its_work(dry, tmp_path, monkeypatch):
    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path / "cache"))
    x, y = torch.rand(32, 3, 8, 8), torch.randint(0, 10, (32,))

    def fit(m):
        return training.train(m, x, y, epochs=2, batch_size=8, lr=0.1, seed=0, progress=False)

    monkeypatch.setenv("NUP_DRY_PLANNED", str(tmp_path / "planned"))
    hits = [cache.cached_model("m", {"a": 1, "seed": s}, _tiny, fit)[2] for s in (0, 1)]
    assert hits == [False, True]
    assert list((tmp_path / "cache" / "models-dry").glob("dry-*.pt")) and not (tmp_path / "cache" / "models").exists()
    steps = [r for r in dryrun.read(dry) if r["what"] == "train step"]
    assert [r["planned_total"] for r in steps] == [8, 8] and steps[1]["replayed"]
    # inside an outer loop (01's seeds: the first runs, planned for all 3) the stored ledger is per call, so a
    # replay in a later dry run (the dry cache kept, markers new) plans the training once per seed, not 3 x 3 times
    monkeypatch.setenv("NUP_DRY_PLANNED", str(tmp_path / "planned-2"))
    for _ in dryrun.outer([0, 1, 2]):
        cache.cached_model("m", {"a": 2, "seed": 0}, _tiny, fit)
    monkeypatch.setenv("NUP_DRY_PLANNED", str(tmp_path / "planned-3"))
    for _ in dryrun.outer([0, 1, 2]):
        cache.cached_model("m", {"a": 2, "seed": 0}, _tiny, fit)
    a2 = [r["planned_total"] for r in dryrun.read(dry) if r["what"] == "train step"][2:]
    assert a2 == [24, 24]  # 3 seeds x 8 steps, first trained then replayed
    monkeypatch.setenv("NUP_DRY_PLANNED", str(tmp_path / "planned"))
    # a later notebook loading the same models (as 03 loads 02's) plans no training again
    assert cache.cached_model("m", {"a": 1, "seed": 1}, _tiny, fit)[2]
    assert len([r for r in dryrun.read(dry) if r["what"] == "train step"]) == 4  # (2 of them from the loops above)
    # a model the real cache holds is loaded and costs nothing (the estimate of resuming a run)
    monkeypatch.delenv("NUP_DRY_RUN")
    cache.cached_model("m", {"a": 1, "seed": 7}, _tiny, fit)
    monkeypatch.setenv("NUP_DRY_RUN", "1")
    assert cache.cached_model("m", {"a": 1, "seed": 7}, _tiny, fit)[2]
    assert len([r for r in dryrun.read(dry) if r["what"] == "train step"]) == 4


def test_a_dry_run_states_no_verdict_and_writes_no_committed_results(dry, monkeypatch):
    rule = verdicts.Direction("d", "+")
    m = {"d": {"value": 5.0, "ci95": [4.0, 6.0]}}
    c = results.claim("c", "s", rule, m, profile="quick")
    assert c["verdict"] == "inconclusive" and c["reason"].startswith("dry run")
    monkeypatch.delenv("NUP_RESULTS_DIR", raising=False)
    with pytest.raises(ValueError, match="NUP_RESULTS_DIR"):
        results.write_results("99-x", "quick", [c], params={}, data_source="d", wall_time_s=1.0, device="cpu")


def test_runner_dry_run_and_budget(tmp_path, capsys, monkeypatch):
    """--dry-run executes with the loops cut, prints the estimate and writes it; a full run refuses to start
    above --budget-min (estimated here by that dry run)."""
    for var in ("NUP_DRY_RUN", "NUP_DRY_LEDGER", "NUP_RESULTS_DIR", "NUP_FIGURES_DIR"):
        monkeypatch.delenv(var, raising=False)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    code = (
        "import time, torch\nfrom nup_utils import dryrun\n"
        "for _ in dryrun.loop(200, 'step'):\n    time.sleep(0.01)\n"
        "print('profile', PROFILE, 'dry', dryrun.active())\n"
        "import os\nprint('figures in', os.environ.get('NUP_FIGURES_DIR'))"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell('PROFILE = "auto"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(nbs / "07-x.ipynb"))
    nbformat.write(nb, str(nbs / "08-y.ipynb"))
    out_dir = tmp_path / "build"
    args = ["--profile", "full", "--dir", str(nbs), "--out", str(out_dir), "--no-readme"]
    assert run.main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    est = json.loads((out_dir / "dry-full" / "estimate.json").read_text())
    assert est["complete"] and 2 < est["total_min"] * 60 < 120  # ~2 x 200 x 10 ms planned
    assert "profile full dry True" in (out_dir / "dry-full" / "07-x.ipynb").read_text()
    assert "estimated full time on" in printed and "estimate 07-x" in printed
    assert run.main([*args, "--budget-min", "0.01"]) == 2  # reuses the estimate: same commit, device, notebooks
    captured = capsys.readouterr()
    assert "not started" in captured.err and "dry run of full" not in captured.out
    assert "for 2 notebook(s)" in captured.err
    # a run of some of them reuses the estimate of all: no second dry run, their share of the time
    assert run.main([*args, "--only", "07", "--budget-min", "0.01"]) == 2
    captured = capsys.readouterr()
    assert "dry run of full" not in captured.out and "for 1 notebook(s)" in captured.err
    one = est["notebooks"]["07-x"]["total_s"] / 60
    assert f"estimated full time {one:.1f} min" in captured.err
    # under the budget it runs, and its figures go beside quick's (figures/full), never over them
    assert run.main([*args, "--only", "07", "--budget-min", "1000"]) == 0
    ran = (out_dir / "full" / "07-x.ipynb").read_text()
    assert "profile full dry False" in ran and str(run.paths.REPO_ROOT / "figures" / "full") in ran
    assert run.main(["--profile", "smoke", "--dir", str(nbs), "--dry-run", "--no-readme"]) == 2
    # auto on a GPU (simulated): over the budget, quick runs instead
    real = run.runtime.resolve_profile
    monkeypatch.setattr(run.runtime, "resolve_profile", lambda p: "full" if p == "auto" else real(p))
    auto = ["--profile", "auto", "--dir", str(nbs), "--out", str(out_dir), "--no-readme", "--budget-min", "0.01"]
    assert run.main(auto) == 0
    assert "quick runs instead" in capsys.readouterr().out
    assert "profile quick dry False" in (out_dir / "quick" / "07-x.ipynb").read_text()


def test_autoattack_and_pgd_in_a_dry_run(dry):
    """Library attacks run a few steps, one target class and a few queries; the ledger scales them to the
    attack's real size (gradient-step equivalents, a query a third of one)."""
    from nup_utils import attacks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6)
    aa = attacks.AutoAttack(eps=8 / 255, steps=100, n_targets=9, n_queries=5000)
    assert aa(model, x, y).shape == x.shape
    pgd = attacks.PGD(eps=8 / 255, step=2 / 255, steps=50, restarts=3)
    assert attacks.robust_correct(model, pgd, x, y, batch_size=4).shape == (6,)
    recs = dryrun.read(dry)
    # each part alone, scaled by its own work: 100 steps, 9 targets x 100 steps (twice), 5000 queries ~ 5000/3
    scales = {r["key"]["part"]: r["scale"] for r in recs if r["what"] == "autoattack"}
    assert scales == pytest.approx({"apgd-ce": 50.0, "apgd-t": 450.0, "fab-t": 450.0, "square": 500.0})
    steps = [r for r in recs if r["what"] == "pgd step"]
    assert len(steps) == 1 and steps[0]["planned_total"] == 50 * 3 * 2  # one batch of two, one restart of three


def test_eot_draws_are_cut_and_scaled(dry):
    """Attacks on a random defence average gradients over EOT draws: a dry run makes one draw per step and
    counts the rest (PGD), or runs the randomized AutoAttack with one draw and scales by the reference's 20."""
    from nup_utils import attacks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)
    noisy = lambda z: z + 0.01 * torch.randn_like(z)  # noqa: E731  (a random transform)
    pgd = attacks.PGD(eps=8 / 255, step=2 / 255, steps=10, eot=8, transform=noisy)
    assert pgd(model, x, y).shape == x.shape
    aa = attacks.AutoAttack(eps=8 / 255, steps=100, version="rand", eot=20, transform=noisy)
    assert aa(model, x, y).shape == x.shape
    recs = dryrun.read(dry)
    draws = [r for r in recs if r["what"] == "eot draw"]
    assert draws and all(r["run"] == 1 and r["planned"] == 8 for r in draws)
    assert sum(r["planned_total"] for r in draws) == 8 * 10 + 8  # 10 gradient steps and the final score
    scales = {r["key"]["part"]: r["scale"] for r in recs if r["what"] == "autoattack"}
    assert scales == pytest.approx({"apgd-ce": 100 * 20 / 2, "apgd-dlr": 100 * 20 / 2})


def test_a_dry_autoattack_works_on_every_image(dry):
    """The library's parts skip images the model already gets wrong, and a dry run's model is untrained: its parts
    run on the model's own labels, so every image is attacked (the upper bound the estimate claims to be)."""
    from nup_utils import attacks

    class Counting(nn.Module):  # records the batch of every forward that an input gradient flows through
        def __init__(self):
            super().__init__()
            self.net, self.grad_batches = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)), []

        def forward(self, z):
            if z.requires_grad:
                self.grad_batches.append(len(z))
            return self.net(z)

    torch.manual_seed(0)
    model = Counting().eval()
    x = torch.rand(8, 3, 8, 8)
    y = (model(x).argmax(1) + 1) % 10  # every image wrong: the library would attack none of them
    out = attacks.AutoAttack(eps=8 / 255, steps=100, parts=("apgd-ce",))(model, x, y)
    assert model.grad_batches and set(model.grad_batches) == {8}  # every gradient step on all eight images
    assert out.shape == x.shape and float((out - x).abs().max()) <= 8 / 255 + 1e-6


def test_a_chunk_stops_before_training_and_resumes(tmp_path, monkeypatch, capsys):
    """--max-minutes: past the deadline no model starts training (a cached one still loads); the runner says
    'paused' with exit status 3, and the same command resumes."""
    import time

    from nup_utils import runtime

    monkeypatch.delenv("NUP_DRY_RUN", raising=False)
    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path / "cache"))
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))

    def fit(m):
        return training.train(m, x, y, epochs=1, batch_size=8, lr=0.1, seed=0, schedule="cosine", progress=False)

    cache.cached_model("m", {"a": 1}, _tiny, fit)
    monkeypatch.setenv("NUP_DEADLINE", str(time.time() - 1))
    assert cache.cached_model("m", {"a": 1}, _tiny, fit)[2]  # cached: loads
    with pytest.raises(runtime.DeadlineReached, match="run the same command again"):
        cache.cached_model("m", {"a": 2}, _tiny, fit)
    monkeypatch.delenv("NUP_DEADLINE")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("01-a", "02-b"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        p = nbformat.v4.new_code_cell('PROFILE = "auto"')
        p.metadata["tags"] = ["parameters"]
        code = "import time\nfrom nup_utils import runtime\ntime.sleep(1)\nruntime.check_deadline('training x')"
        nb.cells = [p, nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, str(nbs / f"{name}.ipynb"))
    args = ["--profile", "smoke", "--dir", str(nbs), "--out", str(tmp_path / "build"), "--no-readme"]
    assert run.main([*args, "--max-minutes", "0.001"]) == 3
    out = capsys.readouterr().out
    assert "paused at the chunk deadline" in out and "not started: chunk deadline" in out
    monkeypatch.delenv("NUP_DEADLINE", raising=False)
    assert run.main(args) == 0


def test_budget_check_uses_the_notebooks_a_dry_run_passed(tmp_path, capsys, monkeypatch):
    """The estimate is kept after each notebook: a dry run in which one notebook failed (or that stopped part-way)
    still estimates the ones that passed, and a full run of those reuses it; a run of the failed one cannot."""
    for var in ("NUP_DRY_RUN", "NUP_DRY_LEDGER", "NUP_RESULTS_DIR", "NUP_FIGURES_DIR"):
        monkeypatch.delenv(var, raising=False)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, body in (("07-x", "for _ in dryrun.loop(50, 'step'):\n    pass"), ("08-y", "raise RuntimeError('boom')")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        p = nbformat.v4.new_code_cell('PROFILE = "auto"')
        p.metadata["tags"] = ["parameters"]
        nb.cells = [p, nbformat.v4.new_code_cell("from nup_utils import dryrun\n" + body)]
        nbformat.write(nb, str(nbs / f"{name}.ipynb"))
    out_dir = tmp_path / "build"
    args = ["--profile", "full", "--dir", str(nbs), "--out", str(out_dir), "--no-readme"]
    assert run.main([*args, "--dry-run"]) == 1
    est = json.loads((out_dir / "dry-full" / "estimate.json").read_text())
    assert not est["complete"] and est["notebooks"]["07-x"]["ok"] and not est["notebooks"]["08-y"]["ok"]
    capsys.readouterr()
    assert run.main([*args, "--only", "07", "--budget-min", "0.01"]) == 2
    captured = capsys.readouterr()
    assert "dry run of full" not in captured.out and "for 1 notebook(s)" in captured.err
    assert run.main([*args, "--only", "08", "--budget-min", "1000"]) == 2  # a new dry run, which fails again
    captured = capsys.readouterr()
    assert "dry run of full" in captured.out and "the dry run failed" in captured.err


def test_a_dry_run_attacks_every_image_not_only_the_clean_correct(dry, monkeypatch):
    """03 and 04 attack only the images the model classifies correctly when clean. A dry run's models are untrained
    (about a tenth correct), so filtering on them timed and planned the attacks on a tenth of a real run's images
    (seen on an H200): a dry run attacks every image, the upper bound of a real run's work."""
    from nup_utils import defenses, sbde

    seen = []

    class Recorder:  # an attack that only records how many images it was given
        def __call__(self, model, x, y):
            seen.append(len(x))
            return x

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = torch.rand(40, 3, 8, 8), torch.randint(0, 10, (40,))
    only = torch.zeros(40, dtype=torch.bool)
    only[:3] = True
    assert dryrun.attacked(only).all() and dryrun.attacked(only).dtype == torch.bool
    defenses.run_suite(model, x, y, {"rec": Recorder()}, only=only, batch_size=64)
    tf = sbde.arm_transform("baseline")
    sbde.threat_model_correct(model, tf, lambda **kw: Recorder(), x, y, threats=("a",), batch_size=64)
    assert seen == [40, 40]
    monkeypatch.setenv("NUP_DRY_RUN", "0")  # a real run attacks only the images in `only` (and the correct ones)
    seen.clear()
    assert dryrun.attacked(only) is only
    defenses.run_suite(model, x, y, {"rec": Recorder()}, only=only, batch_size=64)
    assert seen == [3]


def test_a_capped_dry_run_attacks_the_first_images_and_counts_them_all(dry, monkeypatch):
    """With NUP_DRY_MAX_BATCH (CI's code-path check), AutoAttack and Square work on the first images only: the
    gradient batches are the cap, the output has every row, and the ledger scales time and FLOPs to all images
    while the cost key keeps the real batch (what a reference device's record is matched on)."""
    from nup_utils import attacks

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.batches = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)), []

        def forward(self, z):
            self.batches.append(len(z))
            return self.net(z)

    torch.manual_seed(0)
    model, x, y = Counting().eval(), torch.rand(8, 3, 8, 8), torch.arange(8)
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "2")
    out = attacks.AutoAttack(eps=8 / 255, steps=100, parts=("apgd-ce",))(model, x, y)
    sq = attacks.Square(eps=8 / 255, n_queries=100)(model, x, y)
    assert out.shape == x.shape and sq.shape == x.shape
    assert set(model.batches) <= {1, 2} and max(model.batches) == 2  # never more than the cap at once
    aa_cap, sq_cap = [r for r in dryrun.read(dry) if r["what"] in ("autoattack", "square")]
    monkeypatch.delenv("NUP_DRY_MAX_BATCH")
    attacks.AutoAttack(eps=8 / 255, steps=100, parts=("apgd-ce",))(model, x, y)
    attacks.Square(eps=8 / 255, n_queries=100)(model, x, y)
    aa_all, sq_all = [r for r in dryrun.read(dry) if r["what"] in ("autoattack", "square")][2:]
    assert aa_cap["key"]["batch"] == aa_all["key"]["batch"] == 8 and sq_cap["key"]["batch"] == 8
    assert aa_cap["scale"] == pytest.approx(4 * aa_all["scale"]) and sq_cap["scale"] == pytest.approx(
        4 * sq_all["scale"]
    )
    assert aa_cap["flops_per_iter"] == pytest.approx(aa_all["flops_per_iter"], rel=0.05)  # 2 images x 4 ~ 8 images


def _rec(what, s, *, flops=None, planned=10.0, **key):
    return {"what": what, "key": key, "planned_total": planned, "s_per_iter": s, "flops_per_iter": flops}


def test_calibration_uses_the_reference_devices_measurements_most_direct_first():
    """A loop measured there (same label and cost key, engine fields aside) takes its time there; other work with
    FLOPs goes at the rate its kind achieved there (attack parts: PGD steps'); the rest keeps its time here."""
    ref = [
        _rec("train step", 0.02, flops=4e12, planned=1000, batch=512, precision="bf16", channels_last=True),
        _rec("pgd step", 0.01, flops=1e12, planned=100, batch=250),  # 100 TFLOP/s
        _rec("autoattack", 500.0, flops=1e12, planned=1),  # timed on a few images: never a rate
    ]
    here = [
        _rec("train step", 3.0, flops=4e12, planned=2000, batch=512, precision="fp32", channels_last=False),
        _rec("train step", 1.0, flops=2e12, planned=100, batch=256, precision="fp32", channels_last=False),
        _rec("autoattack", 9.0, flops=5e13, planned=4, part="apgd-ce"),
        _rec("sampling", 0.5, planned=6),
    ]
    cal = dryrun.calibrated(here, ref, outside_s=7.0)
    assert cal["matched_s"] == pytest.approx(2000 * 0.02)  # the engine fields differ: still the same work
    assert cal["by_rate_s"] == pytest.approx(100 * 2e12 / 2e14 + 4 * 5e13 / 1e14)  # train rate 200 TFLOP/s; pgd's
    assert cal["here_s"] == pytest.approx(6 * 0.5)
    assert cal["total_s"] == pytest.approx(cal["matched_s"] + cal["by_rate_s"] + cal["here_s"] + 7.0)
    assert cal["attack_bound_s"] == pytest.approx(4 * 5e13 / 1e14)  # the AutoAttack part: an upper bound
    # a key that does not name the batch: cut to 8 here (31x the iterations, 1/31 of the FLOPs each), the loop's
    # own rate there, not its time per (larger) iteration; of two reference loops with the key (two datasets), the
    # one with the same planned work, though the other is nearer in FLOPs per iteration
    ref_b = [_rec("attack batch", 0.07, flops=2.5e12, planned=10), _rec("attack batch", 0.1, flops=1e10, planned=9)]
    cut = dryrun.calibrated([_rec("attack batch", 0.002, flops=8e10, planned=310)], ref_b, outside_s=0.0)
    assert cut["matched_s"] == pytest.approx(310 * 8e10 * 0.07 / 2.5e12)  # = 10 x 0.07 s: the same work
    # the same key measured in this notebook: only its own loops (another notebook's loop of similar work, e.g.
    # 01's MNIST attacks, does not stand for 04's CIFAR ones)
    ref_n = [
        {**ref_b[0], "notebook": "04-x"},
        {**_rec("attack batch", 1.0, flops=8e10, planned=310), "notebook": "01-y"},
    ]
    here_n = [_rec("attack batch", 0.002, flops=8e10, planned=310)]
    assert dryrun.calibrated(here_n, ref_n, outside_s=0.0, notebook="04-x")["matched_s"] == pytest.approx(
        310 * 8e10 * 0.07 / 2.5e12
    )
    assert dryrun.calibrated(here_n, ref_n, outside_s=0.0)["matched_s"] == pytest.approx(310 * 1.0)
    # uncounted work (no FLOPs, no matching key): the slowest uncounted loop of its label there, else the slowest
    ref_u = [_rec("pgd step", 0.05, flops=1e12, batch=512), _rec("pgd step", 0.002, flops=0, batch=91, eot=8)]
    eot4 = [_rec("pgd step", 0.001, flops=0, planned=100, batch=8, eot=4)]
    assert dryrun.calibrated(eot4, ref_u, outside_s=0.0)["matched_s"] == pytest.approx(100 * 0.002)
    assert dryrun.calibrated(eot4, ref_u[:1], outside_s=0.0)["matched_s"] == pytest.approx(100 * 0.05)
    # CPU-only work with another key (a bootstrap over other samples): its time here, not another loop's there
    boot = [{**_rec("bootstrap resample", 0.001, planned=50, samples=6000), "host": True}]
    ref_h = [{**_rec("bootstrap resample", 0.5, planned=10, samples=99), "host": True}]
    assert dryrun.calibrated(boot, ref_h, outside_s=0.0)["here_s"] == pytest.approx(50 * 0.001)
    # a reference ledger against itself: its own loop time (every key unique)
    own = dryrun.calibrated(ref[:2], ref[:2], outside_s=0.0)
    assert own["total_s"] == pytest.approx(1000 * 0.02 + 100 * 0.01) and own["by_rate_s"] == 0


def test_reference_runs_are_accelerator_dry_runs_at_real_batches(tmp_path):
    import gzip

    def write(name, device, max_batch=None, ledger=True):
        doc = {
            "device": device,
            "commit": "a" * 40,
            "max_batch": max_batch,
            "notebooks": {"02-x": {"ok": True, "outside_loops_s": 3.0}},
        }
        (tmp_path / f"dry-run-full-{name}.json").write_text(json.dumps(doc))
        if ledger:
            (tmp_path / f"dry-run-full-{name}-ledgers").mkdir()
            line = json.dumps(_rec("train step", 0.02, flops=1e9, batch=8)) + "\n"
            (tmp_path / f"dry-run-full-{name}-ledgers" / "ledger-02-x.jsonl.gz").write_bytes(
                gzip.compress(line.encode())
            )

    write("gpu", "NVIDIA H200")
    write("cpu-box", "cpu (Some CPU, 2 threads)")  # measured on a CPU: not a reference for the GPU tier
    write("capped", "NVIDIA H100", max_batch=8)  # batches cut: its times are not the real ones
    write("bare", "NVIDIA A100", ledger=False)  # no ledgers: nothing to match
    refs = run.reference_runs("full", tmp_path)
    assert [r["device"] for r in refs] == ["NVIDIA H200"]
    assert refs[0]["outside_s"] == {"02-x": 3.0} and refs[0]["ledger"][0]["what"] == "train step"
    assert run.reference_runs("cpu", tmp_path) == []


def test_the_committed_gpu_reference_calibrates_the_runner_estimate():
    """The H200 dry run committed in results/benchmarks is found, and its own ledgers calibrated against
    themselves give back its measured estimate (same work, same device) within the averaging of repeated keys."""
    refs = {r["device"]: r for r in run.reference_runs("full")}
    assert "NVIDIA H200" in refs
    ref = refs["NVIDIA H200"]
    doc = json.loads((run.paths.REPO_ROOT / "results" / "benchmarks" / ref["record"]).read_text())
    folder = run.paths.REPO_ROOT / "results" / "benchmarks" / (ref["record"][:-5] + "-ledgers")
    for stem in ("01-uncertainty-relation", "02-sbde-accuracy", "03-mask-projection", "06-pi-expansion"):
        own = dryrun.read(folder / f"ledger-{stem}.jsonl.gz")
        est, lines = run.dry_lines(stem, own, doc["notebooks"][stem]["dry_run_s"], [ref])
        cal = est["calibrated"]["NVIDIA H200"]
        assert cal["here_s"] == 0 and cal["total_s"] > 0
        assert any("on NVIDIA H200" in ln for ln in lines)
        if stem != "03-mask-projection":  # every loop measured there: the same total (03's attack parts go by rate)
            assert cal["by_rate_s"] < 0.02 * cal["total_s"]
            assert cal["total_s"] == pytest.approx(doc["notebooks"][stem]["total_s"], rel=0.02)
