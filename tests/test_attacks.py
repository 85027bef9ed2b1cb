import pytest
import torch

from nup_utils import attacks, training


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained to ~100% on a synthetic 2-class image task (seconds)."""
    g = torch.Generator().manual_seed(0)
    n = 256
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5 + 0.25
    x[y == 1, :, :, :4] += 0.15
    x = x.clamp(0, 1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 64, 2)
    )
    training.train(model, x, y, epochs=30, batch_size=32, lr=0.05, seed=0, augment_ops=(), progress=False)
    return model, x[:64], y[:64]


EPS = 0.05


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_respects_budget_box_and_is_deterministic(trained, norm):
    model, x, y = trained
    eps = EPS if norm == "linf" else 0.5
    atk = attacks.PGD(eps=eps, step=eps / 4, steps=10, norm=norm, restarts=2, seed=7)
    xa = atk(model, x, y)
    d = (xa - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert xa.min() >= 0 and xa.max() <= 1 and not torch.isnan(xa).any()
    assert torch.equal(xa, attacks.PGD(eps=eps, step=eps / 4, steps=10, norm=norm, restarts=2, seed=7)(model, x, y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_budget(trained, norm):
    model, x, y = trained
    eps = EPS if norm == "linf" else 0.5
    xa = attacks.FGSM(eps=eps, norm=norm)(model, x, y)
    d = (xa - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all() and xa.min() >= 0 and xa.max() <= 1


def test_pgd_at_least_as_strong_as_fgsm(trained):
    model, x, y = trained
    clean = training.evaluate(model, x, y).float().mean()
    fgsm = attacks.robust_correct(model, attacks.FGSM(eps=EPS), x, y).float().mean()
    pgd = attacks.robust_correct(model, attacks.PGD(eps=EPS, step=EPS / 4, steps=20, restarts=2), x, y).float().mean()
    assert clean > 0.9
    assert pgd <= fgsm < clean or (pgd <= fgsm and pgd < clean)


def test_mask_limits_perturbed_coordinates(trained):
    model, x, y = trained
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :2, :] = 1
    xa = attacks.PGD(eps=EPS, step=0.01, steps=5, mask=mask)(model, x, y)
    assert torch.equal(xa[..., 2:, :], x[..., 2:, :])
    assert (xa[..., :2, :] != x[..., :2, :]).any()


def test_transform_is_attacked_end_to_end(trained):
    model, x, y = trained
    keep_top = torch.zeros(1, 1, 8, 8)
    keep_top[..., :4, :] = 1

    def zero_bottom(t):  # a 'defence' that discards the bottom half
        return t * keep_top

    xa = attacks.PGD(eps=EPS, step=0.01, steps=5, transform=zero_bottom, random_start=False)(model, x, y)
    # no gradient reaches the discarded pixels, so an aware attacker leaves them alone
    assert torch.equal(xa[..., 4:, :], x[..., 4:, :])


def test_straight_through_has_identity_gradient():
    x = torch.rand(3, 4, requires_grad=True)
    f = attacks.straight_through(torch.round)
    out = f(x)
    assert torch.equal(out, torch.round(x))
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_mode_restored_and_repr(trained):
    model, x, y = trained
    model.train()
    atk = attacks.PGD(eps=EPS, step=0.01, steps=2)
    atk(model, x[:4], y[:4])
    assert model.training
    model.eval()
    r = repr(atk)
    assert "eps=0.05" in r and "steps=2" in r and "step=0.01" in r


def test_bad_threat_models():
    with pytest.raises(ValueError, match="eps"):
        attacks.FGSM(eps=-0.1)
    with pytest.raises(TypeError):
        attacks.PGD(step=0.1, steps=3)  # eps is required
    with pytest.raises(ValueError, match="eps"):
        attacks.PGD(eps=float("nan"), step=0.1, steps=3)
    with pytest.raises(ValueError, match="steps"):
        attacks.PGD(eps=0.1, step=0.1, steps=0)
    with pytest.raises(ValueError, match="norm"):
        attacks.PGD(eps=0.1, step=0.1, steps=1, norm="l1")
    with pytest.raises(ValueError, match="loss"):
        attacks.attack_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), "hinge")


def test_margin_loss_sign():
    logits = torch.tensor([[3.0, 1.0, 0.0]])
    assert attacks.attack_loss(logits, torch.tensor([0]), "margin").item() == -2.0


def test_input_gradient_matches_autograd_and_restores_mode(trained):
    model, x, y = trained
    model.zero_grad(set_to_none=True)
    model.train()
    with torch.no_grad():  # works under no_grad too
        loss, g, label = attacks.input_gradient(model, x[:8], y[:8])
    assert model.training and torch.equal(label, y[:8])
    assert all(p.grad is None for p in model.parameters())  # only the input gets a gradient
    model.eval()
    xr = x[:8].clone().requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(model(xr), y[:8], reduction="none")
    ref.sum().backward()
    assert torch.allclose(loss, ref.detach()) and torch.allclose(g, xr.grad)
    _, _, pred = attacks.input_gradient(model, x[:8])
    assert torch.equal(pred, model(x[:8]).argmax(1))
    model.zero_grad(set_to_none=True)


class _Band(torch.nn.Module):
    """Toy 1-pixel classifier: class 1 wins only in a narrow band around x = 0.55 (logit 1 - 1000 (x - 0.55)^2)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, x):
        f = 1 - 1000 * (x.flatten(1).mean(1) - 0.55) ** 2 + 0 * self.anchor
        return torch.stack([torch.zeros_like(f), f], 1)


def test_pgd_keeps_a_success_found_mid_way():
    # from 0.5 a step of 0.08 lands in the band (0.58, misclassified), the next step overshoots back to 0.50
    # (correct again): the last iterate fails, the attack must still return the successful one
    model, x, y = _Band(), torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long)
    xa = attacks.PGD(eps=0.3, step=0.08, steps=2, random_start=False)(model, x, y)
    assert float(xa) == pytest.approx(0.58) and int(model(xa).argmax(1)) == 1
    assert int(model(x).argmax(1)) == 0  # the last iterate (back at 0.50) is classified correctly


def test_pgd_random_starts_differ_between_batches_and_reproduce(trained):
    model, x, y = trained
    atk = attacks.PGD(eps=EPS, step=EPS / 4, steps=1, seed=3)
    first, second = atk(model, x[:8], y[:8]), atk(model, x[:8], y[:8])
    assert not torch.equal(first, second)  # the generator advances: a new batch gets new start noise
    assert torch.equal(first, attacks.PGD(eps=EPS, step=EPS / 4, steps=1, seed=3)(model, x[:8], y[:8]))


def test_throughput_reports_images_and_image_steps():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.rand(8, 3, 2, 2), torch.arange(8) % 3
    r = attacks.throughput(model, attacks.PGD(eps=0.1, step=0.05, steps=4, restarts=2), x, y)
    assert r["images"] == 8 and r["seconds"] > 0 and "steps=4" in r["attack"]
    assert r["image_steps_per_s"] == pytest.approx(8 * 4 * 2 / r["seconds"])
    sq = attacks.throughput(model, attacks.Square(eps=0.1, n_queries=5), x, y)
    assert "image_steps_per_s" not in sq and sq["images_per_s"] == pytest.approx(8 / sq["seconds"])
    assert "images × steps/s" in attacks.throughput_line(r, "m") and "steps/s" not in attacks.throughput_line(sq, "m")
