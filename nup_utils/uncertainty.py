"""Monte Carlo estimators of the input/loss-gradient "uncertainty relation" (P1, P2; notebook 01).

For a per-sample loss l(X) >= 0 on a box domain Omega (default the pixel box [0,1]^D) a real state
psi on Omega is built from the loss, and for every input component i we estimate

    x_bar_i = E_rho[x_i],  dx_i^2 = Var_rho(x_i)  with rho = psi^2 (normalized),
    dp_i^2  = int (d_i psi)^2                      (<p_i> = 0 for a real state),
    P_i     = dx_i * dp_i                          (P1's naive bound: P_i >= 1/2),
    C_i     = -2 int (x_i - x_bar_i) psi d_i psi   (general bound: P_i >= |C_i| / 2, Cauchy-Schwarz),
    B_i     = 1 - C_i                              (boundary term from integration by parts).

Three state definitions:
  * ``"loss"``:     psi = l / ||l||           (P1, [recon]),  psi_tilde = l,    d psi_tilde / psi_tilde = g / l
  * ``"exp"`` :     psi ~ exp(-l / 2)         (P2 reading, [recon]),  psi_tilde = e^{-l/2},  ... = -g / 2
  * ``"envelope"``: psi ~ l * prod_i sin^2(pi u_i), u = (x - lo) / (hi - lo)   (ours, issue #16): the loss
    state times a smooth envelope that vanishes (with its derivative) on the box boundary, so B_i = 0,
    C_i = 1 and dx_i * dp_i >= 1/2 is a theorem; d psi_tilde / psi_tilde = g / l + 2 pi cot(pi u_i) / h_i.
with g = dl/dX from one autograd backward per batch. With samples X_n ~ q (density on Omega) and
self-normalized weights w_n ~ psi_tilde(X_n)^2 / q(X_n), and s_n = d psi_tilde / psi_tilde:

    x_bar = sum w x / sum w,  dx^2 = sum w (x - x_bar)^2 / sum w,
    dp^2  = sum w s^2 / sum w,  C = -2 sum w (x - x_bar) s / sum w.

Because the same weights enter dx, dp and C, the discrete Cauchy-Schwarz inequality makes
P_i >= |C_i|/2 hold for the *estimates* too (up to float error). Standard errors come from a
grouped jackknife (samples dealt into ``groups`` groups; leave-one-group-out), which covers the
ratio and product estimators alike. Default proposals: uniform for "loss" and "exp"; for "envelope"
the envelope's own density prod sin^4 (uniform sampling would give weights prod sin^4(pi u_i), whose
effective sample size collapses in hundreds of dimensions). Quadrature (composite Gauss-Legendre,
D <= 3, refined until two resolutions agree; the difference is its error estimate) reuses the same
accumulator with q = 1 / quadrature weight, so Monte Carlo and quadrature share every formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import dryrun
from .runtime import eval_mode, progress_disabled

CPU = torch.device("cpu")  # the estimators accumulate in float64 on the CPU, whatever device the model is on
STATES = ("loss", "exp", "envelope")
GAUSSIAN_STATES = ("loss", "exp")  # states with a Gaussian (minimum-uncertainty) test loss, gaussian_loss
QUANTITIES = ("x_mean", "dx", "dp", "product", "half_c", "boundary")


# ---------------------------------------------------------------- domain and samplers
@dataclass
class Box:
    """Axis-aligned box lo <= x <= hi, flattened: lo, hi (D,) float64."""

    lo: torch.Tensor
    hi: torch.Tensor

    def __post_init__(self):
        self.lo = torch.as_tensor(self.lo, dtype=torch.float64, device=CPU).flatten()
        self.hi = torch.as_tensor(self.hi, dtype=torch.float64, device=CPU).flatten()
        if self.lo.shape != self.hi.shape or self.lo.numel() == 0:
            raise ValueError(
                f"Box: lo and hi need the same non-empty shape, got {tuple(self.lo.shape)} and {tuple(self.hi.shape)}"
            )
        if not bool((self.hi > self.lo).all()):
            raise ValueError("Box: every component needs hi > lo")

    @property
    def dim(self) -> int:
        return self.lo.numel()

    @property
    def log_volume(self) -> float:
        return float(torch.log(self.hi - self.lo).sum())

    def __repr__(self):
        lo, hi = self.lo, self.hi
        return (
            f"Box(dim={self.dim}, lo in [{float(lo.min()):.3g}, {float(lo.max()):.3g}], "
            f"hi in [{float(hi.min()):.3g}, {float(hi.max()):.3g}])"
        )


def pixel_box(dim: int) -> Box:
    """The pixel box [0, 1]^dim (P1's domain, [recon])."""
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r}; expected a positive int")
    return Box(torch.zeros(dim, device=CPU), torch.ones(dim, device=CPU))


class UniformSampler:
    """X ~ uniform on the box; log q = -log volume."""

    def __repr__(self):
        return "UniformSampler()"

    def __call__(self, n: int, box: Box, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(n, box.dim, generator=gen, dtype=torch.float64, device=CPU)
        return box.lo + (box.hi - box.lo) * u, torch.full((n,), -box.log_volume, dtype=torch.float64, device=CPU)


class DataMixtureSampler:
    """Importance sampling around data points: q = defensive * uniform + (1 - defensive) * mean_j TN(c_j, sigma),
    TN a product of normals truncated to the box (so q is a density on the box). The uniform part keeps
    psi^2 / q bounded. centres: (M, D) points in the box; sigma > 0 in input units."""

    def __init__(self, centres: torch.Tensor, *, sigma: float, defensive: float = 0.1):
        self.centres = torch.as_tensor(centres, dtype=torch.float64, device=CPU).flatten(1)  # (M, D)
        if self.centres.shape[0] < 1:
            raise ValueError("DataMixtureSampler: centres must hold at least one point")
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"sigma={sigma!r}; expected a number > 0")
        if not (isinstance(defensive, (int, float)) and 0 < defensive <= 1):
            raise ValueError(f"defensive={defensive!r}; expected 0 < defensive <= 1 (weights must stay bounded)")
        self.sigma, self.defensive = float(sigma), float(defensive)

    def __repr__(self):
        return (
            f"DataMixtureSampler(centres={self.centres.shape[0]}, sigma={self.sigma:.4g}, "
            f"defensive={self.defensive:.3g})"
        )

    def _bounds(self, box: Box):  # standardized box edges per centre: (M, D) each
        a = (box.lo - self.centres) / self.sigma
        b = (box.hi - self.centres) / self.sigma
        return torch.special.ndtr(a), torch.special.ndtr(b)

    def log_q(self, x: torch.Tensor, box: Box) -> torch.Tensor:
        """log density of x (N, D) under the mixture; loops over centres to keep memory at (N, D)."""
        fa, fb = self._bounds(box)
        log_mass = torch.log((fb - fa).clamp_min(1e-300))  # (M, D)
        comp = []
        # a dry run (dryrun.active()) evaluates the first centres only: the mixture of those, finite, meaningless
        for j in dryrun.loop(self.centres.shape[0], "IS centre", points=len(x), dim=x.shape[1]):
            z = (x - self.centres[j]) / self.sigma  # (N, D)
            comp.append((-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - math.log(self.sigma) - log_mass[j]).sum(1))
        log_mix = torch.logsumexp(torch.stack(comp, 1), 1) - math.log(len(comp))  # (N,)
        log_uni = torch.full_like(log_mix, -box.log_volume)
        return (
            torch.logaddexp(math.log(self.defensive) + log_uni, math.log1p(-self.defensive) + log_mix)
            if self.defensive < 1
            else log_uni
        )

    def __call__(self, n: int, box: Box, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.centres.shape[1] != box.dim:
            raise ValueError(f"centres have dim {self.centres.shape[1]} but the box has dim {box.dim}")
        use_uni = torch.rand(n, generator=gen, dtype=torch.float64, device=CPU) < self.defensive
        j = torch.randint(0, self.centres.shape[0], (n,), generator=gen)
        u = torch.rand(n, box.dim, generator=gen, dtype=torch.float64, device=CPU)
        fa, fb = self._bounds(box)
        z = torch.special.ndtri((fa[j] + u * (fb[j] - fa[j])).clamp(1e-300, 1 - 1e-16))  # inverse-CDF truncated normal
        x_tn = (self.centres[j] + self.sigma * z).clamp(box.lo, box.hi)
        x = torch.where(use_uni[:, None], box.lo + (box.hi - box.lo) * u, x_tn)
        return x, self.log_q(x, box)


class EnvelopeSampler:
    """X with density q(x) = prod_i sin^4(pi u_i) / (3/8 h_i), u = (x - lo) / h: the squared envelope of the
    ``"envelope"`` state, so that state's weights psi_tilde^2 / q = l^2 * constant see only the loss. Exact
    (per-coordinate rejection from the uniform, acceptance sin^4, 3/8 on average), so log q is exact."""

    def __repr__(self):
        return "EnvelopeSampler()"

    @staticmethod
    def log_q(x: torch.Tensor, box: Box) -> torch.Tensor:
        h = box.hi - box.lo
        u = (x - box.lo) / h
        return (4 * torch.log(torch.sin(math.pi * u)) - math.log(3 / 8) - torch.log(h)).sum(1)

    def __call__(self, n: int, box: Box, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.empty(n, box.dim, dtype=torch.float64, device=CPU)
        todo = torch.ones(n, box.dim, dtype=torch.bool, device=CPU)
        while bool(todo.any()):  # ~ log(n D) / log(8/5) rounds; every round draws for the entries still open
            idx = todo.nonzero(as_tuple=True)
            cand = torch.rand(len(idx[0]), generator=gen, dtype=torch.float64, device=CPU)
            acc = torch.rand(len(cand), generator=gen, dtype=torch.float64, device=CPU) < torch.sin(math.pi * cand) ** 4
            sel = tuple(i[acc] for i in idx)
            u[sel], todo[sel] = cand[acc], False
        x = box.lo + (box.hi - box.lo) * u
        return x, self.log_q(x, box)


def default_samplers() -> dict:
    """The proposal of each state when none is given: uniform for "loss" and "exp", the envelope's own for
    "envelope" (one sampler object per kind, so states sharing a proposal share its samples)."""
    uni = UniformSampler()
    return {"loss": uni, "exp": uni, "envelope": EnvelopeSampler()}


# ---------------------------------------------------------------- loss functions
def model_loss(model: torch.nn.Module, label: int, input_shape: tuple[int, ...]) -> Callable:
    """l(X) = cross-entropy(model(X), label) for flat X (N, D) -> (N,). The model runs in float32 on its device."""
    device = next(model.parameters()).device
    if not isinstance(label, int) or isinstance(label, bool) or label < 0:
        raise ValueError(f"label={label!r}; expected a non-negative int class index")

    def fn(x: torch.Tensor) -> torch.Tensor:
        xb = x.to(device=device, dtype=torch.float32).view(len(x), *input_shape)
        logits = model(xb).float()
        if label >= logits.shape[1]:
            raise ValueError(f"label={label}; the model has {logits.shape[1]} classes")
        return F.cross_entropy(logits, torch.full((len(x),), label, device=device), reduction="none")

    fn.model = model
    return fn


def loss_and_grad(loss_fn: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward and one backward for a batch: l (N,) and g = dl/dx (N, D), both float64 on the CPU."""
    model = getattr(loss_fn, "model", None)
    xr = x.detach().clone().requires_grad_(True)
    if model is not None:
        with eval_mode(model):
            loss = loss_fn(xr)
            (g,) = torch.autograd.grad(loss.sum(), xr)
    else:
        loss = loss_fn(xr)
        (g,) = torch.autograd.grad(loss.sum(), xr)
    if loss.shape != (len(x),):
        raise ValueError(f"loss_fn must return one loss per sample, shape ({len(x)},), got {tuple(loss.shape)}")
    return loss.detach().double().cpu(), g.detach().double().cpu()


# ---------------------------------------------------------------- accumulation (per state, per group)
def _log_w_and_score(state: str, loss: torch.Tensor, grad: torch.Tensor, log_q: torch.Tensor, x=None, box=None):
    """log psi_tilde^2 - log q (N,) and s = d psi_tilde / psi_tilde (N, D); x (N, D) and box for "envelope"."""
    if state in ("loss", "envelope"):
        if bool((loss < 0).any()):
            raise ValueError(f"state={state!r} needs a non-negative loss (psi ~ l)")
        pos = loss > 0
        log_w = torch.where(pos, 2 * torch.log(loss.clamp_min(1e-300)), torch.full_like(loss, -math.inf))
        score = torch.where(pos[:, None], grad / loss.clamp_min(1e-300)[:, None], torch.zeros_like(grad))
        if state == "envelope":  # times prod sin^2(pi u): log weight + 4 sum log sin, score + 2 pi cot / h
            h = box.hi - box.lo
            u = (x - box.lo) / h
            sn = torch.sin(math.pi * u)
            inside = (sn > 0).all(1)  # a sample on the boundary has weight 0
            log_w = torch.where(inside, log_w + 4 * torch.log(sn.clamp_min(1e-300)).sum(1), -math.inf)
            score = score + (2 * math.pi / h) * torch.cos(math.pi * u) / sn.clamp_min(1e-300)
            score = torch.where((log_w > -math.inf)[:, None], score, torch.zeros_like(score))
    elif state == "exp":
        log_w, score = -loss, -0.5 * grad
    else:
        raise ValueError(f"state={state!r}; allowed values: {', '.join(STATES)}")
    return torch.nan_to_num(log_w - log_q, nan=-math.inf), score


class _Sums:
    """Per-group weighted sums, rescaled to a common reference log-weight ``ref`` (numerical stability).

    s0, s00: (G,) sums of w and w^2; s: (G, 5, D) sums of w * [x, x^2, s^2, x s, s]. One matmul per batch
    (few large ops rather than many small ones: cheaper on a shared 2-core CPU)."""

    FEATURES = ("s1", "s2", "sp", "sxs", "ss")

    def __init__(self, groups: int, dim: int):
        self.ref = -math.inf
        self.s0 = torch.zeros(groups, dtype=torch.float64, device=CPU)
        self.s00 = torch.zeros(groups, dtype=torch.float64, device=CPU)
        self.s = torch.zeros(groups, len(self.FEATURES), dim, dtype=torch.float64, device=CPU)

    def add(self, x, log_w, score, group):
        """x, score (N, D); log_w (N,); group (N,) int64 group index of each sample."""
        m = float(log_w.max())
        if not math.isfinite(m):
            return  # every weight is zero in this batch: nothing to add
        if m > self.ref:  # rescale what is stored to the new reference
            scale = math.exp(self.ref - m) if math.isfinite(self.ref) else 0.0
            self.s0.mul_(scale), self.s.mul_(scale), self.s00.mul_(scale**2)
            self.ref = m
        w = torch.exp(log_w - self.ref)  # (N,) in [0, 1]
        if not bool(torch.isfinite(score[w > 0]).all()):
            raise FloatingPointError("non-finite gradient/score where the state has weight")
        feats = torch.stack([x, x * x, score * score, x * score, score], 1)  # (N, 5, D)
        onehot = F.one_hot(group, len(self.s0)).to(torch.float64).T * w  # (G, N), weights folded in
        self.s += (onehot @ feats.flatten(1)).view_as(self.s)
        self.s0 += onehot.sum(1)
        self.s00 += (onehot * w).sum(1)

    def totals(self):
        """(s0, s1, s2, sp, sxs, ss) summed over groups: (), (D,) x 5."""
        return (self.s0.sum(0), *self.s.sum(0).unbind(0))

    def leave_one_out(self):
        t0, ts = self.s0.sum(0), self.s.sum(0)
        return (t0 - self.s0, *(ts - self.s).unbind(1))  # each (G,) or (G, D)


def _quantities(s0, s1, s2, sp, sxs, ss) -> dict[str, torch.Tensor]:
    """The six per-component quantities from (possibly leave-one-out) sums; s0 (...,), others (..., D)."""
    s0 = s0[..., None]
    x_mean = s1 / s0
    var = (s2 / s0 - x_mean**2).clamp_min(0.0)
    dp2 = sp / s0
    c = -2.0 * (sxs / s0 - x_mean * ss / s0)  # -2 E[(x - x_bar) s]
    dx, dp = var.sqrt(), dp2.sqrt()
    return {"x_mean": x_mean, "dx": dx, "dp": dp, "product": dx * dp, "half_c": 0.5 * c.abs(), "boundary": 1.0 - c}


@dataclass
class Estimate:
    """Per-component estimates (D,) with jackknife standard errors, for one state."""

    state: str
    values: dict[str, torch.Tensor]
    se: dict[str, torch.Tensor]
    n: int
    ess: float  # effective sample size (sum w)^2 / sum w^2 of the self-normalized weights
    extra: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.values:
            raise KeyError(f"{name!r}; allowed: {', '.join(QUANTITIES)}")
        return self.values[name]

    def cs_gap(self) -> torch.Tensor:
        """P_i - |C_i|/2 (D,), >= 0 up to float error by Cauchy-Schwarz."""
        return self.values["product"] - self.values["half_c"]

    def __repr__(self):
        v = self.values
        return (
            f"Estimate(state={self.state!r}, D={v['dx'].numel()}, n={self.n}, ess={self.ess:.1f}, "
            f"mean dx={float(v['dx'].mean()):.4g}, mean dp={float(v['dp'].mean()):.4g}, "
            f"mean P={float(v['product'].mean()):.4g})"
        )


def _finalize(state: str, sums: _Sums, n: int) -> Estimate:
    """Estimate of one state from its sums; ``n``: the samples (or nodes) the sums hold (in a dry run, the
    ones actually drawn: fewer than planned, and groups may be empty, which the jackknife tolerates)."""
    if not bool((sums.s0 > 0).any()):
        raise FloatingPointError(f"state={state!r}: every importance weight is zero")
    full = _quantities(*sums.totals())
    g = sums.s0.shape[0]
    if g >= 2 and bool((sums.s0.sum() - sums.s0 > 0).all()):
        loo = _quantities(*sums.leave_one_out())  # each (G, D)
        se = {name: ((g - 1) / g * ((val - val.mean(0)) ** 2).sum(0)).sqrt() for name, val in loo.items()}
    else:  # quadrature or a single group: no sampling error to report
        se = {name: torch.zeros_like(v) for name, v in full.items()}
    ess = float(sums.s0.sum() ** 2 / sums.s00.sum())
    return Estimate(state, full, se, n, ess)


# ---------------------------------------------------------------- estimators
class UncertaintyEstimator:
    """Monte Carlo estimator of (x_bar, dx, dp, P, |C|/2, B) per component, for several states at once.

    Settings: ``n_samples`` (total, per state), ``batch_size`` (one forward + one backward each, per proposal),
    ``groups`` (jackknife), ``sampler`` (None: each state's default proposal, :func:`default_samplers`; one
    sampler for every state, e.g. ``DataMixtureSampler``; or a dict {state: sampler}), ``states``.
    Call with (loss_fn, box, gen): loss_fn maps flat x (N, D) to per-sample losses (N,).
    """

    def __init__(
        self,
        *,
        n_samples: int,
        batch_size: int = 512,
        groups: int = 16,
        sampler=None,
        states: tuple[str, ...] = STATES,
        progress: bool = False,
    ):
        for name, v in (("n_samples", n_samples), ("batch_size", batch_size), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        if groups > n_samples:
            raise ValueError(f"groups={groups} > n_samples={n_samples}: every jackknife group needs samples")
        states = tuple(states)
        bad = [s for s in states if s not in STATES]
        if bad or not states:
            raise ValueError(f"states={states!r}; allowed values: {', '.join(STATES)}")
        if sampler is None:
            sampler = default_samplers()
        if isinstance(sampler, dict):
            missing = [s for s in states if s not in sampler]
            if missing:
                raise ValueError(f"sampler: no proposal for states {missing}; give one per state in {states}")
            self.samplers = {s: sampler[s] for s in states}
        else:
            if not callable(sampler):
                raise ValueError(f"sampler={sampler!r}; expected None, a sampler, or a dict {{state: sampler}}")
            self.samplers = {s: sampler for s in states}
        self.n_samples, self.batch_size, self.groups = n_samples, batch_size, groups
        self.states, self.progress = states, progress

    @property
    def sampler(self):
        """The proposal when every state shares one; otherwise the dict {state: sampler}."""
        distinct = {id(v) for v in self.samplers.values()}
        return next(iter(self.samplers.values())) if len(distinct) == 1 else dict(self.samplers)

    def _plan(self):  # [(sampler, states sharing it)] in the order of self.states
        plan = {}
        for s in self.states:
            plan.setdefault(id(self.samplers[s]), (self.samplers[s], []))[1].append(s)
        return list(plan.values())

    def __repr__(self):
        samplers = ", ".join(f"{'+'.join(states)}: {smp!r}" for smp, states in self._plan())
        return (
            f"UncertaintyEstimator(n_samples={self.n_samples}, batch_size={self.batch_size}, groups={self.groups}, "
            f"samplers={{{samplers}}}, states={self.states})"
        )

    def __call__(
        self, loss_fn: Callable, box: Box, gen: torch.Generator, *, desc: str = "uncertainty"
    ) -> dict[str, Estimate]:
        sums = {s: _Sums(self.groups, box.dim) for s in self.states}
        plan = self._plan()
        starts = range(0, self.n_samples, self.batch_size)
        # A dry run (dryrun.active()) draws the first batch only, times it and plans the rest; outside one
        # run_batch == batch_size and this is the plain loop over every batch. NUP_DRY_MAX_BATCH caps the batch of
        # a network's loss (model_loss) only: an analytic loss in a few dimensions (the exactness checks) costs
        # milliseconds per real batch, and a capped batch's fixed overhead scaled up 1000-fold would be the estimate.
        model = getattr(loss_fn, "model", None)
        run_batch = dryrun.batch_cap(self.batch_size) if model is not None else self.batch_size
        first = min(self.batch_size, self.n_samples)  # samples in the first batch of the real run
        key = dict(
            loss=type(model).__name__ if model is not None else "function",
            params=sum(p.numel() for p in model.parameters()) if model is not None else 0,
            dim=box.dim,
            batch=self.batch_size,
            proposals=[repr(smp) for smp, _ in plan],
            states=list(self.states),
        )
        batches = dryrun.loop(len(starts), "mc batch", steps=1, scale=first / min(run_batch, first), **key)
        drawn = 0  # samples actually drawn: n_samples, except in a dry run
        for b in tqdm(
            batches, total=len(starts), desc=desc, disable=not self.progress or progress_disabled(), leave=False
        ):
            start = starts[b]
            n = min(run_batch, self.n_samples - start)
            group = torch.arange(start, start + n, device=CPU) % self.groups  # samples dealt round-robin into groups
            for sampler, states in plan:  # one forward + one backward per proposal and batch
                x, log_q = sampler(n, box, gen)  # (n, D) float64, (n,)
                loss, grad = loss_and_grad(loss_fn, x)
                for s in states:
                    log_w, score = _log_w_and_score(s, loss, grad, log_q, x, box)
                    sums[s].add(x, log_w, score, group)
            drawn += n
        return {s: _finalize(s, sums[s], drawn) for s in self.states}


def gauss_legendre_axis(lo: float, hi: float, panels: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule on [lo, hi]: ``panels`` equal panels of ``order`` nodes each.
    Returns nodes and weights, (panels * order,) each."""
    t, w = np.polynomial.legendre.leggauss(order)  # on [-1, 1]
    edges = np.linspace(lo, hi, panels + 1)
    a, b = edges[:-1, None], edges[1:, None]
    return (a + (b - a) * (t + 1) / 2).ravel(), ((b - a) / 2 * w).ravel()


def _quadrature_once(loss_fn, box, panels, order, states, chunk) -> dict[str, Estimate]:
    axes, wts = [], []
    for i in range(box.dim):
        x_i, w_i = gauss_legendre_axis(float(box.lo[i]), float(box.hi[i]), panels, order)
        axes.append(torch.tensor(x_i, dtype=torch.float64, device=CPU))
        wts.append(torch.tensor(w_i, dtype=torch.float64, device=CPU))
    x = torch.cartesian_prod(*axes).reshape(-1, box.dim)  # (n^D, D)
    log_wq = torch.log(torch.cartesian_prod(*wts).reshape(-1, box.dim)).sum(1)  # log quadrature weight
    sums = {s: _Sums(1, box.dim) for s in states}
    # a dry run (dryrun.active()) evaluates the first chunks only: the sums then cover part of the box (a
    # pass of at most two chunks is complete); outside one this is the loop over every chunk
    nodes = 0  # nodes summed: len(x), except in a dry run
    for c in dryrun.loop(math.ceil(len(x) / chunk), "quadrature chunk", dim=box.dim, chunk=chunk):
        i = c * chunk
        xb = x[i : i + chunk]
        loss, grad = loss_and_grad(loss_fn, xb)
        for s in states:
            log_w, score = _log_w_and_score(s, loss, grad, -log_wq[i : i + chunk], xb, box)  # q = 1 / weight
            sums[s].add(xb, log_w, score, torch.zeros(len(xb), dtype=torch.int64, device=CPU))
        nodes += len(xb)
    return {s: _finalize(s, sums[s], nodes) for s in states}


def quadrature(
    loss_fn: Callable,
    box: Box,
    *,
    order: int = 8,
    panels: int = 8,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    max_points: int = 2**22,
    states: tuple[str, ...] = STATES,
    chunk: int = 65536,
) -> dict[str, Estimate]:
    """Tensor-product composite Gauss-Legendre quadrature of the same quantities (D <= 3), refined until it
    has converged: the panels per axis double until every quantity of every state changes by at most
    ``atol + rtol * |value|`` between n and 2n nodes per axis. The estimate is the 2n one; its ``se`` is the
    n-versus-2n difference (an error estimate, conservative for the finer rule; floored at 4 float64 ulps,
    never 0). ``extra``: converged, nodes_per_axis, panels, order, points, max_abs_change.
    If the next refinement would exceed ``max_points`` nodes in all, it stops with ``converged=False``
    (and a warning): callers must check it. A steep loss (a sigmoid of slope 100) needs hundreds of nodes
    per axis where one 64-node rule is wrong by 40% (tested)."""
    import warnings

    if box.dim > 3:
        raise ValueError(f"quadrature: box.dim={box.dim}; tensor-product quadrature is limited to dim <= 3")
    for name, v in (("order", order), ("panels", panels), ("max_points", max_points), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r}; expected an int >= 1")
    if order < 2:
        raise ValueError(f"order={order}; expected an int >= 2 (nodes per panel)")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"rtol={rtol!r}, atol={atol!r}; expected non-negative tolerances, not both 0")
    if (2 * panels * order) ** box.dim > max_points:
        raise ValueError(
            f"max_points={max_points} is below the {(2 * panels * order) ** box.dim} nodes of the first convergence "
            f"check (panels={panels}, order={order}, dim={box.dim}): raise it or lower panels/order"
        )
    coarse = _quadrature_once(loss_fn, box, panels, order, states, chunk)
    while True:
        panels *= 2
        fine = _quadrature_once(loss_fn, box, panels, order, states, chunk)
        change = {s: {q: (fine[s].values[q] - coarse[s].values[q]).abs() for q in QUANTITIES} for s in states}
        converged = all(
            bool((change[s][q] <= atol + rtol * fine[s].values[q].abs()).all()) for s in states for q in QUANTITIES
        )
        if converged or (2 * panels * order) ** box.dim > max_points:
            break
        coarse = fine
    if not converged:
        warnings.warn(
            f"quadrature did not converge within max_points={max_points} ({panels * order} nodes per axis): "
            "its se holds the last n-versus-2n difference",
            RuntimeWarning,
            stacklevel=2,
        )
    eps = torch.finfo(torch.float64).eps
    for s in states:
        e = fine[s]
        e.se = {q: torch.maximum(change[s][q], 4 * eps * (1 + e.values[q].abs())) for q in QUANTITIES}
        e.extra = {
            "converged": converged,
            "nodes_per_axis": panels * order,
            "panels": panels,
            "order": order,
            "points": (panels * order) ** box.dim,
            "max_abs_change": max(float(change[s][q].max()) for q in QUANTITIES),
        }
    return fine


# ---------------------------------------------------------------- analytic test losses
def gaussian_loss(mu: torch.Tensor, sigma: float, state: str) -> Callable:
    """A loss whose state is the Gaussian with mean mu and std sigma in rho = psi^2 (minimum-uncertainty state:
    dx = sigma, dp = 1/(2 sigma), P = 1/2 and C = 1 when the box holds the Gaussian's mass)."""
    mu = torch.as_tensor(mu, dtype=torch.float64, device=CPU).flatten()
    if state == "exp":  # rho ~ exp(-l)
        return lambda x: ((x - mu) ** 2).sum(1) / (2 * sigma**2)
    if state == "loss":  # psi ~ l
        return lambda x: torch.exp(-((x - mu) ** 2).sum(1) / (4 * sigma**2))
    raise ValueError(f"state={state!r}; allowed values: {', '.join(GAUSSIAN_STATES)}")


def logistic_loss(w: torch.Tensor, b: float, y: int = 1) -> Callable:
    """Logistic loss softplus(-y (w.x + b)) of a linear model; y in {-1, +1}."""
    if y not in (-1, 1):
        raise ValueError(f"y={y!r}; allowed values: -1, 1")
    w = torch.as_tensor(w, dtype=torch.float64, device=CPU).flatten()
    return lambda x: F.softplus(-y * (x.to(torch.float64) @ w + b))


def boundary_term_1d(loss_fn: Callable, lo: float, hi: float, state: str, **quad_kwargs) -> float:
    """B = [(x - x_bar) psi^2]_lo^hi for a 1-D state, from the boundary values (integration by parts:
    C = 1 - B). An independent check of the estimators' C; the normalization uses the converged rule."""
    box = Box([lo], [hi])
    q = quadrature(loss_fn, box, states=(state,), **quad_kwargs)[state]
    x_bar = float(q["x_mean"])
    xs, w = gauss_legendre_axis(lo, hi, q.extra["panels"], q.extra["order"])
    xs, ends = (
        torch.tensor(xs, dtype=torch.float64, device=CPU)[:, None],
        torch.tensor([[lo], [hi]], dtype=torch.float64, device=CPU),
    )

    def psi2(v):  # psi_tilde^2 at points v (N, 1)
        if state == "exp":
            return torch.exp(-loss_fn(v))
        env = torch.sin(math.pi * (v[:, 0] - lo) / (hi - lo)) ** 4 if state == "envelope" else 1.0
        return loss_fn(v) ** 2 * env

    with torch.no_grad():
        norm = float((psi2(xs) * torch.tensor(w, device=CPU)).sum())
        p2 = psi2(ends) / norm
    return float((hi - x_bar) * p2[1] - (lo - x_bar) * p2[0])


# ---------------------------------------------------------------- trained networks (notebook 01)
def class_maps(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    classes,
    estimator: UncertaintyEstimator,
    box: Box,
    *,
    seed: int,
    sampler_for_class: Callable | None = None,
) -> dict[str, dict]:
    """Estimates for every class label: {state: {"values": {q: (K, D)}, "se": {q: (K, D)}, "ess": (K,)}}.

    The generator of class k is seeded with (seed, k) alone, so every checkpoint of a run sees the same
    sample points (common random numbers: differences between checkpoints are not sampling noise).
    ``sampler_for_class(k)`` (optional) overrides the estimator's sampler per class (importance sampling).
    """
    classes = list(classes)
    out = {
        s: {"values": {q: [] for q in QUANTITIES}, "se": {q: [] for q in QUANTITIES}, "ess": []}
        for s in estimator.states
    }
    # a dry run (dryrun.active()) estimates the first class only (its loops planned once per class) and pads
    # the rows back to K by repetition, so the maps keep their real (K, D) shapes
    for k in dryrun.outer(classes):
        gen = torch.Generator().manual_seed(1_000_003 * seed + int(k))
        est = estimator
        if sampler_for_class is not None:
            est = UncertaintyEstimator(
                n_samples=estimator.n_samples,
                batch_size=estimator.batch_size,
                groups=estimator.groups,
                sampler=sampler_for_class(k),
                states=estimator.states,
            )
        res = est(model_loss(model, int(k), input_shape), box, gen, desc=f"class {k}")
        for s, e in res.items():
            for q in QUANTITIES:
                out[s]["values"][q].append(e.values[q])
                out[s]["se"][q].append(e.se[q])
            out[s]["ess"].append(e.ess)
    for s in out:
        for part in ("values", "se"):
            out[s][part] = {q: dryrun.pad(torch.stack(v), len(classes)) for q, v in out[s][part].items()}
        out[s]["ess"] = dryrun.pad(torch.tensor(out[s]["ess"], device=CPU), len(classes))
    return out


def bound_fractions(state_maps: dict, *, z: float = 1.96, atol: float = 1e-9) -> dict[str, float]:
    """Over all (class, component) pairs of one state's maps:
    naive_holds: P >= 1/2;  naive_violated: P + z*SE(P) < 1/2 (a significant violation);
    general_holds: P >= |C|/2 - atol*(1+|C|);  boundary_explains: among naive violations, |C|/2 < 1/2 (B > 0 lowers
    the bound below 1/2) -- by Cauchy-Schwarz this is implied, so it is a check, not a finding."""
    v, se = state_maps["values"], state_maps["se"]
    p, hc = v["product"], v["half_c"]
    viol = p < 0.5
    return {
        "naive_holds": float((p >= 0.5).double().mean()),
        "naive_violated": float((p + z * se["product"] < 0.5).double().mean()),
        "general_holds": float((p >= hc - atol * (1 + hc)).double().mean()),
        "boundary_explains": float((hc[viol] < 0.5).double().mean()) if bool(viol.any()) else 1.0,
        "median_boundary": float(v["boundary"].median()),
        "mean_product": float(p.mean()),
    }


def compared_checkpoints(mean_clean_acc: dict, within: float) -> tuple[int, int]:
    """The checkpoints notebook 01's training trade-off compares, by a rule declared before the run.

    ``mean_clean_acc``: {epoch: clean accuracy averaged over seeds} (epoch 0 = initialization, never
    compared). Returns (first, last): ``last`` is the last trained checkpoint, ``first`` the earliest
    trained checkpoint whose accuracy is within ``within`` (absolute accuracy units) of the last one's,
    so the comparison is between two trained networks of about the same clean accuracy and does not
    hinge on a barely trained one. If no earlier checkpoint qualifies, the one before the last; with a
    single trained checkpoint, (last, last)."""
    if not (isinstance(within, (int, float)) and math.isfinite(within) and 0 <= within < 1):
        raise ValueError(f"within={within!r}; expected a number in [0, 1) (accuracy units)")
    trained = sorted(int(e) for e in mean_clean_acc if int(e) > 0)
    if not trained:
        raise ValueError(f"mean_clean_acc has no trained checkpoint (epoch > 0): epochs {sorted(mean_clean_acc)}")
    last = trained[-1]
    close = [e for e in trained[:-1] if mean_clean_acc[e] >= mean_clean_acc[last] - within]
    first = close[0] if close else trained[-2] if len(trained) > 1 else last
    return first, last
