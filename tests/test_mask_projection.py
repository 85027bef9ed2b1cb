"""Notebook 03's glue (nup_utils.mask_projection): claims from synthetic threat-model results, the
scaling fit, the L-inf (c) = (d) check, tables and figures; one real threat-model run on a tiny model."""

import numpy as np
import pytest
import torch

from nup_utils import mask_projection as mp
from nup_utils import models, sbde, verdicts

N, SEEDS, HEAD = 400, (0, 1, 2), ("pgd", "linf", 2 / 255, 20)


def _threats(robust: dict[str, float], clean: float = 0.8, seed: int = 0):
    """ThreatRuns whose headline results are drawn per image: robust among clean-correct with the given rates."""
    g = torch.Generator().manual_seed(seed)
    tr = mp.ThreatRuns({}, {}, torch.zeros(N, 3, 32, 32), torch.zeros(N, dtype=torch.long))
    cl = {}
    for s in SEEDS:
        for arm in ("baseline", "sbde"):
            c = torch.rand(N, generator=g) < clean
            cl[arm, s] = c
            u = torch.rand(N, generator=g)  # one draw per image: nested threat models stay nested
            threats = ("a",) if arm == "baseline" else sbde.THREATS
            name = lambda t, arm=arm: "baseline" if arm == "baseline" else f"sbde_{t}"  # noqa: E731
            tr.runs[(arm, s, *HEAD[:2], round(HEAD[2], 8), HEAD[3], 1)] = {
                t: c & (u < robust[name(t)]) for t in threats
            }
    return tr, cl


def _rules():
    return {
        "sbde-fragility": verdicts.Direction("sbde_minus_baseline", "-"),
        "projection-restores-unaware": verdicts.AllOf(
            (verdicts.Direction("b_minus_a", "+"), verdicts.NonInferiority("b_minus_baseline_a", 0.03))
        ),
        "projection-restores-aware": verdicts.NonInferiority("aware_minus_baseline_a", 0.03),
        "gradient-concentration": verdicts.AllOf(
            (verdicts.Direction("grad_ratio_minus_1", "+"), verdicts.Direction("share_minus_coord_share", "+"))
        ),
        "min-perturbation-scaling": verdicts.Equivalence("slope_plus_half", 0.25),
    }


def _claim_kw(slope_m, profile="quick"):
    rec = {"width": 8, "train_size": 2500}
    kw = dict(ratio_seed=[2.0, 2.1, 1.9], share_seed=[0.9, 0.92, 0.88], slope_m=slope_m, profile=profile, rec=rec)
    return kw | dict(stem="imagenet", head_eps=HEAD[2], head_steps=HEAD[3], steps0=10, n_mineps=150, n_grid=12, seed=0)


def _claims(tr, cl, slope_m, profile="quick"):
    return {c["id"]: c for c in mp.claims(tr, cl, SEEDS, _rules(), **_claim_kw(slope_m, profile))}


def _power_law_mineps(exponent: float, n: int = 200) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    dims = {1: 3072, 2: 12288, 3: 27648}
    return {k: 0.5 * (d / 3072) ** exponent * np.exp(0.05 * rng.standard_normal(n)) for k, d in dims.items()}, dims


def test_scaling_slope_recovers_the_exponent():
    for exponent in (-0.5, 0.0):
        mineps, dims = _power_law_mineps(exponent)
        m = mp.scaling_slope(mineps, dims, seed=0, n_boot=200)
        assert m["ci95"][0] <= exponent + 0.02 and m["ci95"][1] >= exponent - 0.02 and m["ci95"][1] - m["ci95"][0] < 0.1
    fig = mp.scaling_figure(mineps, dims, m)
    assert fig.axes
    mp.plotting.plt.close(fig)


def test_claims_follow_the_data():
    rates = {"baseline": 0.6, "sbde_a": 0.2, "sbde_b": 0.58, "sbde_c": 0.55, "sbde_d": 0.55}
    tr, cl = _threats(rates)
    slope = mp.scaling_slope(*_power_law_mineps(-0.5), seed=0, n_boot=200)
    by = _claims(tr, cl, slope)
    assert by["sbde-fragility"]["verdict"] == "reproduced"
    assert by["gradient-concentration"]["verdict"] == "reproduced"
    assert by["min-perturbation-scaling"]["verdict"] == "reproduced"
    assert by["projection-restores-aware"]["metrics"]["aware_minus_baseline_a"]["value"] < 0
    assert "clean accuracy on the" in by["sbde-fragility"]["regime"] and "eps=2/255" in by["sbde-fragility"]["protocol"]
    assert f"on the {len(tr.x)} attacked images" in by["sbde-fragility"]["regime"]  # not the whole test set
    acc = {"baseline": {"accuracy": [0.75, 0.77], "n": 10000}, "sbde": {"accuracy": [0.8, 0.82], "n": 10000}}
    with_test = mp.claims(tr, cl, SEEDS, _rules(), test_acc=acc, **_claim_kw(slope, "quick"))
    assert "on the 10000-image test split baseline 76.0%, SBDE 81.0%" in with_test[0]["regime"]
    assert [c["verdict"] for c in with_test] == [by[c["id"]]["verdict"] for c in with_test]  # the regime line only
    flat = mp.scaling_slope(*_power_law_mineps(0.0), seed=0, n_boot=200)
    tr2, cl2 = _threats({"baseline": 0.4, "sbde_a": 0.6, "sbde_b": 0.6, "sbde_c": 0.1, "sbde_d": 0.1})
    by2 = _claims(tr2, cl2, flat)
    assert by2["sbde-fragility"]["verdict"] == "not_reproduced"  # SBDE is *more* robust here
    assert by2["projection-restores-aware"]["verdict"] == "not_reproduced"  # 30 points below the baseline
    assert by2["min-perturbation-scaling"]["verdict"] == "not_reproduced"  # slope 0 is far from -0.5
    smoke = _claims(tr, cl, slope, profile="smoke")
    assert {c["verdict"] for c in smoke.values()} == {"inconclusive"}
    assert "slope_plus_half" in mp.claim_lines(list(smoke.values()))


def test_c_equals_d_check_and_extra():
    tr, _ = _threats({"baseline": 0.6, "sbde_a": 0.2, "sbde_b": 0.5, "sbde_c": 0.4, "sbde_d": 0.4})
    assert tr.linf_c_equals_d()
    key = next(k for k in tr.runs if k[0] == "sbde")
    tr.runs[key]["d"] = ~tr.runs[key]["c"]
    assert not tr.linf_c_equals_d()
    ex = mp.extra(tr, 0, cost={}, hits=3, mineps={1: np.array([0.5, 1.0])}, dims={1: 3072})
    assert ex["median_min_l2_eps"] == {"1": 0.75} and ex["model_cache_hits"] == 3
    assert set(ex["robust_accuracy_seed0"]) == {
        "baseline/pgd/linf/eps0.007843/steps20x1",
        "sbde/pgd/linf/eps0.007843/steps20x1",
    }


def test_a_real_grid_on_a_tiny_model():
    """Two tiny random ResNets through the real attacks (ours and the library's): shapes, the table, c = d
    under L-inf, the sanity-check record, the benchmark and the figure."""
    torch.manual_seed(0)
    tf = {a: sbde.arm_transform(a) for a in ("baseline", "sbde")}
    net = {(a, 0): models.resnet18(stem="imagenet", width=2).eval() for a in tf}
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        y = net["baseline", 0](x).argmax(1)  # clean-correct for the baseline, so its images are attacked
    lib = {"autoattack": dict(parts=("apgd-ce", "square"), n_queries=5), "square": dict(n_queries=5)}
    tr = mp.ThreatRuns(net, tf, x, y, lib=lib)
    kw = dict(eps_grid=(2,), eps_l2=0.5, steps=(1, 2, 3), head_eps=2 / 255, restarts=2, aa_steps=1, eps_large=0.5)
    rows = mp.run_grid(tr, (0,), head_steps=2, **kw)
    assert len(rows) == 3 + 2 + 2 + 1 + 1 + 1  # FGSM/PGD/AA per eps, L2 PGD/AA, 2 step counts, Square, restarts, large
    table = mp.threat_table(tr, 0, rows)
    assert table.count("\n") == len(rows) + 1 and "SBDE (d)" in table and "AA-1 linf 2/255" in table
    assert "—" in table.splitlines()[[r[0] for r in rows].index("autoattack") + 2]  # a library attack has no (d)
    assert tr.linf_c_equals_d() and all(v > 0 for v in tr.cost.values())
    assert set(tr.run("sbde", 0, "autoattack", "linf", 2 / 255, 1)) == {"a", "b", "c"}
    checks, flagged, lines = mp.sanity_checks(tr, 0, tol=0.03, **kw)
    assert set(checks) == {
        *("monotone_eps", "large_eps_zero", "more_steps", "reference_not_weaker", "aware_not_weaker", "gradient_free")
    }
    assert [w for w, _ in checks["gradient_free"]] == ["baseline (a)", "sbde (a)", "sbde (c)"] and "flagged" in lines
    assert all(isinstance(ok, bool) for v in checks.values() for _, ok in v)
    bench = mp.benchmark(net, tf, x, y, 0, eps=2 / 255, steps=1, aa_steps=1, lib=lib)
    assert len(bench["rows"]) == 4 and "images × steps/s" in bench["lines"]
    fig = mp.robust_figure(tr, 0, eps_grid=(2,), steps0=1, aa_steps=1, profile="smoke")
    assert len(fig.axes) == 3
    mp.plotting.plt.close(fig)
    with pytest.raises(KeyError):
        tr.run("sbde_k3", 0, "pgd", "linf", 2 / 255, 1)  # no such model: a clear KeyError, not a silent pass
    with pytest.raises(ValueError, match="threat d"):
        mp.make_attack("autoattack", "linf", 0.1, 2, mask=torch.ones(1))
    with pytest.raises(ValueError, match="kind="):
        mp.make_attack("cw", "linf", 0.1)


def test_headline_is_the_worst_case_of_pgd_and_autoattack():
    """Robust = robust to PGD and to AutoAttack per image: an AutoAttack that breaks SBDE (a) further turns a
    tie with the baseline into fragility, and (d), which AutoAttack does not have, is skipped."""
    tr, cl = _threats({"baseline": 0.5, "sbde_a": 0.5, "sbde_b": 0.5, "sbde_c": 0.4, "sbde_d": 0.4})
    slope_m = mp.scaling_slope(*_power_law_mineps(-0.5), seed=0)
    assert _claims(tr, cl, slope_m)["sbde-fragility"]["verdict"] != "reproduced"
    aa = ("autoattack", "linf", round(HEAD[2], 8), 20, 1)
    for s in SEEDS:
        pgd = tr.runs[("sbde", s, *HEAD[:2], round(HEAD[2], 8), HEAD[3], 1)]
        tr.runs[("sbde", s, *aa)] = {"a": pgd["a"] & (torch.rand(N) < 0.2), "b": pgd["b"], "c": pgd["c"]}
        tr.runs[("baseline", s, *aa)] = {"a": tr.runs[("baseline", s, *HEAD[:2], round(HEAD[2], 8), HEAD[3], 1)]["a"]}
    by = {c["id"]: c for c in mp.claims(tr, cl, SEEDS, _rules(), **_claim_kw(slope_m), aa_steps=20)}
    assert by["sbde-fragility"]["verdict"] == "reproduced" and "AutoAttack-20" in by["sbde-fragility"]["protocol"]
    assert by["projection-restores-aware"]["metrics"]["robust_sbde_aware"]["value"] > 0  # (d) skipped, not failed


def test_test_accuracy_is_per_arm_and_seed_on_every_image():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10)).eval()
    x, y = torch.rand(30, 3, 4, 4), torch.randint(0, 10, (30,))
    y[:10] = net(x[:10]).argmax(1)  # at least a third right for the identity transform
    models = {("baseline", 0): net, ("baseline", 1): net, ("sbde", 0): net}
    ident = sbde.InputTransform("identity", 1)
    acc = mp.test_accuracy(models, {"baseline": ident, "sbde": ident}, x, y)
    expected = float((net(x).argmax(1) == y).float().mean())
    assert acc["baseline"] == {"accuracy": [pytest.approx(expected)] * 2, "n": 30}
    assert acc["sbde"]["accuracy"] == [pytest.approx(expected)] and expected >= 1 / 3


def test_bisection_refines_the_minimal_eps_within_each_grid_bracket():
    """A linear model's minimal L2 perturbation is known (|margin| / ||w||): the grid alone over-estimates it by up to
    a grid step, four bisections by about a sixteenth of one; never below the true distance; bisect=0 is the grid."""
    import math

    from nup_utils import attacks

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 10)
    with torch.no_grad():
        lin.weight.zero_(), lin.bias.zero_()
        lin.weight[0] = torch.randn(12)  # class 0 against class 1 (logit 0): boundary w.x = 0
    model = torch.nn.Sequential(torch.nn.Flatten(), lin).eval()
    x = torch.rand(40, 3, 2, 2) * 0.5 + 0.25
    with torch.no_grad():
        z = model(x)[:, 0]
        y, dist = torch.where(z > 0, 0, 1), z.abs() / lin.weight[0].norm()
    grid = torch.logspace(math.log10(0.005), math.log10(2.0), 12).tolist()  # a factor 1.72 per step
    fn = lambda e: attacks.PGD(eps=e, step=2.5 * e / 20, steps=20, norm="l2", seed=0)  # noqa: E731
    coarse = sbde.min_adv_eps(model, x, y, grid, fn)
    fine = mp.refine_min_eps(model, x, y, coarse, grid, fn, bisect=4)
    ok = torch.isfinite(coarse) & (coarse > grid[0] * 1.0001)  # a bracket below the first broken grid point
    assert ok.sum() >= 30
    assert (fine[ok] >= dist[ok] * 0.999).all() and (fine[ok] <= coarse[ok] + 1e-6).all()
    assert float((coarse[ok] / dist[ok]).max()) > 1.3  # the grid is coarse here ...
    assert float((fine[ok] / dist[ok]).max()) < 1.1  # ... the bisections are not (1.72 ** (1 / 16) = 1.035, PGD slack)
    assert torch.equal(mp.refine_min_eps(model, x, y, coarse, grid, fn, bisect=0), coarse)
    first = ~ok  # broken at the first grid point or not at all: unchanged
    assert torch.equal(fine[first], coarse[first])
    with pytest.raises(ValueError, match="bisect"):
        mp.min_eps_study({}, {}, x, y, grid, steps=5, seed=0, s0=0, bisect=-1)
