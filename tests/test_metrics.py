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
