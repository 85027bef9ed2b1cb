"""Unit tests for nup_utils.defenses: scores, masks, ConjMask, LogitReg, PGD training, suite, probe (seconds)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nup_utils import attacks, defenses, training
from nup_utils.runtime import make_generator


class Linear(nn.Module):
    """Linear model on (N, C, H, W): closed-form input gradients for exact checks."""

    def __init__(self, c=3, h=4, w=4, k=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(c * h * w, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, c * h * w, generator=g))
            self.fc.bias.zero_()
        self.bn = nn.BatchNorm1d(k)  # lets tests see train/eval mode effects

    def forward(self, x):
        return self.fc(x.flatten(1))


def _x(n=5, seed=0, c=3, h=4, w=4):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_input_gradient_matches_closed_form_and_keeps_mode_and_param_grads():
    m, x = Linear(), _x()
    y = torch.tensor([0, 1, 2, 0, 1])
    m.train()
    g, lab = defenses.input_gradient(m, x, y)
    p = F.softmax(m(x), 1)
    expected = ((p - F.one_hot(y, 3)) @ m.fc.weight).view_as(x)  # d CE / d x for a linear model
    assert torch.allclose(g, expected, atol=1e-5) and torch.equal(lab, y)
    assert m.training and m.fc.weight.grad is None
    with torch.no_grad():  # works inside no_grad (robust_correct / predict call it there)
        g2, lab2 = defenses.input_gradient(m, x)
    assert torch.equal(lab2, m(x).argmax(1))


def test_coupling_scores_xgrad_grad_and_patch_pooling():
    m, x = Linear(), _x()
    y = torch.zeros(5, dtype=torch.long)
    g, _ = defenses.input_gradient(m, x, y)
    s = defenses.coupling_scores(m, x, y, score="xgrad")
    assert s.shape == (5, 4, 4) and torch.allclose(s, (x * g).abs().sum(1))
    assert torch.allclose(defenses.coupling_scores(m, x, y, score="grad"), g.abs().sum(1))
    s2 = defenses.coupling_scores(m, x, y, patch=2)
    assert s2.shape == (5, 2, 2) and torch.allclose(s2[:, 0, 0], s[:, :2, :2].sum((1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="score"):
        defenses.coupling_scores(m, x, y, score="random")
    with pytest.raises(ValueError, match="patch"):
        defenses.coupling_scores(m, x, y, patch=3)


def test_top_r_mask_picks_the_largest():
    s = torch.arange(16.0).view(1, 4, 4).repeat(2, 1, 1)
    m = defenses.top_r_mask(s, 0.25)
    assert m.sum() == 8 and m[0].flatten()[12:].all() and not m[0].flatten()[:12].any()
    assert not defenses.top_r_mask(s, 0.0).any() and defenses.top_r_mask(s, 1.0).all()
    for bad in (-0.1, 1.5, True, "0.2"):
        with pytest.raises(ValueError, match="r="):
            defenses.top_r_mask(s, bad)


def test_random_mask_count_and_determinism():
    a = defenses.random_mask(4, 8, 8, 0.25, make_generator(1))
    b = defenses.random_mask(4, 8, 8, 0.25, make_generator(1))
    c = defenses.random_mask(4, 8, 8, 0.25, make_generator(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a.flatten(1).sum(1) == 16).all()


def test_fill_masked_values_and_gradient():
    x = _x(2).requires_grad_(True)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    out = defenses.fill_masked(x, mask, (0.1, 0.2, 0.3))
    assert torch.allclose(out[:, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]).expand(2, 3))
    assert torch.equal(out[:, :, 1:], x[:, :, 1:])
    out.sum().backward()
    assert (x.grad[:, :, 0, 0] == 0).all() and (x.grad[:, :, 1:] == 1).all()
    big = torch.zeros(2, 2, 2, dtype=torch.bool)
    big[:, 0, 0] = True
    out2 = defenses.fill_masked(x.detach(), big, (0.5, 0.5, 0.5), patch=2)
    assert (out2[:, :, :2, :2] == 0.5).all() and torch.equal(out2[:, :, 2:], x.detach()[:, :, 2:])


def test_conjmask_masks_top_coupling_with_mean_and_repr():
    m, x = Linear(), _x()
    cm = defenses.ConjMask(r=0.25, fill=(0.5, 0.5, 0.5))
    assert "r=0.25" in repr(cm) and "xgrad" in repr(cm)
    y = torch.tensor([0, 1, 2, 0, 1])
    out = cm(m, x, y)
    mask = defenses.top_r_mask(defenses.coupling_scores(m, x, y), 0.25)
    assert torch.equal(out.permute(0, 2, 3, 1)[mask], torch.full((int(mask.sum()), 3), 0.5))
    assert torch.equal(out.permute(0, 2, 3, 1)[~mask], x.permute(0, 2, 3, 1)[~mask])
    # test-time transform uses the predicted label, is deterministic, and works under no_grad
    t = cm.transform(m)
    with torch.no_grad():
        assert torch.equal(t(x), cm(m, x, m(x).argmax(1))) and torch.equal(t(x), t(x))
    for kw, match in (({"r": 2.0}, "r="), ({"r": 0.1, "score": "abs"}, "score"), ({"r": 0.1, "patch": 0}, "patch")):
        with pytest.raises(ValueError, match=match):
            defenses.ConjMask(**kw)


def test_random_conjmask_needs_gen_draws_fresh_masks_and_is_seeded():
    m, x = Linear(), _x()
    cm = defenses.ConjMask(r=0.25, score="random")
    with pytest.raises(ValueError, match="Generator"):
        cm(m, x)
    t1, t2 = cm.transform(m, seed=3), cm.transform(m, seed=3)
    a, b = t1(x), t1(x)
    assert not torch.equal(a, b) and torch.equal(a, t2(x))


def test_train_transform_probability_and_mode():
    m, x = Linear(), _x(200, c=3)
    y = torch.zeros(200, dtype=torch.long)
    cm = defenses.ConjMask(r=0.5, fill=(2.0, 2.0, 2.0))  # fill outside [0,1] marks masked samples
    m.train()
    out = cm.train_transform(0.5)(x, y, m, make_generator(0))
    masked = (out == 2.0).flatten(1).any(1)
    assert m.training and 60 < int(masked.sum()) < 140
    assert torch.equal(out[~masked], x[~masked])
    assert torch.equal(cm.train_transform(0.0)(x, y, m, make_generator(0)), x)
    with pytest.raises(ValueError, match="p="):
        cm.train_transform(1.5)


def test_logitreg_values():
    z = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    sq = defenses.LogitReg(kind="squeeze", lam=0.1)
    assert math.isclose(float(sq(z, y)), float(F.cross_entropy(z, y) + 0.1 * (25 + 1) / 2), rel_tol=1e-6)
    nm = defenses.LogitReg(kind="norm", tau=0.5)
    zn = torch.tensor([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]]) / 0.5
    assert math.isclose(float(nm(z, y)), float(F.cross_entropy(zn, y)), rel_tol=1e-6)
    assert float(nm(10 * z, y)) == pytest.approx(float(nm(z, y)), rel=1e-6)  # scale invariant
    assert "lam=0.1" in repr(sq) and "tau=0.5" in repr(nm)
    with pytest.raises(ValueError, match="kind"):
        defenses.LogitReg(kind="l1", lam=1.0)
    with pytest.raises(ValueError, match="lam"):
        defenses.LogitReg(kind="squeeze")
    with pytest.raises(ValueError, match="tau"):
        defenses.LogitReg(kind="norm", tau=0)


def test_pgd_train_stays_in_ball_and_trains():
    m, x = Linear(), _x(16)
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(0))
    at = defenses.PGDTrain(eps=0.05, step=0.02, steps=2)
    assert "eps=0.05" in repr(at)
    xa = at(x, y, m, make_generator(0))
    assert (xa - x).abs().max() <= 0.05 + 1e-6 and not torch.equal(xa, x)
    with pytest.raises(ValueError, match="steps"):
        defenses.PGDTrain(eps=0.05, step=0.02, steps=0)
    hist = training.train(
        m,
        x,
        y,
        epochs=1,
        batch_size=4,
        lr=0.01,
        seed=0,
        augment_ops=(),
        batch_transform=at,
        loss_fn=defenses.LogitReg(lam=0.01),
        progress=False,
    )
    assert math.isfinite(hist["train_loss"][0])


def test_attack_suite_names_and_checks():
    m = Linear()
    d = defenses.ConjMask(r=0.25).transform(m)
    s = defenses.attack_suite(eps=0.03, steps=(3, 5), restarts=1)
    assert list(s) == ["fgsm", "pgd3", "pgd5"] and s["pgd5"].steps == 5
    s = defenses.attack_suite(
        eps=0.03, steps=(3,), restarts=2, defence=d, defence_kind="topr", bpda=attacks.straight_through(d)
    )
    assert set(s) == {"fgsm", "pgd3", "pgd3-bpda", "pgd3-unaware"} and s["pgd3"].restarts == 2
    assert s["pgd3-unaware"].transform is None
    s = defenses.attack_suite(eps=0.03, steps=(3,), restarts=1, defence=d, defence_kind="random", eot=4)
    assert s["pgd3"].eot == 4 and s["pgd3-noeot"].eot == 1
    with pytest.raises(ValueError, match="defence_kind"):
        defenses.attack_suite(eps=0.03, steps=(3,), restarts=1, defence_kind="jpeg")
    with pytest.raises(ValueError, match="bpda"):
        defenses.attack_suite(eps=0.03, steps=(3,), restarts=1, defence=d, defence_kind="topr")
    with pytest.raises(ValueError, match="exactly"):
        defenses.attack_suite(eps=0.03, steps=(3,), restarts=1, defence=d)


def test_run_suite_monotone_in_eps_and_only_mask():
    m, x = Linear(k=3), _x(40)
    with torch.no_grad():
        y = m(x).argmax(1)  # every image clean-correct
    d = defenses.ConjMask(r=0.25).transform(m)
    accs = []
    for eps in (1e-6, 0.5):
        res = defenses.run_suite(m, x, y, defenses.attack_suite(eps=eps, steps=(5,), restarts=1), desc="t")
        accs.append(float(res["pgd5"].float().mean()))
    assert accs[0] == 1.0 and accs[1] < 0.2  # large eps breaks a linear model
    only = torch.zeros(40, dtype=torch.bool)
    only[:5] = True
    suite = defenses.attack_suite(
        eps=1e-6, steps=(2,), restarts=1, defence=d, defence_kind="topr", bpda=attacks.straight_through(d)
    )
    res = defenses.run_suite(m, x, y, suite, eval_transform=d, only=only)
    assert not res["pgd2"][5:].any()


def test_transfer_correct():
    m, x = Linear(), _x(6)
    with torch.no_grad():
        y = m(x).argmax(1)
    assert defenses.transfer_correct(m, x, y).all()
    only = torch.tensor([True, False] * 3)
    assert torch.equal(defenses.transfer_correct(m, x, y, only=only), only)


def test_probe_values():
    m, x = Linear(), _x(4)
    y = torch.tensor([0, 1, 2, 0])
    pr = defenses.probe(m, x, y, batch_size=3)
    g, _ = defenses.input_gradient(m, x, y)
    xf, gf = x.flatten(1).double(), g.flatten(1).double()
    import numpy as np

    corr = [np.corrcoef(xf[i].numpy(), gf[i].numpy())[0, 1] for i in range(4)]
    assert torch.allclose(pr["corr"], torch.tensor(corr, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(pr["grad_rms"], gf.pow(2).mean(1).sqrt().float(), atol=1e-6)
    assert torch.allclose(pr["xg_sum"], (xf * gf).sum(1).float(), atol=1e-5)


def test_local_uncertainty_shapes_determinism_and_errors():
    m, x = Linear(), _x(2)
    y = torch.tensor([0, 1])
    a = defenses.local_uncertainty(m, x, y, radius=0.05, n_samples=16, seed=0)
    b = defenses.local_uncertainty(m, x, y, radius=0.05, n_samples=16, seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a) and a["product"].shape == (2,)
    # uniform-ish state on a small box: dx is at most the box's uniform std radius/sqrt(3)
    assert (a["dx"] <= 0.05 / math.sqrt(3) * 1.2).all() and (a["dp"] > 0).all()
    with pytest.raises(ValueError, match="radius"):
        defenses.local_uncertainty(m, x, y, radius=0.0, n_samples=16, seed=0)


def test_spearman_exact_and_errors():
    rho, p = defenses.spearman([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 720)
    rho, p = defenses.spearman([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 720)
    with pytest.raises(ValueError, match="spearman"):
        defenses.spearman([1, 2], [1, 2])
