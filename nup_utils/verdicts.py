"""Verdict rules: declared before the data, applied to intervals, each returning a verdict and a
one-sentence reason generated from the numbers.

A rule reads the 95% intervals (``ci95``) of named metrics (the shape of
:func:`nup_utils.metrics.metric`) and nothing else, so the same numbers always give the same
verdict, and a re-run can be judged by moving those intervals (:func:`borderline`). Families:

* :class:`Superiority` — an effect at least a declared minimum (optionally a full, paper-sized one);
* :class:`NonInferiority` — a difference no worse than a declared margin;
* :class:`Equivalence` — a difference within ± a margin (two one-sided tests at the 95% interval);
* :class:`Direction` — a qualitative prediction: confirmed / contradicted / unclear;
* :class:`Resolution` — a precision requirement (a measured uncertainty no larger than declared):
  resolved / underpowered; used inside :class:`AllOf` so an estimate too noisy to see the effect
  makes the claim inconclusive instead of letting noise pass for agreement;
* :class:`AllOf` — a conjunction: the weakest component decides;
* :class:`Regime` — a rule that decides only in a declared regime (e.g. a baseline at least as accurate
  as the tier promises): below it the verdict is inconclusive, since the setting says little about the paper's.

Every rule is monotone under widening: a wider interval can only move a verdict towards
``inconclusive`` (reproduced -> partially -> inconclusive, not_reproduced -> inconclusive), so low
power never helps a claim. ``alpha`` is 0.05 everywhere: the intervals are 95% intervals.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, fields

import numpy as np

from . import dryrun

VERDICTS = ("reproduced", "partially_reproduced", "not_reproduced", "inconclusive")
R, P, NR, I = VERDICTS  # noqa: E741
ALPHA = 0.05
_RANK = {NR: 0, I: 1, P: 2, R: 3}  # AllOf takes the minimum in this order (see its docstring)


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r}; allowed values: {', '.join(VERDICTS)}")


def _num(x: float, scale: float, unit: str) -> str:
    v = x * scale
    a = abs(v)
    s = f"{v:+.3g}" if a and (a < 1e-2 or a >= 1e4) else f"{v:+.3f}" if a < 10 else f"{v:+.4g}"
    return s + unit


class Rule:
    """Base class: a leaf rule reads one metric's interval. Subclasses are frozen dataclasses."""

    family = "rule"

    def decide(self, metrics: dict) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def metric_names(self) -> tuple[str, ...]:
        return (self.metric,)

    def outcomes(self) -> tuple[str, ...]:
        return (R, NR, I)

    def spec(self) -> dict:
        out = {"family": self.family, "alpha": ALPHA}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    # shared by leaf rules
    def _interval(self, metrics: dict) -> tuple[float, float, float]:
        if self.metric not in metrics:
            raise ValueError(f"{self!r}: metric {self.metric!r} not found; available: {', '.join(metrics) or 'none'}")
        m = metrics[self.metric]
        lo, hi = (float(v) for v in m["ci95"])
        value = float(m.get("value", (lo + hi) / 2))
        if not all(math.isfinite(v) for v in (lo, hi, value)):
            raise ValueError(f"{self!r}: metric {self.metric!r} has a non-finite interval {m['ci95']}")
        if lo > hi:
            raise ValueError(f"{self!r}: metric {self.metric!r} has ci95 lower end {lo} above upper end {hi}")
        return value, lo, hi

    def _show(self, value, lo, hi) -> str:
        f = lambda x: _num(x, self.scale, self.unit)  # noqa: E731
        return f"{self.label or self.metric} {f(value)} [{f(lo)}, {f(hi)}]"

    def _fmt(self, x) -> str:
        return _num(x, self.scale, self.unit)


def _check_common(rule) -> None:
    if not isinstance(rule.metric, str) or not rule.metric:
        raise ValueError(f"metric={rule.metric!r}; expected the name of a metric (a non-empty string)")
    if not (isinstance(rule.scale, (int, float)) and rule.scale > 0):
        raise ValueError(f"scale={rule.scale!r}; expected a positive number (display only)")


@dataclass(frozen=True)
class Superiority(Rule):
    """Higher is better (a gain, a relative reduction). ``lo >= full_effect`` -> reproduced;
    ``lo >= min_effect`` -> reproduced (partially_reproduced when a full effect is declared);
    ``hi < min_effect`` -> not_reproduced; otherwise inconclusive ("underpowered" when the interval
    is wider than the minimum effect)."""

    metric: str
    min_effect: float
    full_effect: float | None = None
    label: str = ""
    scale: float = 1.0
    unit: str = ""
    family = "superiority"

    def __post_init__(self):
        _check_common(self)
        if not (isinstance(self.min_effect, (int, float)) and math.isfinite(self.min_effect) and self.min_effect > 0):
            raise ValueError(
                f"min_effect={self.min_effect!r}; expected a finite number > 0 (the smallest effect that matters)"
            )
        if self.full_effect is not None and not (
            isinstance(self.full_effect, (int, float)) and self.full_effect >= self.min_effect
        ):
            raise ValueError(
                f"full_effect={self.full_effect!r}; expected None or a number >= min_effect={self.min_effect}"
            )

    def outcomes(self):
        return (R, NR, I) if self.full_effect is None else (R, P, NR, I)

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        shown, m = self._show(value, lo, hi), self._fmt(self.min_effect)
        if self.full_effect is not None and lo >= self.full_effect:
            return Decision(R, f"{shown}: lower end clears the full effect {self._fmt(self.full_effect)}")
        if lo >= self.min_effect:
            if self.full_effect is None:
                return Decision(R, f"{shown}: lower end clears the declared minimum effect {m}")
            return Decision(
                P,
                f"{shown}: lower end clears the minimum effect {m} but not the full effect "
                f"{self._fmt(self.full_effect)}",
            )
        if hi < self.min_effect:
            why = (
                "contradicted: the effect goes the other way" if hi < 0 else "the effect is below the declared minimum"
            )
            return Decision(NR, f"{shown}: upper end below the minimum effect {m} ({why})")
        if hi - lo > self.min_effect:
            return Decision(I, f"{shown}: underpowered, the interval is wider than the minimum effect {m} and holds it")
        return Decision(I, f"{shown}: the interval straddles the minimum effect {m}")


@dataclass(frozen=True)
class _MarginRule(Rule):
    """Shared fields and checks of the rules with a margin (NonInferiority, Equivalence)."""

    metric: str
    margin: float
    label: str = ""
    scale: float = 1.0
    unit: str = ""

    def __post_init__(self):
        _check_common(self)
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"margin={self.margin!r}; expected a finite number > 0")


@dataclass(frozen=True)
class NonInferiority(_MarginRule):
    """``metric`` = treatment - reference, higher better. ``lo > -margin`` -> reproduced ("no worse
    than the reference by more than the margin"); ``hi < -margin`` -> not_reproduced; else inconclusive."""

    family = "non_inferiority"

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        shown, m = self._show(value, lo, hi), self._fmt(-self.margin)
        if lo > -self.margin:
            return Decision(R, f"{shown}: lower end above the non-inferiority margin {m}")
        if hi < -self.margin:
            return Decision(
                NR, f"{shown}: upper end below the non-inferiority margin {m} (worse by more than the margin)"
            )
        return Decision(I, f"{shown}: the interval holds the non-inferiority margin {m}")


@dataclass(frozen=True)
class Equivalence(_MarginRule):
    """Two one-sided tests at the 95% interval: ``-margin < lo`` and ``hi < margin`` ->
    reproduced; the interval entirely beyond ±margin -> not_reproduced; else inconclusive."""

    family = "equivalence"

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        shown, m = self._show(value, lo, hi), self._fmt(self.margin).lstrip("+")
        if -self.margin < lo and hi < self.margin:
            return Decision(R, f"{shown}: inside the equivalence margin ±{m}")
        if lo >= self.margin or hi <= -self.margin:
            return Decision(NR, f"{shown}: entirely outside the equivalence margin ±{m}")
        return Decision(I, f"{shown}: reaches beyond the equivalence margin ±{m}")


@dataclass(frozen=True)
class Direction(Rule):
    """Qualitative prediction of a sign. ``expected="+"``: ``lo > 0`` confirmed (reproduced),
    ``hi < 0`` contradicted (not_reproduced), else unclear (inconclusive); ``"-"`` mirrored."""

    metric: str
    expected: str
    label: str = ""
    scale: float = 1.0
    unit: str = ""
    family = "direction"

    def __post_init__(self):
        _check_common(self)
        if self.expected not in ("+", "-"):
            raise ValueError(f"expected={self.expected!r}; allowed values: '+', '-'")

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        shown = self._show(value, lo, hi)
        sign = 1 if self.expected == "+" else -1
        words = "above 0" if sign > 0 else "below 0"
        if lo > 0 if sign > 0 else hi < 0:
            return Decision(R, f"{shown}: confirmed, the interval lies {words} as predicted")
        if hi < 0 if sign > 0 else lo > 0:
            return Decision(NR, f"{shown}: contradicted, the interval lies on the other side of 0")
        return Decision(I, f"{shown}: unclear, the interval holds 0")


@dataclass(frozen=True)
class Resolution(Rule):
    """A precision requirement. ``metric`` measures an uncertainty (e.g. the median 95% half-width of
    per-component estimates); ``hi <= max_value`` -> reproduced ("resolved"), else inconclusive
    ("underpowered"). It never returns not_reproduced: imprecision is not evidence against a claim."""

    metric: str
    max_value: float
    label: str = ""
    scale: float = 1.0
    unit: str = ""
    family = "resolution"

    def __post_init__(self):
        _check_common(self)
        if not (isinstance(self.max_value, (int, float)) and math.isfinite(self.max_value) and self.max_value > 0):
            raise ValueError(f"max_value={self.max_value!r}; expected a finite number > 0 (the declared resolution)")

    def outcomes(self):
        return (R, I)

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        shown, m = self._show(value, lo, hi), self._fmt(self.max_value)
        if hi <= self.max_value:
            return Decision(R, f"{shown}: resolved, the upper end is within the declared resolution {m}")
        return Decision(I, f"{shown}: underpowered, the upper end exceeds the declared resolution {m}")


@dataclass(frozen=True)
class AllOf(Rule):
    """Conjunction. With the order not_reproduced < inconclusive < partially < reproduced, the
    verdict is the minimum over the components: any not_reproduced decides; else any inconclusive;
    else any partially; else reproduced. Monotone because each component is."""

    rules: tuple
    name: str = ""
    family = "all_of"

    def __post_init__(self):
        if not isinstance(self.rules, tuple) or not self.rules or not all(isinstance(r, Rule) for r in self.rules):
            raise ValueError(f"rules={self.rules!r}; expected a non-empty tuple of verdicts.Rule")

    def metric_names(self):
        return tuple(dict.fromkeys(n for r in self.rules for n in r.metric_names()))

    def outcomes(self):
        return tuple(v for v in VERDICTS if any(v in r.outcomes() for r in self.rules))

    def spec(self):
        return {"family": self.family, "alpha": ALPHA, "name": self.name, "rules": [r.spec() for r in self.rules]}

    def decide(self, metrics):
        decisions = [r.decide(metrics) for r in self.rules]
        worst = min(decisions, key=lambda d: _RANK[d.verdict])
        others = "; ".join(d.reason for d in decisions if d is not worst)
        lead = f"{self.name + ': ' if self.name else ''}decided by: {worst.reason}"
        return Decision(worst.verdict, lead + (f" (others: {others})" if others else ""))


@dataclass(frozen=True)
class Regime(Rule):
    """``rule`` decides only when the run is in the declared regime: the lower end of ``metric``'s interval
    (e.g. the standard arm's clean accuracy) at least ``floor``; otherwise inconclusive, with what the rule
    would have said. It reads the lower end, so a wider interval can only leave the regime (monotone)."""

    rule: Rule
    metric: str
    floor: float
    label: str = ""
    scale: float = 1.0
    unit: str = ""
    family = "regime"

    def __post_init__(self):
        _check_common(self)
        if not isinstance(self.rule, Rule):
            raise ValueError(f"rule={self.rule!r}; expected a verdicts.Rule")
        if not (isinstance(self.floor, (int, float)) and math.isfinite(self.floor)):
            raise ValueError(f"floor={self.floor!r}; expected a finite number (the regime's lower bound)")

    def metric_names(self):
        return tuple(dict.fromkeys((*self.rule.metric_names(), self.metric)))

    def outcomes(self):
        return tuple(v for v in VERDICTS if v in self.rule.outcomes() or v == I)

    def spec(self):
        return {
            "family": self.family, "alpha": ALPHA, "rule": self.rule.spec(), "metric": self.metric,
            "floor": self.floor, "label": self.label, "scale": self.scale, "unit": self.unit,
        }  # fmt: skip

    def decide(self, metrics):
        value, lo, hi = self._interval(metrics)
        inner = self.rule.decide(metrics)
        if lo >= self.floor:
            return inner
        return Decision(
            I,
            f"outside the declared regime: {self._show(value, lo, hi)}, lower end below {self._fmt(self.floor)[1:]}; "
            f"the rule would say {inner.verdict} ({inner.reason})",
        )


FAMILIES = {c.family: c for c in (Superiority, NonInferiority, Equivalence, Direction, Resolution, AllOf, Regime)}


def from_spec(spec: dict) -> Rule:
    """Rebuild a rule from :meth:`Rule.spec` (e.g. from a results file)."""
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}; allowed values: {', '.join(FAMILIES)}")
    if family == "all_of":
        return AllOf(tuple(from_spec(s) for s in spec["rules"]), name=spec.get("name", ""))
    if family == "regime":
        keys = ("metric", "floor", "label", "scale", "unit")
        return Regime(from_spec(spec["rule"]), **{k: spec[k] for k in keys if k in spec})
    cls = FAMILIES[family]
    return cls(**{f.name: spec[f.name] for f in fields(cls) if f.name in spec})


def smoke_guard(decision: Decision, profile: str) -> Decision:
    """A smoke run, or a dry run of any profile (:mod:`dryrun`), exercises code paths only: never a verdict."""
    if dryrun.active():
        return Decision(
            I, f"dry run: loops cut to their first steps, no verdict (the rule would say {decision.verdict})"[:200]
        )
    if profile != "smoke":
        return decision
    return Decision(I, f"smoke run: code path only, no verdict (the rule would say {decision.verdict})")


def _moved(metrics: dict, names, shifts) -> dict:
    out = dict(metrics)
    for k, name in enumerate(names):
        lo, hi = metrics[name]["ci95"]
        a, b = lo + shifts[2 * k], hi + shifts[2 * k + 1]
        out[name] = {**metrics[name], "ci95": [min(a, b), max(a, b)]}
    return out


def borderline(rule: Rule, metrics: dict, delta: dict, *, max_grid: int = 6561, seed: int = 0) -> bool:
    """True when moving any interval end point of the rule's metrics by up to ``delta[name]`` (each
    end point independently) can change the verdict. Exhaustive over {-d, 0, +d} per end point when
    3^(2n) <= max_grid; otherwise one-at-a-time moves, all corners' extremes and 2,000 seeded random
    corners."""
    names = rule.metric_names()
    missing = [n for n in names if n not in delta]
    if missing:
        raise ValueError(f"delta lacks {missing}; give an allowed shift for every metric the rule reads")
    base = rule.decide(metrics).verdict
    steps = [(-delta[n], 0.0, delta[n]) for n in names for _ in range(2)]  # (lo, hi) per metric
    if 3 ** len(steps) <= max_grid:
        candidates = itertools.product(*steps)
    else:
        rng = np.random.default_rng(seed)
        one = [
            tuple(s if j == i else 0.0 for j in range(len(steps)))
            for i in range(len(steps))
            for s in (steps[i][0], steps[i][2])
        ]
        corners = [
            tuple(st[0] for st in steps),
            tuple(st[2] for st in steps),
            tuple(st[k % 2 * 2] for k, st in enumerate(steps)),
            tuple(st[(k + 1) % 2 * 2] for k, st in enumerate(steps)),
        ]
        rand = [tuple(st[c] for st, c in zip(steps, row)) for row in rng.integers(0, 3, size=(2000, len(steps)))]
        candidates = itertools.chain(one, corners, rand)
    return any(rule.decide(_moved(metrics, names, s)).verdict != base for s in candidates)


def pre_registration_hash(declaration: dict) -> str:
    """16-hex sha256 of a JSON rendering of the declared rules (sorted keys)."""
    return hashlib.sha256(json.dumps(declaration, sort_keys=True, default=repr).encode()).hexdigest()[:16]
