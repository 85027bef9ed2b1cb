"""Symmetry-Breaking Dimensional Expansion (SBDE, paper P3), its controls, the mask projection and
the geometric probes of notebooks 02 and 03.

* :func:`expand`: an (N, C, H, W) image becomes (N, C, KH, KW); the original pixels sit on a
  K-strided grid (at ``offset`` inside each KxK block), every other pixel holds a constant (in [0, 1]
  pixel space, before the model's normalization; per-channel allowed). Returns the auxiliary mask.
* :func:`project` (Pi): keep the original coordinates, reset the auxiliary ones to the constant.
  Differentiable (gradient 1 on original coordinates, 0 on auxiliary ones), idempotent.
* :class:`InputTransform`: one arm's input map (identity, SBDE insertion, nearest/bilinear upsampling),
  with a ``repr`` showing its constants; :data:`ARMS` names the arms of notebook 02.
* :func:`recipe` / :func:`arm_config` / :func:`train_arm`: one training recipe per profile and the
  model-cache key, shared by notebooks 02 and 03 so that 03 reuses 02's models.
* Geometry probes for 03: :func:`grad_split`, :func:`loss_profile`, :func:`pgd_path_attribution`,
  :func:`min_adv_eps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import attacks, benchmark, cache, data, dryrun, models, training
from .runtime import eval_mode, make_generator

KINDS = ("identity", "insert", "nearest", "bilinear")
STEMS = models.STEMS


# ---------------------------------------------------------------- expansion and projection
def _check_k_offset(K, offset) -> None:
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K={K!r}; expected an int >= 1 (1 = no expansion, 2 = 32x32 -> 64x64)")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < K:
        raise ValueError(f"offset={offset!r}; expected an int in [0, K-1] = [0, {K - 1}]")


def _value_tensor(value, channels: int, like: torch.Tensor) -> torch.Tensor:
    """Constant as (1, C, 1, 1) on ``like``'s device/dtype; scalar or one value per channel, in [0, 1]."""
    v = torch.as_tensor(value, dtype=like.dtype).flatten()
    if v.numel() not in (1, channels):
        raise ValueError(f"value={value!r}; expected a scalar or {channels} per-channel values")
    if not torch.isfinite(v).all() or (v < 0).any() or (v > 1).any():
        raise ValueError(f"value={value!r}; the constant lives in [0, 1] pixel space")
    return v.expand(channels).reshape(1, channels, 1, 1).to(like.device)


def aux_mask(height: int, width: int, K: int, offset: int = 0, device=None) -> torch.Tensor:
    """Bool (1, 1, K*height, K*width): True on auxiliary (inserted) coordinates."""
    _check_k_offset(K, offset)
    m = torch.ones(1, 1, K * height, K * width, dtype=torch.bool, device=device)
    m[..., offset::K, offset::K] = False
    return m


def expand(x: torch.Tensor, K: int = 2, value=0.5, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N, C, H, W) in [0, 1] -> (x_tilde (N, C, KH, KW), aux mask bool (1, 1, KH, KW)).

    x_tilde[..., offset::K, offset::K] == x; every other coordinate == value (per channel).
    Differentiable in x (a scatter), batched, on x's device.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    _check_k_offset(K, offset)
    n, c, h, w = x.shape
    v = _value_tensor(value, c, x)
    out = v.expand(n, c, K * h, K * w).clone()
    out[..., offset::K, offset::K] = x
    return out, aux_mask(h, w, K, offset, x.device)


def project(x_tilde: torch.Tensor, K: int = 2, value=0.5, offset: int = 0) -> torch.Tensor:
    """Pi: keep original coordinates, reset auxiliary ones to ``value``. x_tilde: (N, C, KH, KW).

    ``torch.where`` keeps it differentiable: d Pi / d x_tilde is 1 on original coordinates and 0 on
    auxiliary ones, so an attack through Pi (``attacks.PGD(transform=...)``) is the aware attacker.
    """
    if x_tilde.dim() != 4 or x_tilde.shape[-1] % K or x_tilde.shape[-2] % K:
        raise ValueError(f"x_tilde shape {tuple(x_tilde.shape)} is not (N, C, K*H, K*W) for K={K}")
    _check_k_offset(K, offset)
    m = aux_mask(x_tilde.shape[-2] // K, x_tilde.shape[-1] // K, K, offset, x_tilde.device)
    return torch.where(m, _value_tensor(value, x_tilde.shape[1], x_tilde), x_tilde)


def contract(x_tilde: torch.Tensor, K: int = 2, offset: int = 0) -> torch.Tensor:
    """The original coordinates of an expanded image: (N, C, KH, KW) -> (N, C, H, W)."""
    _check_k_offset(K, offset)
    return x_tilde[..., offset::K, offset::K]


class InputTransform:
    """One arm's input map on [0, 1] pixels (applied after augmentation, before the model).

    kind: 'identity' (32x32 baseline), 'insert' (SBDE: constant ``value`` inserted, factor K),
    'nearest' / 'bilinear' (upsampling by K: same size, no constants — the resolution controls).
    """

    def __init__(self, kind: str, K: int = 1, value=0.5, offset: int = 0):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; allowed values: {', '.join(KINDS)}")
        _check_k_offset(K, offset)
        if kind == "identity" and K != 1:
            raise ValueError(f"kind='identity' needs K=1, got K={K}")
        if kind != "identity" and K < 2:
            raise ValueError(f"kind={kind!r} needs K >= 2, got K={K}")
        if kind == "insert":
            _value_tensor(value, len(value) if isinstance(value, (list, tuple)) else 1, torch.zeros(1))
        self.kind, self.K, self.offset = kind, K, offset
        self.value = tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else float(value)
        self.__name__ = repr(self)

    def __repr__(self) -> str:
        if self.kind == "insert":
            return f"InputTransform(kind='insert', K={self.K}, value={self.value}, offset={self.offset})"
        return f"InputTransform(kind={self.kind!r}, K={self.K})"

    @property
    def has_aux(self) -> bool:
        return self.kind == "insert"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, KH, KW)
        if self.kind == "identity":
            return x
        if self.kind == "insert":
            return expand(x, self.K, self.value, self.offset)[0]
        if self.kind == "nearest":
            return F.interpolate(x, scale_factor=self.K, mode="nearest")
        return F.interpolate(x, scale_factor=self.K, mode="bilinear", align_corners=False).clamp(0, 1)

    def project(self, x_tilde: torch.Tensor) -> torch.Tensor:
        """Pi for an insertion arm (differentiable); other arms have no auxiliary coordinates."""
        if not self.has_aux:
            raise ValueError(f"{self!r} has no auxiliary coordinates to project")
        return project(x_tilde, self.K, self.value, self.offset)

    def mask(self, height: int, width: int, device=None) -> torch.Tensor:
        """Aux mask (1, 1, KH, KW) of an insertion arm for an original image of height x width."""
        if not self.has_aux:
            raise ValueError(f"{self!r} has no auxiliary coordinates")
        return aux_mask(height, width, self.K, self.offset, device)


# name -> InputTransform kwargs. Notebook 02's arms; CIFAR-10's per-channel mean is the constant that
# normalizes to exactly 0 inside the model ("zero after normalization").
ARMS: dict[str, dict] = {
    "baseline": dict(kind="identity", K=1),
    "sbde": dict(kind="insert", K=2, value=0.5),
    "nearest": dict(kind="nearest", K=2),
    "bilinear": dict(kind="bilinear", K=2),
    "zero": dict(kind="insert", K=2, value=0.0),
    "mean": dict(kind="insert", K=2, value=tuple(data.CIFAR10_MEAN)),
    "sbde_k3": dict(kind="insert", K=3, value=0.5),
    "nearest_k3": dict(kind="nearest", K=3),
}


def arm_transform(arm: str) -> InputTransform:
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r}; allowed values: {', '.join(ARMS)}")
    return InputTransform(**ARMS[arm])


# ---------------------------------------------------------------- one recipe per profile (shared by 02 and 03)
RECIPES: dict[str, dict] = {
    # smoke: every code path in seconds (2 seeds so paired statistics run)
    "smoke": dict(
        width=2,
        train_size=32,
        test_size=32,
        epochs=1,
        batch_size=32,
        lr=0.05,
        weight_decay=5e-4,
        schedule="cosine",
        augment=("crop", "flip"),
        label_smoothing=0.0,
        precision="fp32",  # smoke: no engine measurement, seconds only
        channels_last=False,
        seeds=(0, 1),
        data_seed=0,
    ),
    # quick (issue #17): width-16 ResNet-18 on all 50,000 training images, 5 epochs one-cycle (peak 0.2 after a
    # 25% warm-up), label smoothing 0.2: a baseline of about 66% in about 40 s on 2 CPU cores (measured, Intel
    # Xeon); precision and memory format "auto" = the fastest measured for each model on the machine
    # (benchmark.fastest), decided before training and part of the cache key
    "quick": dict(
        width=16,
        train_size=None,
        test_size=2000,
        epochs=5,
        batch_size=256,
        lr=0.2,
        weight_decay=5e-4,
        schedule="onecycle",
        augment=("crop", "flip"),
        label_smoothing=0.2,
        precision="auto",
        channels_last="auto",
        seeds=(0, 1, 2),
        data_seed=0,
    ),
    # full (issue #17: all of full in an hour on one H100): standard ResNet-18 (width 64) on the whole training
    # set, 30 epochs one-cycle (25% warm-up; was 40 before the H200's measured step times), batch 512, peak lr
    # 0.2 (below the linear-scaling 0.4: the issue saw the ImageNet stem diverge at 64x64 above ~0.15 early in a
    # short schedule), bf16 + channels_last on CUDA. Before: the common 200-epoch cosine recipe at batch 128
    # (about 20 GPU-hours for notebook 02 alone). Not yet run on a GPU: its accuracy is unmeasured (ours)
    "full": dict(
        width=64,
        train_size=None,
        test_size=None,
        epochs=30,
        batch_size=512,
        lr=0.2,
        weight_decay=5e-4,
        schedule="onecycle",
        augment=("crop", "flip"),
        label_smoothing=0.0,
        precision="auto",
        channels_last="auto",
        seeds=(0, 1, 2),
        data_seed=0,
    ),
}


# cpu (issue #17): the longer CPU tier that carries the CPU verdicts (sized for <= 2 hours on 2 cores for 02-04):
# quick's recipe for 20 epochs without label smoothing, every test image. Calibrated on this kind of CPU with single
# models (seed 0, 2,000 test images): 20 epochs 76.6% in 153 s; 12 epochs 73.3% (72.5% with label smoothing 0.2)
RECIPES["cpu"] = {**RECIPES["quick"], "test_size": None, "epochs": 20, "label_smoothing": 0.0}


def recipe(profile: str) -> dict:
    if profile not in RECIPES:
        raise ValueError(f"profile={profile!r}; allowed values: {', '.join(RECIPES)} (resolve 'auto' first)")
    return dict(RECIPES[profile])


def engine(arm: str, stem: str, rec: dict, *, device) -> dict:
    """The recipe's precision and memory format for one arm's model on ``device``: "auto" resolves to the
    fastest measured for (stem, width, input size) on this machine (:func:`benchmark.resolve_engine`)."""
    return benchmark.resolve_engine(
        rec.get("precision", "fp32"),
        rec.get("channels_last", False),
        stem=stem,
        width=rec["width"],
        px=32 * arm_transform(arm).K,
        device=device,
        batch=rec["batch_size"],
    )


def arm_config(arm: str, stem: str, seed: int, rec: dict, data_source: str, *, eng: dict | None = None) -> dict:
    """Everything that determines a trained model's weights: the model-cache key (``eng``: the resolved
    :func:`engine`; bf16 and fp32 train different models)."""
    if stem not in STEMS:
        raise ValueError(f"stem={stem!r}; allowed values: {', '.join(STEMS)}")
    arm_transform(arm)  # validates the arm name
    keys = ("width", "train_size", "epochs", "batch_size", "lr", "weight_decay", "schedule", "augment", "data_seed")
    eng = eng or {"precision": rec.get("precision", "fp32"), "channels_last": rec.get("channels_last", False)}
    return {
        "study": "sbde",
        "arch": "resnet18",
        "stem": stem,
        "arm": arm,
        "transform": repr(arm_transform(arm)),
        "seed": int(seed),
        "data_source": data_source,
        **{k: rec[k] for k in keys},
        "label_smoothing": rec.get("label_smoothing", 0.0),
        "precision": eng["precision"],
        "channels_last": eng["channels_last"],
    }


def train_arm(
    arm: str,
    stem: str,
    seed: int,
    rec: dict,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    data_source: str,
    *,
    device,
    progress: bool = True,
) -> tuple[nn.Module, dict, bool]:
    """Train (or load from the shared cache) one arm's ResNet-18. x_train: float (N, 3, 32, 32) on device.
    The history records the engine (precision, memory format and where that choice came from)."""
    eng = engine(arm, stem, rec, device=device)
    cfg = arm_config(arm, stem, seed, rec, data_source, eng=eng)
    tf = arm_transform(arm)

    def build():
        torch.manual_seed(seed)  # initialization is part of the seed
        return models.resnet18(stem=stem, width=rec["width"])

    def fit(model):
        hist = training.train(
            model,
            x_train,
            y_train,
            epochs=rec["epochs"],
            batch_size=rec["batch_size"],
            lr=rec["lr"],
            seed=seed,
            weight_decay=rec["weight_decay"],
            schedule=rec["schedule"],
            augment_ops=tuple(rec["augment"]),
            label_smoothing=rec.get("label_smoothing", 0.0),
            precision=eng["precision"],
            channels_last=eng["channels_last"],
            input_transform=tf,
            progress=progress,
            desc=f"{stem}/{arm}/s{seed}",
        )
        hist.pop("checkpoints", None)
        hist["engine_source"] = eng["source"]
        return hist

    return cache.cached_model(f"sbde-{stem}-{arm}-s{seed}", cfg, build, fit, device=device)


# ---------------------------------------------------------------- geometry probes (notebook 03)
def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CE loss (N,) and its gradient w.r.t. x (N, C, H, W); see :func:`attacks.input_gradient`."""
    loss, g, _ = attacks.input_gradient(model, x, y)
    return loss, g


def grad_split(model: nn.Module, x_tilde: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per-image gradient magnitudes on auxiliary vs original coordinates of expanded inputs.

    x_tilde (N, C, KH, KW); mask bool broadcastable (1, 1, KH, KW), True = auxiliary. Returns (N,)
    tensors: l1/l2 per subspace, the per-coordinate mean |g| per subspace, and their ratio aux/orig.
    """
    _, g = _input_grad(model, x_tilde, y)
    m = mask.to(g.device).expand_as(g)
    g_aux, g_orig = g * m, g * ~m
    n_aux, n_orig = int(m[0].sum()), int((~m[0]).sum())  # coordinates per image
    out = {
        "l1_aux": g_aux.abs().flatten(1).sum(1),
        "l1_orig": g_orig.abs().flatten(1).sum(1),
        "l2_aux": g_aux.flatten(1).norm(dim=1),
        "l2_orig": g_orig.flatten(1).norm(dim=1),
    }
    out["per_coord_aux"] = out["l1_aux"] / n_aux
    out["per_coord_orig"] = out["l1_orig"] / n_orig
    out["ratio_per_coord"] = out["per_coord_aux"] / out["per_coord_orig"].clamp_min(1e-30)
    out["ratio_l2"] = out["l2_aux"] / out["l2_orig"].clamp_min(1e-30)
    return {k: v.cpu() for k, v in out.items()}


@torch.no_grad()
def loss_profile(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: torch.Tensor, ts: Sequence[float]
) -> torch.Tensor:
    """Mean CE loss along x + t * direction (clamped to [0, 1]) for each t -> (len(ts),).

    direction (N, ...) like x, e.g. unit-L2 per image and supported on one subspace.
    """
    out = []
    with eval_mode(model):
        for i in dryrun.loop(len(ts), "loss profile point", steps=1):  # a dry run: the first point, padded
            xt = (x + float(ts[i]) * direction).clamp(0, 1)
            out.append(F.cross_entropy(model(xt).float(), y, reduction="none").mean())
    return dryrun.pad(torch.stack(out), len(ts)).cpu()


def subspace_direction(
    shape, mask: torch.Tensor, which: str, *, grad: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Unit-L2 (per image) direction supported on the 'aux' or 'orig' subspace: the gradient restricted
    to it (``grad`` given) or a random Gaussian one (``gen`` given). Shape ``shape`` = (N, C, KH, KW)."""
    if which not in ("aux", "orig"):
        raise ValueError(f"which={which!r}; allowed values: aux, orig")
    if (grad is None) == (gen is None):
        raise ValueError("give exactly one of grad= (gradient direction) or gen= (random direction)")
    d = grad.detach().cpu() if grad is not None else torch.randn(shape, generator=gen, device=gen.device).cpu()
    m = mask.cpu().expand(shape)
    d = d * (m if which == "aux" else ~m)
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)


def pgd_path_attribution(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, *, eps: float, step: float, steps: int
) -> dict:
    """L-inf PGD from delta = 0 (no random start, so the path is deterministic) that attributes the
    loss increase to subspaces to first order: sum_t g_t . (delta_{t+1} - delta_t) split by ``mask``.

    Returns per-image (N,) tensors: 'aux', 'orig' (first-order contributions), 'total' (their sum),
    'actual' (true loss increase) and 'share_aux' = aux / (aux + orig).
    """
    if eps <= 0 or step <= 0 or steps < 1:
        raise ValueError(f"eps={eps}, step={step}, steps={steps}: need eps > 0, step > 0, steps >= 1")
    m = mask.to(x.device).expand_as(x)
    delta = torch.zeros_like(x)
    contrib_aux = torch.zeros(len(x), device=x.device)
    contrib_orig = torch.zeros(len(x), device=x.device)
    loss0 = None
    for _ in range(steps):
        loss, g = _input_grad(model, x + delta, y)
        loss0 = loss if loss0 is None else loss0
        new = (x + (delta + step * g.sign()).clamp(-eps, eps)).clamp(0, 1) - x
        dd = new - delta
        contrib_aux += (g * dd * m).flatten(1).sum(1)
        contrib_orig += (g * dd * ~m).flatten(1).sum(1)
        delta = new
    loss_end, _ = _input_grad(model, x + delta, y)
    tot = contrib_aux + contrib_orig
    return {
        "aux": contrib_aux.cpu(),
        "orig": contrib_orig.cpu(),
        "total": tot.cpu(),
        "actual": (loss_end - loss0).cpu(),
        "share_aux": (contrib_aux / tot.clamp_min(1e-12)).cpu(),
    }


def min_adv_eps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid: Sequence[float], attack_fn
) -> torch.Tensor:
    """Smallest eps in an increasing grid at which ``attack_fn(eps)`` (an attack object) flips the
    prediction, per image (N,); inf where none does (censored). Images misclassified clean get 0."""
    eps_grid = [float(e) for e in eps_grid]
    if not eps_grid or any(b <= a for a, b in zip(eps_grid, eps_grid[1:])):
        raise ValueError(f"eps_grid={eps_grid}; expected a non-empty increasing sequence")
    with torch.no_grad(), eval_mode(model):
        clean_ok = model(x).argmax(1) == y
    inf, zero = torch.full((len(x),), float("inf"), device=x.device), torch.zeros(len(x), device=x.device)
    out = torch.where(clean_ok, inf, zero)  # every tensor on x's device (a CPU tensor here crashed on a GPU)
    for e in eps_grid:
        todo = torch.isinf(out)
        if not todo.any():
            break
        xa = attack_fn(e)(model, x[todo], y[todo])
        with torch.no_grad(), eval_mode(model):
            broken = model(xa).argmax(1) != y[todo]
        idx = torch.nonzero(todo).flatten()[broken]
        out[idx] = e
    return out.cpu()


def seed_generator(seed: int) -> torch.Generator:
    """CPU generator for the probes (random directions, image choice)."""
    return make_generator(seed)


# ---------------------------------------------------------------- threat models (notebook 03)
THREATS = ("a", "b", "c", "d")


def threat_model_correct(
    model: nn.Module,
    tf: InputTransform,
    make_attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    threats: tuple[str, ...] = THREATS,
    batch_size: int = 250,
) -> dict:
    """Per-image robust correctness (bool, CPU) of one arm's model under the threat models of notebook 03.

    x: original images (N, C, H, W) in [0, 1]; the attacker works on tf(x). ``make_attack(mask=...,
    transform=...)`` returns an attack with the threat-model constants.
      a) all coordinates attacked, no projection;           b) the same adversarial inputs, then Pi;
      c) attack end to end through Pi, Pi deployed (aware);  d) the same eps on original coordinates only.
    ``threats``: the subset to run ("b" needs "a"; an attack without a coordinate mask skips "d").
    For arms without auxiliary coordinates (baseline) only 'a' is returned: there b = a and c = d = a.
    An image counts as robust only if the system also classifies it correctly when clean (Pi leaves clean
    inputs unchanged, so all four systems share that set); clean mistakes are not attacked.
    """
    bad = [t for t in threats if t not in THREATS]
    if bad or not threats or ("b" in threats and "a" not in threats):
        raise ValueError(f"threats={threats!r}; allowed values: {', '.join(THREATS)} ('b' needs 'a')")
    device = next(model.parameters()).device
    keys = tuple(t for t in THREATS if t in threats) if tf.has_aux else ("a",)
    out = {k: torch.zeros(len(x), dtype=torch.bool) for k in keys}

    def correct(z, yb):
        with torch.no_grad(), eval_mode(model):
            return (model(z).argmax(1) == yb).cpu()

    # a dry run: the first batch only (clean: padded; attacked: the rest stays False)
    clean = [
        correct(tf(x[sl].to(device)), y[sl].to(device)) for sl in dryrun.batches(len(x), batch_size, "clean batch")
    ]
    ok = dryrun.pad(torch.cat(clean), len(x))
    idx = torch.nonzero(dryrun.attacked(ok)).flatten()  # a dry run: every image (its models are untrained)
    for sl in dryrun.batches(len(idx), batch_size, "threat batch"):
        j = idx[sl]
        xb, yb = tf(x[j.to(x.device)].to(device)), y[j.to(y.device)].to(device)  # (B, C, KH, KW)
        if "a" in keys:
            xa = make_attack(mask=None, transform=None)(model, xb, yb)
            out["a"][j] = correct(xa, yb)
            if "b" in keys:
                out["b"][j] = correct(tf.project(xa), yb)
        if "c" in keys:
            xc = make_attack(mask=None, transform=tf.project)(model, xb, yb)
            out["c"][j] = correct(tf.project(xc), yb)
        if "d" in keys:
            orig = (~tf.mask(x.shape[-2], x.shape[-1], device)).float()  # (1, 1, KH, KW), 1 = original
            out["d"][j] = correct(make_attack(mask=orig, transform=None)(model, xb, yb), yb)
    return out
