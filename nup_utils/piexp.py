"""P4's input expansion for 1-D function fitting (notebook 06).

A 1-D input x becomes a D-vector with x in the middle and constants elsewhere, e.g. D = 5:
``[pi, pi, x, pi, pi]``; an MLP D->100->100->50->50->1 (tanh, Xavier-uniform) is fitted with
full-batch LBFGS. Pieces:

* :class:`ExpandedMLP` — the expanded (or plain, D = 1) MLP; ``repr`` shows its constants.
* :class:`BiasScaledMLP` — the control for the "re-parameterized first-layer bias" explanation: a
  1-D MLP whose first-layer bias is ``s * beta``. Built from an ExpandedMLP by
  :func:`bias_control_from`, it computes the same function at init, and its bias gets the same
  gradient-descent learning-rate boost ``s**2 = 1 + sum_j c_j**2`` that the constants give
  ``b_eff = b + sum_j c_j W[:, j]``.
* :data:`ARMS` — the arms of the experiment; :func:`run_one` fits one (function, arm, seed) and
  :func:`run_grid` runs many, optionally over a process pool, with a tqdm bar.
* :func:`per_seed_stat` — the paper's statistics computed once per seed (each seed replicates the
  paper's one-run-per-function experiment), then a t-interval across seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import cache, functions, metrics, runtime

PROTOCOL_VERSION = 1  # bump when run_one's semantics change: it is part of every cache key
WIDTHS = (100, 100, 50, 50)  # summary: in->100->100->50->50->1
BIAS_INITS = ("zeros", "default")  # zeros | torch's default U(+-1/sqrt(fan_in))
LINE_SEARCHES = ("none", "strong_wolfe")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def expansion(dim: int, consts) -> tuple[float, ...]:
    """The D-1 constants around x, x sitting at index (D-1)//2. ``consts`` is a number (repeated) or
    a sequence cycled over the slots, e.g. (0, 1, e) for D=5 -> (0, 1, e, 0)."""
    if not isinstance(dim, int) or dim < 1 or dim % 2 == 0:
        raise ValueError(f"dim={dim!r}; expected an odd positive int (x sits in the middle)")
    seq = tuple(consts) if isinstance(consts, (tuple, list)) else (consts,)
    if dim > 1 and not seq:
        raise ValueError("consts is empty; give at least one constant")
    return tuple(float(seq[i % len(seq)]) for i in range(dim - 1))


class ExpandedMLP(nn.Module):
    """x (N, 1) -> [c_0 .. c_{k-1}, x, c_k .. c_{D-2}] (N, D) -> tanh MLP -> (N, 1)."""

    def __init__(self, consts: tuple[float, ...] = (), widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths={widths!r}; expected a non-empty tuple of positive ints")
        if len(consts) % 2:
            raise ValueError(f"consts={consts!r}; expected an even number (x sits in the middle)")
        self.dim = len(consts) + 1
        self.register_buffer("consts", torch.tensor(consts, dtype=torch.float32))  # (D-1,)
        sizes = (self.dim, *widths, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1), got {tuple(x.shape)}")
        k = (self.dim - 1) // 2
        c = self.consts.to(x.dtype).expand(x.shape[0], -1)  # (N, D-1)
        return torch.cat([c[:, :k], x, c[:, k:]], dim=1)  # (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, consts={[round(c, 6) for c in self.consts.tolist()]}"


class BiasScaledMLP(nn.Module):
    """1-D tanh MLP whose first-layer bias is ``scale * beta`` (beta the parameter)."""

    def __init__(self, scale: float, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r}; expected a finite positive number")
        self.scale = float(scale)
        self.w0 = nn.Parameter(torch.zeros(widths[0], 1))  # (H0, 1)
        self.beta = nn.Parameter(torch.zeros(widths[0]))  # (H0,)
        sizes = (*widths, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (N, 1)
        h = torch.tanh(x @ self.w0.T + self.scale * self.beta)  # (N, H0)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}"


def init_mlp(model: ExpandedMLP, gen: torch.Generator, *, bias_init: str = "zeros") -> ExpandedMLP:
    """Xavier-uniform weights (summary); biases zero or torch's default U(+-1/sqrt(fan_in)) (ours)."""
    if bias_init not in BIAS_INITS:
        raise ValueError(f"bias_init={bias_init!r}; allowed values: {', '.join(BIAS_INITS)}")
    with torch.no_grad():
        for layer in model.layers:
            nn.init.xavier_uniform_(layer.weight, generator=gen)
            if bias_init == "zeros":
                layer.bias.zero_()
            else:
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return model


def bias_control_from(model: ExpandedMLP) -> BiasScaledMLP:
    """The 1-D control of an expanded model: same function at init, bias scale s = sqrt(1 + sum c^2).

    Expanded first layer: W x_exp + b = W[:, m] x + (b + W[:, rest] @ c); the effective bias
    b_eff = b + W[:, rest] @ c has gradient g on b and c_j * g on W[:, j], so one gradient step
    moves it by -lr * g * (1 + sum c_j^2). beta = b_eff / s with bias = s * beta does the same.
    """
    k = (model.dim - 1) // 2
    first = model.layers[0]
    c = model.consts.to(first.weight.dtype)  # (D-1,)
    rest = torch.cat([first.weight[:, :k], first.weight[:, k + 1:]], dim=1)  # (H0, D-1)
    scale = math.sqrt(1.0 + float((c * c).sum()))
    ctrl = BiasScaledMLP(scale, widths=tuple(layer.out_features for layer in model.layers[:-1]))
    ctrl = ctrl.to(first.weight.dtype)
    with torch.no_grad():
        ctrl.w0.copy_(first.weight[:, k:k + 1])
        ctrl.beta.copy_((first.bias + rest @ c) / scale)
        for a, b in zip(ctrl.layers, model.layers[1:]):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
    return ctrl


@dataclass(frozen=True)
class Arm:
    name: str
    dim: int
    consts: tuple = ()          # number or cycle of numbers, see expansion()
    widths: tuple = WIDTHS
    bias_control: bool = False  # build the expanded model, then convert it with bias_control_from
    label: str = "summary"      # where the arm comes from: summary | ours

    def build(self, gen: torch.Generator, *, bias_init: str = "zeros") -> nn.Module:
        model = init_mlp(ExpandedMLP(expansion(self.dim, self.consts) if self.dim > 1 else (), self.widths),
                         gen, bias_init=bias_init)
        return bias_control_from(model) if self.bias_control else model


PI, E = math.pi, math.e
ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("Std", 1),
    Arm("Exp-3", 3, PI),
    Arm("Exp-5", 5, PI),
    Arm("Exp-7", 7, PI),
    Arm("Adjusted", 1, widths=(102, 102, 52, 52)),  # 18,875 parameters (summary's count)
    Arm("Exp-5 e", 5, E),
    Arm("Exp-5 1", 5, 1.0),
    Arm("Exp-5 0", 5, 0.0),
    Arm("Exp-5 mixed", 5, (0.0, 1.0, E), label="ours"),  # slots cycle 0, 1, e: [0, 1, x, e, 0]
    Arm("Bias-ctrl", 5, PI, bias_control=True, label="ours"),  # 1-D model, Exp-5's bias scale and init
)}


def lbfgs_fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_iter: int = 500, lr: float = 1.0,
              tol_grad: float = 1e-10, tol_change: float = 1e-10, history_size: int = 100,
              line_search: str = "none") -> dict:
    """One ``torch.optim.LBFGS.step`` of at most ``max_iter`` iterations on the full batch (MSE).

    Returns iterations (LBFGS's own n_iter), function evaluations, the loss at every evaluation,
    whether the cap was hit and whether the loss went non-finite."""
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search={line_search!r}; allowed values: {', '.join(LINE_SEARCHES)}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r}; expected a positive int")
    opt = torch.optim.LBFGS(model.parameters(), lr=lr, max_iter=max_iter, tolerance_grad=tol_grad,
                            tolerance_change=tol_change, history_size=history_size,
                            line_search_fn=None if line_search == "none" else line_search)
    losses: list[float] = []

    def closure():
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        losses.append(float(loss.detach()))
        return loss

    model.train()
    opt.step(closure)
    n_iter = int(opt.state[opt._params[0]]["n_iter"])
    with torch.no_grad():
        final = float(torch.mean((model(x) - y) ** 2))
    return {"iters": n_iter, "evals": len(losses), "losses": losses, "train_mse": final,
            "hit_cap": n_iter >= max_iter, "diverged": not math.isfinite(final)}


DEFAULT_PROTOCOL = dict(n_train=1000, n_test=100, max_iter=500, lr=1.0, tol_grad=1e-10, tol_change=1e-10,
                        history_size=100, line_search="none", dtype="float32", bias_init="zeros")


def protocol(**overrides) -> dict:
    """DEFAULT_PROTOCOL with overrides; unknown keys and bad values are errors."""
    unknown = set(overrides) - set(DEFAULT_PROTOCOL)
    if unknown:
        raise ValueError(f"unknown protocol keys {sorted(unknown)}; allowed: {', '.join(DEFAULT_PROTOCOL)}")
    p = {**DEFAULT_PROTOCOL, **overrides}
    if p["dtype"] not in DTYPES:
        raise ValueError(f"dtype={p['dtype']!r}; allowed values: {', '.join(DTYPES)}")
    if p["bias_init"] not in BIAS_INITS:
        raise ValueError(f"bias_init={p['bias_init']!r}; allowed values: {', '.join(BIAS_INITS)}")
    if p["line_search"] not in LINE_SEARCHES:
        raise ValueError(f"line_search={p['line_search']!r}; allowed values: {', '.join(LINE_SEARCHES)}")
    return p


def run_one(function: str, arm: str, seed: int, proto: dict | None = None, *, use_cache: bool = True) -> dict:
    """Fit one (function, arm, seed). Data depend on (seed, function) only, the init on (seed,
    function, arm shape), so arms are paired. Returns a JSON-able record (the scalars, the loss at
    every evaluation and the test predictions)."""
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r}; allowed values: {', '.join(ARMS)}")
    fidx = functions.KEYS.index(functions.get(function).key)
    p = protocol(**(proto or {}))
    dtype = DTYPES[p["dtype"]]
    spec = ARMS[arm]
    data_gen = runtime.make_generator(10_000 * seed + fidx)
    x_tr, y_tr, x_te, y_te = functions.sample(function, p["n_train"], p["n_test"], data_gen, dtype=dtype)
    init_seed = 10_000 * seed + 100 + fidx  # shared by arms of the same shape (Exp-5 pi/e/1/0/mixed, Bias-ctrl)

    def build():
        return spec.build(runtime.make_generator(init_seed), bias_init=p["bias_init"]).to(dtype)

    def fit(model):
        t0 = time.perf_counter()
        hist = lbfgs_fit(model, x_tr, y_tr, max_iter=p["max_iter"], lr=p["lr"], tol_grad=p["tol_grad"],
                         tol_change=p["tol_change"], history_size=p["history_size"], line_search=p["line_search"])
        hist["wall_s"] = time.perf_counter() - t0
        return hist

    config = {"v": PROTOCOL_VERSION, "function": function, "arm": arm, "seed": seed, "protocol": p,
              "spec": repr(spec)}
    if use_cache:
        model, hist, _ = cache.cached_model("piexp", config, build, fit)
    else:
        model = build()
        hist = fit(model)
    model.eval()
    with torch.no_grad():
        pred = model(x_te)
        test_mse = float(torch.mean((pred - y_te) ** 2))
        train_mse = float(hist["train_mse"])
        baseline = float(torch.mean((y_tr - y_tr.mean()) ** 2))  # training MSE of the constant predictor
        # failed fit: non-finite, or blown up (without a line search LBFGS can end far above where it
        # started); it scores as predicting the training mean (finite, reported, counted)
        diverged = bool(hist["diverged"]) or not math.isfinite(test_mse) or not train_mse <= baseline
        if diverged:
            train_mse = float(torch.mean((y_tr - y_tr.mean()) ** 2))
            test_mse = float(torch.mean((y_te - y_tr.mean()) ** 2))
            pred = torch.full_like(pred, float(y_tr.mean()))
    return {"function": function, "arm": arm, "seed": seed, "iters": int(hist["iters"]),
            "evals": int(hist["evals"]), "hit_cap": bool(hist["hit_cap"]), "diverged": diverged,
            "train_mse": train_mse, "test_mse": test_mse, "wall_s": float(hist["wall_s"]),
            "losses": [float(v) for v in hist["losses"]], "pred": pred.flatten().tolist(),
            "n_params": sum(q.numel() for q in model.parameters())}


def _run_spec(spec: dict) -> dict:
    return run_one(spec["function"], spec["arm"], spec["seed"], spec.get("proto"), use_cache=spec.get("use_cache", True))


def _init_worker():
    torch.set_num_threads(1)


def grid(functions_: tuple[str, ...], arms: tuple[str, ...], seeds: tuple[int, ...], proto: dict | None = None,
         *, use_cache: bool = True) -> list[dict]:
    """The specs of a full factorial grid (function x arm x seed)."""
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"arm={a!r}; allowed values: {', '.join(ARMS)}")
    for f in functions_:
        functions.get(f)
    return [{"function": f, "arm": a, "seed": s, "proto": protocol(**(proto or {})), "use_cache": use_cache}
            for s in seeds for f in functions_ for a in arms]


def run_grid(specs: list[dict], *, workers: int = 1, desc: str = "fits") -> list[dict]:
    """Run specs in order; ``workers > 1`` uses a spawn process pool (one torch thread per worker).
    With ``workers == 1`` the fits run here, also with one thread, so both paths give the same numbers."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}; expected a positive int")
    bar = dict(total=len(specs), desc=desc, disable=runtime.progress_disabled())
    if workers == 1:
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [_run_spec(s) for s in tqdm(specs, **bar)]
        finally:
            torch.set_num_threads(prev)
    import torch.multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(_run_spec, specs), **bar))


# ---------------------------------------------------------------- aggregation
def table(records: list[dict], key: str, arms, functions_, seeds) -> np.ndarray:
    """records -> array (n_arms, n_functions, n_seeds) of ``key``; a missing cell is an error."""
    idx = {(r["arm"], r["function"], r["seed"]): r for r in records}
    out = np.empty((len(arms), len(functions_), len(seeds)))
    for i, a in enumerate(arms):
        for j, f in enumerate(functions_):
            for k, s in enumerate(seeds):
                if (a, f, s) not in idx:
                    raise KeyError(f"no record for arm={a!r}, function={f!r}, seed={s}")
                out[i, j, k] = float(idx[(a, f, s)][key])
    return out


STATS = ("reduction", "ratio", "diff", "log_ratio")


def per_seed_stat(base: np.ndarray, other: np.ndarray, stat: str) -> np.ndarray:
    """The paper's comparison computed once per seed over the functions. base, other: (F, S).

    reduction: 1 - mean_f(other) / mean_f(base) (the paper's "-12%" / "-66.3%", as a fraction);
    ratio: mean_f(other) / mean_f(base); diff: mean_f(other - base);
    log_ratio: mean_f(log(other / base)) (a geometric-mean ratio, not dominated by the hardest function)."""
    if base.shape != other.shape or base.ndim != 2:
        raise ValueError(f"base and other must be (F, S) arrays of one shape, got {base.shape} and {other.shape}")
    if stat == "reduction":
        return 1 - other.mean(0) / base.mean(0)
    if stat == "ratio":
        return other.mean(0) / base.mean(0)
    if stat == "diff":
        return (other - base).mean(0)
    if stat == "log_ratio":
        return np.log(other / base).mean(0)
    raise ValueError(f"stat={stat!r}; allowed values: {', '.join(STATS)}")


def seed_ci(base: np.ndarray, other: np.ndarray, stat: str) -> dict:
    """per_seed_stat, then its mean with a t-interval across seeds (a metrics.metric dict)."""
    m = metrics.mean_ci(per_seed_stat(base, other, stat))
    m["method"] = f"per-seed {stat} over functions; {m['method']} across seeds"
    return m


def decide_gain(ci: tuple[float, float], paper_value: float) -> str:
    """Verdict for a claimed gain (positive = better), fixed before any run:
    CI above 0 and reaching the paper's value -> reproduced; above 0 but below it -> partially;
    CI containing 0 and the paper's value -> inconclusive; otherwise (CI excludes the paper's value
    and shows no gain) -> not_reproduced."""
    lo, hi = ci
    if lo > 0:
        return "reproduced" if hi >= paper_value else "partially_reproduced"
    if lo <= paper_value <= hi:
        return "inconclusive"
    return "not_reproduced"


def decide_equivalent(ci: tuple[float, float], margin: float) -> str:
    """Equivalence verdict for a log-ratio (0 = same): CI inside [-margin, margin] -> reproduced;
    CI outside it entirely, or excluding 0 -> not_reproduced; else inconclusive."""
    lo, hi = ci
    if -margin <= lo and hi <= margin:
        return "reproduced"
    if lo > margin or hi < -margin or lo > 0 or hi < 0:
        return "not_reproduced"
    return "inconclusive"
