"""The reference attack (AutoAttack from torchattacks) behind the project's interface, and the cross-check
of the project's PGD against the library's PGD and APGD on a small trained model (issue #14)."""

import pytest
import torch
from torch import nn

from nup_utils import attacks

TOL = 0.05  # robust-accuracy tolerance between implementations on 400 points (binomial SE <= 0.025)


@pytest.fixture(scope="module")
def trained():
    """A 10-class MLP on synthetic 1x8x8 images (class template + noise), trained to ~100% clean accuracy."""
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 1, 8, 8, generator=g)
    y = torch.arange(400) % 10
    x = (0.5 * templates[y] + 0.5 * torch.rand(400, 1, 8, 8, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.97
    return model, x, y


def _robust(model, atk, x, y) -> float:
    return attacks.robust_correct(model, atk, x, y, batch_size=400).float().mean().item()


EPS = 0.09  # chosen so that PGD leaves an intermediate robust accuracy (asserted below)


def test_project_pgd_agrees_with_library_pgd_and_apgd_is_not_weaker(trained):
    import torchattacks as ta

    model, x, y = trained
    ours = _robust(model, attacks.PGD(eps=EPS, step=EPS / 4, steps=20), x, y)
    assert 0.15 < ours < 0.85, f"robust accuracy {ours:.3f}: EPS no longer gives an intermediate regime"
    lib = ta.PGD(model, eps=EPS, alpha=EPS / 4, steps=20)(x, y).detach()
    lib_acc = (model(lib).argmax(1) == y).float().mean().item()
    assert abs(ours - lib_acc) <= TOL, (ours, lib_acc)
    apgd = _robust(model, attacks.AutoAttack(eps=EPS, steps=20, version="standard", n_queries=50), x, y)
    apgd_ce = (model(ta.APGD(model, eps=EPS, steps=20, loss="ce", seed=0)(x, y)).argmax(1) == y).float().mean().item()
    assert apgd_ce <= ours + TOL, (apgd_ce, ours)  # APGD is never weaker than our PGD beyond the tolerance
    assert apgd <= apgd_ce + 1e-9  # AutoAttack runs APGD-CE first and only adds attacks on the survivors
    assert _robust(model, attacks.AutoAttack(eps=1.0, steps=5, n_queries=10), x[:50], y[:50]) == 0.0  # eps -> large


def test_autoattack_interface(trained):
    model, x, y = trained
    atk = attacks.AutoAttack(eps=8 / 255, steps=5, version="rand", eot=2)
    r = repr(atk)
    assert "eps=0.031373" in r and "steps=5" in r and "eot=2" in r and "apgd-dlr" in r and "torchattacks" in r
    model.train()
    xa = atk(model, x[:20], y[:20])
    assert model.training, "the model's mode is restored"
    model.eval()
    assert xa.shape == x[:20].shape and (xa - x[:20]).abs().max() <= 8 / 255 + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1
    through = attacks.AutoAttack(eps=0.05, steps=3, n_queries=10, transform=lambda v: v.flip(-1))
    xt = through(model, x[:10], y[:10])
    assert (xt - x[:10]).abs().max() <= 0.05 + 1e-6 and "transform=yes" in repr(through)
    for kw, msg in (
        ({"eps": 0.1, "steps": 10, "version": "plus"}, "version="),
        ({"eps": 0.1, "steps": 0}, "steps="),
        ({"eps": -1, "steps": 10}, "eps="),
        ({"eps": 0.1, "steps": 10, "norm": "l1"}, "norm="),
        ({"eps": 0.1, "steps": 10, "parts": ("square",), "version": "rand"}, "parts="),
        ({"eps": 0.1, "steps": 10, "parts": ()}, "parts="),
        ({"eps": 0.1, "steps": 10, "n_targets": 10}, "n_targets="),
    ):
        with pytest.raises(ValueError, match=msg):
            attacks.AutoAttack(**kw)


def test_autoattack_parts_targets_and_square(trained):
    model, x, y = trained
    atk = attacks.AutoAttack(eps=EPS, steps=10, parts=("square", "apgd-ce"), n_targets=3, n_queries=20)
    assert atk.parts == ("apgd-ce", "square"), "parts run in the reference order"
    assert "parts=['apgd-ce', 'square']" in repr(atk) and "n_targets=3" in repr(atk) and "n_queries=20" in repr(atk)
    t = attacks.AutoAttack(eps=EPS, steps=10, parts=("apgd-t",), n_targets=2).components(model)[0]
    assert t.n_target_classes == 2, "n_targets reaches the library's targeted attack"
    assert attacks.AutoAttack(eps=EPS, steps=10).n_targets == 9  # the reference: n_classes - 1
    ce = _robust(model, attacks.AutoAttack(eps=EPS, steps=10, parts=("apgd-ce",)), x, y)
    ce_t = _robust(model, attacks.AutoAttack(eps=EPS, steps=10, parts=("apgd-ce", "apgd-t"), n_targets=3), x, y)
    assert ce_t <= ce + 1e-9, "a later part only attacks the survivors of the earlier ones"
    sq = attacks.Square(eps=0.15, n_queries=200)  # measured: Square 0.39, PGD-20 0.0 on these 100 images
    assert repr(sq) == "Square(eps=0.15, n_queries=200, norm='linf', seed=0, transform=no, library='torchattacks')"
    xs = sq(model, x[:100], y[:100])
    assert (xs - x[:100]).abs().max() <= 0.15 + 1e-6 and xs.min() >= 0 and xs.max() <= 1
    acc_sq = (model(xs).argmax(1) == y[:100]).float().mean().item()
    assert acc_sq < 0.8, f"Square broke few images ({acc_sq:.2f}): the gradient-free check has no power"
    pgd = _robust(model, attacks.PGD(eps=0.15, step=0.15 / 4, steps=20), x[:100], y[:100])
    assert acc_sq >= pgd - TOL, "without a defence, the gradient-free attack is not stronger than PGD"
    with pytest.raises(ValueError, match="n_queries="):
        attacks.Square(eps=0.1, n_queries=0)
