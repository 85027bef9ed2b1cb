"""Dry runs of notebook 01's estimators (issue #17): the Monte Carlo batch loop, the quadrature chunks, the
importance-sampling centres and the per-class maps run their first steps only and plan the rest; outside a
dry run the estimators are the plain loops, bit for bit."""

import math

import pytest
import torch

from nup_utils import dryrun
from nup_utils import uncertainty as U

D = 6  # a small input dimension: every test here runs in well under a second


@pytest.fixture
def not_dry(monkeypatch):
    monkeypatch.delenv("NUP_DRY_RUN", raising=False)
    monkeypatch.delenv("NUP_DRY_LEDGER", raising=False)
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "8")  # ignored outside a dry run


def counting(loss_fn, calls: list):
    """loss_fn that records the batch size of every call (one call per proposal and batch)."""

    def fn(x):
        calls.append(len(x))
        return loss_fn(x)

    if hasattr(loss_fn, "model"):  # a network's loss (model_loss): the estimator looks at it
        fn.model = loss_fn.model
    return fn


def net_loss(label=0):
    """A network's loss (model_loss) on inputs of D = 6 components."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 10))
    return U.model_loss(model, label, (1, 2, 3))


def logistic(dim=D):
    w = torch.linspace(-2.0, 3.0, dim, dtype=torch.float64)
    return U.logistic_loss(w, 0.3)


def records(ledger, what):
    return [r for r in dryrun.read(ledger) if r["what"] == what]


def assert_finite(res: dict, dim: int):
    for e in res.values():
        for part in (e.values, e.se):
            for q in U.QUANTITIES:
                assert part[q].shape == (dim,) and bool(torch.isfinite(part[q]).all()), (e.state, q)
        assert math.isfinite(e.ess) and e.ess > 0


# ---------------------------------------------------------------- reference: the estimators without dryrun code
def reference_mc(est: U.UncertaintyEstimator, loss_fn, box, gen) -> dict:
    """UncertaintyEstimator.__call__ as it was before dry runs (every batch, in order)."""
    sums = {s: U._Sums(est.groups, box.dim) for s in est.states}
    for start in range(0, est.n_samples, est.batch_size):
        n = min(est.batch_size, est.n_samples - start)
        group = torch.arange(start, start + n) % est.groups
        for sampler, states in est._plan():
            x, log_q = sampler(n, box, gen)
            loss, grad = U.loss_and_grad(loss_fn, x)
            for s in states:
                log_w, score = U._log_w_and_score(s, loss, grad, log_q, x, box)
                sums[s].add(x, log_w, score, group)
    return {s: U._finalize(s, sums[s], est.n_samples) for s in est.states}


def reference_log_q(smp: U.DataMixtureSampler, x, box) -> torch.Tensor:
    """DataMixtureSampler.log_q as it was before dry runs (every centre)."""
    fa, fb = smp._bounds(box)
    log_mass = torch.log((fb - fa).clamp_min(1e-300))
    comp = [
        (-0.5 * ((x - c) / smp.sigma) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(smp.sigma) - log_mass[j]).sum(1)
        for j, c in enumerate(smp.centres)
    ]
    log_mix = torch.logsumexp(torch.stack(comp, 1), 1) - math.log(len(comp))
    return torch.logaddexp(
        math.log(smp.defensive) - box.log_volume + torch.zeros_like(log_mix), math.log1p(-smp.defensive) + log_mix
    )


def same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for s in a:
        assert a[s].n == b[s].n and a[s].ess == b[s].ess
        for q in U.QUANTITIES:
            assert torch.equal(a[s].values[q], b[s].values[q]), (s, q)
            assert torch.equal(a[s].se[q], b[s].se[q]), (s, q)


# ---------------------------------------------------------------- outside a dry run: bit-identical
def test_outside_a_dry_run_the_estimator_is_the_plain_loop(not_dry):
    box = U.pixel_box(D)
    est = U.UncertaintyEstimator(n_samples=300, batch_size=64, groups=8)  # 5 batches, the last one short
    calls = []
    got = est(counting(logistic(), calls), box, torch.Generator().manual_seed(1))
    ref = reference_mc(est, logistic(), box, torch.Generator().manual_seed(1))
    same(got, ref)
    assert calls == [64, 64] * 4 + [44, 44]  # two proposals (uniform; envelope) per batch, every batch
    assert all(e.n == 300 for e in got.values())
    # the comparison can fail: another seed (other samples) differs
    other = reference_mc(est, logistic(), box, torch.Generator().manual_seed(2))
    assert not torch.equal(got["loss"].values["dp"], other["loss"].values["dp"])


def test_outside_a_dry_run_importance_sampling_and_quadrature_are_unchanged(not_dry):
    box = U.pixel_box(D)
    centres = torch.rand(5, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    smp = U.DataMixtureSampler(centres, sigma=0.2, defensive=0.1)
    x, log_q = smp(50, box, torch.Generator().manual_seed(4))
    assert torch.equal(log_q, reference_log_q(smp, x, box))
    est = U.UncertaintyEstimator(n_samples=128, batch_size=32, groups=4, sampler=smp, states=U.GAUSSIAN_STATES)
    got = est(logistic(), box, torch.Generator().manual_seed(5))
    same(got, reference_mc(est, logistic(), box, torch.Generator().manual_seed(5)))
    # quadrature in chunks (16 of them) equals one chunk holding every node, up to summation order
    box2 = U.pixel_box(2)
    chunked = U._quadrature_once(logistic(2), box2, 4, 8, U.STATES, 64)
    whole = U._quadrature_once(logistic(2), box2, 4, 8, U.STATES, 4096)
    for s in U.STATES:
        assert chunked[s].n == whole[s].n == 32**2
        for q in U.QUANTITIES:
            assert torch.allclose(chunked[s].values[q], whole[s].values[q], rtol=1e-12, atol=1e-14), (s, q)


def test_outside_a_dry_run_class_maps_estimate_every_class(not_dry):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 3))
    est = U.UncertaintyEstimator(n_samples=40, batch_size=20, groups=4, states=("loss",))
    maps = U.class_maps(model, (1, 2, 3), range(3), est, U.pixel_box(D), seed=0)
    v = maps["loss"]["values"]["dp"]
    assert v.shape == (3, D) and maps["loss"]["ess"].shape == (3,)
    assert not torch.equal(v[0], v[1]) and not torch.equal(v[1], v[2])  # three classes, three estimates


# ---------------------------------------------------------------- in a dry run: cut, planned, finite
def test_dry_run_draws_the_first_capped_batch_and_plans_the_rest(dry, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "8")
    box = U.pixel_box(D)
    est = U.UncertaintyEstimator(n_samples=300, batch_size=64, groups=16)  # 5 batches planned, 16 groups
    calls = []
    res = est(counting(net_loss(), calls), box, torch.Generator().manual_seed(1))
    assert calls == [8, 8]  # the first batch only, capped at 8, once per proposal
    assert_finite(res, D)
    assert all(e.n == 8 for e in res.values())  # the samples actually drawn (fewer than groups: jackknife copes)
    (r,) = records(dry, "mc batch")
    assert r["planned"] == 5 and r["run"] == 1 and r["planned_total"] == 5
    assert r["scale"] == 8.0 and r["key"]["batch"] == 64 and r["key"]["dim"] == D and r["key"]["loss"] == "Sequential"
    assert len(r["key"]["proposals"]) == 2 and r["flops_per_iter"] > 0  # the network's matmuls, scaled by 8
    # an analytic loss (the exactness checks) runs its real first batch: the cap is for networks
    calls.clear()
    est(counting(logistic(), calls), box, torch.Generator().manual_seed(1))
    assert calls == [64, 64] and records(dry, "mc batch")[-1]["scale"] == 1.0


def test_dry_run_without_a_batch_cap_runs_the_first_full_batch(dry):
    box = U.pixel_box(D)
    est = U.UncertaintyEstimator(n_samples=300, batch_size=64, groups=8, states=("exp",))
    calls = []
    res = est(counting(logistic(), calls), box, torch.Generator().manual_seed(1))
    assert calls == [64] and res["exp"].n == 64
    assert_finite(res, D)
    (r,) = records(dry, "mc batch")
    assert (r["planned"], r["run"], r["scale"]) == (5, 1, 1.0)
    # fewer samples than a batch: one batch planned, run in full
    small = U.UncertaintyEstimator(n_samples=20, batch_size=64, groups=4, states=("exp",))
    assert small(logistic(), box, torch.Generator().manual_seed(1))["exp"].n == 20


def test_dry_run_cuts_importance_sampling_centres_inside_the_batches(dry, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "8")
    box = U.pixel_box(D)
    centres = torch.rand(10, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    smp = U.DataMixtureSampler(centres, sigma=0.2, defensive=0.1)
    est = U.UncertaintyEstimator(n_samples=256, batch_size=64, groups=4, sampler=smp, states=U.GAUSSIAN_STATES)
    res = est(net_loss(), box, torch.Generator().manual_seed(5))
    assert_finite(res, D)
    (c,) = records(dry, "IS centre")  # one proposal shared by both states: one log_q per batch
    assert c["planned"] == 10 and c["run"] == dryrun.STEPS and c["planned_total"] == 10 * 4  # x 4 batches
    assert c["key"] == {"points": 8, "dim": D}


def test_dry_run_cuts_quadrature_chunks_and_stays_finite(dry):
    box = U.pixel_box(2)
    calls = []
    res = U._quadrature_once(counting(logistic(2), calls), box, 8, 8, U.STATES, 500)  # 64^2 = 4096 nodes, 9 chunks
    assert calls == [500] * dryrun.STEPS
    assert_finite(res, 2)
    assert all(e.n == 500 * dryrun.STEPS for e in res.values())
    (r,) = records(dry, "quadrature chunk")
    assert r["planned"] == 9 and r["run"] == dryrun.STEPS
    # the adaptive rule still returns (it may not converge on partial sums: a warning, never an error)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        q = U.quadrature(logistic(2), box, chunk=500, max_points=2**14)
    assert_finite(q, 2)


def test_dry_run_class_maps_estimate_the_first_class_and_pad_to_every_class(dry, monkeypatch):
    monkeypatch.setenv("NUP_DRY_MAX_BATCH", "8")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 10))
    labels = []
    real_loss = U.model_loss

    def spy(model, label, shape):
        labels.append(label)
        return real_loss(model, label, shape)

    monkeypatch.setattr(U, "model_loss", spy)
    est = U.UncertaintyEstimator(n_samples=100, batch_size=32, groups=4)  # 4 batches per class
    maps = U.class_maps(model, (1, 2, 3), (0, 1, 2, 3, 4), est, U.pixel_box(D), seed=0)
    assert labels == [0]  # the first class only
    for st in U.STATES:
        for part in ("values", "se"):
            for q in U.QUANTITIES:
                t = maps[st][part][q]
                assert t.shape == (5, D) and bool(torch.isfinite(t).all())
                assert torch.equal(t[4], t[0])  # padded by repetition
        assert maps[st]["ess"].shape == (5,)
    (r,) = records(dry, "mc batch")
    assert r["planned"] == 4 and r["planned_total"] == 4 * 5  # 4 batches x 5 classes
    assert r["scale"] == 4.0 and r["key"]["loss"] == "Sequential" and r["key"]["params"] == D * 10 + 10
    # the bound fractions of padded maps are numbers (nothing NaN-triggered downstream)
    fr = U.bound_fractions(maps["loss"])
    assert all(math.isfinite(v) for v in fr.values())
