"""Estimators of nup_utils.uncertainty against closed forms, quadrature and exact invariants."""

import math

import pytest
import torch

from nup_utils import attacks, models, relation
from nup_utils import uncertainty as U

BOX1 = U.Box([0.0], [1.0])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- closed forms (quadrature is exact here)
def test_linear_loss_state_closed_form():
    # psi ~ x on [0,1]: x_bar = 3/4, dx^2 = 3/80, dp^2 = 3, C = 1/4, B = 3/4
    q = U.quadrature(lambda x: x[:, 0], BOX1, states=("loss",))["loss"]
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
    q = U.quadrature(lambda x: k * x[:, 0], BOX1, states=("exp",))["exp"]
    m1 = 1 / k - math.exp(-k) / (1 - math.exp(-k))
    m2 = (2 / k**2 - math.exp(-k) * (1 + 2 / k + 2 / k**2)) / (1 - math.exp(-k))
    assert float(q["x_mean"]) == pytest.approx(m1, abs=1e-10)
    assert float(q["dx"]) == pytest.approx(math.sqrt(m2 - m1**2), abs=1e-10)
    assert float(q["dp"]) == pytest.approx(k / 2, abs=1e-12)
    assert float(q["half_c"]) == pytest.approx(0.0, abs=1e-12)
    assert float(q["boundary"]) == pytest.approx(1.0, abs=1e-12)


def test_constant_loss_gives_uniform_state_and_zero_momentum():
    est = U.UncertaintyEstimator(n_samples=4000, batch_size=1000, states=U.GAUSSIAN_STATES)
    res = est(lambda x: torch.ones(len(x), dtype=x.dtype) + 0 * x.sum(1), U.pixel_box(3), gen())
    for e in res.values():
        assert torch.all(e["dp"] == 0) and torch.all(e["product"] == 0) and torch.all(e["half_c"] == 0)
        assert torch.allclose(
            e["dx"], torch.full((3,), 1 / math.sqrt(12), dtype=torch.float64), atol=5 * float(e.se["dx"].max()) + 1e-3
        )
        assert e.ess == pytest.approx(4000)  # equal weights


ENVELOPE_P = math.sqrt(math.pi**2 / 9 - 5 / 6)  # sin^2 envelope alone: dx^2 = 1/12 - 5/(8 pi^2), dp^2 = 4 pi^2/3


def test_envelope_state_closed_form_and_vanishing_boundary():
    # constant loss: psi ~ sin^2(pi x) per component, P = sqrt(pi^2/9 - 5/6) = 0.5131 >= 1/2, C = 1, B = 0
    const = lambda x: torch.ones(len(x), dtype=x.dtype) + 0 * x.sum(1)  # noqa: E731
    q = U.quadrature(const, U.pixel_box(2), states=("envelope",))["envelope"]
    assert q.extra["converged"] and torch.all(q.se["product"] > 0)
    assert torch.allclose(q["product"], torch.full((2,), ENVELOPE_P, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(q["boundary"], torch.zeros(2, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(q["dp"], torch.full((2,), 2 * math.pi / math.sqrt(3), dtype=torch.float64), atol=1e-9)
    mc = U.UncertaintyEstimator(n_samples=20000, batch_size=5000, states=("envelope",))(const, U.pixel_box(3), gen(4))
    e = mc["envelope"]
    assert e.ess == pytest.approx(20000)  # the envelope's own proposal: equal weights for a constant loss
    assert torch.all((e["product"] - ENVELOPE_P).abs() < 4 * e.se["product"]) and float(e.se["product"].max()) < 0.02
    assert torch.all(e["boundary"].abs() < 4 * e.se["boundary"] + 1e-3)


def test_envelope_sampler_matches_its_density():
    s, box = U.EnvelopeSampler(), U.Box([-1.0, 2.0], [1.0, 2.5])
    x, logq = s(40000, box, gen(7))
    assert torch.all(x > box.lo) and torch.all(x < box.hi) and torch.allclose(logq, s.log_q(x, box))
    u = (x - box.lo) / (box.hi - box.lo)
    var = 1 / 12 - 1 / (8 * math.pi**2) * 5  # Var of u under sin^4(pi u) / (3/8)
    assert torch.allclose(u.mean(0), torch.full((2,), 0.5, dtype=torch.float64), atol=4 * math.sqrt(var / 40000))
    assert torch.allclose(u.var(0), torch.full((2,), var, dtype=torch.float64), rtol=0.03)
    t = torch.linspace(0.0005, 0.9995, 1000, dtype=torch.float64)  # the density integrates to one
    grid = box.lo + (box.hi - box.lo) * torch.cartesian_prod(t, t)
    assert float(torch.exp(s.log_q(grid, box)).mean() * (box.hi - box.lo).prod()) == pytest.approx(1.0, abs=1e-6)


# steep losses: quadrature against a very fine reference grid (issue #16)
def _reference(psi, dpsi, axes):
    """x_mean, dx, dp, product, boundary per component from Simpson's rule on a tensor grid of the given 1-D
    axes (odd lengths): integrals of psi^2, x psi^2, x^2 psi^2, (d psi)^2 and x psi d psi (not the
    estimators' score form)."""
    import numpy as np
    from scipy.integrate import simpson

    mesh = np.meshgrid(*axes, indexing="ij")
    p = psi(*mesh)

    def integral(f):
        for ax in reversed(axes):
            f = simpson(f, x=ax, axis=-1)
        return float(f)

    norm = integral(p**2)
    out = {k: [] for k in ("x_mean", "dx", "dp", "product", "boundary")}
    for i, dp_i in enumerate(dpsi(*mesh)):
        xm = integral(mesh[i] * p**2) / norm
        var = integral((mesh[i] - xm) ** 2 * p**2) / norm
        dp = math.sqrt(integral(dp_i**2) / norm)
        c = -2 * integral((mesh[i] - xm) * p * dp_i) / norm
        for k, v in zip(out, (xm, math.sqrt(var), dp, math.sqrt(var) * dp, 1 - c)):
            out[k].append(v)
    return out


@pytest.mark.parametrize("k", [10.0, 30.0, 100.0])
def test_quadrature_steep_1d_sigmoid_loss(k):
    # the case: l = 1 - sigmoid(k x) on [-1, 1], psi ~ l
    import numpy as np

    loss = lambda x: 1 - torch.sigmoid(k * x[:, 0])  # noqa: E731
    sig = lambda x: 1 / (1 + np.exp(-k * x))  # noqa: E731
    ref = _reference(lambda x: 1 - sig(x), lambda x: [-k * sig(x) * (1 - sig(x))], [np.linspace(-1, 1, 2**20 + 1)])
    q = U.quadrature(loss, U.Box([-1.0], [1.0]), states=("loss",))["loss"]
    assert q.extra["converged"]
    for name, (want,) in ref.items():
        got, err = float(q[name]), float(q.se[name])
        assert abs(got - want) <= 1e-7 * (1 + abs(want)), (name, got, want)
        assert 0 < err < 1e-5 * (1 + abs(want))
    if k == 100.0:  # a single 64-node Gauss-Legendre rule (the old default) is far off, and the check says so
        assert abs(ref["dp"][0] - 4.10) < 0.01 and abs(ref["boundary"][0] - 0.5) < 0.01
        one = U._quadrature_once(loss, U.Box([-1.0], [1.0]), 1, 64, ("loss",), 65536)["loss"]
        assert abs(float(one["dp"]) - 2.32) < 0.01 and abs(float(one["boundary"]) - 0.646) < 0.01
        with pytest.warns(RuntimeWarning, match="did not converge"):
            chk = U.quadrature(loss, U.Box([-1.0], [1.0]), order=64, panels=1, max_points=128, states=("loss",))
        assert not chk["loss"].extra["converged"] and float(chk["loss"].se["dp"]) > 1.0


@pytest.mark.parametrize("state", U.STATES)
def test_quadrature_steep_2d_logistic_loss(state):
    # l = softplus(-(w.x + b)), |w| = 100, on [0, 1]^2, every state
    import numpy as np

    w, b = np.array([80.0, -60.0]), -10.0
    loss = U.logistic_loss(torch.tensor(w), b)
    t = np.linspace(0, 1, 2**11 + 1)

    def parts(x1, x2):  # psi_tilde and its gradient, analytically
        z = w[0] * x1 + w[1] * x2 + b
        ell, sg = np.logaddexp(0, -z), 1 / (1 + np.exp(z))  # l and -dl/dz
        g = [-w[0] * sg, -w[1] * sg]
        if state == "exp":
            p = np.exp(-ell / 2)
            return p, [-gi / 2 * p for gi in g]
        env = [np.sin(np.pi * x1) ** 2, np.sin(np.pi * x2) ** 2] if state == "envelope" else [1.0, 1.0]
        denv = [2 * np.pi * np.sin(np.pi * x) * np.cos(np.pi * x) for x in (x1, x2)] if state == "envelope" else [0, 0]
        p = ell * env[0] * env[1]
        return p, [g[0] * env[0] * env[1] + ell * denv[0] * env[1], g[1] * env[0] * env[1] + ell * env[0] * denv[1]]

    ref = _reference(lambda *m: parts(*m)[0], lambda *m: parts(*m)[1], [t, t])
    q = U.quadrature(loss, U.pixel_box(2), states=(state,))[state]
    assert q.extra["converged"]
    for name, want in ref.items():
        got = q[name]
        assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-7), (name, got, want)
    if state == "envelope":
        assert torch.all(q["product"] >= 0.5) and torch.allclose(q["boundary"], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("state", U.GAUSSIAN_STATES)
def test_gaussian_state_is_minimum_uncertainty(state):
    mu, sigma = torch.tensor([0.5, 0.45]), 0.07
    loss = U.gaussian_loss(mu, sigma, state)
    q = U.quadrature(loss, U.pixel_box(2), states=(state,))[state]
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
    for state in U.GAUSSIAN_STATES:
        e = U.UncertaintyEstimator(n_samples=8192, batch_size=4096, sampler=sampler, states=(state,))(
            U.gaussian_loss(mu, 0.08, state), U.pixel_box(8), gen(2)
        )[state]
        assert abs(float(e["product"].mean()) - 0.5) < 4 * float(e.se["product"].mean()) / math.sqrt(8) + 0.01
        assert e.ess > 500


# ---------------------------------------------------------------- Monte Carlo vs quadrature
@pytest.mark.parametrize("dim", [1, 2])
def test_logistic_mc_agrees_with_quadrature(dim):
    w = torch.tensor([4.0, -3.0][:dim])
    loss = U.logistic_loss(w, 0.5, y=1)
    quad = U.quadrature(loss, U.pixel_box(dim))
    mc = U.UncertaintyEstimator(n_samples=32768, batch_size=8192, groups=16)(loss, U.pixel_box(dim), gen(3))
    for state in U.STATES:
        for name in ("dx", "dp", "product", "half_c"):
            diff = (mc[state][name] - quad[state][name]).abs()
            assert torch.all(diff < 4.5 * mc[state].se[name] + 1e-4), (state, name, diff, mc[state].se[name])


@pytest.mark.parametrize("state", U.STATES)
def test_boundary_term_matches_integration_by_parts(state):
    loss = U.logistic_loss(torch.tensor([5.0]), -2.0)
    q = U.quadrature(loss, BOX1, states=(state,))[state]
    assert float(q["boundary"]) == pytest.approx(U.boundary_term_1d(loss, 0.0, 1.0, state), abs=1e-9)
    if state == "envelope":  # psi vanishes on the boundary: B = 0 and the naive bound is a theorem
        assert abs(float(q["boundary"])) < 1e-9 and float(q["product"]) >= 0.5
    else:
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

    two = U.UncertaintyEstimator(n_samples=1000, batch_size=300, groups=4, states=("loss", "exp"))
    two(loss, U.pixel_box(2), gen())
    assert calls == [300, 300, 300, 100]  # one proposal (uniform) shared by both states
    calls.clear()
    U.UncertaintyEstimator(n_samples=1000, batch_size=300, groups=4)(loss, U.pixel_box(2), gen())
    assert calls == [300, 300, 300, 300, 300, 300, 100, 100]  # uniform and envelope proposals, per batch


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
    model, ckpts, hist, hit = relation.train_with_checkpoints("t01", {"x": "rand40"}, build, x, y, **kw)
    assert sorted(ckpts) == [0, 1, 2] and not hit
    fresh = build().state_dict()
    assert all(torch.equal(ckpts[0][k], fresh[k]) for k in fresh)  # epoch 0 is the initialization
    assert all(torch.equal(ckpts[2][k], v) for k, v in model.state_dict().items())  # last = final weights
    _, ckpts2, _, hit2 = relation.train_with_checkpoints("t01", {"x": "rand40"}, build, x, y, **kw)
    assert hit2 and all(torch.equal(ckpts2[1][k], ckpts[1][k]) for k in fresh)
    correct = relation.robustness(model, x[:10], y[:10], {"fgsm": attacks.FGSM(eps=0.0)})
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
