import math

import numpy as np
import pytest

from nup_utils import metrics


def test_wilson_known_values():
    lo, hi = metrics.wilson_ci(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.31  # 0.2775 for z=1.96
    lo, hi = metrics.wilson_ci(50, 100)
    assert abs((lo + hi) / 2 - 0.5) < 1e-9 and 0.40 < lo < 0.41
    with pytest.raises(ValueError):
        metrics.wilson_ci(11, 10)


def test_accuracy_shape():
    m = metrics.accuracy(np.array([1, 1, 0, 1]))
    assert m["value"] == 0.75 and m["n"] == 4 and m["ci95"][0] < 0.75 < m["ci95"][1]


def test_mean_ci_and_single_value():
    m = metrics.mean_ci([1.0, 2.0, 3.0])
    assert m["value"] == 2.0 and m["ci95"][0] < 2 < m["ci95"][1] and m["std"] == 1.0
    assert abs(m["ci95"][1] - 2 - 4.302653 / np.sqrt(3)) < 1e-5  # t(0.975, 2) = 4.3027
    one = metrics.mean_ci([5.0])
    assert one["ci95"] == [5.0, 5.0] and "single" in one["method"]


def test_paired_diff():
    d = metrics.paired_diff([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])
    assert abs(d["value"] - 0.1) < 1e-9 and d["ci95"][0] > 0 and d["p_value"] < 0.05
    with pytest.raises(ValueError):
        metrics.paired_diff([1, 2], [1])


def test_bootstrap_deterministic():
    v = np.arange(20.0)
    a, b = metrics.bootstrap_ci(v, seed=1), metrics.bootstrap_ci(v, seed=1)
    assert a == b and a["ci95"][0] < 9.5 < a["ci95"][1]


def test_roc_auc():
    y = np.array([0, 0, 1, 1, 0, 1])
    perfect = metrics.roc_auc(y, y * 2.0, n_boot=50)
    assert perfect["value"] == 1.0 and perfect["ci95"] == [1.0, 1.0]
    rev = metrics.roc_auc(y, -y.astype(float), n_boot=50)
    assert rev["value"] == 0.0
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc([1, 1], [0.1, 0.2])


def test_fmt():
    assert metrics.fmt(metrics.metric(0.5, 0.4, 0.6, 10, "x"), scale=100, digits=1) == "50.0 [40.0, 60.0]"
    assert metrics.fmt(None) == "n/a"


def test_seed_image_ci_carries_both_sources():
    rng = np.random.default_rng(0)
    correct = rng.random((400, 5)) < 0.7  # 400 images x 5 seeds, accuracy ~0.7

    def per_seed(idx):
        return correct[idx].mean(0)

    m = metrics.seed_image_ci(per_seed, 400, seed=1)
    assert m["value"] == pytest.approx(correct.mean()) and m["n"] == 5 and m["n_images"] == 400
    # the image part alone is about the binomial SE of 2,000 draws; the interval is at least that wide
    assert m["image_half_width"] == pytest.approx(1.96 * math.sqrt(0.21 / 2000), rel=0.35)
    assert m["ci95"][1] - m["value"] >= max(m["image_half_width"], m["seed_half_width"]) - 1e-12
    same = np.repeat(correct[:, :1], 5, axis=1)  # identical seeds: only image sampling remains
    m1 = metrics.seed_image_ci(lambda idx: same[idx].mean(0), 400, seed=1)
    assert m1["seed_half_width"] == 0 and m1["ci95"][1] - m1["value"] == pytest.approx(m1["image_half_width"])
    wilson = metrics.wilson_ci(int(same[:, 0].sum()), 400)
    assert (m1["ci95"][1] - m1["ci95"][0]) == pytest.approx(wilson[1] - wilson[0], rel=0.2)
    assert metrics.seed_image_ci(per_seed, 400, seed=3) == metrics.seed_image_ci(per_seed, 400, seed=3)
    with pytest.raises(ValueError, match="n_images"):
        metrics.seed_image_ci(per_seed, 1)
    with pytest.raises(ValueError, match="per_seed"):
        metrics.seed_image_ci(lambda idx: np.array([np.nan]), 10)


def test_image_seed_bootstrap_includes_seed_spread_and_checks_input():
    base = np.random.default_rng(0).random(200)
    same = metrics.image_seed_bootstrap(base[:, None].repeat(2, 1), seed=3)
    plain = metrics.image_seed_bootstrap(base, seed=3)
    assert abs(same["value"] - base.mean()) < 1e-12 and same["n"] == 200 and same["n_seeds"] == 2
    assert abs(plain["value"] - base.mean()) < 1e-12
    # seeds that disagree by a constant offset widen the interval beyond the image-only one
    spread = metrics.image_seed_bootstrap(base[:, None] + [[-0.2, 0.2]], seed=3)
    assert abs(spread["value"] - base.mean()) < 1e-9
    assert (spread["ci95"][1] - spread["ci95"][0]) > 2 * (same["ci95"][1] - same["ci95"][0])
    assert spread["ci95"][0] < base.mean() < spread["ci95"][1]
    # deterministic for a seed
    assert metrics.image_seed_bootstrap(base, seed=5) == metrics.image_seed_bootstrap(base, seed=5)
    with pytest.raises(ValueError, match="shape"):
        metrics.image_seed_bootstrap(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="n_boot"):
        metrics.image_seed_bootstrap(base, n_boot=0)


def test_index_bootstrap_keeps_strata_and_matches_the_point_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(170)].astype(int)
    s = y + rng.normal(size=200)
    seen = []

    def stat(i):
        seen.append(int(y[i].sum()))
        return float(s[i][y[i] == 1].mean() - s[i][y[i] == 0].mean())

    m = metrics.index_bootstrap_ci(stat, 200, strata=y, n_boot=300, seed=1)
    assert set(seen) == {30}  # every replicate keeps the class sizes
    assert m["value"] == pytest.approx(s[y == 1].mean() - s[y == 0].mean()) and m["ci95"][0] < m["value"] < m["ci95"][1]
    assert "within 2 strata" in m["method"]
    again = metrics.index_bootstrap_ci(stat, 200, strata=y, n_boot=300, seed=1)
    assert again == m
    plain = metrics.index_bootstrap_ci(lambda i: float(s[i].mean()), 200, n_boot=300, seed=1)
    assert plain["ci95"][0] < s.mean() < plain["ci95"][1]
    with pytest.raises(ValueError, match="strata has"):
        metrics.index_bootstrap_ci(stat, 200, strata=y[:-1])
    with pytest.raises(ValueError, match="n="):
        metrics.index_bootstrap_ci(stat, 0)
    with pytest.raises(ValueError, match="n_boot="):
        metrics.index_bootstrap_ci(stat, 200, n_boot=0)


def test_fast_auroc_and_average_precision_equal_sklearn():
    """The rank-based AUROC and the threshold-sum AP used inside bootstrap loops equal scikit-learn's,
    including heavy ties (integer scores) and perfect / reversed orderings."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(4, 200))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]  # both classes
        s = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.normal(size=n) + y * trial / 20
        assert metrics.auroc_value(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert metrics.average_precision_value(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    y = np.array([0, 0, 1, 1])
    assert metrics.auroc_value(y, [0, 1, 2, 3]) == 1.0 and metrics.auroc_value(y, [3, 2, 1, 0]) == 0.0
    assert metrics.auroc_value(y, [1, 1, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        metrics.auroc_value([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="positive"):
        metrics.average_precision_value([0, 0], [0.1, 0.2])


def test_shifted_moves_value_and_interval_and_says_so():
    m = metrics.metric(0.7, 0.6, 0.8, 50, "bootstrap")
    s = metrics.shifted(m, -0.5, "AUROC - 0.5")
    assert s["value"] == pytest.approx(0.2) and s["ci95"] == pytest.approx([0.1, 0.3]) and s["n"] == 50
    assert s["method"] == "AUROC - 0.5; bootstrap" and m["value"] == 0.7  # the input is not modified
