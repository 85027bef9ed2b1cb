"""ConjMask and LogitReg (P2, notebook 04): defences "without adversarial training", their controls,
the PGD adversarial-training anchor, the attack suite that checks them adaptively, and the probe.

* Coupling score from one backward pass: s = |x * g| with g = d loss / d x (true label in training,
  predicted label at test), summed over channels and pooled per pixel (patch=1) or per patch.
  Controls: |g| alone (``score="grad"``) and random positions (``score="random"``).
* :class:`ConjMask`: mask the top-r fraction of positions, filled with the dataset mean. As training
  augmentation (:meth:`ConjMask.train_transform`, applied per sample with probability p) and as a
  test-time defence (:meth:`ConjMask.transform`, the map the deployed system applies).
* :class:`LogitReg`: CE + lam * mean ||z||^2 ("squeeze") or logit normalization CE(z / (tau ||z||)) ("norm").
* :class:`PGDTrain`: PGD adversarial training (Madry) as a ``batch_transform`` - the reference anchor.
* :func:`attack_suite`: FGSM / PGD-k (restarts) at several eps, plus the adaptive variants a defence
  calls for (differentiate through the mask, BPDA through the top-r selection, EOT over random masks),
  the unaware attack (gradient-masking check) and a black-box transfer attack from a surrogate.
* :func:`probe`: per-image coupling (Pearson corr. and cosine of x and g across components) and the
  gradient spread; :func:`local_uncertainty`: notebook 01's dx*dp estimator on a small box around x.

All images are float (N, C, H, W) in [0, 1] pixel space (the models normalize inside).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import attacks, dryrun, uncertainty
from .data import CIFAR10_MEAN
from .runtime import eval_mode, make_generator, progress_disabled

SCORES = ("xgrad", "grad", "random")
LOGITREG_KINDS = ("squeeze", "norm")


def _check_fraction(name: str, v, *, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1 if lo_open else 0 <= v <= 1):
        raise ValueError(f"{name}={v!r}; expected a number in {'(0, 1)' if lo_open else '[0, 1]'}")
    return float(v)


# ---------------------------------------------------------------- scores and masks
def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """g = d CE / d x (N, C, H, W) and the label used (N,); see :func:`attacks.input_gradient`."""
    _, g, label = attacks.input_gradient(model, x, y)
    return g, label


def coupling_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, score: str = "xgrad", patch: int = 1
) -> torch.Tensor:
    """Per-position score (N, H/patch, W/patch): sum over channels (and the patch) of |x*g| ('xgrad')
    or |g| ('grad'). y=None -> predicted label (test time)."""
    if score not in ("xgrad", "grad"):
        raise ValueError(f"score={score!r}; allowed values for a gradient score: xgrad, grad")
    if not isinstance(patch, int) or patch < 1 or x.shape[-1] % patch or x.shape[-2] % patch:
        raise ValueError(f"patch={patch!r}; expected a positive int dividing the image size {tuple(x.shape[-2:])}")
    g, _ = input_gradient(model, x, y)
    s = (x.detach() * g).abs() if score == "xgrad" else g.abs()  # (N, C, H, W)
    s = s.sum(1, keepdim=True)  # (N, 1, H, W)
    if patch > 1:
        s = F.avg_pool2d(s, patch) * patch * patch  # sum over each patch
    return s[:, 0]


def top_r_mask(scores: torch.Tensor, r: float) -> torch.Tensor:
    """bool (N, h, w): the round(r*h*w) highest-scoring positions of each sample (torch.topk order)."""
    r = _check_fraction("r", r)
    n, h, w = scores.shape
    k = int(round(r * h * w))
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=scores.device)
    if k > 0:
        mask.scatter_(1, scores.flatten(1).topk(k, dim=1).indices, True)
    return mask.view(n, h, w)


def random_mask(n: int, h: int, w: int, r: float, gen: torch.Generator, device=None) -> torch.Tensor:
    """bool (N, h, w) with exactly round(r*h*w) random positions per sample (drawn on the CPU from gen)."""
    r = _check_fraction("r", r)
    k = int(round(r * h * w))
    order = torch.rand(n, h * w, generator=gen, device=gen.device).argsort(1)[:, :k]
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=gen.device)
    mask.scatter_(1, order, True)
    return mask.view(n, h, w).to(device)


def fill_masked(x: torch.Tensor, mask: torch.Tensor, fill, patch: int = 1) -> torch.Tensor:
    """x with masked positions set to ``fill`` (per-channel values). mask bool (N, H/patch, W/patch).
    Differentiable in x through the unmasked positions (the mask itself is a constant here)."""
    m = mask[:, None].to(x.dtype)  # (N, 1, h, w)
    if patch > 1:
        m = F.interpolate(m, scale_factor=patch, mode="nearest")
    f = torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * (1 - m) + f * m


class ConjMask:
    """Mask the top-r fraction of positions by coupling score, filled with the dataset mean.

    score: 'xgrad' (ConjMask, |x*g|), 'grad' (|g| control) or 'random' (random-masking control).
    Training uses the true label, test time the predicted label (one backward each).
    """

    def __init__(self, *, r: float, score: str = "xgrad", patch: int = 1, fill=CIFAR10_MEAN):
        self.r = _check_fraction("r", r)
        if score not in SCORES:
            raise ValueError(f"score={score!r}; allowed values: {', '.join(SCORES)}")
        if not isinstance(patch, int) or patch < 1:
            raise ValueError(f"patch={patch!r}; expected a positive int")
        self.score, self.patch, self.fill = score, patch, tuple(float(v) for v in fill)

    def __repr__(self):
        return f"ConjMask(r={self.r:g}, score={self.score!r}, patch={self.patch}, fill={self.fill})"

    def mask(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, gen: torch.Generator | None = None
    ) -> torch.Tensor:
        """bool (N, H/patch, W/patch); ``gen`` is required for score='random'."""
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        if self.score == "random":
            if gen is None:
                raise ValueError("score='random' needs a torch.Generator (gen=...)")
            return random_mask(len(x), h, w, self.r, gen, x.device)
        return top_r_mask(coupling_scores(model, x, y, score=self.score, patch=self.patch), self.r)

    def __call__(self, model, x, y=None, gen=None) -> torch.Tensor:
        return fill_masked(x, self.mask(model, x, y, gen), self.fill, self.patch)

    def transform(self, model: nn.Module, *, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """The deployed test-time defence x -> masked x (predicted labels). Use as ``eval_transform``
        and as an attack's ``transform`` (gradient flows through the unmasked pixels; the top-r selection
        is treated as a constant - wrap in attacks.straight_through for BPDA). score='random' draws
        fresh masks on every call from a generator seeded with ``seed`` (so EOT averages over masks)."""
        gen = make_generator(seed) if self.score == "random" else None

        def conjmask_defence(x):
            return self(model, x, None, gen)

        conjmask_defence.__name__ = f"conjmask(r={self.r:g},{self.score})"
        return conjmask_defence

    def train_transform(self, p: float) -> Callable:
        """``batch_transform(x, y, model, gen)`` for training.train: each sample is masked with
        probability p (true-label scores, computed in eval mode; the model's train mode is restored)."""
        p = _check_fraction("p", p)

        def conjmask_augment(x, y, model, gen):
            pick = (torch.rand(len(x), generator=gen) < p).to(x.device)  # (N,)
            if not bool(pick.any()):
                return x
            out = x.clone()
            out[pick] = self(model, x[pick], y[pick], gen)
            return out

        conjmask_augment.__name__ = f"conjmask_augment(p={p:g}, {self!r})"
        return conjmask_augment


# ---------------------------------------------------------------- losses and the AT anchor
class LogitReg:
    """'squeeze': CE + lam * mean_n ||z_n||^2 (logit squeezing);
    'norm': CE(z / (tau * ||z_n||)) (logit normalization)."""

    def __init__(self, *, kind: str = "squeeze", lam: float | None = None, tau: float | None = None):
        if kind not in LOGITREG_KINDS:
            raise ValueError(f"kind={kind!r}; allowed values: {', '.join(LOGITREG_KINDS)}")
        if kind == "squeeze" and (isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0):
            raise ValueError(f"lam={lam!r}; kind='squeeze' needs a number > 0")
        if kind == "norm" and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0):
            raise ValueError(f"tau={tau!r}; kind='norm' needs a number > 0")
        self.kind, self.lam, self.tau = kind, lam, tau

    def __repr__(self):
        return (
            f"LogitReg(kind='squeeze', lam={self.lam:g})"
            if self.kind == "squeeze"
            else f"LogitReg(kind='norm', tau={self.tau:g})"
        )

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # logits (N, K)
        if self.kind == "squeeze":
            return F.cross_entropy(logits, y) + self.lam * logits.pow(2).sum(1).mean()
        z = logits / (self.tau * logits.norm(dim=1, keepdim=True).clamp_min(1e-7))
        return F.cross_entropy(z, y)


class PGDTrain:
    """PGD adversarial training as ``batch_transform``: replace the batch by PGD adversarials (eval-mode
    attack; a fresh attack seed per batch is drawn from the training generator)."""

    def __init__(self, *, eps: float, step: float, steps: int):
        attacks.PGD(eps=eps, step=step, steps=steps)  # validates the constants
        self.eps, self.step, self.steps = float(eps), float(step), steps

    def __repr__(self):
        return f"PGDTrain(eps={self.eps:.5g}, step={self.step:.5g}, steps={self.steps})"

    def __call__(self, x, y, model, gen):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        return attacks.PGD(eps=self.eps, step=self.step, steps=self.steps, seed=seed)(model, x, y)


# ---------------------------------------------------------------- evaluation
DEFENCE_KINDS = ("none", "topr", "random")


def attack_suite(
    *,
    eps: float,
    steps: tuple[int, ...],
    restarts: int,
    step_frac: float = 2.5,
    defence=None,
    defence_kind: str = "none",
    eot: int = 1,
    bpda=None,
    seed: int = 0,
) -> dict:
    """Attacks for one eps: {name: attack}. PGD step = step_frac * eps / steps (Madry's 2.5 eps / steps).

    defence_kind 'none': white-box on the bare model. 'topr' (deterministic, non-differentiable selection):
    attacks run through ``defence`` (mask constant), plus 'pgdK-bpda' through ``bpda`` (straight-through)
    and 'pgdK-unaware' on the bare model. 'random': PGD with EOT over ``eot`` masks, plus 'pgdK-noeot'
    and 'pgdK-unaware'. K is the first entry of ``steps``. The robust_correct eval_transform is the defence.
    """
    if defence_kind not in DEFENCE_KINDS:
        raise ValueError(f"defence_kind={defence_kind!r}; allowed values: {', '.join(DEFENCE_KINDS)}")
    if (defence_kind == "none") != (defence is None):
        raise ValueError("defence must be given exactly when defence_kind is not 'none'")
    if defence_kind == "topr" and bpda is None:
        raise ValueError("defence_kind='topr' needs bpda=attacks.straight_through(defence)")
    if not steps or not all(isinstance(s, int) and s >= 1 for s in steps):
        raise ValueError(f"steps={steps!r}; expected a non-empty tuple of ints >= 1")
    t_eot = eot if defence_kind == "random" else 1
    out = {"fgsm": attacks.FGSM(eps=eps, transform=defence)}
    for k in steps:
        out[f"pgd{k}"] = attacks.PGD(
            eps=eps, step=step_frac * eps / k, steps=k, restarts=restarts, transform=defence, eot=t_eot, seed=seed
        )
    k = steps[0]
    pgd = lambda **kw: attacks.PGD(eps=eps, step=step_frac * eps / k, steps=k, seed=seed, **kw)  # noqa: E731
    if defence_kind == "topr":
        out[f"pgd{k}-bpda"] = pgd(transform=bpda)
    if defence_kind == "random" and eot > 1:
        out[f"pgd{k}-noeot"] = pgd(transform=defence)
    if defence_kind != "none":
        out[f"pgd{k}-unaware"] = pgd()
    return out


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    suite: dict,
    *,
    eval_transform=None,
    only: torch.Tensor | None = None,
    batch_size: int = 256,
    desc: str = "attacks",
) -> dict:
    """{name: bool (N,)} robust correctness under each attack. Images outside ``only`` (e.g. clean
    mistakes of the deployed system) count as not robust and are not attacked."""
    only = torch.ones(len(x), dtype=torch.bool) if only is None else only.cpu()
    idx = torch.nonzero(dryrun.attacked(only)).flatten()  # a dry run: every image (its models are untrained)
    out = {}
    for name, atk in tqdm(suite.items(), desc=desc, disable=progress_disabled(), leave=False):
        res = torch.zeros(len(x), dtype=torch.bool)
        if len(idx):
            res[idx] = attacks.robust_correct(
                model, atk, x[idx], y[idx], batch_size=batch_size, eval_transform=eval_transform
            )
        out[name] = res
    return out


def transfer_correct(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    *,
    eval_transform=None,
    only: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Black-box transfer: bool (N,) correctness of the deployed system on adversarials crafted elsewhere."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad(), eval_mode(model):
        for sl in dryrun.batches(len(x_adv), batch_size, "transfer batch"):  # a dry run: the first batch, padded
            xb = x_adv[sl].to(device)
            inp = eval_transform(xb) if eval_transform is not None else xb
            out.append((model(inp).argmax(1) == y[sl].to(device)).cpu())
    res = dryrun.pad(torch.cat(out), len(x_adv))
    return res & only.cpu() if only is not None else res


# ---------------------------------------------------------------- NUP quantities
def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> dict:
    """Per image (CPU tensors (N,)): 'corr' Pearson correlation of x and g across the D components,
    'cos' cosine of x and g, 'grad_rms' the gradient spread sqrt(mean g^2), 'xg_sum' sum_k x_k g_k.
    g = d CE(true label) / d x, one backward (the single-backward probe)."""
    out = {k: [] for k in ("corr", "cos", "grad_rms", "xg_sum")}
    for sl in dryrun.batches(len(x), batch_size, "probe batch"):
        xb = x[sl]
        g, _ = input_gradient(model, xb, y[sl].to(xb.device))
        xf, gf = xb.flatten(1).double(), g.flatten(1).double()  # (n, D)
        xc, gc = xf - xf.mean(1, keepdim=True), gf - gf.mean(1, keepdim=True)
        out["corr"].append((xc * gc).sum(1) / (xc.norm(dim=1) * gc.norm(dim=1)).clamp_min(1e-30))
        out["cos"].append(F.cosine_similarity(xf, gf, dim=1, eps=1e-30))
        out["grad_rms"].append(gf.pow(2).mean(1).sqrt())
        out["xg_sum"].append((xf * gf).sum(1))
    return {k: dryrun.pad(torch.cat(v).float().cpu(), len(x)) for k, v in out.items()}


def local_uncertainty(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    radius: float,
    n_samples: int,
    seed: int,
    groups: int = 4,
    state: str = "exp",
) -> dict:
    """Notebook 01's estimator (nup_utils.uncertainty) on the box [x - radius, x + radius] ∩ [0, 1]^D
    around each image, loss = CE(true label): per image (N,) the component means of dx, dp and dx*dp
    and the effective sample size. Uniform sampling on the small box."""
    if not (isinstance(radius, (int, float)) and 0 < radius <= 1):
        raise ValueError(f"radius={radius!r}; expected a number in (0, 1]")
    est = uncertainty.UncertaintyEstimator(n_samples=n_samples, batch_size=n_samples, groups=groups, states=(state,))
    shape = tuple(x.shape[1:])
    out = {k: [] for k in ("dx", "dp", "product", "ess")}
    for i in dryrun.loop(len(x), "local uncertainty image", n_samples=n_samples):
        xi = x[i].detach().double().cpu().flatten()
        box = uncertainty.Box((xi - radius).clamp(0, 1), (xi + radius).clamp(0, 1))
        gen = make_generator(seed * 1_000_003 + i)
        e = est(uncertainty.model_loss(model, int(y[i]), shape), box, gen)[state]
        for k in ("dx", "dp", "product"):
            out[k].append(float(e[k].mean()))
        out["ess"].append(e.ess)
    return {k: dryrun.pad(torch.tensor(v), len(x)) for k, v in out.items()}


def spearman(a, b) -> tuple[float, float]:
    """Spearman rank correlation and its exact two-sided permutation p-value (n <= 8) or scipy's otherwise."""
    from itertools import permutations

    from scipy import stats

    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.numel() < 3:
        raise ValueError("spearman needs two equal-length sequences of at least 3 values")
    rho = float(stats.spearmanr(a.numpy(), b.numpy()).statistic)
    n = a.numel()
    if n > 8 or math.isnan(rho):
        return rho, float(stats.spearmanr(a.numpy(), b.numpy()).pvalue)
    import numpy as np

    ra, rb = stats.rankdata(a.numpy()), stats.rankdata(b.numpy())
    perms = np.array(list(permutations(range(n))))  # (n!, n)
    rbp = rb[perms]  # every relabelling of b's ranks
    ac, bc = ra - ra.mean(), rbp - rbp.mean(1, keepdims=True)
    rhos = (bc @ ac) / (np.linalg.norm(ac) * np.linalg.norm(bc, axis=1))
    return rho, float((np.abs(rhos) >= abs(rho) - 1e-12).mean())
