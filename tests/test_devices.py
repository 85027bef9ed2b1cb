"""Tensors made on the wrong device: library code must place every tensor it creates on the device of
its inputs (or, for seeded noise, on its generator's device and then move it). CI has no GPU, so the
default device is set to ``meta`` while the model and the inputs stay on the CPU: a tensor created
without an explicit device lands on ``meta`` and the first operation mixing it with a CPU tensor
fails, as it would on a GPU (issue #14: ``sbde.min_adv_eps`` built CPU tensors next to CUDA ones)."""

import pytest
import torch

from nup_utils import attacks, defenses, mask_projection, models, sbde, training
from nup_utils import uncertainty as U


@pytest.fixture()
def foreign_default_device():
    torch.manual_seed(0)
    model = models.small_cnn(width=2, hidden=8).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    torch.set_default_device("meta")
    try:
        yield model, x, y
    finally:
        torch.set_default_device(None)


def test_the_guard_catches_a_tensor_made_on_the_default_device(foreign_default_device):
    model, x, y = foreign_default_device

    def buggy(x):  # the bug class: a constant made without device=
        return torch.where(x.flatten(1).sum(1) > 0, torch.full((len(x),), 1.0), torch.zeros(len(x)))

    with pytest.raises((RuntimeError, NotImplementedError)):
        buggy(x)


def test_attacks_on_the_inputs_device(foreign_default_device):
    model, x, y = foreign_default_device
    mask = torch.ones(1, 1, 28, 28, device="cpu")
    for atk in (
        attacks.FGSM(eps=0.1),
        attacks.PGD(eps=0.1, step=0.05, steps=2, restarts=2),
        attacks.PGD(eps=0.5, step=0.2, steps=2, norm="l2", loss="margin"),
        attacks.PGD(eps=0.1, step=0.05, steps=2, mask=mask, eot=2, transform=lambda v: v.clamp(0, 1)),
    ):
        xa = atk(model, x, y)
        assert xa.device.type == "cpu" and xa.shape == x.shape, atk
    assert attacks.robust_correct(model, attacks.FGSM(eps=0.1), x, y).device.type == "cpu"
    assert training.evaluate(model, x, y).device.type == "cpu"


def test_sbde_functions_on_the_inputs_device(foreign_default_device):
    model, x, y = foreign_default_device
    out = sbde.min_adv_eps(model, x, y, [0.05, 0.1, 0.3], lambda e: attacks.FGSM(eps=e))
    assert out.shape == (6,) and out.device.type == "cpu"
    out[:3] = torch.tensor([0.1, 0.3, float("inf")], device="cpu")  # brackets to bisect, and a censored image
    fine = mask_projection.refine_min_eps(model, x, y, out, [0.05, 0.1, 0.3], lambda e: attacks.FGSM(eps=e), bisect=2)
    assert fine.shape == (6,) and fine.device.type == "cpu"
    gen = torch.Generator().manual_seed(0)
    d = sbde.subspace_direction(
        (6, 1, 28, 28), torch.zeros(1, 1, 28, 28, dtype=torch.bool, device="cpu"), "orig", gen=gen
    )
    assert d.device.type == "cpu"
    assert sbde.loss_profile(model, x, y, d, [0.0, 0.1]).shape == (2,)
    m = torch.zeros(1, 1, 28, 28, dtype=torch.bool, device="cpu")
    m[..., ::2, ::2] = True
    assert sbde.grad_split(model, x, y, m)["l1_aux"].shape == (6,)
    assert sbde.pgd_path_attribution(model, x, y, m, eps=0.1, step=0.05, steps=2)["aux"].shape == (6,)


def test_defenses_and_estimator_on_the_inputs_device(foreign_default_device):
    model, x, y = foreign_default_device
    gen = torch.Generator().manual_seed(0)
    fill = (0.5,)
    for cm in (defenses.ConjMask(r=0.1, fill=fill), defenses.ConjMask(r=0.1, score="random", fill=fill)):
        assert cm(model, x, y, gen=gen).device.type == "cpu"
    est = U.UncertaintyEstimator(n_samples=32, batch_size=16, groups=4)
    maps = U.class_maps(model, (1, 28, 28), [0], est, U.pixel_box(784), seed=0)
    assert maps["envelope"]["values"]["product"].device.type == "cpu"


def test_llm_probe_and_decoding_on_the_models_device():
    from nup_utils import llm_models, llm_probe, qa_probe

    qs = llm_probe.load_qa()[:4]
    words = dict(list(qa_probe.WORDINGS.items())[:2])
    texts = [llm_models.PromptFormat(object(), w)(q["question"]) for q in qs for w in words.values()]
    lm = llm_models.tiny_random_lm(texts + [a for q in qs for a in q["answers"]], seed=0)  # on the CPU
    torch.set_default_device("meta")
    try:
        run = qa_probe.run_model(lm, qs, words, max_new_tokens=2, probe_batch=2, decode_batch=2, n_cost=2)
    finally:
        torch.set_default_device(None)
    assert run["grade"].shape == (4, 2) and all(v.shape == (4, 2) for v in run["risk"].values())
