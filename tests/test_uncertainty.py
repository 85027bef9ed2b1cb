"""Estimators of nup_utils.uncertainty against closed forms, quadrature and exact invariants."""

import math

import pytest
import torch

from nup_utils import attacks, models
from nup_utils import uncertainty as U

BOX1 = U.Box([0.0], [1.0])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- closed forms (quadrature is exact here)
def test_linear_loss_state_closed_form():
    # psi ~ x on [0,1]: x_bar = 3/4, dx^2 = 3/80, dp^2 = 3, C = 1/4, B = 3/4
    q = U.quadrature(lambda x: x[:, 0], BOX1, nodes=16, states=("loss",))["loss"]
    assert float(q["x_mean"]) == pytest.approx(0.75, abs=1e-12)
    assert float(q["dx"]) == pytest.approx(math.sqrt(3 / 80), abs=1e-12)
    assert float(q["dp"]) == pytest.approx(math.sqrt(3), abs=1e-12)
    assert float(q["product"]) == pytest.approx(3 / math.sqrt(80), abs=1e-12)
    assert float(q["half_c"]) == pytest.approx(0.125, abs=1e-12)
    assert float(q["boundary"]) == pytest.approx(0.75, abs=1e-12)


def test_linear_loss_exp_state_closed_form():
    # rho ~ exp(-k x) on [0,1]: g = k constant, so dp = k/2, C = Cov(x, g) = 0, B = 1;
    # dx^2 = variance of the exponential distribution truncated to [0,1]
    k = 3.0
    q = U.quadrature(lambda x: k * x[:, 0], BOX1, nodes=64, states=("exp",))["exp"]
    m1 = 1 / k - math.exp(-k) / (1 - math.exp(-k))
    m2 = (2 / k**2 - math.exp(-k) * (1 + 2 / k + 2 / k**2)) / (1 - math.exp(-k))
    assert float(q["x_mean"]) == pytest.approx(m1, abs=1e-10)
    assert float(q["dx"]) == pytest.approx(math.sqrt(m2 - m1**2), abs=1e-10)
    assert float(q["dp"]) == pytest.approx(k / 2, abs=1e-12)
    assert float(q["half_c"]) == pytest.approx(0.0, abs=1e-12)
    assert float(q["boundary"]) == pytest.approx(1.0, abs=1e-12)


def test_constant_loss_gives_uniform_state_and_zero_momentum():
    est = U.UncertaintyEstimator(n_samples=4000, batch_size=1000)
    res = est(lambda x: torch.ones(len(x), dtype=x.dtype) + 0 * x.sum(1), U.pixel_box(3), gen())
    for e in res.values():
        assert torch.all(e["dp"] == 0) and torch.all(e["product"] == 0) and torch.all(e["half_c"] == 0)
        assert torch.allclose(
            e["dx"], torch.full((3,), 1 / math.sqrt(12), dtype=torch.float64), atol=5 * float(e.se["dx"].max()) + 1e-3
        )
        assert e.ess == pytest.approx(4000)  # equal weights


@pytest.mark.parametrize("state", U.STATES)
def test_gaussian_state_is_minimum_uncertainty(state):
    mu, sigma = torch.tensor([0.5, 0.45]), 0.07
    loss = U.gaussian_loss(mu, sigma, state)
    q = U.quadrature(loss, U.pixel_box(2), nodes=96, states=(state,))[state]
    assert torch.allclose(q["dx"], torch.full((2,), sigma, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(q["dp"], torch.full((2,), 1 / (2 * sigma), dtype=torch.float64), atol=1e-4)
    assert torch.allclose(q["product"], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(q["half_c"], q["product"], atol=1e-6)  # equality in Cauchy-Schwarz
    mc = U.UncertaintyEstimator(n_samples=32768, batch_size=8192)(loss, U.pixel_box(2), gen(1))[state]
    assert torch.all((mc["product"] - 0.5).abs() < 4 * mc.se["product"] + 1e-3)
    assert float(mc.se["product"].max()) < 0.02


def test_gaussian_with_importance_sampling_in_8d():
    mu = torch.full((8,), 0.5)
    sampler = U.DataMixtureSampler(mu[None], sigma=0.1, defensive=0.1)
    for state in U.STATES:
        e = U.UncertaintyEstimator(n_samples=8192, batch_size=4096, sampler=sampler)(
            U.gaussian_loss(mu, 0.08, state), U.pixel_box(8), gen(2)
        )[state]
        assert abs(float(e["product"].mean()) - 0.5) < 4 * float(e.se["product"].mean()) / math.sqrt(8) + 0.01
        assert e.ess > 500


# ---------------------------------------------------------------- Monte Carlo vs quadrature
@pytest.mark.parametrize("dim", [1, 2])
def test_logistic_mc_agrees_with_quadrature(dim):
    w = torch.tensor([4.0, -3.0][:dim])
    loss = U.logistic_loss(w, 0.5, y=1)
    quad = U.quadrature(loss, U.pixel_box(dim), nodes=64)
    mc = U.UncertaintyEstimator(n_samples=32768, batch_size=8192, groups=16)(loss, U.pixel_box(dim), gen(3))
    for state in U.STATES:
        for name in ("dx", "dp", "product", "half_c"):
            diff = (mc[state][name] - quad[state][name]).abs()
            assert torch.all(diff < 4.5 * mc[state].se[name] + 1e-4), (state, name, diff, mc[state].se[name])


@pytest.mark.parametrize("state", U.STATES)
def test_boundary_term_matches_integration_by_parts(state):
    loss = U.logistic_loss(torch.tensor([5.0]), -2.0)
    q = U.quadrature(loss, BOX1, nodes=128, states=(state,))[state]
    assert float(q["boundary"]) == pytest.approx(U.boundary_term_1d(loss, 0.0, 1.0, state), abs=1e-9)
    assert float(q["product"]) < 0.5  # the naive bound fails on the box for this ordinary loss


def test_data_mixture_density_integrates_to_one():
    s = U.DataMixtureSampler(torch.tensor([[0.2, 0.9], [0.6, 0.4]]), sigma=0.15, defensive=0.2)
    t = torch.linspace(0.0025, 0.9975, 200, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    assert float(torch.exp(s.log_q(grid, U.pixel_box(2))).mean()) == pytest.approx(1.0, abs=2e-3)
    x, logq = s(1000, U.pixel_box(2), gen())
    assert x.min() >= 0 and x.max() <= 1 and torch.allclose(logq, s.log_q(x, U.pixel_box(2)))


# ---------------------------------------------------------------- networks: invariants and determinism
def tiny_cnn():
    torch.manual_seed(0)
    return models.small_cnn(width=2, hidden=8).eval()


def test_cauchy_schwarz_holds_for_every_component_of_a_network():
    model = tiny_cnn()
    est = U.UncertaintyEstimator(n_samples=256, batch_size=128, groups=8)
    maps = U.class_maps(model, (1, 28, 28), [0, 3], est, U.pixel_box(784), seed=0)
    for state in U.STATES:
        f = U.bound_fractions(maps[state])
        assert f["general_holds"] == 1.0 and f["boundary_explains"] == 1.0
        v = maps[state]["values"]
        assert v["product"].shape == (2, 784)
        assert torch.all(v["product"] - v["half_c"] >= -1e-9 * (1 + v["half_c"]))
        assert torch.allclose((1 - v["boundary"]).abs() / 2, v["half_c"])


def test_same_seed_same_numbers_and_importance_option():
    model = tiny_cnn()
    est = U.UncertaintyEstimator(n_samples=128, batch_size=64, groups=4)
    a = U.class_maps(model, (1, 28, 28), [1], est, U.pixel_box(784), seed=5)
    b = U.class_maps(model, (1, 28, 28), [1], est, U.pixel_box(784), seed=5)
    c = U.class_maps(model, (1, 28, 28), [1], est, U.pixel_box(784), seed=6)
    assert torch.equal(a["loss"]["values"]["product"], b["loss"]["values"]["product"])
    assert not torch.equal(a["loss"]["values"]["product"], c["loss"]["values"]["product"])
    centres = torch.rand(3, 784, generator=gen())
    d = U.class_maps(
        model,
        (1, 28, 28),
        [1],
        est,
        U.pixel_box(784),
        seed=5,
        sampler_for_class=lambda k: U.DataMixtureSampler(centres, sigma=0.1),
    )
    assert torch.isfinite(d["exp"]["values"]["product"]).all() and float(d["exp"]["ess"][0]) >= 1.0


def test_one_backward_per_batch():
    calls = []

    def loss(x):
        calls.append(len(x))
        return (x**2).sum(1)

    U.UncertaintyEstimator(n_samples=1000, batch_size=300, groups=4)(loss, U.pixel_box(2), gen())
    assert calls == [300, 300, 300, 100]


# ---------------------------------------------------------------- bad input and repr
def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="states"):
        U.UncertaintyEstimator(n_samples=100, states=("momentum",))
    with pytest.raises(ValueError, match="n_samples"):
        U.UncertaintyEstimator(n_samples=0)
    with pytest.raises(ValueError, match="groups"):
        U.UncertaintyEstimator(n_samples=4, groups=8)
    with pytest.raises(ValueError, match="hi > lo"):
        U.Box([0.0], [0.0])
    with pytest.raises(ValueError, match="defensive"):
        U.DataMixtureSampler(torch.zeros(1, 2), sigma=0.1, defensive=0.0)
    with pytest.raises(ValueError, match="sigma"):
        U.DataMixtureSampler(torch.zeros(1, 2), sigma=-1.0)
    with pytest.raises(ValueError, match="dim <= 3"):
        U.quadrature(lambda x: x.sum(1), U.pixel_box(4))
    with pytest.raises(ValueError, match="non-negative loss"):
        U.UncertaintyEstimator(n_samples=8, groups=2, states=("loss",))(lambda x: x.sum(1) - 10, U.pixel_box(2), gen())
    with pytest.raises(ValueError, match="label"):
        U.model_loss(tiny_cnn(), -1, (1, 28, 28))
    with pytest.raises(ValueError, match="state"):
        U.gaussian_loss(torch.zeros(2), 0.1, "psi")


def test_repr_shows_constants():
    r = repr(
        U.UncertaintyEstimator(
            n_samples=100,
            batch_size=50,
            groups=5,
            sampler=U.DataMixtureSampler(torch.zeros(2, 3), sigma=0.2, defensive=0.3),
        )
    )
    for s in ("n_samples=100", "batch_size=50", "groups=5", "sigma=0.2", "defensive=0.3", "centres=2"):
        assert s in r


def test_train_with_checkpoints_keeps_init_and_uses_cache():
    gen_data = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 28, 28, generator=gen_data), torch.randint(0, 10, (40,), generator=gen_data)

    def build():
        torch.manual_seed(3)
        return models.small_cnn(width=2, hidden=8)

    kw = dict(
        checkpoint_epochs=(1, 2), device="cpu", epochs=2, batch_size=8, lr=0.05, seed=0, augment_ops=(), progress=False
    )
    model, ckpts, hist, hit = U.train_with_checkpoints("t01", {"x": "rand40"}, build, x, y, **kw)
    assert sorted(ckpts) == [0, 1, 2] and not hit
    fresh = build().state_dict()
    assert all(torch.equal(ckpts[0][k], fresh[k]) for k in fresh)  # epoch 0 is the initialization
    assert all(torch.equal(ckpts[2][k], v) for k, v in model.state_dict().items())  # last = final weights
    _, ckpts2, _, hit2 = U.train_with_checkpoints("t01", {"x": "rand40"}, build, x, y, **kw)
    assert hit2 and all(torch.equal(ckpts2[1][k], ckpts[1][k]) for k in fresh)
    correct = U.robustness(model, x[:10], y[:10], {"fgsm": attacks.FGSM(eps=0.0)})
    assert torch.equal(correct["clean"], correct["fgsm"])  # eps = 0 changes nothing


def test_compared_checkpoints_rule():
    acc = {0: 0.10, 1: 0.55, 2: 0.84, 4: 0.92, 8: 0.93}
    assert U.compared_checkpoints(acc, 0.05) == (4, 8)  # first within 5 points of 0.93
    assert U.compared_checkpoints(acc, 0.10) == (2, 8)
    assert U.compared_checkpoints(acc, 0.5) == (1, 8)  # epoch 0 (initialization) is never compared
    assert U.compared_checkpoints(acc, 0.0) == (4, 8)  # none within 0 -> the one before the last
    assert U.compared_checkpoints({0: 0.1, 3: 0.8}, 0.05) == (3, 3)  # one trained checkpoint
    assert U.compared_checkpoints({4: 0.92, 1: 0.90, 8: 0.93}, 0.05) == (1, 8)  # order of the dict is irrelevant
    for bad in (-0.1, 1.0, float("nan"), "0.05"):
        with pytest.raises(ValueError, match="within="):
            U.compared_checkpoints(acc, bad)
    with pytest.raises(ValueError, match="no trained checkpoint"):
        U.compared_checkpoints({0: 0.1}, 0.05)
