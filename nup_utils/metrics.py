"""Metrics that carry their uncertainty.

Every headline metric is a dict ``{"value": v, "ci95": [lo, hi], "n": n, "method": ...}`` (see
:func:`metric`), which is the shape ``results.write_results`` requires.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats

from . import dryrun

BOOT_STEPS = 8  # resamples a dry run draws per bootstrap (dryrun.loop): the first is warm-up, the rest are timed


def _as_np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def metric(value: float, lo: float, hi: float, n: int, method: str, **extra) -> dict:
    """The one shape of a reported number: value with a 95% interval, sample size and method."""
    out = {"value": float(value), "ci95": [float(lo), float(hi)], "n": int(n), "method": method}
    out.update(extra)
    return out


def wilson_ci(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need 0 <= k <= n and n > 0")
    z = stats.norm.ppf(0.5 + conf / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(correct) -> dict:
    """Accuracy of a bool/0-1 vector with its Wilson 95% interval (one model, test-set sampling)."""
    c = _as_np(correct)
    k, n = int(c.sum()), int(c.size)
    lo, hi = wilson_ci(k, n)
    return metric(k / n, lo, hi, n, "wilson")


def mean_ci(values: Sequence[float], conf: float = 0.95) -> dict:
    """Mean with a Student-t interval (e.g. across seeds). One value -> interval [v, v] and std 0, flagged."""
    v = _as_np(values).ravel()
    if v.size == 0:
        raise ValueError("mean_ci of no values")
    m = float(v.mean())
    if v.size == 1:
        return metric(m, m, m, 1, "single-run (no interval)", std=0.0)
    sd = float(v.std(ddof=1))
    half = stats.t.ppf(0.5 + conf / 2, v.size - 1) * sd / math.sqrt(v.size)
    return metric(m, m - half, m + half, v.size, "t-interval", std=sd)


def paired_diff(a: Sequence[float], b: Sequence[float], conf: float = 0.95) -> dict:
    """Mean of a - b over paired runs (same seed) with a t-interval; a p-value when n >= 2."""
    a, b = _as_np(a).ravel(), _as_np(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_diff needs equal lengths, got {a.size} and {b.size}")
    out = mean_ci(a - b, conf)
    out["method"] = "paired " + out["method"]
    if a.size >= 2 and np.std(a - b) > 0:
        out["p_value"] = float(stats.ttest_rel(a, b).pvalue)
    return out


def bootstrap_ci(
    values, stat: Callable[[np.ndarray], float] = np.mean, *, n_boot: int = 2000, seed: int = 0, conf: float = 0.95
) -> dict:
    """Percentile bootstrap interval of ``stat`` over the first axis of ``values``."""
    v = _as_np(values)
    if len(v) == 0:
        raise ValueError("bootstrap_ci of no values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    # a dry run (dryrun.active()) computes the first resamples only and times them: its interval means nothing
    boots = np.array(
        [
            stat(v[idx[b]])
            for b in dryrun.loop(n_boot, "bootstrap resample", steps=BOOT_STEPS, host=True, samples=len(v))
        ]
    )
    lo, hi = np.quantile(boots, [(1 - conf) / 2, (1 + conf) / 2])
    est = stat(v)
    if dryrun.active():  # a few resamples may miss the estimate: keep it inside (plots, invariants); means nothing
        lo, hi = min(lo, est), max(hi, est)
    return metric(est, lo, hi, len(v), f"bootstrap-{n_boot}")


def seed_image_ci(
    per_seed: Callable[[np.ndarray], Sequence[float]],
    n_images: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    conf: float = 0.95,
) -> dict:
    """Mean over seeds of a per-seed statistic on a fixed set of attacked/test images, with an interval
    that carries both sources of variation: training seeds and the sampling of the images.

    ``per_seed(idx)`` returns the statistic of every seed (S,) computed on the images ``idx`` (indices
    into 0..n_images-1; the estimate uses all of them). Seed part: Student-t half-width of the mean
    over seeds (0 with one seed). Image part: a percentile bootstrap over images (the same resampled
    images for every seed and checkpoint, so paired statistics stay paired) of the mean over seeds,
    converted to a standard error. The two half-widths add in quadrature (independent sources)."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 2:
        raise ValueError(f"n_images={n_images!r}; expected an int >= 2")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot={n_boot!r}; expected an int >= 100")
    full = _as_np(per_seed(np.arange(n_images))).ravel()
    if full.size == 0 or not np.all(np.isfinite(full)):
        raise ValueError(f"per_seed returned {full!r}; expected finite values, one per seed")
    s, m = full.size, float(full.mean())
    seed_half = 0.0 if s == 1 else float(stats.t.ppf(0.5 + conf / 2, s - 1) * full.std(ddof=1) / math.sqrt(s))
    rng = np.random.default_rng(seed)
    boots = np.array([np.mean(per_seed(rng.integers(0, n_images, n_images))) for _ in range(n_boot)])
    lo_b, hi_b = np.quantile(boots, [(1 - conf) / 2, (1 + conf) / 2])
    image_half = float(hi_b - lo_b) / 2
    half = math.hypot(seed_half, image_half)
    return metric(
        m,
        m - half,
        m + half,
        s,
        f"t over {s} seeds + image bootstrap-{n_boot} over {n_images} images (in quadrature)",
        n_images=n_images,
        seed_half_width=seed_half,
        image_half_width=image_half,
    )


def index_bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    strata=None,
    n_boot: int = 1000,
    seed: int = 0,
    conf: float = 0.95,
    method: str = "bootstrap",
    **extra,
) -> dict:
    """The project's resampler: a percentile bootstrap of ``stat(idx)``, a float computed from indices
    into 0..n-1, with the indices resampled with replacement, *within each stratum* when ``strata``
    (n,) is given: class labels (AUROC-type metrics keep both classes), group x class cells, or the
    labels of independent samples concatenated (a difference of two groups' means). The estimate is
    ``stat(arange(n))``; the strata are visited in sorted order, so a seed fixes the interval."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}; expected an int >= 1")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}; expected an int >= 1")
    if strata is None:
        cells = [np.arange(n)]
    else:
        st = np.asarray(strata).ravel()
        if st.size != n:
            raise ValueError(f"strata has {st.size} entries for n={n}")
        cells = [np.flatnonzero(st == k) for k in sorted(set(st.tolist()), key=str)]
    rng = np.random.default_rng(seed)
    # a dry run (dryrun.active()) computes the first resamples only and times them: its interval means nothing
    resamples = dryrun.loop(n_boot, "bootstrap resample", steps=BOOT_STEPS, host=True, samples=n, strata=len(cells))
    boots = np.array([stat(np.concatenate([rng.choice(c, c.size) for c in cells])) for _ in resamples])
    lo, hi = np.quantile(boots, [(1 - conf) / 2, (1 + conf) / 2])
    where = "" if strata is None else f" within {len(cells)} strata"
    est = stat(np.arange(n))
    if dryrun.active():  # a few resamples may miss the estimate: keep it inside (plots, invariants); means nothing
        lo, hi = min(lo, est), max(hi, est)
    return metric(est, lo, hi, n, f"{method}-{n_boot}{where}", **extra)


def image_seed_bootstrap(values, *, n_boot: int = 2000, seed: int = 0, conf: float = 0.95) -> dict:
    """Mean of ``values`` (N images, S seeds) with a two-level percentile bootstrap: each replicate
    resamples the images (rows) and, independently, the seeds (columns) with replacement, so the
    interval carries both test-image and training-seed spread. S=1 -> the plain image bootstrap.
    (For a statistic that is not a plain mean over a fixed grid, see ``seed_image_ci``.)"""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"values has shape {v.shape}; expected (N images, S seeds) with N, S >= 1")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}; expected an int >= 1")
    n, s = v.shape
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        rows, cols = rng.integers(0, n, n), rng.integers(0, s, s)
        boots[b] = v[rows][:, cols].mean()
    lo, hi = np.quantile(boots, [(1 - conf) / 2, (1 + conf) / 2])
    return metric(
        float(v.mean()), float(lo), float(hi), n, f"bootstrap-{n_boot} over {n} images x {s} seeds", n_seeds=s
    )


def auroc_value(y, s) -> float:
    """ROC AUC of scores ``s`` for 0/1 labels ``y`` as the Mann-Whitney U statistic (average ranks for
    ties, via scipy.stats.rankdata): equal to scikit-learn's ``roc_auc_score`` (tested), ~20x faster per
    call, which matters inside bootstrap loops (sklearn validates its input on every call)."""
    from scipy.stats import rankdata

    y, s = np.asarray(y).astype(int).ravel(), np.asarray(s, float).ravel()
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both classes present in the labels")
    return float((rankdata(s)[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision_value(y, s) -> float:
    """Average precision, sum over distinct thresholds of (R_n - R_{n-1}) * P_n: equal to scikit-learn's
    ``average_precision_score`` (tied scores form one threshold; tested), fast enough for bootstraps."""
    y, s = np.asarray(y).astype(int).ravel(), np.asarray(s, float).ravel()
    if y.sum() == 0:
        raise ValueError("average precision needs at least one positive label")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ys.size - 1]  # last index of each block of tied scores
    tp = np.cumsum(ys)[last]
    precision, recall = tp / (last + 1), tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(labels, scores, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """ROC AUC with a stratified bootstrap 95% interval. labels: 1 = positive."""
    y, s = _as_np(labels).astype(int).ravel(), _as_np(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if len(np.unique(y)) != 2:
        raise ValueError("roc_auc needs both classes present in labels")
    lo, hi = stratified_bootstrap(y, s, auroc_value, n_boot=n_boot, seed=seed)
    return metric(auroc_value(y, s), lo, hi, y.size, f"stratified-bootstrap-{n_boot}", n_pos=int(y.sum()))


def _group_aurocs(y: np.ndarray, s: np.ndarray, g: np.ndarray, used: Sequence) -> np.ndarray:
    return np.array([auroc_value(y[g == k], s[g == k]) for k in used])


def within_group_auroc_value(labels, scores, groups, *, min_per_class: int = 2) -> float:
    """The point value of ``within_group_auroc`` (no interval), e.g. to choose among scores on validation."""
    return within_group_auroc(labels, scores, groups, min_per_class=min_per_class, n_boot=0)["value"]


def within_group_auroc(
    labels, scores, groups, *, minus=None, n_boot: int = 1000, seed: int = 0, min_per_class: int = 2
) -> dict:
    """AUROC inside each group (e.g. question category), pooled as the n-weighted mean over the groups
    that hold at least ``min_per_class`` of each class; a score that only recognizes the group gets 0.5.
    ``minus``: a second score on the same items; the value is then the paired difference of the two
    pooled AUROCs. 95% percentile interval from a bootstrap that resamples within every group x class
    cell (the same resample for both scores). Groups left out are counted in ``n_excluded``."""
    y, s, g = _as_np(labels).astype(int).ravel(), _as_np(scores).ravel(), np.asarray(groups).ravel()
    s2 = None if minus is None else _as_np(minus).ravel()
    if not (y.shape == s.shape == g.shape) or (s2 is not None and s2.shape != y.shape):
        raise ValueError(f"labels, scores, groups (and minus) differ in length: {y.size}, {s.size}, {g.size}")
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int) or min_per_class < 1:
        raise ValueError(f"min_per_class={min_per_class!r}; expected an int >= 1")
    keys = sorted(set(g.tolist()), key=str)
    used = [k for k in keys if min(int(y[g == k].sum()), int((1 - y[g == k]).sum())) >= min_per_class]
    if not used:
        raise ValueError(f"no group holds >= {min_per_class} items of each class; AUROC within groups is undefined")
    w = np.array([(g == k).sum() for k in used], float)

    def pooled(yy, ss, gg):
        return float(np.sum(w * _group_aurocs(yy, ss, gg, used)) / w.sum())

    def value(idx):
        v = pooled(y[idx], s[idx], g[idx])
        return v if s2 is None else v - pooled(y[idx], s2[idx], g[idx])

    keep = np.flatnonzero(np.isin(g, used))  # items of the groups that count
    if n_boot == 0:  # point value only (within_group_auroc_value)
        return {"value": value(keep)}
    cell = np.array([f"{k}|{c}" for k, c in zip(g[keep], y[keep])])  # resample within group x class
    m = index_bootstrap_ci(lambda i: value(keep[i]), keep.size, strata=cell, n_boot=n_boot, seed=seed)
    lo, hi = m["ci95"]
    per = _group_aurocs(y, s, g, used)
    return metric(
        m["value"],
        lo,
        hi,
        int(w.sum()),
        f"n-weighted mean over {len(used)} groups; bootstrap-{n_boot} within group x class",
        per_group={str(k): {"auroc": float(a), "n": int(n)} for k, a, n in zip(used, per, w)},
        n_excluded=int(y.size - w.sum()),
    )


def stratified_bootstrap(
    y: np.ndarray, s: np.ndarray, stat: Callable, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``stat(y, s)`` resampling within each class of the 0/1 labels y,
    so both classes are always present (ROC AUC, AUPRC, PRR)."""
    y, s = np.asarray(y), np.asarray(s)
    m = index_bootstrap_ci(lambda i: stat(y[i], s[i]), y.size, strata=y, n_boot=n_boot, seed=seed)
    return m["ci95"][0], m["ci95"][1]


def shifted(m: dict, by: float, note: str) -> dict:
    """The same metric and interval moved by ``by`` (a metric relative to a threshold, e.g. AUROC - 0.5);
    ``note`` says what was subtracted and leads the method."""
    return {
        **m,
        "value": m["value"] + by,
        "ci95": [m["ci95"][0] + by, m["ci95"][1] + by],
        "method": f"{note}; {m['method']}",
    }


def fmt(m: dict | None, scale: float = 1.0, digits: int = 2) -> str:
    """'95.63 [94.90, 96.20]' for a metric dict (scale=100 for percentages); 'n/a' for None (a metric
    that could not be computed, e.g. an AUROC without both classes)."""
    if m is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value'] * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
