"""Notebook 04's glue (nup_utils.conjmask_study): the summary, claims and sanity checks from synthetic
attack results, the setup record and the figures (no training, no attacks)."""

import pytest
import torch

from nup_utils import conjmask_study as cs
from nup_utils import verdicts

N_TEST, N_ATK = 200, 120


def _setup(**kw):
    base = dict(
        seed=0, n_seeds=2, width=8, stem="imagenet", n_train=2400, n_val=400, n_test=N_TEST, n_atk=N_ATK,
        n_sel=150, epochs=5,
        schedule="onecycle", at_epochs=1, at_steps=3, at_eps=8, eps_run=(2, 4, 8), eps_large=64, pgd_steps=(10, 20),
        restarts=1, eot=2, aa_steps=20, aa_parts=("apgd-ce", "apgd-t", "square"), aa_targets=3, aa_queries=300,
        aa_eot=20, sel_eps=2, sel_steps=5, r_test_grid=(0.1, 0.2), lambda_grid=(0.01,),
        logit_kinds=("squeeze",), tau_norm=0.1, p_mask=0.5, r_train=0.15, lr=0.1, batch=100, n_unc=8, unc_samples=32,
        unc_radius=0.03,
        sanity_tol=0.03,
    )  # fmt: skip
    return cs.Setup(**(base | kw))


def _res(st, robust: dict[str, float], *, unaware_bonus=0.0, large=0.0, seed=0):
    """res[arm][seed] with per-image results: robust at the arm's rate (falling with eps), every attack of the
    suite equal except the unaware one (robust + bonus), transfer weaker, and the large-eps attack."""
    g = torch.Generator().manual_seed(seed)
    atk_idx = torch.arange(N_ATK)
    res = {}
    for a in cs.ARMS:
        res[a] = {}
        for s in st.seeds:
            clean = torch.rand(N_TEST, generator=g) < 0.6  # clean accuracy ~60%
            u = torch.rand(N_ATK, generator=g)
            out = {"clean": clean}
            for i, e in enumerate(st.eps_run):
                rob = clean[atk_idx] & (u < robust[a] * (1 - 0.2 * i))
                naive = clean[atk_idx] & (u < min(1.0, robust[a] * (1 - 0.2 * i) + unaware_bonus))
                r = {"fgsm": rob.clone(), "pgd10": rob.clone(), "pgd20": rob.clone(), "transfer": naive.clone()}
                r["autoattack"] = rob.clone()
                if e == st.eps_run[-1]:  # Square alone runs at the largest eps only
                    r["square"] = rob.clone()
                if a in cs.TEST_DEFENCE:
                    r["pgd10-unaware"] = naive.clone()
                out[e] = r
            out["large"] = clean[atk_idx] & (u < large)
            res[a][s] = out
    return res, atk_idx


def _nup(corr_of_arm):
    return {a: {"corr": torch.full((N_ATK,), corr_of_arm[a]) + 0.001 * torch.arange(N_ATK),
                "grad_rms": torch.ones(N_ATK), "product": torch.ones(8), "ess": torch.full((8,), 30.0)}
            for a in cs.ARMS}  # fmt: skip


def _rules():
    rules = {
        f"{a}-robustness": verdicts.Superiority("robust_gain", min_effect=0.02)
        for a in ("conjmask", "logitreg", "both")
    }
    rules["conjmask-clean-accuracy"] = verdicts.Equivalence("clean_minus_paper", 0.02)
    rules["coupling-predicts-robustness"] = verdicts.Direction("spearman_rho", "-")
    return rules


ROBUST = {
    "standard": 0.2,
    "conjmask": 0.5,
    "logitreg": 0.05,
    "both": 0.5,
    "gradmask": 0.3,
    "random": 0.4,
    "pgd-at": 0.7,
}
CORR = {"standard": 0.9, "conjmask": 0.3, "logitreg": 0.85, "both": 0.35, "gradmask": 0.6, "random": 0.5, "pgd-at": 0.1}


def test_summary_claims_and_masking_gap():
    st = _setup()
    res, atk_idx = _res(st, ROBUST, unaware_bonus=0.3)
    sm = cs.Summary(st, res, atk_idx)
    assert sm.headline["standard"].shape == (N_ATK, 2) and set(sm.table["conjmask"]) == {2, 4, 8}
    assert sm.naive_name("conjmask") == "pgd10-unaware" and sm.naive_name("standard") == "pgd10"
    claims, coupling = cs.claims(st, sm, _nup(CORR), _rules(), profile="quick", logit_key="squeeze")
    by = {c["id"]: c for c in claims}
    assert by["conjmask-robustness"]["verdict"] == "reproduced"  # +30 points on every image draw
    assert by["logitreg-robustness"]["verdict"] == "not_reproduced"  # -9 points: upper end below the minimum effect
    gap = by["conjmask-robustness"]["metrics"]["masking_gap"]
    assert gap["ci95"][0] > 0.1  # the unaware attack over-reports ConjMask: measured, not inferred
    assert by["logitreg-robustness"]["metrics"]["masking_gap"]["value"] == 0  # no test-time defence, no gap
    assert by["coupling-predicts-robustness"]["verdict"] == "reproduced" and coupling["rho"] < -0.8
    assert by["conjmask-clean-accuracy"]["verdict"] == "not_reproduced"  # ~60% vs the paper's 89.5%
    assert "squeeze" in by["logitreg-robustness"]["statement"] and "width 8" in by["conjmask-robustness"]["regime"]
    assert "masking gap" in cs.claim_lines(claims, coupling, sm.clean_acc)
    smoke, _ = cs.claims(st, sm, _nup(CORR), _rules(), profile="smoke", logit_key="squeeze")
    assert {c["verdict"] for c in smoke} == {"inconclusive"}
    assert "robust_gain_seeds" in by["both-robustness"]["metrics"]


def test_coupling_rule_with_tied_ranks_has_no_p_value():
    """Every arm at 0 robust accuracy (a full dry run's padded attacks; a real run against a strong attack) ties
    every rank: Spearman's p-value is undefined, so it is None in the results (JSON has no NaN), not a number."""
    from nup_utils import results

    st = _setup()
    res, atk_idx = _res(st, dict.fromkeys(cs.ARMS, 0.0))
    claims, coupling = cs.claims(st, cs.Summary(st, res, atk_idx), _nup(CORR), _rules(), profile="quick",
                                 logit_key="squeeze")  # fmt: skip
    (c,) = [c for c in claims if c["id"] == "coupling-predicts-robustness"]
    assert c["metrics"]["spearman_rho"]["p_value"] is None and not results.non_finite(claims)
    sm = cs.Summary(st, res, atk_idx)
    assert "exact p = undefined (tied ranks)" in cs.claim_lines(claims, coupling, sm.clean_acc)


def test_sanity_checks_pass_and_fail():
    st = _setup()
    res, atk_idx = _res(st, ROBUST)
    sanity, large, lines = cs.sanity_checks(st, cs.Summary(st, res, atk_idx))
    assert all(ok for v in sanity.values() for *_, ok in v) and "FAILED" not in lines and set(large) == set(cs.ARMS)
    bad, _ = _res(st, ROBUST, large=0.9)  # the large-eps attack leaves most images robust
    for s in st.seeds:  # and more PGD steps help the defence on the standard arm
        bad["standard"][s][2]["pgd20"] = bad["standard"][s][2]["pgd10"] | True
    sanity, _, lines = cs.sanity_checks(st, cs.Summary(st, bad, atk_idx))
    assert not all(ok for *_, ok in sanity["large_eps_zero"]) and not all(ok for *_, ok in sanity["more_steps"])
    assert "FAILED for" in lines


def test_setup_record_figures_and_extra():
    st = _setup()
    assert st.seeds == (0, 1) and st.eps == pytest.approx((2 / 255, 4 / 255, 8 / 255))
    p = st.params()
    assert p["n_atk"] == N_ATK and p["seeds"] == [0, 1] and p["pgd_steps"] == (10, 20)
    res, atk_idx = _res(st, ROBUST)
    sm = cs.Summary(st, res, atk_idx)
    nup = _nup(CORR)
    claims, coupling = cs.claims(st, sm, nup, _rules(), profile="quick", logit_key="squeeze")
    for fig in (cs.robustness_figure(st, sm, nup, coupling), cs.nup_figure(nup)):
        assert fig.axes
        cs.plt.close(fig)
    sanity, large, _ = cs.sanity_checks(st, sm)
    sel = {"standard_val_clean": 0.5, "r_test": {0.1: (0.5, 0.2)}, "logitreg": {"sq": (0.5, 0.1)}}
    ex = cs.extra(st, sm, nup, sel, 0.1, "sq", sanity, large)
    assert ex["selection"]["r_test"] == {"0.1": (0.5, 0.2)} and ex["sanity"]["monotone_eps"]
    assert set(ex["robust_per_attack"]["conjmask"]["2"]) == {
        *("fgsm", "pgd10", "pgd20", "transfer", "pgd10-unaware", "autoattack")
    }
    assert "square" in ex["robust_per_attack"]["conjmask"]["8"]
    assert ex["masking_flags"] == []
    assert "standard" in sm.lines()


def test_randomized_defence_gets_a_noise_slack_and_still_fails_a_real_violation():
    st = _setup()
    assert cs.noise_slack(0.2, 80, 0.03) == pytest.approx(2 * (2 * 0.2 * 0.8 / 80) ** 0.5)
    assert cs.noise_slack(0.0, 80, 0.03) == 0.03  # a rate of 0 has no evaluation noise: the floor holds

    def more_steps_ok(arm, extra_robust):
        res, atk_idx = _res(st, ROBUST)
        for s in st.seeds:  # PGD-20 leaves `extra_robust` more images robust than PGD-10
            r = res[arm][s][2]
            flip = (~r["pgd20"]).nonzero().flatten()[:extra_robust]
            r["pgd20"][flip] = True
        sanity, _, _ = cs.sanity_checks(st, cs.Summary(st, res, atk_idx))
        return all(ok for a, _, ok in sanity["more_steps"] if a == arm)

    assert not more_steps_ok("standard", 5)  # deterministic arm: 5/120 > 0.03
    assert more_steps_ok("random", 5)  # random masks at test time: within two SE of evaluation noise
    assert not more_steps_ok("random", 40)  # a real violation is still caught


def test_gradient_free_check_flags_an_arm_and_autoattack_must_not_be_weaker():
    st = _setup()
    res, atk_idx = _res(st, ROBUST)
    for s in st.seeds:  # Square breaks every image of the logitreg arm at 8/255 that the gradient attacks leave
        res["logitreg"][s][8]["square"] = torch.zeros(N_ATK, dtype=torch.bool)
    sm = cs.Summary(st, res, atk_idx)
    assert cs.masking_flags(st, sm) == ["logitreg"]
    sanity, _, lines = cs.sanity_checks(st, sm)
    assert {a for a, _, ok in sanity["gradient_free"] if not ok} == {"logitreg"} and "['logitreg']" in lines
    claims, _ = cs.claims(st, sm, _nup(CORR), _rules(), profile="quick", logit_key="squeeze")
    by = {c["id"]: c for c in claims}
    assert "FLAGGED for gradient masking" in by["logitreg-robustness"]["protocol"]
    assert "check (Square vs gradient attacks): passed" in by["conjmask-robustness"]["protocol"]
    assert (sm.headline["logitreg"] <= sm.autoattack["logitreg"]).all()  # the worst case includes AutoAttack
    for s in st.seeds:  # AutoAttack far weaker than PGD on the standard arm: the evaluation is broken
        res["standard"][s][2]["autoattack"] = res["standard"][s]["clean"][atk_idx]
    sanity, _, _ = cs.sanity_checks(st, cs.Summary(st, res, atk_idx))
    assert not all(ok for a, _, ok in sanity["reference_not_weaker"] if a == "standard")


def test_reference_attacks_follow_the_defence_kind():
    st = _setup()
    det = cs.reference_attacks(st, 8 / 255, "topr", lambda v: v, 3, square=False)
    assert set(det) == {"autoattack"} and det["autoattack"].version == "standard"
    assert det["autoattack"].parts == ("apgd-ce", "apgd-t", "square") and det["autoattack"].n_targets == 3
    assert "transform=yes" in repr(det["autoattack"]) and "seed=3" in repr(det["autoattack"])
    rnd = cs.reference_attacks(st, 8 / 255, "random", None, 0, square=True)
    assert rnd["autoattack"].version == "rand" and rnd["autoattack"].eot == 20 and rnd["square"].n_queries == 300
    full = cs.reference_attacks(_setup(aa_parts=None, aa_targets=9), 8 / 255, "none", None, 0, square=False)
    assert full["autoattack"].parts == ("apgd-ce", "apgd-t", "fab-t", "square")  # the reference composition


def test_trainer_resolves_the_engine_once_and_keys_the_cache(monkeypatch, tmp_path):
    """'auto' precision/memory format is decided once, before training, from benchmark.fastest (one model on
    32x32 inputs) and goes into every arm's cache key; fixed values skip the measurement."""
    from nup_utils import benchmark

    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path))
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    d = cs.Data(x, y, x, y, x, y, x, y, *(torch.arange(8),) * 4, source="synthetic", lines="")
    calls = []

    def fake(stem, width, px, **kw):
        calls.append((stem, width, px))
        return {"precision": "bf16", "channels_last": True, "source": "test record", "images_per_s": 1.0}

    monkeypatch.setattr(benchmark, "fastest", fake)
    tr = cs.Trainer(_setup(), d, device="cpu", log=lambda *_: None)
    assert calls == [("imagenet", 8, 32)] and tr.engine["source"] == "test record"
    assert (tr.base_cfg["precision"], tr.base_cfg["channels_last"]) == ("bf16", True)
    fixed = cs.Trainer(_setup(precision="fp32", channels_last=False, width=2, epochs=1, batch=2), d, device="cpu",
                       log=lambda *_: None)  # fmt: skip
    assert len(calls) == 1 and fixed.engine == {"precision": "fp32", "channels_last": False, "source": "recipe"}
    model = fixed("standard", 0)  # trains (1 epoch, 4 steps) with the fixed engine and caches it
    assert not model.training and list((tmp_path / "models").glob("04-standard-*.pt"))
