import pytest
import torch

from nup_utils import runtime, training


def _toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, :4] += 0.6  # class 1: bright top half
    return x, y


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_random_crop_windows_of_padded_input():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = runtime.make_generator(0)
    assert torch.equal(training.random_crop(x, 0, g), x)
    out = training.random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = padded[i, 0].unfold(0, 4, 1).unfold(1, 4, 1).reshape(-1, 4, 4)
        assert any(torch.equal(w, out[i, 0]) for w in windows)


def test_flip_is_either_identity_or_mirror():
    x = torch.rand(16, 3, 4, 4)
    out = training.random_flip(x, runtime.make_generator(1))
    for a, b in zip(x, out):
        assert torch.equal(a, b) or torch.equal(a.flip(2), b)
    with pytest.raises(ValueError, match="augment op"):
        training.augment(x, ("rotate",), runtime.make_generator(0))


def test_training_is_deterministic_and_learns():
    x, y = _toy()
    runs = []
    for _ in range(2):
        m = _net()
        h = training.train(
            m,
            x,
            y,
            epochs=15,
            batch_size=16,
            lr=0.1,
            seed=3,
            augment_ops=(),
            progress=False,
            checkpoint_epochs=(1,),
            x_val=x,
            y_val=y,
        )
        runs.append((m, h))
    (m1, h1), (m2, h2) = runs
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert h1["train_loss"] == h2["train_loss"]
    assert h1["train_loss"][-1] < h1["train_loss"][0]
    assert h1["val_acc"][-1] == 1.0 and set(h1["checkpoints"]) == {1}
    assert not m1.training  # left in eval mode


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_and_bad_schedule(schedule):
    x, y = _toy(32)
    h = training.train(
        _net(), x, y, epochs=1, batch_size=8, lr=0.05, seed=0, schedule=schedule, augment_ops=(), progress=False
    )
    assert len(h["lr"]) == 1
    with pytest.raises(ValueError, match="schedule"):
        training.train(_net(), x, y, epochs=1, batch_size=8, lr=0.05, seed=0, schedule="step", progress=False)


def test_bad_arguments_and_hooks():
    x, y = _toy(16)
    with pytest.raises(ValueError, match="epochs"):
        training.train(_net(), x, y, epochs=0, batch_size=8, lr=0.1, seed=0)
    calls = []

    def bt(xb, yb, model, gen):
        calls.append(xb.shape[0])
        return xb

    training.train(
        _net(),
        x,
        y,
        epochs=1,
        batch_size=8,
        lr=0.1,
        seed=0,
        augment_ops=(),
        batch_transform=bt,
        schedule="cosine",
        input_transform=lambda t: t * 1.0,
        progress=False,
    )
    assert calls == [8, 8]


def test_evaluate_restores_mode_and_returns_bool():
    x, y = _toy(8)
    m = _net().train()
    c = training.evaluate(m, x, y, batch_size=3)
    assert c.dtype == torch.bool and c.shape == (8,) and m.training


@pytest.mark.parametrize("steps", [4, 5, 7, 8])
def test_onecycle_short_runs(steps):
    x, y = _toy(8 * steps)
    h = training.train(_net(), x, y, epochs=1, batch_size=8, lr=0.05, seed=0, augment_ops=(), progress=False)
    assert len(h["train_loss"]) == 1
    with pytest.raises(ValueError, match="onecycle"):
        training.train(_net(), x[:24], y[:24], epochs=1, batch_size=8, lr=0.05, seed=0, progress=False)
