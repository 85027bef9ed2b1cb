import math

import pytest
import torch

from nup_utils import functions, runtime


def test_ten_targets_with_categories_and_formulas():
    assert functions.KEYS == tuple(f"F{i}" for i in range(1, 11))
    for t in functions.TARGETS:
        assert t.category in functions.CATEGORIES and t.formula and t.name
    assert {t.category for t in functions.TARGETS} == set(functions.CATEGORIES)


@pytest.mark.parametrize("key", functions.KEYS)
def test_shape_dtype_finite_and_bounded(key):
    for dtype in (torch.float32, torch.float64):
        x = torch.linspace(0, 2 * math.pi, 501, dtype=dtype)[:, None]
        y = functions.get(key)(x)
        assert y.shape == x.shape and y.dtype == dtype
        assert torch.isfinite(y).all() and y.abs().max() <= 2.5
        assert y.std() > 0.1  # not a constant


def test_known_values():
    x = torch.tensor([[0.0], [math.pi / 6], [math.pi / 2]], dtype=torch.float64)
    assert functions.get("F2")(x).flatten().tolist() == [1.0, 1.0, -1.0]  # sin 3x = 0, 1, -1
    assert functions.get("F3")(torch.zeros(1, 1)).item() == -1.0
    peak = torch.tensor([[math.pi / 3]], dtype=torch.float64)  # half a period of 2pi/3
    assert functions.get("F4")(peak).item() == pytest.approx(1.0)
    assert functions.get("F4")(torch.zeros(1, 1)).item() == pytest.approx(-1.0)
    centre = torch.tensor([[functions.COMB_CENTRES[2]]], dtype=torch.float64)
    assert functions.get("F10")(centre).item() == pytest.approx(1.0, abs=1e-6)
    assert functions.get("F9")(torch.zeros(1, 1, dtype=torch.float64)).item() == pytest.approx(
        sum(0.5**n for n in range(functions.WEIERSTRASS_TERMS))
    )
    # F7's duty cycle falls along x: the +1 fraction of the first period exceeds that of the last
    x = torch.linspace(0, 2 * math.pi, 4001, dtype=torch.float64)[:, None]
    y = functions.get("F7")(x).flatten()
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert (y[:500] > 0).float().mean() > 0.7 > 0.3 > (y[-500:] > 0).float().mean()


def test_sample_is_deterministic_and_paired_across_dtypes():
    a = functions.sample("F1", 50, 10, runtime.make_generator(3))
    b = functions.sample("F1", 50, 10, runtime.make_generator(3))
    c = functions.sample("F1", 50, 10, runtime.make_generator(3), dtype=torch.float64)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert torch.allclose(a[0].double(), c[0], atol=1e-6)
    x_tr, y_tr, x_te, y_te = a
    assert x_tr.shape == (50, 1) and x_te.shape == (10, 1) and y_te.shape == (10, 1)
    assert x_tr.min() >= 0 and x_tr.max() <= 2 * math.pi
    step = 2 * math.pi / 10
    assert x_te[0].item() == pytest.approx(step / 2) and x_te[-1].item() == pytest.approx(2 * math.pi - step / 2)
    d = functions.sample("F1", 50, 10, runtime.make_generator(4))
    assert not torch.equal(a[0], d[0])


def test_bad_input_errors_name_the_parameter():
    with pytest.raises(ValueError, match="function='F11'.*F1, F2"):
        functions.get("F11")
    with pytest.raises(ValueError, match="n_train"):
        functions.sample("F1", 0, 10, runtime.make_generator(0))
    with pytest.raises(ValueError, match="n_test"):
        functions.sample("F1", 10, 1, runtime.make_generator(0))


@pytest.mark.parametrize("key", ["F2", "F3", "F7"])
@pytest.mark.parametrize("n_test", [100, 10])
def test_no_test_point_on_a_jump(key, n_test):
    """A test x on a discontinuity fixes an MSE floor for every arm: no test point may sit within
    1e-6 of a jump (the target moves by far less than a jump's size across [x - 1e-6, x + 1e-6])."""
    x_te = functions.sample(key, 10, n_test, runtime.make_generator(0), dtype=torch.float64)[2]
    target = functions.get(key)
    assert (target(x_te + 1e-6) - target(x_te - 1e-6)).abs().max() < 0.1
    # and the check can fail: the old grid with both ends hits F2's jumps at multiples of pi/3
    old = torch.linspace(0, 2 * math.pi, 100, dtype=torch.float64)[:, None]
    if key == "F2":
        assert (target(old + 1e-6) - target(old - 1e-6)).abs().max() > 1
