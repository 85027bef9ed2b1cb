"""Notebook 05's fact-world aggregation (nup_utils.factworld_study) on two tiny seeds (seconds)."""

import numpy as np
import pytest

from nup_utils import factworld_study as fs
from nup_utils import verdicts


@pytest.fixture(scope="module")
def seeds():
    return fs.run_seeds(
        (0, 1),
        world_kw=dict(n_entities=30),
        model_kw=dict(arch="llama", d_model=32, n_layers=1, n_heads=4),
        train_kw=dict(steps=60, batch_size=64),  # the smoke profile's world: both classes among the answers
        k_samples=2,
        n_boot=50,
        device="cpu",
    )


def test_aggregation_over_seeds(seeds):
    runs, ana, lines = seeds
    assert len(runs) == len(ana) == 2 and lines.count("seed ") >= 2
    det = fs.detection(ana)
    assert det["names"] and all(det["across"][k]["auroc"]["n"] == 2 for k in det["names"])
    probe = [a["detection"][a["primary"]]["auroc"]["value"] for a in ana]
    assert det["probe_auroc"]["value"] == pytest.approx(np.mean(probe))
    assert fs.detection_table(ana, det).count("\n") == len(det["names"]) + 1
    assert "paired difference" in fs.detection_lines(ana, det)
    pool = fs.pooled(ana)
    n = sum(len(a["test_error"]) for a in ana)
    assert len(pool["error"]) == len(pool["bin"]) == n and all(len(r) == n for r in pool["rank"].values())
    strata, slines = fs.exposure_strata(pool, n_boot=50)
    assert sum(s["n"] for s in strata.values()) == n and len(slines) == len(strata)
    sel, gain = fs.selection(ana)
    assert set(sel) == set(fs.SELECTION) and sel["oracle_any_template"]["value"] >= sel["random_template"]["value"]
    assert "paired over seeds" in fs.selection_lines(sel, gain)
    dec_err, gold = fs.goldilocks(ana, pool, n_boot=50)
    assert len(dec_err) == 10 and sum(m["n"] for m in dec_err) == n and set(gold) >= {"low_minus_mid", "high_minus_mid"}
    assert "decile" in fs.goldilocks_lines(dec_err, gold)
    cost = fs.cost(runs)
    assert "sampling (2 samples)" in fs.cost_lines(cost, k_samples=2)
    rules = {
        "factworld-probe-flags-hallucination": verdicts.Superiority("probe_auroc_minus_half", min_effect=0.05),
        "factworld-probe-beats-baselines": verdicts.Direction("auroc_probe_minus_best_baseline", "+"),
        "factworld-prompt-selection": verdicts.Superiority("accuracy_gain_vs_fixed", min_effect=0.01),
        "factworld-goldilocks-band": verdicts.AllOf(
            (verdicts.Direction("low_minus_mid", "+"), verdicts.Direction("high_minus_mid", "+"))
        ),
    }
    claims = fs.claims(det, sel, gain, gold, rules, profile="smoke", regime="toy")
    assert [c["id"] for c in claims] == list(rules) and {c["verdict"] for c in claims} == {"inconclusive"}
    half = claims[0]["metrics"]["probe_auroc_minus_half"]
    assert half["value"] == pytest.approx(det["probe_auroc"]["value"] - 0.5)
    assert [e["seed"] for e in fs.per_seed_extra(ana)] == [0, 1]
    for fig in (fs.detection_figure(det, strata), fs.goldilocks_selection_figure(dec_err, sel)):
        assert len(fig.axes) == 2
        fs.plt.close(fig)
    assert "2 seeds, t-intervals with 1 d.o.f." in fs.limits_markdown(2)


def test_one_class_only_is_a_clear_error():
    _, ana, _ = fs.run_seeds(
        (0,),
        world_kw=dict(n_entities=12, n_relations=2),
        model_kw=dict(arch="llama", d_model=16, n_layers=1, n_heads=2),
        train_kw=dict(steps=1, batch_size=8),
        k_samples=2,
        n_boot=50,
        device="cpu",
    )
    ana[0]["detection"][ana[0]["primary"]] = None  # what analyze_seed records when one class is missing
    with pytest.raises(ValueError, match="seed 0: the test answers are all one class"):
        fs.detection(ana)
