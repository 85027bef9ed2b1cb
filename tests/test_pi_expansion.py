"""Notebook 06's glue (nup_utils.pi_expansion) on synthetic fit records: no fitting."""

import math

import numpy as np
import pytest

from nup_utils import pi_expansion as pe
from nup_utils import piexp, results, verdicts

FUNCS, SEEDS = ("F1", "F2", "F3", "F4"), (0, 1, 2)


def _records(mse_factor: dict[str, float], *, fail=()) -> list[dict]:
    """Every arm on FUNCS x SEEDS; an arm's test MSE is the Std one times its factor (with a little
    per-pair noise so intervals have width); ``fail`` lists (arm, function, seed) fits that blew up."""
    rng = np.random.default_rng(0)
    out = []
    for f in FUNCS:
        for s in SEEDS:
            base = 1e-2 * (1 + FUNCS.index(f) + s)
            for arm in piexp.ARMS:
                factor = mse_factor.get(arm, 1.0) * math.exp(0.05 * rng.standard_normal())
                out.append(
                    {
                        "arm": arm,
                        "function": f,
                        "seed": s,
                        "test_mse": base * factor,
                        "train_mse": base * factor,
                        "failure": "blow-up" if (arm, f, s) in fail else None,
                        "iters": 100,
                        "hit_cap": False,
                        "evals": int(200 * factor),
                        "evals_to_target": int(100 * factor),
                        "evals_to_target_censored": int(100 * factor),
                        "wall_s": 0.1,
                    }
                )
    return out


def _rules():
    return {
        "lower-mse": verdicts.Superiority("mse_reduction", min_effect=0.33, full_effect=0.66),
        "zero-expansion-check": verdicts.AllOf(
            (
                verdicts.Equivalence("log_mse_zero_vs_std", math.log(1.5)),
                verdicts.Equivalence("log_evals_zero_vs_std", math.log(1.1)),
            )
        ),
    }


@pytest.mark.parametrize(("exp5", "verdict"), [(0.2, "reproduced"), (1.0, "not_reproduced")])
def test_claims_follow_the_declared_rules(exp5, verdict):
    recs = _records({"Exp-5": exp5})
    summary = piexp.arm_summary(recs, tuple(piexp.ARMS))
    out = {c["id"]: c for c in pe.claims(recs, summary, _rules(), profile="quick", funcs=FUNCS, seeds=SEEDS)}
    assert out["lower-mse"]["verdict"] == verdict
    assert out["zero-expansion-check"]["verdict"] == "reproduced"  # Exp-5 0 fits exactly like Std here
    assert "of 10 functions" in out["lower-mse"]["regime"] and "0 of" in out["lower-mse"]["regime"]
    assert "66.3%" in out["lower-mse"]["statement"]  # the paper's number, formatted from nup_utils.paper
    smoke = pe.claims(recs, summary, _rules(), profile="smoke", funcs=FUNCS, seeds=SEEDS)
    assert {c["verdict"] for c in smoke} == {"inconclusive"}
    assert "mse_reduction" in pe.claim_lines(smoke)


def test_failures_are_counted_in_the_regime_and_tables():
    recs = _records({"Exp-5": 0.5}, fail={("Exp-5", "F1", 0), ("Std", "F2", 1)})
    summary = piexp.arm_summary(recs, tuple(piexp.ARMS))
    (c,) = pe.claims(recs, summary, {"lower-mse": _rules()["lower-mse"]}, profile="quick", funcs=FUNCS, seeds=SEEDS)
    assert f"2 of {len(recs)} fits failed" in c["regime"]
    assert c["metrics"]["mse_reduction"]["dropped_pairs"] == 2
    assert "| 1/12 |" in pe.fits_table(summary)


def test_sensitivity_says_when_too_few_pairs_succeed():
    recs = _records({"Exp-5": 0.5})
    literal = [dict(r) for r in recs if r["arm"] in ("Std", "Exp-5")]
    sens, table = pe.sensitivity(literal, recs)
    assert sens["not_computable"] is None and sens["log_mse_exp5_vs_std"]["value"] < 0
    for r in literal:  # every paper-literal Std fit failed: no pair left
        r["failure"] = "non-finite" if r["arm"] == "Std" else None
    sens, table = pe.sensitivity(literal, recs)
    assert sens["log_mse_exp5_vs_std"] is None and sens["not_computable"]
    assert "too few pairs" in table and sens["failure_rate"]["Std"]["value"] == 1.0
    extra = pe.extra(piexp.arm_summary(recs, ("Std",)), {}, [], [], sens)
    assert extra["paper_literal"]["log_mse_exp5_vs_std"] is None
    # an arm with no successful fit has no mean over successful fits: None in the results (JSON has no NaN, and
    # write_results refuses one: the full dry run of 06 stopped there), a dash in the table
    std = {s["arm"]: s for s in sens["summary"]}["Std"]
    assert std["iters_ok_mean"] is None and std["evals_ok_mean"] is None and std["test_mse_geomean_ok"] is None
    assert not results.non_finite(extra)
    assert "| 12/12 | — | — |" in pe.fits_table(sens["summary"])


def test_setting_tables_and_figure():
    assert pe.targets_table().count("\n") >= 11  # header, rule, ten targets
    n = pe.parameter_counts(0)
    assert n["Std"] == 17951 and n["Exp-5"] == 18351
    assert "18,351" in pe.arms_table(n)
    fig = pe.targets_figure(n=50)
    assert len(fig.axes) == 10
    pe.plt.close(fig)
