"""Notebook 01's glue (nup_utils.relation) on synthetic runs: no training, no Monte Carlo."""

import math

import pytest
import torch

from nup_utils import relation, verdicts
from nup_utils import uncertainty as unc

K, D, N = 2, 6, 400  # classes, components, attacked images


def _maps(product: float, dp: float, gen: torch.Generator) -> dict:
    """Every state's maps with P ~ ``product`` (small noise), SE 0.01, B = 1 - 2 * half_c."""
    out = {}
    for st in unc.STATES:
        p = product + 0.001 * torch.randn(K, D, generator=gen, dtype=torch.float64)
        half_c = torch.full((K, D), 0.25 if st != "envelope" else 0.5, dtype=torch.float64)
        v = {"x_mean": torch.full((K, D), 0.5), "dx": torch.full((K, D), 0.29), "dp": torch.full((K, D), dp)}
        v |= {"product": p, "half_c": torch.minimum(half_c, p), "boundary": 1 - 2 * half_c}
        out[st] = {"values": v, "se": {q: torch.full((K, D), 0.01) for q in v}, "ess": torch.full((K,), 100.0)}
    return out


def _meas(robust_first: float, robust_last: float, dp_first: float, dp_last: float, seeds=(0, 1, 2)) -> dict:
    """Checkpoints 0 (init), 1 and 2 per seed; clean accuracy 0.9 at both trained checkpoints."""
    gen = torch.Generator().manual_seed(0)
    run = {}
    for s in seeds:
        run[s] = {}
        for epoch, robust, dp in ((0, 0.0, 0.1), (1, robust_first, dp_first), (2, robust_last, dp_last)):
            clean = torch.rand(N, generator=gen) < (0.1 if epoch == 0 else 0.9)
            adv = clean & (torch.rand(N, generator=gen) < robust)
            run[s][epoch] = {"correct": {"clean": clean, "pgd@0.1": adv}, "maps": _maps(0.3, dp, gen)}
    bound = {s: _maps(0.3, dp_last, gen) for s in seeds}
    return {"run": run, "bound_maps": bound, "kinds": ["pgd@0.1"], "source": "synthetic", "cache_hits": [True]}


def _rules(ds="toy"):
    rules = {
        f"naive-bound-{st}-state-{ds}": verdicts.Superiority("frac_consistent", min_effect=0.95) for st in unc.STATES
    }
    rules[f"general-bound-check-{ds}"] = verdicts.Superiority("frac_general_holds", min_effect=0.999)
    rules[f"training-trade-off-{ds}"] = verdicts.AllOf(
        (verdicts.Direction("dlog_mean_dp_loss_state", "+"), verdicts.Direction("d_given_clean_mean_eps", "-"))
    )
    return rules


def _claims(meas, profile="quick"):
    curves = relation.training_curves(meas["run"], meas["kinds"])
    cfg = {"arch": "small_cnn", "arch_kwargs": {}, "train_size": 100}
    kw = dict(z=1.96, acc_within=0.05, n_bound=64, n_attack=N, pgd_steps=10, seed=0)
    return relation.claims("toy", meas, curves, _rules(), profile=profile, cfg=cfg, **kw)


@pytest.mark.parametrize(
    ("robust", "dp", "verdict"),
    [((0.8, 0.3), (1.0, 2.0), "reproduced"), ((0.3, 0.8), (1.0, 2.0), "not_reproduced")],
)
def test_trade_off_claim_follows_the_data(robust, dp, verdict):
    claims, compared = _claims(_meas(*robust, *dp))
    by = {c["id"]: c for c in claims}
    assert compared == (1, 2)  # epoch 1 is within 0.05 clean accuracy of epoch 2
    assert by["training-trade-off-toy"]["verdict"] == verdict
    assert by["naive-bound-loss-state-toy"]["verdict"] == "not_reproduced"  # P ~ 0.3 << 1/2 with SE 0.01
    assert by["general-bound-check-toy"]["verdict"] == "reproduced"
    assert "clean accuracy" in by["training-trade-off-toy"]["regime"] and "64 samples" in claims[0]["protocol"]
    assert "training-trade-off-toy" in relation.claim_lines(claims)


def test_smoke_claims_are_inconclusive():
    claims, _ = _claims(_meas(0.8, 0.3, 1.0, 2.0), profile="smoke")
    assert {c["verdict"] for c in claims} == {"inconclusive"}


def test_curves_cauchy_schwarz_and_extra():
    meas = _meas(0.8, 0.3, 1.0, 2.0)
    curves = relation.training_curves(meas["run"], meas["kinds"])
    assert set(curves["acc_clean"]) == {0, 1, 2} and "given_clean_pgd@0.1" in curves and "dp_envelope" in curves
    assert curves["dp_loss"][2]["value"] == pytest.approx(2.0)
    assert relation.cauchy_schwarz_min([meas["run"]], [meas["bound_maps"]]) >= 0.0
    bad = _meas(0.8, 0.3, 1.0, 2.0)
    bad["bound_maps"][0]["loss"]["values"]["half_c"][0, 0] = 1.0  # P < |C|/2: Cauchy-Schwarz broken
    assert relation.cauchy_schwarz_min([bad["run"]], [bad["bound_maps"]]) < 0
    controls = {"gauss_mc_z": [1.0, -2.0], "env_z": [0.5], "logistic_z": [0.1], "gauss_quad_err": [1e-9]}
    controls |= {"env_quad_err": 0.0, "steep": {}, "logistic_products": {}}
    ex = relation.extra(controls, 0.0, {}, {"toy": curves}, {"toy": (1, 2)}, [True, False])
    assert ex["controls"]["max_abs_z_gaussian"] == 2.0 and ex["models"] == 2 and ex["models_from_cache"] == 1
    assert set(ex["curves"]["toy"]["acc_clean"]) == {"0", "1", "2"}  # JSON keys


def test_dataset_configs_per_profile():
    quick = relation.dataset_configs("quick", eps_mnist=[0.1, 0.2, 0.3], eps_cifar_255=[2, 4, 8])
    assert quick["mnist"]["epochs"] == max(quick["mnist"]["checkpoints"]) and quick["mnist"]["eps"] == (0.1, 0.2, 0.3)
    assert quick["cifar10"]["eps"][2] == pytest.approx(8 / 255)
    full = relation.dataset_configs("full", eps_mnist=[0.1], eps_cifar_255=[8])
    assert full["cifar10"]["train_size"] is None and full["cifar10"]["arch_kwargs"]["width"] == 64
    with pytest.raises(ValueError, match="profile"):
        relation.dataset_configs("fast", eps_mnist=[0.1], eps_cifar_255=[8])


def test_explorer_renders_the_default_view_headless(monkeypatch):
    monkeypatch.setenv("NUP_HEADLESS", "1")
    meas = _meas(0.8, 0.3, 1.0, 2.0)
    relation.explorer({"toy": meas["run"][0]}, {"toy": (1, 2, 3)}, (0, 1))
    relation.plt.close("all")
    assert math.isfinite(relation.ENVELOPE_P)
