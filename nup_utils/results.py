"""Results files: ``results/<profile>/NN-name.json``, written atomically, validated on write.

Keys: notebook, profile, claims, params, pre_registration (the declared rules and their hash),
versions, git_commit, device, threads, data_source, wall_time_s, tolerance (how close a re-run must
come), created (UTC). A claim is ``{id, statement, verdict, reason, rule, regime, borderline,
metrics, headline, paper_keys, protocol}``: the verdict and its reason come from a declared rule of
:mod:`nup_utils.verdicts` applied to metrics that each carry their uncertainty (the shape of
``metrics.metric``).

Re-runs are compared statistically (:func:`compare`): a metric passes when its value and interval
end points lie within ``k * sqrt(SE_ref^2 + SE_new^2) + abs`` of the committed ones (SE = CI
half-width / 1.96). A verdict may differ only for a claim marked ``borderline`` at write time: one
whose verdict changes when its rule's intervals move within that same tolerance.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
from pathlib import Path

from . import dryrun, paths, runtime, verdicts
from .verdicts import VERDICTS

Z95 = 1.959963984540054
# k: how many combined standard errors a re-run may move (ours: 3, so a consistent re-run fails
# rarely even across the dozens of metrics in a file); abs: a floor for metrics whose interval is
# degenerate (e.g. a fraction that is exactly 0 in every seed), in the metric's own units.
DEFAULT_TOLERANCE = {"k": 3.0, "abs": 1e-3}


def _check_metric(claim_id: str, name: str, m) -> None:
    if not isinstance(m, dict) or "value" not in m or "ci95" not in m:
        raise ValueError(
            f"claim {claim_id!r}: metric {name!r} must be a dict with 'value' and 'ci95' "
            f"(use nup_utils.metrics.metric / accuracy / mean_ci / ...), got {m!r}"
        )
    nums = [m["value"], *m["ci95"]]
    if len(m["ci95"]) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums):
        raise ValueError(f"claim {claim_id!r}: metric {name!r} needs a finite value and a 2-element finite ci95")


def claim(
    id: str,
    statement: str,
    rule,
    metrics: dict,
    *,
    profile: str | None = None,
    headline: str | None = None,
    paper_keys: tuple[str, ...] = (),
    protocol: str = "",
    reason: str = "",
    regime: str = "",
) -> dict:
    """One claim's verdict with the metrics it rests on.

    ``rule`` is a declared :class:`verdicts.Rule`: the verdict and its reason are computed here from
    ``metrics``; with ``profile="smoke"`` (code path only) the verdict is always ``inconclusive`` —
    the one place that guard lives. A verdict string is accepted only for claims that are checks
    rather than tests (no rule; the reason must then be given). ``headline`` names the metric shown
    in tables; ``regime`` says, with this run's numbers, how the setting differs from the paper's."""
    if not metrics:
        raise ValueError(f"claim {id!r}: a verdict needs the metrics it rests on")
    for name, m in metrics.items():
        _check_metric(id, name, m)
    if headline is not None and headline not in metrics:
        raise ValueError(f"claim {id!r}: headline={headline!r} is not one of its metrics {list(metrics)}")
    if profile is not None:
        profile = runtime.resolve_profile(profile)
    if isinstance(rule, verdicts.Rule):
        decision = rule.decide(metrics)
        spec = rule.spec()
    elif isinstance(rule, str):
        if rule not in VERDICTS:
            raise ValueError(f"verdict={rule!r}; allowed values: {', '.join(VERDICTS)}")
        if not reason:
            raise ValueError(f"claim {id!r}: a verdict given without a rule needs its reason")
        decision, spec = verdicts.Decision(rule, reason), None
    else:
        raise ValueError(f"claim {id!r}: rule must be a verdicts.Rule (or a verdict string), got {type(rule).__name__}")
    if profile is not None:
        decision = verdicts.smoke_guard(decision, profile)
    from . import paper

    for key in paper_keys:
        paper.get(key)  # raises on an unknown key
    return {
        "id": id,
        "statement": statement,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "rule": spec,
        "regime": regime,
        "metrics": metrics,
        "headline": headline or next(iter(metrics)),
        "paper_keys": list(paper_keys),
        "protocol": protocol,
        "profile": profile,
    }


def _se(m: dict) -> float:
    lo, hi = m["ci95"]
    return (hi - lo) / (2 * Z95)


def allowed_shift(m_ref: dict, m_new: dict | None, tolerance: dict) -> float:
    """How far a re-run's value or interval end point may move: k * sqrt(SE_ref^2 + SE_new^2) + abs.
    Without the fresh metric (at write time) SE_new is taken equal to SE_ref."""
    se_ref = _se(m_ref)
    se_new = _se(m_new) if m_new is not None else se_ref
    return tolerance["k"] * math.hypot(se_ref, se_new) + tolerance["abs"]


def mark_borderline(c: dict, tolerance: dict) -> dict:
    """Set ``c['borderline']``: True when moving the interval end points of the metrics its rule
    reads by up to :func:`allowed_shift` can change the verdict (so a consistent re-run on another
    machine may legitimately land on another verdict). Smoke claims and rule-less checks: False."""
    c = dict(c)
    if c.get("rule") is None or c.get("profile") == "smoke":
        c["borderline"] = False
        return c
    rule = verdicts.from_spec(c["rule"])
    delta = {n: allowed_shift(c["metrics"][n], None, tolerance) for n in rule.metric_names()}
    c["borderline"] = bool(verdicts.borderline(rule, c["metrics"], delta))
    return c


def verdict_lines(claims: list[dict]) -> str:
    """The stable lines a verdict cell prints: one per claim, 'id: verdict' (+ borderline flag)."""
    return "\n".join(f"{c['id']}: {c['verdict']}" + (" (borderline)" if c.get("borderline") else "") for c in claims)


def write_results(
    notebook: str,
    profile: str,
    claims: list[dict],
    *,
    params: dict,
    data_source: str,
    wall_time_s: float,
    device: str,
    extra: dict | None = None,
    tolerance: dict | None = None,
    rules: dict | None = None,
) -> Path:
    """Validate and write ``results/<profile>/<notebook>.json`` atomically; returns the path.

    ``rules``: the notebook's declared rules ({name: verdicts.Rule}), recorded with a hash so a rule
    changed after a run shows up in the file and in history. ``tolerance``: {"k", "abs"}, see
    :func:`compare`; claims are marked borderline against it (the list passed in is updated too, so
    the verdict cell printed after writing shows the flag)."""
    if profile not in runtime.PROFILES:
        raise ValueError(
            f"profile={profile!r}; results are written per resolved profile: {', '.join(runtime.PROFILES)}"
        )
    if not claims:
        raise ValueError("claims is empty: a results file states at least one claim")
    ids = [c["id"] for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {ids}")
    tol = {**DEFAULT_TOLERANCE, **(tolerance or {})}
    if set(tol) != set(DEFAULT_TOLERANCE) or not (tol["k"] > 0 and tol["abs"] >= 0):
        raise ValueError(f"tolerance={tolerance!r}; expected keys {sorted(DEFAULT_TOLERANCE)} with k > 0, abs >= 0")
    for c in claims:  # re-validate: claims may have been built by hand
        if c.get("verdict") not in VERDICTS:
            raise ValueError(
                f"claim {c.get('id')!r}: verdict={c.get('verdict')!r}; allowed values: {', '.join(VERDICTS)}"
            )
        for name, m in c["metrics"].items():
            _check_metric(c["id"], name, m)
        if (profile == "smoke" or dryrun.active()) and c["verdict"] != "inconclusive":
            kind = "a dry run" if dryrun.active() else "a smoke run"
            raise ValueError(f"claim {c['id']!r}: {kind} states no verdict; pass profile= to results.claim")
        if profile != "smoke" and c.get("rule") is None and not c.get("reason"):
            raise ValueError(f"claim {c['id']!r}: a verdict needs a declared rule (verdicts.Rule) or a reason")
    marked = [mark_borderline(c, tol) for c in claims]
    for c, m in zip(claims, marked):
        c["borderline"] = m["borderline"]
    pre = None
    if rules is not None:
        specs = {name: r.spec() for name, r in rules.items()}
        pre = {"rules": specs, "hash": verdicts.pre_registration_hash(specs)}
    doc = {
        "notebook": notebook,
        "profile": profile,
        "claims": copy.deepcopy(marked),
        "params": params,
        "pre_registration": pre,
        "versions": runtime.versions(),
        "git_commit": runtime.git_commit(),
        "device": device,
        "threads": runtime.threads_info(),
        "data_source": data_source,
        "wall_time_s": round(float(wall_time_s), 2),
        "tolerance": tol,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "extra": extra or {},
    }
    bad = non_finite(doc)
    if bad:  # JSON has no NaN or infinity: name where they are (a dry run's cut loops can make them too)
        raise ValueError(f"{notebook}: non-finite values at {', '.join(bad[:8])}" + (" ..." if len(bad) > 8 else ""))
    if dryrun.active():  # cut loops, padded outputs: never beside a real run's results
        doc["dry_run"] = True
        if paths.results_root() == paths.REPO_ROOT / "results":
            raise ValueError("a dry run writes no results under results/: set NUP_RESULTS_DIR (the runner does)")
    return paths.atomic_write_json(paths.results_dir(profile) / f"{notebook}.json", doc)


def non_finite(obj, where: str = "") -> list[str]:
    """Paths (``extra.summary.rho[2]``) of the NaN and infinite floats in a JSON-like document."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "<root>"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite(v, f"{where}[{i}]")]
    return []


def load_results(profile: str, notebook: str, root: Path | None = None) -> dict | None:
    path = (root or paths.results_root()) / profile / f"{notebook}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def compare(fresh: dict, reference: dict) -> list[str]:
    """Differences that matter between a re-run and the committed results. Empty list = consistent.

    * claim ids must match exactly;
    * each committed metric's value and interval end points must lie within
      ``k * sqrt(SE_ref^2 + SE_new^2) + abs`` of the fresh one (the reference's ``tolerance``);
    * verdicts must match, except for claims the committed file marks ``borderline``."""
    tol = reference.get("tolerance") or {}
    tol = tol if "k" in tol else DEFAULT_TOLERANCE  # a file from before the statistical comparison
    problems = []
    ref_claims = {c["id"]: c for c in reference["claims"]}
    new_claims = {c["id"]: c for c in fresh["claims"]}
    if set(ref_claims) != set(new_claims):
        problems.append(f"claim ids differ: committed {sorted(ref_claims)} vs fresh {sorted(new_claims)}")
    for cid in sorted(set(ref_claims) & set(new_claims)):
        a, b = new_claims[cid], ref_claims[cid]
        if a["verdict"] != b["verdict"] and not b.get("borderline", False):
            problems.append(
                f"{cid}: verdict {a['verdict']!r} != committed {b['verdict']!r} "
                "(the committed claim is not marked borderline)"
            )
        for name, mb in b["metrics"].items():
            ma = a["metrics"].get(name)
            if ma is None:
                problems.append(f"{cid}: metric {name!r} missing")
                continue
            allowed = allowed_shift(mb, ma, tol)
            pairs = (
                ("value", ma["value"], mb["value"]),
                ("ci95[0]", ma["ci95"][0], mb["ci95"][0]),
                ("ci95[1]", ma["ci95"][1], mb["ci95"][1]),
            )
            for what, va, vb in pairs:
                if abs(va - vb) > allowed:
                    problems.append(
                        f"{cid}.{name} {what}: {va:.6g} vs committed {vb:.6g} (|diff| "
                        f"{abs(va - vb):.3g} > {tol['k']}*sqrt(SE_ref^2+SE_new^2) + {tol['abs']} = {allowed:.3g})"
                    )
                    break
    return problems
