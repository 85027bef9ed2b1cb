"""Unit tests for nup_utils.sbde: expansion, projection, arms, config keys and probes (seconds)."""

import pytest
import torch

from nup_utils import attacks, data, models, sbde


def _imgs(n=3, c=3, h=4, w=5, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("K,offset", [(2, 0), (2, 1), (3, 0), (3, 2)])
def test_expand_layout(K, offset):
    x = _imgs()
    xt, m = sbde.expand(x, K, 0.5, offset)
    assert xt.shape == (3, 3, 4 * K, 5 * K) and m.shape == (1, 1, 4 * K, 5 * K) and m.dtype == torch.bool
    assert torch.equal(xt[..., offset::K, offset::K], x)
    assert torch.equal(sbde.contract(xt, K, offset), x)
    assert (xt.masked_select(m.expand_as(xt)) == 0.5).all()
    # exactly one original coordinate per KxK block
    assert int((~m).sum()) == 4 * 5 and int(m.sum()) == 4 * 5 * (K * K - 1)


def test_expand_per_channel_value_and_k1():
    x = _imgs()
    xt, m = sbde.expand(x, 2, (0.1, 0.2, 0.3))
    for c, v in enumerate((0.1, 0.2, 0.3)):
        assert torch.allclose(xt[:, c][m[0, 0].expand(3, -1, -1)], torch.tensor(v))
    x1, m1 = sbde.expand(x, 1, 0.5)
    assert torch.equal(x1, x) and not m1.any()


def test_expand_is_differentiable():
    x = _imgs().requires_grad_(True)
    xt, _ = sbde.expand(x, 2, 0.5)
    xt.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_projection_idempotent_identity_on_clean_and_resets_aux():
    x = _imgs()
    xt, m = sbde.expand(x, 2, 0.5)
    assert torch.equal(sbde.project(xt, 2, 0.5), xt)  # clean SBDE input unchanged
    noisy = (xt + 0.3 * torch.randn(xt.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    p = sbde.project(noisy, 2, 0.5)
    assert torch.equal(sbde.project(p, 2, 0.5), p)  # idempotent
    assert torch.equal(p[..., ::2, ::2], noisy[..., ::2, ::2])  # originals kept
    assert (p.masked_select(m.expand_as(p)) == 0.5).all()  # aux reset


def test_projection_gradient_is_original_coordinate_indicator():
    xt, m = sbde.expand(_imgs(), 2, 0.5)
    xr = xt.clone().requires_grad_(True)
    sbde.project(xr, 2, 0.5).pow(2).sum().backward()
    assert torch.equal(xr.grad[m.expand_as(xr)], torch.zeros(int(m.expand_as(xr).sum())))
    assert torch.allclose(xr.grad[~m.expand_as(xr)], 2 * xt[~m.expand_as(xt)])


def test_bad_inputs_name_the_parameter():
    x = _imgs()
    with pytest.raises(ValueError, match="K="):
        sbde.expand(x, 0)
    with pytest.raises(ValueError, match="offset="):
        sbde.expand(x, 2, 0.5, offset=2)
    with pytest.raises(ValueError, match="value="):
        sbde.expand(x, 2, 1.5)
    with pytest.raises(ValueError, match="value="):
        sbde.expand(x, 2, (0.1, 0.2))
    with pytest.raises(ValueError, match="x must be"):
        sbde.expand(x[0], 2)
    with pytest.raises(ValueError, match="kind="):
        sbde.InputTransform("sideways", K=2)
    with pytest.raises(ValueError, match="arm="):
        sbde.arm_transform("nope")
    with pytest.raises(ValueError, match="stem="):
        sbde.arm_config("sbde", "tiny", 0, sbde.recipe("smoke"), "x")
    with pytest.raises(ValueError, match="profile="):
        sbde.recipe("auto")
    with pytest.raises(ValueError, match="no auxiliary"):
        sbde.arm_transform("nearest").project(x)


def test_arms_shapes_and_repr():
    x = _imgs(h=8, w=8)
    for arm, kw in sbde.ARMS.items():
        tf = sbde.arm_transform(arm)
        out = tf(x)
        assert out.shape[-1] == 8 * kw["K"], arm
        assert 0 <= out.min() and out.max() <= 1, arm
        assert repr(tf).startswith("InputTransform(kind=")
    assert "value=0.5" in repr(sbde.arm_transform("sbde"))
    near = sbde.arm_transform("nearest")(x)
    assert torch.equal(near[..., ::2, ::2], x) and torch.equal(near[..., 1::2, 1::2], x)  # copies, no constants
    mean = sbde.arm_transform("mean")
    xt = mean(x)
    assert torch.allclose(xt[0, :, 1, 1], torch.tensor(data.CIFAR10_MEAN))


def test_arm_config_keys_differ_by_arm_stem_seed():
    rec = sbde.recipe("smoke")
    base = sbde.arm_config("sbde", "cifar", 0, rec, "cifar10-jpeg")
    assert base == sbde.arm_config("sbde", "cifar", 0, dict(rec), "cifar10-jpeg")
    others = [
        sbde.arm_config("nearest", "cifar", 0, rec, "cifar10-jpeg"),
        sbde.arm_config("sbde", "imagenet", 0, rec, "cifar10-jpeg"),
        sbde.arm_config("sbde", "cifar", 1, rec, "cifar10-jpeg"),
        sbde.arm_config("sbde", "cifar", 0, {**rec, "epochs": 2}, "cifar10-jpeg"),
    ]
    assert all(o != base for o in others)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return models.resnet18(stem="cifar", width=2).eval()


def test_attack_through_projection_never_moves_aux_and_matches_masked_attack():
    x = _imgs(n=4, h=8, w=8)
    y = torch.tensor([0, 1, 2, 3])
    xt, m = sbde.expand(x, 2, 0.5)
    model = _tiny_model()
    proj = lambda z: sbde.project(z, 2, 0.5)  # noqa: E731
    aware = attacks.PGD(eps=4 / 255, step=1 / 255, steps=3, random_start=False, transform=proj)
    masked = attacks.PGD(eps=4 / 255, step=1 / 255, steps=3, random_start=False, mask=(~m).float())
    xa, xm = aware(model, xt, y), masked(model, xt, y)
    # the aware attack's gradient is zero on aux coordinates, so both attacks move the same originals
    assert torch.allclose(proj(xa), xm, atol=1e-6)
    assert (xm - xt).abs().max() > 0  # the attack does something


def test_grad_split_and_path_attribution_invariants():
    x = _imgs(n=4, h=8, w=8)
    y = torch.tensor([0, 1, 2, 3])
    xt, m = sbde.expand(x, 2, 0.5)
    model = _tiny_model()
    gs = sbde.grad_split(model, xt, y, m)
    loss, g = sbde._input_grad(model, xt, y)
    assert torch.allclose(gs["l1_aux"] + gs["l1_orig"], g.abs().flatten(1).sum(1), rtol=1e-5)
    assert torch.allclose(gs["l2_aux"] ** 2 + gs["l2_orig"] ** 2, g.flatten(1).norm(dim=1) ** 2, rtol=1e-4)
    assert torch.allclose(gs["per_coord_aux"], gs["l1_aux"] / (3 * 16 * 16 * 3 / 4))
    pa = sbde.pgd_path_attribution(model, xt, y, m, eps=2 / 255, step=1 / 255, steps=2)
    assert torch.allclose(pa["aux"] + pa["orig"], pa["total"])
    assert (pa["total"] >= 0).all()  # each signed step increases the first-order loss
    gen = torch.Generator().manual_seed(0)
    d = sbde.subspace_direction(xt.shape, m, "aux", gen=gen)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(4)) and (d * ~m).abs().max() == 0
    prof = sbde.loss_profile(model, xt, y, d, [0.0, 0.1])
    assert torch.isclose(prof[0], loss.mean(), rtol=1e-5)


def test_min_adv_eps_is_monotone_in_grid_and_deterministic():
    x = _imgs(n=6, h=8, w=8)
    model = _tiny_model()
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct by construction
    fn = lambda e: attacks.PGD(eps=e, step=e / 4, steps=5, norm="l2", seed=0)  # noqa: E731
    a = sbde.min_adv_eps(model, x, y, [0.05, 0.2, 1.0, 5.0], fn)
    b = sbde.min_adv_eps(model, x, y, [0.05, 0.2, 1.0, 5.0], fn)
    assert torch.equal(a, b) and (a > 0).all()
    with pytest.raises(ValueError, match="eps_grid"):
        sbde.min_adv_eps(model, x, y, [0.2, 0.1], fn)


def test_train_arm_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NUP_CACHE_DIR", str(tmp_path))
    rec = {**sbde.recipe("smoke"), "train_size": 16}
    x, y = _imgs(n=16, h=32, w=32), torch.arange(16) % 10
    m1, h1, hit1 = sbde.train_arm("sbde", "imagenet", 0, rec, x, y, "synthetic", device="cpu", progress=False)
    m2, h2, hit2 = sbde.train_arm("sbde", "imagenet", 0, rec, x, y, "synthetic", device="cpu", progress=False)
    assert (hit1, hit2) == (False, True) and h1["train_loss"] == h2["train_loss"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_threat_models_shapes_and_c_equals_d():
    from functools import partial

    x = _imgs(n=6, h=8, w=8)
    y = torch.arange(6) % 10
    model = _tiny_model()
    mk = partial(attacks.PGD, eps=8 / 255, step=2 / 255, steps=3, seed=0)
    res = sbde.threat_model_correct(model, sbde.arm_transform("sbde"), mk, x, y, batch_size=4)
    assert set(res) == set("abcd") and all(v.shape == (6,) and v.dtype == torch.bool for v in res.values())
    assert torch.equal(res["c"], res["d"])  # aware attack through Pi == attack on original pixels only
    base = sbde.threat_model_correct(model, sbde.arm_transform("baseline"), mk, x, y)
    assert set(base) == {"a"}


def test_threat_models_count_only_clean_correct_images_and_run_a_subset():
    from functools import partial

    x = _imgs(n=12, h=8, w=8)
    model = _tiny_model()
    tf = sbde.arm_transform("sbde")
    with torch.no_grad():
        pred = model(tf(x)).argmax(1)
    y = pred.clone()
    y[::3] = (pred[::3] + 1) % 10  # every third image is a clean mistake
    noop = lambda mask=None, transform=None: lambda m, xb, yb: xb  # noqa: E731  (an attack that changes nothing)
    res = sbde.threat_model_correct(model, tf, noop, x, y, batch_size=5)
    for t, v in res.items():  # unattacked: robust = clean, so clean mistakes must read as not robust
        assert torch.equal(v, pred == y), t
    mk = partial(attacks.PGD, eps=8 / 255, step=2 / 255, steps=2, seed=0)
    sub = sbde.threat_model_correct(model, tf, mk, x, y, threats=("a", "b", "c"))
    assert set(sub) == set("abc") and not sub["a"][::3].any()
    for bad in (("b",), ("e",), ()):
        with pytest.raises(ValueError, match="threats="):
            sbde.threat_model_correct(model, tf, mk, x, y, threats=bad)
