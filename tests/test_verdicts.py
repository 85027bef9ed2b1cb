"""The rule library: every outcome reachable, monotone under widening, bad input refused."""

import json

import numpy as np
import pytest

from nup_utils import metrics, results, verdicts
from nup_utils.verdicts import AllOf, Direction, Equivalence, NonInferiority, Regime, Resolution, Superiority

R, P, NR, I = verdicts.VERDICTS  # noqa: E741


def _m(lo, hi, name="x"):
    return {name: metrics.metric((lo + hi) / 2, lo, hi, 3, "test")}


RULES = [
    Superiority("x", min_effect=0.1),
    Superiority("x", min_effect=0.1, full_effect=0.3),
    NonInferiority("x", margin=0.05),
    Equivalence("x", margin=0.1),
    Direction("x", "+"),
    Direction("x", "-"),
    AllOf((Superiority("x", min_effect=0.1, full_effect=0.3), Direction("y", "+")), name="both"),
    Resolution("x", max_value=0.05),
    AllOf((Superiority("x", min_effect=0.1), Resolution("y", max_value=0.05)), name="precise"),
    Regime(Direction("x", "+"), "y", floor=0.0, label="baseline accuracy"),
]

# one input per outcome of every rule (the underpowered case of Superiority among them)
CASES = {
    0: {R: (0.12, 0.2), NR: (-0.1, 0.05), I: (0.05, 0.15)},
    1: {R: (0.31, 0.4), P: (0.15, 0.5), NR: (0.0, 0.09), I: (-0.2, 0.5)},
    2: {R: (-0.04, 0.1), NR: (-0.2, -0.06), I: (-0.1, 0.1)},
    3: {R: (-0.05, 0.05), NR: (0.1, 0.2), I: (0.05, 0.15)},
    4: {R: (0.01, 0.2), NR: (-0.2, -0.01), I: (-0.1, 0.1)},
    5: {R: (-0.2, -0.01), NR: (0.01, 0.2), I: (-0.1, 0.1)},
    7: {R: (0.01, 0.05), I: (0.01, 0.06)},
}


@pytest.mark.parametrize("k", sorted(CASES))
def test_every_outcome_reachable(k):
    rule = RULES[k]
    seen = {v: rule.decide(_m(*iv)).verdict for v, iv in CASES[k].items()}
    assert seen == {v: v for v in CASES[k]}
    assert set(seen) == set(rule.outcomes())


def test_all_of_reaches_every_outcome_and_takes_the_weakest():
    rule = RULES[6]
    both = lambda a, b: {**_m(*a), **_m(*b, name="y")}  # noqa: E731
    assert rule.decide(both((0.31, 0.4), (0.1, 0.2))).verdict == R
    assert rule.decide(both((0.15, 0.5), (0.1, 0.2))).verdict == P
    assert rule.decide(both((0.31, 0.4), (-0.1, 0.2))).verdict == I
    d = rule.decide(both((0.31, 0.4), (-0.3, -0.1)))
    assert d.verdict == NR and "contradicted" in d.reason and d.reason.startswith("both: decided by")
    assert set(rule.outcomes()) == set(verdicts.VERDICTS) and rule.metric_names() == ("x", "y")


def test_resolution_makes_a_noisy_agreement_inconclusive_never_a_failure():
    rule = RULES[8]
    both = lambda a, b: {**_m(*a), **_m(*b, name="y")}  # noqa: E731
    assert rule.decide(both((0.12, 0.2), (0.01, 0.04))).verdict == R
    d = rule.decide(both((0.12, 0.2), (0.01, 0.09)))
    assert d.verdict == I and "underpowered" in d.reason and "resolution" in d.reason
    assert rule.decide(both((-0.1, 0.05), (0.01, 0.09))).verdict == NR  # a clear failure stays a failure
    assert set(rule.outcomes()) == {R, NR, I}
    with pytest.raises(ValueError, match="max_value"):
        Resolution("x", max_value=0)


def test_regime_decides_only_inside_the_declared_regime():
    rule = RULES[9]
    both = lambda a, b: {**_m(*a), **_m(*b, name="y")}  # noqa: E731
    assert rule.decide(both((0.01, 0.2), (0.1, 0.3))).verdict == R
    assert rule.decide(both((-0.2, -0.01), (0.0, 0.3))).verdict == NR  # the floor itself is inside
    d = rule.decide(both((-0.2, -0.01), (-0.05, 0.3)))  # lower end below the floor: no verdict
    assert d.verdict == I and "outside the declared regime" in d.reason and "would say not_reproduced" in d.reason
    assert set(rule.outcomes()) == {R, NR, I} and rule.metric_names() == ("x", "y")
    with pytest.raises(ValueError, match="floor"):
        Regime(Direction("x", "+"), "y", floor=float("nan"))
    with pytest.raises(ValueError, match="rule="):
        Regime("reproduced", "y", floor=0.5)


def test_underpowered_is_inconclusive_and_said():
    d = Superiority("x", min_effect=0.05, label="gain", scale=100, unit=" pts").decide(_m(0.0186, 0.0808))
    assert d.verdict == I and "underpowered" in d.reason and "+1.860 pts" in d.reason and "+5.000 pts" in d.reason


ALLOWED_ON_WIDENING = {(R, P), (R, I), (P, I), (NR, I)}


@pytest.mark.parametrize("k", range(len(RULES)))
def test_widening_only_moves_towards_inconclusive(k):
    rule, rng = RULES[k], np.random.default_rng(k)
    names = rule.metric_names()
    for _ in range(3000):
        centre = rng.uniform(-0.5, 0.5, len(names))
        half = rng.uniform(0, 0.3, len(names))
        grow = rng.uniform(0, 0.3, (2, len(names)))
        narrow = {n: metrics.metric(c, c - h, c + h, 3, "t") for n, c, h in zip(names, centre, half)}
        wide = {
            n: metrics.metric(c, c - h - g0, c + h + g1, 3, "t")
            for n, c, h, g0, g1 in zip(names, centre, half, grow[0], grow[1])
        }
        a, b = rule.decide(narrow).verdict, rule.decide(wide).verdict
        assert a == b or (a, b) in ALLOWED_ON_WIDENING, f"{rule!r}: widening {narrow} -> {wide} moved {a} -> {b}"


def test_bad_input_named():
    for make, word in (
        (lambda: Superiority("x", min_effect=0), "min_effect"),
        (lambda: Superiority("x", min_effect=0.2, full_effect=0.1), "full_effect"),
        (lambda: NonInferiority("x", margin=-1), "margin"),
        (lambda: Equivalence("x", margin=0), "margin"),
        (lambda: Direction("x", "up"), "expected"),
        (lambda: AllOf(()), "rules"),
        (lambda: Superiority("", min_effect=0.1), "metric"),
    ):
        with pytest.raises(ValueError, match=word):
            make()
    with pytest.raises(ValueError, match="not found"):
        Direction("x", "+").decide(_m(0, 1, name="y"))
    with pytest.raises(ValueError, match="non-finite"):
        Direction("x", "+").decide({"x": {"value": 0.0, "ci95": [float("nan"), 1.0]}})
    with pytest.raises(ValueError, match="family"):
        verdicts.from_spec({"family": "vibes"})


@pytest.mark.parametrize("k", range(len(RULES)))
def test_spec_round_trips_and_is_json(k):
    rule = RULES[k]
    spec = json.loads(json.dumps(rule.spec()))
    assert spec["alpha"] == 0.05 and verdicts.from_spec(spec) == rule
    assert "min_effect=0.1" in repr(RULES[0]) and "margin=0.05" in repr(RULES[2])


def test_smoke_guard_and_vocabulary():
    assert results.VERDICTS == verdicts.VERDICTS
    d = verdicts.smoke_guard(verdicts.Decision(R, "r"), "smoke")
    assert d.verdict == I and "reproduced" in d.reason
    assert verdicts.smoke_guard(verdicts.Decision(R, "r"), "quick").verdict == R


def test_borderline_near_threshold_only():
    rule = Superiority("x", min_effect=0.1)
    assert verdicts.borderline(rule, _m(0.11, 0.3), {"x": 0.02})
    assert not verdicts.borderline(rule, _m(0.2, 0.3), {"x": 0.02})
    big = AllOf(tuple(Direction(f"m{i}", "+") for i in range(6)))  # 3^12 > max_grid: sampled path
    ms = {f"m{i}": metrics.metric(0.5, 0.4, 0.6, 3, "t") for i in range(6)}
    assert not verdicts.borderline(big, ms, {f"m{i}": 0.1 for i in range(6)})
    ms["m3"] = metrics.metric(0.1, 0.05, 0.15, 3, "t")
    assert verdicts.borderline(big, ms, {f"m{i}": 0.1 for i in range(6)})
    with pytest.raises(ValueError, match="delta"):
        verdicts.borderline(rule, _m(0.1, 0.2), {})


def test_pre_registration_hash_changes_with_a_rule():
    a = {"g": Superiority("x", min_effect=0.1).spec()}
    b = {"g": Superiority("x", min_effect=0.11).spec()}
    assert verdicts.pre_registration_hash(a) == verdicts.pre_registration_hash(json.loads(json.dumps(a)))
    assert verdicts.pre_registration_hash(a) != verdicts.pre_registration_hash(b)
