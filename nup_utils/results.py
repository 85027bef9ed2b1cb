"""Results files: ``results/<profile>/NN-name.json``, written atomically, validated on write.

Keys: notebook, profile, claims, params, versions, git_commit, device, data_source, wall_time_s,
tolerance (how close a re-run must come), created (UTC). A claim is
``{id, statement, verdict, metrics, headline, paper_keys, protocol}`` where verdict is one of
:data:`VERDICTS` and every metric carries its uncertainty (the shape of ``metrics.metric``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

from . import paths, runtime

VERDICTS = ("reproduced", "partially_reproduced", "not_reproduced", "inconclusive")
DEFAULT_TOLERANCE = {"abs": 0.02, "rel": 0.10}


def _check_metric(claim_id: str, name: str, m) -> None:
    if not isinstance(m, dict) or "value" not in m or "ci95" not in m:
        raise ValueError(f"claim {claim_id!r}: metric {name!r} must be a dict with 'value' and 'ci95' "
                         f"(use nup_utils.metrics.metric / accuracy / mean_ci / ...), got {m!r}")
    nums = [m["value"], *m["ci95"]]
    if len(m["ci95"]) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in nums):
        raise ValueError(f"claim {claim_id!r}: metric {name!r} needs a finite value and a 2-element finite ci95")


def claim(id: str, statement: str, verdict: str, metrics: dict, *, headline: str | None = None,
          paper_keys: tuple[str, ...] = (), protocol: str = "", reason: str = "") -> dict:
    """One claim's verdict with the metrics it rests on. ``headline`` names the metric shown in tables."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict={verdict!r}; allowed values: {', '.join(VERDICTS)}")
    if not metrics:
        raise ValueError(f"claim {id!r}: a verdict needs the metrics it rests on")
    for name, m in metrics.items():
        _check_metric(id, name, m)
    if headline is not None and headline not in metrics:
        raise ValueError(f"claim {id!r}: headline={headline!r} is not one of its metrics {list(metrics)}")
    from . import paper

    for key in paper_keys:
        paper.get(key)  # raises on an unknown key
    return {"id": id, "statement": statement, "verdict": verdict, "metrics": metrics,
            "headline": headline or next(iter(metrics)), "paper_keys": list(paper_keys),
            "protocol": protocol, "reason": reason}


def write_results(notebook: str, profile: str, claims: list[dict], *, params: dict, data_source: str,
                  wall_time_s: float, device: str, extra: dict | None = None,
                  tolerance: dict | None = None) -> Path:
    """Validate and write ``results/<profile>/<notebook>.json`` atomically; returns the path."""
    if profile not in runtime.PROFILES:
        raise ValueError(f"profile={profile!r}; results are written per resolved profile: {', '.join(runtime.PROFILES)}")
    if not claims:
        raise ValueError("claims is empty: a results file states at least one claim")
    ids = [c["id"] for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {ids}")
    for c in claims:  # re-validate: claims may have been built by hand
        claim(c["id"], c["statement"], c["verdict"], c["metrics"], headline=c.get("headline"),
              paper_keys=tuple(c.get("paper_keys", ())))
    doc = {
        "notebook": notebook, "profile": profile, "claims": claims, "params": params,
        "versions": runtime.versions(), "git_commit": runtime.git_commit(), "device": device,
        "data_source": data_source, "wall_time_s": round(float(wall_time_s), 2),
        "tolerance": tolerance or DEFAULT_TOLERANCE,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "extra": extra or {},
    }
    return paths.atomic_write_json(paths.results_dir(profile) / f"{notebook}.json", doc)


def load_results(profile: str, notebook: str, root: Path | None = None) -> dict | None:
    path = (root or paths.results_root()) / profile / f"{notebook}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def compare(fresh: dict, reference: dict) -> list[str]:
    """Differences that matter between a re-run and the committed results: claim set, verdicts,
    and metric values beyond the reference's stated tolerance. Empty list = reproduced."""
    tol = reference.get("tolerance", DEFAULT_TOLERANCE)
    problems = []
    ref_claims = {c["id"]: c for c in reference["claims"]}
    new_claims = {c["id"]: c for c in fresh["claims"]}
    if set(ref_claims) != set(new_claims):
        problems.append(f"claim ids differ: committed {sorted(ref_claims)} vs fresh {sorted(new_claims)}")
    for cid in sorted(set(ref_claims) & set(new_claims)):
        a, b = new_claims[cid], ref_claims[cid]
        if a["verdict"] != b["verdict"]:
            problems.append(f"{cid}: verdict {a['verdict']!r} != committed {b['verdict']!r}")
        for name, mb in b["metrics"].items():
            ma = a["metrics"].get(name)
            if ma is None:
                problems.append(f"{cid}: metric {name!r} missing")
                continue
            diff = abs(ma["value"] - mb["value"])
            if diff > tol["abs"] + tol["rel"] * abs(mb["value"]):
                problems.append(f"{cid}.{name}: {ma['value']:.6g} vs committed {mb['value']:.6g} "
                                f"(|diff| {diff:.3g} > {tol['abs']} + {tol['rel']}*|ref|)")
    return problems
