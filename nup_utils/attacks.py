"""White-box attacks in [0, 1] pixel space: FGSM and PGD (L-inf and L2).

Threat-model constants (eps, step, steps) are required keyword arguments and show in ``repr``.
Options shared by both:
  * ``mask``: perturb only coordinates where mask is 1 (tensor broadcastable to x, e.g. (1, C, H, W)).
  * ``transform``: differentiable map applied before the model, ``model(transform(x_adv))``, so a
    defence (projection, masking) can be attacked end to end. Use :func:`straight_through` for BPDA
    and ``eot > 1`` (PGD) to average gradients over a random transform (EOT).
  * ``loss``: 'ce' (cross-entropy) or 'margin' (CW-style logit margin).
The model is put in eval mode during the attack and its previous mode is restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import dryrun
from .runtime import eval_mode, make_generator

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin")


def _check_budget(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}; expected a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}={value!r}; expected {'> 0' if positive else '>= 0'}")
    return float(value)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Per-sample loss to maximize. logits (N, K), y (N,) -> (N,)."""
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if kind == "margin":
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
        return other - true
    raise ValueError(f"loss={kind!r}; allowed values: {', '.join(LOSSES)}")


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward + one backward in eval mode (mode restored), also under ``torch.no_grad``:
    per-sample CE loss (N,), its gradient w.r.t. x (same shape as x) and the label used (N,):
    ``y`` when given, else the model's prediction. Parameters' ``.grad`` are untouched."""
    with torch.enable_grad(), eval_mode(model):
        xr = x.detach().requires_grad_(True)
        logits = model(xr).float()
        label = logits.argmax(1).detach() if y is None else y
        loss = F.cross_entropy(logits, label, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), xr)
    return loss.detach(), g.detach(), label


def straight_through(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """BPDA: forward = fn(x), backward = identity. For non-differentiable defences."""

    def wrapped(x):
        return x + (fn(x) - x).detach()

    wrapped.__name__ = f"straight_through({getattr(fn, '__name__', type(fn).__name__)})"
    return wrapped


def _flat_norm(t: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (N, 1, 1, ...)
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


class _Attack:
    def __init__(self, *, eps: float, norm: str, mask, transform, loss: str):
        self.eps = _check_budget("eps", eps)
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; allowed values: {', '.join(NORMS)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}; allowed values: {', '.join(LOSSES)}")
        self.norm, self.mask, self.transform, self.loss = norm, mask, transform, loss

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.mask is None else self.mask.to(device=x.device, dtype=x.dtype)

    def _grad(self, model, x_adv, y, eot: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient of the summed per-sample loss w.r.t. x_adv (averaged over eot draws), the loss (N,) and
        the share of draws that misclassify (N,), all from the same forward passes."""
        g_sum, l_sum = torch.zeros_like(x_adv), torch.zeros(len(x_adv), device=x_adv.device)
        wrong = torch.zeros(len(x_adv), device=x_adv.device)
        draws = dryrun.loop(eot, "eot draw", steps=1) if eot > 1 else range(1)  # a dry run: one draw
        eot_run = 0
        for _ in draws:
            eot_run += 1
            xr = x_adv.detach().requires_grad_(True)
            inp = self.transform(xr) if self.transform is not None else xr
            logits = model(inp).float()
            per = attack_loss(logits, y, self.loss)
            (g,) = torch.autograd.grad(per.sum(), xr)
            g_sum += g
            l_sum += per.detach()
            wrong += (logits.detach().argmax(1) != y).float()
        return g_sum / eot_run, l_sum / eot_run, wrong / eot_run

    def _project(self, x: torch.Tensor, delta: torch.Tensor, mask) -> torch.Tensor:
        if mask is not None:
            delta = delta * mask
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            delta = delta * (self.eps / _flat_norm(delta)).clamp(max=1.0)
        return (x + delta).clamp(0.0, 1.0) - x  # box constraint only shrinks |delta|

    def _step_dir(self, g: torch.Tensor) -> torch.Tensor:
        return g.sign() if self.norm == "linf" else g / _flat_norm(g)

    def _predict(self, model, x):
        inp = self.transform(x) if self.transform is not None else x
        return model(inp).float()

    def _shared_repr(self) -> str:
        t = None if self.transform is None else getattr(self.transform, "__name__", type(self.transform).__name__)
        return f"norm={self.norm!r}, loss={self.loss!r}, masked={self.mask is not None}, transform={t}"


class FGSM(_Attack):
    """One signed-gradient (L-inf) or normalized-gradient (L2) step of size eps."""

    def __init__(self, *, eps: float, norm: str = "linf", mask=None, transform=None, loss: str = "ce"):
        super().__init__(eps=eps, norm=norm, mask=mask, transform=transform, loss=loss)

    def __repr__(self):
        return f"FGSM(eps={self.eps:.5g}, {self._shared_repr()})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mask = self._mask_for(x)
        with eval_mode(model):
            g, _, _ = self._grad(model, x, y)
            if mask is not None:
                g = g * mask
            delta = self._project(x, self.eps * self._step_dir(g), mask)
        return (x + delta).detach()


class PGD(_Attack):
    """Projected gradient descent with random start and restarts. Per sample, the worst case over every
    iterate of every restart is kept: an iterate that misclassifies (in most of the ``eot`` draws) beats
    one that does not, then the higher loss wins; so a success found mid-way is never lost.
    Random starts come from one generator seeded with ``seed`` when the attack is built, so successive
    batches get different start noise and the same sequence of calls gives the same result."""

    def __init__(
        self,
        *,
        eps: float,
        step: float,
        steps: int,
        norm: str = "linf",
        restarts: int = 1,
        random_start: bool = True,
        seed: int = 0,
        mask=None,
        transform=None,
        loss: str = "ce",
        eot: int = 1,
    ):
        super().__init__(eps=eps, norm=norm, mask=mask, transform=transform, loss=loss)
        self.step = _check_budget("step", step, positive=True)
        for name, v in (("steps", steps), ("restarts", restarts), ("eot", eot)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        self.steps, self.restarts, self.eot = steps, restarts, eot
        self.random_start, self.seed = bool(random_start), seed
        self._gen = make_generator(seed)  # advances across calls: every batch its own start noise

    def __repr__(self):
        return (
            f"PGD(eps={self.eps:.5g}, step={self.step:.5g}, steps={self.steps}, restarts={self.restarts}, "
            f"random_start={self.random_start}, eot={self.eot}, seed={self.seed}, {self._shared_repr()})"
        )

    def _init_delta(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not self.random_start:
            return torch.zeros_like(x)
        dev = gen.device  # drawn on the generator's device, then moved: the same noise on any device
        if self.norm == "linf":
            d = (torch.rand(x.shape, generator=gen, device=dev) * 2 - 1) * self.eps
        else:  # uniform in the L2 ball: gaussian direction, radius eps * U^(1/d)
            d = torch.randn(x.shape, generator=gen, device=dev)
            r = torch.rand(x.shape[0], generator=gen, device=dev) ** (1.0 / x[0].numel())
            d = (
                d
                / d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
                * (r * self.eps).view(-1, *[1] * (x.dim() - 1))
            )
        return d.to(device=x.device, dtype=x.dtype)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mask = self._mask_for(x)
        best = x.clone()
        best_score = torch.full((len(x),), -float("inf"), device=x.device)
        key = dict(batch=len(x), image=tuple(x.shape[1:]), eot=self.eot, model=type(model).__name__)

        def keep_best(x_t, loss, wrong):
            nonlocal best_score
            score = loss + 1e6 * (wrong > 0.5).float()
            better = score > best_score
            best[better] = x_t[better]
            best_score = torch.where(better, score, best_score)

        with eval_mode(model):
            # a dry run (dryrun.active()) runs one restart of two steps and times them
            for _ in dryrun.loop(self.restarts, "pgd restart", steps=1):
                delta = self._project(x, self._init_delta(x, self._gen), mask)
                for _ in dryrun.loop(self.steps, "pgd step", **key):  # score every iterate, then step
                    x_t = (x + delta).detach()
                    g, loss, wrong = self._grad(model, x_t, y, self.eot)
                    keep_best(x_t, loss, wrong)
                    delta = self._project(x, delta + self.step * self._step_dir(g), mask)
                x_t = (x + delta).detach()  # the last iterate
                with torch.no_grad():
                    keep_best(x_t, *self._score(model, x_t, y))
        return best.detach()

    def _score(self, model, x_adv, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and share of misclassifying draws (N,) over eot draws, without gradients."""
        l_sum, wrong = torch.zeros(len(x_adv), device=x_adv.device), torch.zeros(len(x_adv), device=x_adv.device)
        eot_run = 0
        for _ in dryrun.loop(self.eot, "eot draw", steps=1) if self.eot > 1 else range(1):  # a dry run: one draw
            eot_run += 1
            logits = self._predict(model, x_adv)
            l_sum += attack_loss(logits, y, self.loss)
            wrong += (logits.argmax(1) != y).float()
        return l_sum / eot_run, wrong / eot_run


def robust_correct(
    model: nn.Module,
    attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 256,
    eval_transform: Callable | None = None,
) -> torch.Tensor:
    """Per-sample correctness (bool, CPU) of ``model(eval_transform(attack(x)))``.

    ``eval_transform`` is what the *deployed* system applies (e.g. a projection); it may differ from
    the attack's own ``transform`` (an unaware attacker) — that gap is what adaptive attacks close.
    """
    device = next(model.parameters()).device
    out = []
    for sl in dryrun.batches(len(x), batch_size, "attack batch", attack=type(attack).__name__):
        xb, yb = x[sl].to(device), y[sl].to(device)
        xa = attack(model, xb, yb)
        with torch.no_grad(), eval_mode(model):
            inp = eval_transform(xa) if eval_transform is not None else xa
            out.append((model(inp).argmax(1) == yb).cpu())
    return dryrun.pad(torch.cat(out), len(x))


# ----------------------------------------------------------------------------- reference attacks (torchattacks)


class _Through(nn.Module):
    """model(transform(x)): the defended system as one module, so a library attack sees the defence."""

    def __init__(self, model: nn.Module, transform: Callable):
        super().__init__()
        self.model, self.transform = model, transform

    def forward(self, x):
        return self.model(self.transform(x))


DRY_STEPS, DRY_QUERIES = 2, 10  # a dry run's AutoAttack / Square (torchattacks' loops cannot be cut from outside)
PARTS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}={v!r}; expected an int >= {lo}")
    return v


class AutoAttack:
    """AutoAttack (Croce & Hein 2020) from the maintained ``torchattacks`` package, behind this module's
    interface (threat constants required and in ``repr``; eval mode restored; device from the model).

    ``version="standard"`` (models deterministic at test time): APGD-CE, APGD-T (targeted DLR over
    ``n_targets`` target classes, reference ``n_classes - 1``), FAB-T and Square (``n_queries``), each run
    on the points the previous ones did not break (``torchattacks.MultiAttack``). ``version="rand"``
    (random at test time): APGD-CE and APGD-DLR with ``eot`` gradient samples per step (reference: 20).
    The reference uses ``steps=100``; torchattacks' own ``AutoAttack`` class uses 10, so the attack is
    composed here with ``steps`` explicit. ``parts`` runs a subset of the version's attacks, in the
    reference order (fewer parts, steps or targets than the reference = a weaker attack; ``repr`` says
    which). ``transform``: a differentiable map in front of the model (the defence), attacked end to end.
    torchattacks seeds the global torch RNG from ``seed`` on every call (its behaviour, not ours)."""

    VERSIONS = tuple(PARTS)

    def __init__(
        self,
        *,
        eps: float,
        steps: int,
        norm: str = "linf",
        version: str = "standard",
        parts: tuple[str, ...] | None = None,
        n_queries: int = 5000,
        eot: int = 20,
        n_classes: int = 10,
        n_targets: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
    ):
        self.eps = _check_budget("eps", eps, positive=True)
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; allowed values: {', '.join(NORMS)}")
        if version not in self.VERSIONS:
            raise ValueError(f"version={version!r}; allowed values: {', '.join(self.VERSIONS)}")
        self.parts = PARTS[version] if parts is None else tuple(parts)
        bad = [p for p in self.parts if p not in PARTS[version]]
        if bad or not self.parts or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"parts={parts!r}; allowed values for version={version!r}: {', '.join(PARTS[version])}")
        self.parts = tuple(p for p in PARTS[version] if p in self.parts)  # the reference order
        self.steps, self.n_queries, self.eot = (
            _check_int(n, v, 1) for n, v in (("steps", steps), ("n_queries", n_queries), ("eot", eot))
        )
        self.n_classes = _check_int("n_classes", n_classes, 2)
        self.n_targets = n_classes - 1 if n_targets is None else _check_int("n_targets", n_targets, 1)
        if self.n_targets > n_classes - 1:
            raise ValueError(f"n_targets={n_targets!r}; expected at most n_classes - 1 = {n_classes - 1}")
        self.norm, self.version, self.seed, self.transform = norm, version, seed, transform

    def __repr__(self):
        extra = f"eot={self.eot}" if self.version == "rand" else f"n_targets={self.n_targets}"
        if "square" in self.parts:
            extra += f", n_queries={self.n_queries}"
        return (
            f"AutoAttack(eps={self.eps:.5g}, steps={self.steps}, norm={self.norm!r}, version={self.version!r}, "
            f"parts={list(self.parts)}, {extra}, seed={self.seed}, "
            f"transform={'yes' if self.transform is not None else 'no'}, library='torchattacks')"
        )

    def components(
        self,
        net: nn.Module,
        *,
        steps: int | None = None,
        n_queries: int | None = None,
        n_targets: int | None = None,
        eot: int | None = None,
    ) -> list:
        """The torchattacks attacks, in the reference order, built for ``net`` (``steps``, ``n_queries``,
        ``n_targets``, ``eot``: override this attack's, for a dry run only)."""
        import torchattacks as ta

        steps, n_queries, n_targets = steps or self.steps, n_queries or self.n_queries, n_targets or self.n_targets
        kw = dict(norm="Linf" if self.norm == "linf" else "L2", eps=self.eps, seed=self.seed)
        eot = (eot or self.eot) if self.version == "rand" else 1
        out = []
        for p in self.parts:
            if p in ("apgd-ce", "apgd-dlr"):
                out.append(ta.APGD(net, steps=steps, loss=p[5:], eot_iter=eot, **kw))
            elif p == "apgd-t":
                out.append(ta.APGDT(net, steps=steps, n_classes=self.n_classes, **kw))
            elif p == "fab-t":
                out.append(ta.FAB(net, steps=steps, multi_targeted=True, n_classes=self.n_classes, **kw))
            else:
                out.append(ta.Square(net, n_queries=n_queries, **kw))
            if p in ("apgd-t", "fab-t"):
                out[-1].n_target_classes = n_targets  # the library's attribute (default n_classes - 1)
        return out

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torchattacks as ta

        net = model if self.transform is None else _Through(model, self.transform)
        with eval_mode(model):
            if not dryrun.active():
                comps = self.components(net)
                return (comps[0] if len(comps) == 1 else ta.MultiAttack(comps))(x, y).detach()
            return self._dry(net, x)

    def _dry(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A dry run: each part alone, DRY_STEPS iterations, one target class, DRY_QUERIES queries, one EOT draw,
        timed, its time scaled by that part's gradient-step equivalents, planned / run (a query ~ 1/3 of a
        gradient step). An upper bound of a real run: every part works on every image (with NUP_DRY_MAX_BATCH, a
        CPU code-path check, on the first few only, its time and FLOPs scaled to all of them). The labels are the
        untrained model's own predictions, since the library's parts skip the images a model already gets wrong
        (a tenth of them right would time the parts on a tenth of the images); in a real run, MultiAttack hands
        a part only the images the parts before it left robust."""

        def work(p, s, t, q, e):  # gradient-step equivalents of one image's attack by part p
            per_part = {"apgd-ce": s * (e if self.version == "rand" else 1), "apgd-dlr": s * e}
            return (per_part | {"apgd-t": s * t, "fab-t": s * t, "square": q / 3})[p]

        steps, queries = min(self.steps, DRY_STEPS), min(self.n_queries, DRY_QUERIES)
        key = dict(batch=len(x), image=tuple(x.shape[1:]), parts=self.parts, steps=self.steps)
        xs = x[: dryrun.batch_cap(len(x))]  # NUP_DRY_MAX_BATCH (a CPU code-path check): its first images only
        with torch.no_grad():
            y = net(xs).argmax(1)
        comps = self.components(net, steps=steps, n_queries=queries, n_targets=1, eot=1)
        out = xs
        for p, atk in zip(self.parts, comps, strict=True):
            scale = work(p, self.steps, self.n_targets, self.n_queries, self.eot) / work(p, steps, 1, queries, 1)
            for _ in dryrun.loop(1, "autoattack", scale=scale * len(x) / len(xs), part=p, **key):
                out = atk(xs, y).detach()
        return dryrun.pad(out, len(x))  # the cut images repeated: the real shape, numbers that mean nothing


class Square:
    """Square Attack (Andriushchenko et al. 2020; torchattacks), the gradient-free check: score-based random
    search with ``n_queries`` model evaluations per image. If it beats the gradient attacks, their gradients
    are masked. ``transform`` as in :class:`AutoAttack` (only its forward is used)."""

    def __init__(self, *, eps: float, n_queries: int, norm: str = "linf", seed: int = 0, transform=None):
        self.eps = _check_budget("eps", eps, positive=True)
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}; allowed values: {', '.join(NORMS)}")
        self.n_queries = _check_int("n_queries", n_queries, 1)
        self.norm, self.seed, self.transform = norm, seed, transform

    def __repr__(self):
        return (
            f"Square(eps={self.eps:.5g}, n_queries={self.n_queries}, norm={self.norm!r}, seed={self.seed}, "
            f"transform={'yes' if self.transform is not None else 'no'}, library='torchattacks')"
        )

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torchattacks as ta

        net = model if self.transform is None else _Through(model, self.transform)
        queries = min(self.n_queries, DRY_QUERIES) if dryrun.active() else self.n_queries  # see AutoAttack._dry
        key = dict(batch=len(x), image=tuple(x.shape[1:]), n_queries=self.n_queries)
        xs = x[: dryrun.batch_cap(len(x))]  # all of x, except in a dry run with NUP_DRY_MAX_BATCH (as AutoAttack)
        with eval_mode(model):
            if dryrun.active():  # the untrained model's own labels: every image searched (an upper bound)
                with torch.no_grad():
                    y = net(xs).argmax(1)
            norm = "Linf" if self.norm == "linf" else "L2"
            for _ in dryrun.loop(1, "square", scale=self.n_queries / queries * len(x) / len(xs), **key):
                out = ta.Square(net, norm=norm, eps=self.eps, n_queries=queries, seed=self.seed)(xs, y).detach()
        return dryrun.pad(out, len(x))


def throughput(model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Wall-clock cost of one ``attack`` run on (x, y): images per second and, for the project's attacks,
    images × gradient steps per second (steps × restarts × eot for PGD, 1 for FGSM). For the benchmark
    cells; the numbers depend on the machine and on what else runs on it."""
    import time

    t0 = time.perf_counter()
    attack(model, x, y)
    dt = max(time.perf_counter() - t0, 1e-9)
    steps = attack.steps * attack.restarts * attack.eot if isinstance(attack, PGD) else 1
    out = {"attack": repr(attack), "images": len(x), "seconds": dt, "images_per_s": len(x) / dt}
    if isinstance(attack, (PGD, FGSM)):
        out["image_steps_per_s"] = len(x) * steps / dt
    return out


def throughput_line(r: dict, label: str) -> str:
    """One printable line of a :func:`throughput` row, prefixed by ``label`` (the model or arm)."""
    steps = f", {r['image_steps_per_s']:7.0f} images × steps/s" if "image_steps_per_s" in r else ""
    return (
        f"{label} {r['attack'].split('(')[0]:10s} {r['images_per_s']:7.1f} images/s{steps}"
        f"  ({r['images']} images, {r['seconds']:.1f} s)"
    )
