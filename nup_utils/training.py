"""Training and evaluation on tensors that live on the model's device.

One seed -> one CPU ``torch.Generator`` drives shuffling and augmentation (small index tensors are
drawn on the CPU and moved), so the same seed gives the same batches on CPU and GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import dryrun
from .runtime import eval_mode, make_generator, progress_disabled

SCHEDULES = ("onecycle", "cosine", "constant")
AUGMENTS = ("crop", "flip")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bf16" (autocast) on CUDA, "fp32" on a CPU (bf16 on a CPU is faster only for some models and
    CPUs: ``python -m nup_utils.benchmark`` measures it; ask for "bf16" explicitly). Else the value itself.
    The notebooks' recipes resolve their "auto" by measurement before training (``benchmark.resolve_engine``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed values: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------- batched augmentation
def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back at a random offset per image. x: (N, C, H, W)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).to(x.device)
    rows = (off[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N,1,H,1)
    cols = (off[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N,1,1,W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flip of a random half of the batch. x: (N, C, H, W)."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, ops: tuple[str, ...], gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    for op in ops:
        if op not in AUGMENTS:
            raise ValueError(f"augment op {op!r}; allowed values: {', '.join(AUGMENTS)}")
    if "crop" in ops:
        x = random_crop(x, pad, gen)
    if "flip" in ops:
        x = random_flip(x, gen)
    return x


# ---------------------------------------------------------------- schedules
def make_scheduler(opt: torch.optim.Optimizer, schedule: str, lr: float, total_steps: int):
    if schedule == "onecycle":
        # OneCycleLR divides by (pct_start * total_steps - 1): keep the warm-up at >= 1 step for short
        # (smoke) runs; for total_steps >= 8 this is exactly pct_start = 0.25.
        if total_steps < 4:
            raise ValueError(
                f"schedule='onecycle' needs >= 4 optimizer steps, got {total_steps}; "
                "raise epochs or lower batch_size, or use schedule='cosine'"
            )
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=lr,
            total_steps=total_steps,
            pct_start=max(0.25, 2.0 / total_steps),
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
        )
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    raise ValueError(f"schedule={schedule!r}; allowed values: {', '.join(SCHEDULES)}")


# ---------------------------------------------------------------- train / evaluate
def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    schedule: str = "onecycle",
    label_smoothing: float = 0.0,
    augment_ops: tuple[str, ...] = ("crop", "flip"),
    pad: int = 4,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_transform: Callable | None = None,
    loss_fn: Callable | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    checkpoint_epochs: tuple[int, ...] = (),
    precision: str = "auto",
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "train",
) -> dict:
    """SGD (Nesterov) training. x: float (N, C, H, W) in [0, 1] on the model's device; y: int64 (N,).

    Per batch: augment (``augment_ops``) -> ``batch_transform(x, y, model, gen)`` (e.g. ConjMask)
    -> ``input_transform(x)`` (e.g. SBDE expansion) -> model -> ``loss_fn(logits, y)``
    (default cross-entropy with ``label_smoothing``). ``precision``: "bf16" = bf16 autocast, "fp32", or "auto"
    (:func:`resolve_precision`: bf16 on CUDA, fp32 on a CPU). ``channels_last``: model and batches in the
    channels-last memory format (faster convolutions on most CPUs and GPUs; the values are unchanged).

    Returns the history: per-epoch ``train_loss``, ``train_acc``, ``lr``, ``epoch_time_s``
    (+ ``val_acc`` when x_val is given) and ``checkpoints`` {epoch: state_dict} for ``checkpoint_epochs``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: all must be positive")
    device = model_device(model)
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the model is on {device}; move the data first")
    gen = make_generator(seed)
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
    )
    steps_per_epoch = math.ceil(len(x) / batch_size)
    sched = make_scheduler(opt, schedule, lr, epochs * steps_per_epoch)
    loss_fn = loss_fn or (lambda logits, t: F.cross_entropy(logits, t, label_smoothing=label_smoothing))
    prec = resolve_precision(precision, device)
    use_amp = prec == "bf16"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    hist = {"train_loss": [], "train_acc": [], "lr": [], "epoch_time_s": [], "checkpoints": {}}
    hist |= {"precision": prec, "channels_last": bool(channels_last)}
    if x_val is not None:
        hist["val_acc"] = []
    # a dry run (dryrun.active()) trains the first epoch's first steps only and times them
    epoch_iter = dryrun.outer(range(1, epochs + 1))
    bar = tqdm(epoch_iter, total=epochs, desc=desc, disable=not progress or progress_disabled(), leave=False)
    cost_key = dict(
        model=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        batch=batch_size,
        image=tuple(x.shape[1:]),
        transform=repr(input_transform) if input_transform is not None else None,
        precision=prec,
        channels_last=bool(channels_last),
    )
    run_batch = dryrun.batch_cap(batch_size)  # batch_size, except in a dry run with NUP_DRY_MAX_BATCH
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=gen).to(device)
        tot_loss = torch.zeros((), device=device)
        tot_correct = torch.zeros((), device=device)
        for i in dryrun.loop(steps_per_epoch, "train step", scale=batch_size / run_batch, **cost_key):
            idx = perm[i * batch_size : i * batch_size + run_batch]
            xb, yb = x[idx], y[idx]
            if augment_ops:
                xb = augment(xb, augment_ops, gen, pad)
            if batch_transform is not None:
                xb = batch_transform(xb, yb, model, gen)
            if input_transform is not None:
                xb = input_transform(xb)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
                loss = loss_fn(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.detach() * len(yb)
            tot_correct += (logits.argmax(1) == yb).sum()
        hist["train_loss"].append(float(tot_loss) / len(x))
        hist["train_acc"].append(float(tot_correct) / len(x))
        hist["lr"].append(opt.param_groups[0]["lr"])
        hist["epoch_time_s"].append(time.perf_counter() - t0)
        if x_val is not None:
            hist["val_acc"].append(float(evaluate(model, x_val, y_val, input_transform=input_transform).float().mean()))
        if epoch in checkpoint_epochs:
            hist["checkpoints"][epoch] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.3f}", acc=f"{hist['train_acc'][-1]:.3f}")
    if dryrun.active():  # the epochs a dry run skipped have their history and checkpoints (repeated)
        for k in ("train_loss", "train_acc", "lr", "epoch_time_s", "val_acc"):
            if hist.get(k):
                hist[k] += hist[k][-1:] * (epochs - len(hist[k]))
        for epoch in checkpoint_epochs:
            hist["checkpoints"].setdefault(epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    model.eval()
    return hist


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 500,
    input_transform: Callable | None = None,
    flip_tta: bool = False,
) -> torch.Tensor:
    """Logits (N, classes) in eval mode (mode restored afterwards). ``flip_tta``: the mean of the logits of
    the image and of its horizontal mirror, mirrored *before* ``input_transform`` (mirroring an expanded
    input would move original pixels onto the inserted lattice)."""
    device = model_device(model)
    if dryrun.active():  # a dry run times a few small batches (eval batch size is not a protocol choice)
        batch_size = dryrun.batch_cap(min(batch_size, dryrun.EVAL_BATCH))
    out = []
    key = dict(model=type(model).__name__, batch=batch_size, image=tuple(x.shape[1:]), flip_tta=flip_tta)
    with eval_mode(model):
        for sl in dryrun.batches(
            len(x), batch_size, "predict batch", steps=dryrun.STEPS, **key, transform=repr(input_transform)
        ):
            xb = x[sl].to(device)
            views = (xb, xb.flip(3)) if flip_tta else (xb,)
            if input_transform is not None:
                views = tuple(input_transform(v) for v in views)
            out.append(torch.stack([model(v).float() for v in views]).mean(0))
    return dryrun.pad(torch.cat(out), len(x))


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 500,
    input_transform: Callable | None = None,
    flip_tta: bool = False,
) -> torch.Tensor:
    """Per-sample correctness, bool (N,) on the CPU (``flip_tta``: see :func:`predict`)."""
    logits = predict(model, x, batch_size=batch_size, input_transform=input_transform, flip_tta=flip_tta)
    return (logits.argmax(1) == y.to(logits.device)).cpu()
