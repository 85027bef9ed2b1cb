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
* :func:`failure_reason` — a failed fit is counted as failed (never as fast, never rescored);
  :func:`paired` / :func:`log_ratio` / :func:`reduction` — paired geometric-mean statistics over the
  (function, seed) pairs where both fits succeeded; :func:`claim_metrics` — notebook 06's claims.
* Primary protocol (ours): float64, strong-Wolfe LBFGS, torch's default biases
  (:data:`DEFAULT_PROTOCOL`); the paper-literal variant (:data:`PAPER_LITERAL`) is a sensitivity arm.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import cache, dryrun, functions, metrics, runtime

PROTOCOL_VERSION = 2  # bump when run_one's semantics change: it is part of every cache key
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
    rest = torch.cat([first.weight[:, :k], first.weight[:, k + 1 :]], dim=1)  # (H0, D-1)
    scale = math.sqrt(1.0 + float((c * c).sum()))
    ctrl = BiasScaledMLP(scale, widths=tuple(layer.out_features for layer in model.layers[:-1]))
    ctrl = ctrl.to(first.weight.dtype)
    with torch.no_grad():
        ctrl.w0.copy_(first.weight[:, k : k + 1])
        ctrl.beta.copy_((first.bias + rest @ c) / scale)
        for a, b in zip(ctrl.layers, model.layers[1:]):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
    return ctrl


@dataclass(frozen=True)
class Arm:
    name: str
    dim: int
    consts: tuple = ()  # number or cycle of numbers, see expansion()
    widths: tuple = WIDTHS
    bias_control: bool = False  # build the expanded model, then convert it with bias_control_from
    label: str = "summary"  # where the arm comes from: summary | ours

    def build(self, gen: torch.Generator, *, bias_init: str = "zeros") -> nn.Module:
        model = init_mlp(
            ExpandedMLP(expansion(self.dim, self.consts) if self.dim > 1 else (), self.widths), gen, bias_init=bias_init
        )
        return bias_control_from(model) if self.bias_control else model


PI, E = math.pi, math.e
ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
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
    )
}


def lbfgs_fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_iter: int = 500,
    max_eval: int | None = None,
    lr: float = 1.0,
    tol_grad: float = 1e-10,
    tol_change: float = 1e-10,
    history_size: int = 100,
    line_search: str = "strong_wolfe",
) -> dict:
    """One ``torch.optim.LBFGS.step`` of at most ``max_iter`` iterations and ``max_eval`` loss
    evaluations (torch's default max_iter * 5 // 4) on the full batch (MSE).

    Returns iterations (LBFGS's own n_iter), function evaluations, the loss at every evaluation,
    whether either cap was hit and whether the final loss is non-finite."""
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search={line_search!r}; allowed values: {', '.join(LINE_SEARCHES)}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r}; expected a positive int")
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    if not isinstance(max_eval, int) or max_eval < 1:
        raise ValueError(f"max_eval={max_eval!r}; expected a positive int or None (torch's default)")
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=lr,
        max_iter=max_iter,
        max_eval=max_eval,
        tolerance_grad=tol_grad,
        tolerance_change=tol_change,
        history_size=history_size,
        line_search_fn=None if line_search == "none" else line_search,
    )
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
    return {
        "iters": n_iter,
        "evals": len(losses),
        "losses": losses,
        "train_mse": final,
        "hit_cap": n_iter >= max_iter or len(losses) >= max_eval,
        "diverged": not math.isfinite(final),
    }


BLOWUP = 10.0  # ours: a fit whose training loss ever exceeds 10x its starting loss has blown up
FAILURES = ("non-finite", "blow-up", "worse than constant (train)", "worse than constant (test)")


def failure_reason(
    losses, train_mse: float, test_mse: float, const_train: float, const_test: float, *, blowup: float = BLOWUP
) -> str | None:
    """Why a fit failed, or None: non-finite loss or MSE; training loss at an accepted iterate ever
    above ``blowup`` x its first value (also when it recovered later); final MSE worse than the
    constant predictor (the training mean) on the training OR the test points. ``losses``: the
    training loss at the optimizer's accepted iterates (see :func:`run_one`)."""
    vals = [*losses, train_mse, test_mse]
    if not all(math.isfinite(v) for v in vals):
        return "non-finite"
    if losses and max(losses) > blowup * losses[0]:
        return "blow-up"
    if train_mse > const_train:
        return "worse than constant (train)"
    if test_mse > const_test:
        return "worse than constant (test)"
    return None


def accepted_losses(losses, final: float, line_search: str) -> list[float]:
    """The training loss at the iterates the optimizer accepted. Without a line search every
    evaluation is one. With strong Wolfe the evaluations include the line search's trial points
    (large losses there are how it brackets a step) and accepted iterates satisfy the sufficient-
    decrease condition, so only the first and the final loss are iterates we can name."""
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search={line_search!r}; allowed values: {', '.join(LINE_SEARCHES)}")
    return list(losses) if line_search == "none" else [*losses[:1], final]


def evals_to_target(losses, target: float) -> int | None:
    """1-based index of the first loss evaluation at or below ``target`` (None: never reached)."""
    return next((i + 1 for i, v in enumerate(losses) if v <= target), None)


# ours: the primary protocol. float64 and the strong-Wolfe line search make the fits stable, so a
# last-bit difference between CPUs does not change which fits fail; torch's default bias init
# spreads the first-layer kinks over the domain (zero biases put them all at x = 0).
DEFAULT_PROTOCOL = dict(
    n_train=1000,
    n_test=100,
    max_iter=500,
    max_eval=None,
    lr=1.0,
    tol_grad=1e-10,
    tol_change=1e-10,
    history_size=100,
    line_search="strong_wolfe",
    dtype="float64",
    bias_init="default",
    target_r2=0.99,
)
# the protocol as the summary describes it, with torch's defaults for the unknowns: a sensitivity arm
PAPER_LITERAL = dict(line_search="none", dtype="float32", bias_init="zeros")


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
    if not 0 < p["target_r2"] < 1:
        raise ValueError(f"target_r2={p['target_r2']!r}; expected a number in (0, 1)")
    return p


RECORD_KEYS = (
    "function",
    "arm",
    "seed",
    "iters",
    "evals",
    "hit_cap",
    "evals_to_target",
    "evals_to_target_censored",
    "train_mse",
    "test_mse",
    "const_train_mse",
    "const_test_mse",
    "failure",
    "wall_s",
)


def run_one(function: str, arm: str, seed: int, proto: dict | None = None, *, use_cache: bool = True) -> dict:
    """Fit one (function, arm, seed). Data depend on (seed, function) only, the init on (seed,
    function, arm shape), so arms are paired. Returns a JSON-able record: the scalars of
    :data:`RECORD_KEYS`, plus the loss at every evaluation and the test predictions (for plots).

    A failed fit (:func:`failure_reason`) keeps its measured numbers and its reason: summaries
    decide how to count it, never this function."""
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
        hist = lbfgs_fit(
            model,
            x_tr,
            y_tr,
            max_iter=p["max_iter"],
            max_eval=p["max_eval"],
            lr=p["lr"],
            tol_grad=p["tol_grad"],
            tol_change=p["tol_change"],
            history_size=p["history_size"],
            line_search=p["line_search"],
        )
        hist["wall_s"] = time.perf_counter() - t0
        return hist

    config = {"v": PROTOCOL_VERSION, "function": function, "arm": arm, "seed": seed, "protocol": p, "spec": repr(spec)}
    if use_cache:
        model, hist, _ = cache.cached_model("piexp", config, build, fit)
    else:
        model = build()
        hist = fit(model)
    model.eval()
    with torch.no_grad():
        pred = model(x_te)
        test_mse = float(torch.mean((pred - y_te) ** 2))
        mean = y_tr.mean()
        const_train, const_test = float(torch.mean((y_tr - mean) ** 2)), float(torch.mean((y_te - mean) ** 2))
    train_mse = float(hist["train_mse"])
    losses = [float(v) for v in hist["losses"]]
    reached = evals_to_target(losses, (1 - p["target_r2"]) * const_train)
    max_eval = p["max_eval"] or p["max_iter"] * 5 // 4
    failure = failure_reason(
        accepted_losses(losses, train_mse, p["line_search"]), train_mse, test_mse, const_train, const_test
    )
    return {
        "function": function,
        "arm": arm,
        "seed": seed,
        "iters": int(hist["iters"]),
        "evals": int(hist["evals"]),
        "hit_cap": bool(hist["hit_cap"]),
        # censored view: a fit that never reached the target, or failed, counts at the evaluation cap
        "evals_to_target": reached,
        "evals_to_target_censored": reached if (reached is not None and failure is None) else max_eval,
        "train_mse": train_mse,
        "test_mse": test_mse,
        "const_train_mse": const_train,
        "const_test_mse": const_test,
        "failure": failure,
        "wall_s": float(hist["wall_s"]),
        "losses": losses,
        "pred": pred.flatten().tolist(),
        "n_params": sum(q.numel() for q in model.parameters()),
    }


def fit_record(r: dict) -> dict:
    """The scalars of one fit, as stored in results files (no loss curve, no predictions)."""
    return {k: r[k] for k in RECORD_KEYS}


def _run_spec(spec: dict) -> dict:
    return run_one(
        spec["function"], spec["arm"], spec["seed"], spec.get("proto"), use_cache=spec.get("use_cache", True)
    )


def _init_worker():
    torch.set_num_threads(1)


def grid(
    functions_: tuple[str, ...],
    arms: tuple[str, ...],
    seeds: tuple[int, ...],
    proto: dict | None = None,
    *,
    use_cache: bool = True,
) -> list[dict]:
    """The specs of a full factorial grid (function x arm x seed)."""
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"arm={a!r}; allowed values: {', '.join(ARMS)}")
    for f in functions_:
        functions.get(f)
    return [
        {"function": f, "arm": a, "seed": s, "proto": protocol(**(proto or {})), "use_cache": use_cache}
        for s in seeds
        for f in functions_
        for a in arms
    ]


def run_grid(specs: list[dict], *, workers: int = 1, desc: str = "fits") -> list[dict]:
    """Run specs in order; ``workers > 1`` uses a spawn process pool (one torch thread per worker).
    With ``workers == 1`` the fits run here, also with one thread, so both paths give the same numbers."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}; expected a positive int")
    if dryrun.active():
        return _dry_grid(specs, workers=workers)
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


def _dry_grid(specs: list[dict], *, workers: int) -> list[dict]:
    """A dry run (:mod:`dryrun`) of :func:`run_grid`: the first fit of each arm (specs are ordered seed,
    function, arm: the first function and seed), complete and one thread each as a worker runs it, timed; the
    ledger plans every spec at their mean time divided by ``workers`` (the pool runs that many at once). The
    other records are copies of their arm's fit under their own (function, seed): shapes real, numbers not."""
    n_arms = len({s["arm"] for s in specs})
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = [
            _run_spec(specs[i])
            for i in dryrun.loop(len(specs), "pi-expansion fit", steps=n_arms, parallel=workers, host=True)
        ]
    finally:
        torch.set_num_threads(prev)
    by_arm = {r["arm"]: r for r in done}  # specs in another order: an arm not fitted copies the first fit
    rest = [
        {**by_arm.get(s["arm"], done[0]), **{k: s[k] for k in ("function", "arm", "seed")}} for s in specs[len(done) :]
    ]
    return done + rest


# ---------------------------------------------------------------- aggregation
def table(records: list[dict], key: str, arms, functions_, seeds) -> np.ndarray:
    """records -> array (n_arms, n_functions, n_seeds) of ``key`` (None -> nan); a missing cell is an error."""
    idx = {(r["arm"], r["function"], r["seed"]): r for r in records}
    out = np.empty((len(arms), len(functions_), len(seeds)))
    for i, a in enumerate(arms):
        for j, f in enumerate(functions_):
            for k, s in enumerate(seeds):
                if (a, f, s) not in idx:
                    raise KeyError(f"no record for arm={a!r}, function={f!r}, seed={s}")
                v = idx[(a, f, s)][key]
                out[i, j, k] = np.nan if v is None else float(v)
    return out


def paired(records: list[dict], base: str, other: str, key: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of ``key`` for (function, seed) pairs where BOTH arms' fits succeeded, and the number of
    pairs dropped because one or both failed. Returns (base_values, other_values, n_dropped)."""
    by = {(r["arm"], r["function"], r["seed"]): r for r in records}
    pairs = sorted({(f, s) for (a, f, s) in by if a == base} & {(f, s) for (a, f, s) in by if a == other})
    if not pairs:
        raise KeyError(f"no (function, seed) pair has both arm={base!r} and arm={other!r}")
    ok = [(f, s) for f, s in pairs if by[(base, f, s)]["failure"] is None and by[(other, f, s)]["failure"] is None]
    b = np.array([float(by[(base, f, s)][key]) for f, s in ok])
    o = np.array([float(by[(other, f, s)][key]) for f, s in ok])
    return b, o, len(pairs) - len(ok)


def log_ratio(records: list[dict], base: str, other: str, key: str) -> dict:
    """Mean over successful pairs of log(other / base) with a t-interval over the pairs (a
    geometric-mean ratio: no single fit can dominate it). > 0: ``other`` is larger."""
    b, o, dropped = paired(records, base, other, key)
    if len(b) < 2:
        raise ValueError(f"log_ratio({base!r}, {other!r}, {key!r}): {len(b)} successful pair(s); need 2")
    m = metrics.mean_ci(np.log(o / b))
    m.update(
        method=f"mean log({other}/{base}) over {len(b)} (function, seed) pairs where both succeeded; "
        f"t-interval; {dropped} pair(s) with a failed fit left out",
        dropped_pairs=dropped,
    )
    return m


def reduction(records: list[dict], base: str, other: str, key: str) -> dict:
    """1 - geometric-mean ratio of ``other`` to ``base`` (the paper's "-12%" read scale-free), with
    the log-ratio interval's end points transformed. > 0: ``other`` is smaller (better)."""
    m = log_ratio(records, base, other, key)
    lo, hi = m["ci95"]
    return metrics.metric(
        1 - math.exp(m["value"]),
        1 - math.exp(hi),
        1 - math.exp(lo),
        m["n"],
        "1 - exp(" + m["method"] + ")",
        dropped_pairs=m["dropped_pairs"],
    )


def failure_rate(records: list[dict], arm: str) -> dict:
    """Share of an arm's fits that failed, with a Wilson interval."""
    flags = [r["failure"] is not None for r in records if r["arm"] == arm]
    if not flags:
        raise KeyError(f"no record for arm={arm!r}")
    return metrics.accuracy(flags)


def arm_summary(records: list[dict], arms) -> list[dict]:
    """Per arm: fits, failures (by reason), iterations and evaluations over successful fits, share of
    fits at a cap, median evaluations to the target (censored at the cap), geometric-mean test MSE over
    successful fits (None where no fit of the arm succeeded: not computable, and JSON has no NaN)."""
    out = []
    for a in arms:
        rs = [r for r in records if r["arm"] == a]
        ok = [r for r in rs if r["failure"] is None]
        reasons = {k: sum(r["failure"] == k for r in rs) for k in FAILURES}
        out.append(
            {
                "arm": a,
                "fits": len(rs),
                "failed": len(rs) - len(ok),
                "failure_reasons": reasons,
                "iters_ok_mean": float(np.mean([r["iters"] for r in ok])) if ok else None,
                "evals_ok_mean": float(np.mean([r["evals"] for r in ok])) if ok else None,
                "at_cap": sum(r["hit_cap"] for r in rs),
                "reached_target": sum(r["evals_to_target"] is not None for r in ok),
                "evals_to_target_median_censored": float(np.median([r["evals_to_target_censored"] for r in rs])),
                "test_mse_geomean_ok": float(np.exp(np.mean(np.log([r["test_mse"] for r in ok])))) if ok else None,
                "wall_s_mean": float(np.mean([r["wall_s"] for r in rs])),
            }
        )
    return out


SPEED_KEY = "evals_to_target_censored"  # ours: the speed measure (see claim_metrics)
OTHER_CONSTANTS = {"e": "Exp-5 e", "1": "Exp-5 1", "0": "Exp-5 0", "mixed": "Exp-5 mixed"}


def claim_metrics(records: list[dict]) -> dict[str, dict]:
    """Every metric notebook 06's claims rest on, by claim id (each a metrics.metric dict).

    Speed = loss evaluations until the training fit first reaches the protocol's target R^2, a fit
    that never does (or failed) counted at the evaluation cap; raw LBFGS iteration counts are
    reported beside it. MSE = test MSE. Both as paired geometric-mean statistics over the
    (function, seed) pairs where both fits succeeded; failure rates reported on their own."""
    rate = {a: failure_rate(records, a) for a in ("Std", "Exp-5")}
    out = {
        "fewer-iterations": {
            "evals_reduction": reduction(records, "Std", "Exp-5", SPEED_KEY),
            "iter_reduction": reduction(records, "Std", "Exp-5", "iters"),
            "fail_rate_std": rate["Std"],
            "fail_rate_exp5": rate["Exp-5"],
        },
        "lower-mse": {
            "mse_reduction": reduction(records, "Std", "Exp-5", "test_mse"),
            "train_mse_reduction": reduction(records, "Std", "Exp-5", "train_mse"),
            "adjusted_mse_reduction": reduction(records, "Std", "Adjusted", "test_mse"),
            "fail_rate_std": rate["Std"],
            "fail_rate_exp5": rate["Exp-5"],
        },
        "pi-best-constant": {
            f"log_mse_{k}_vs_pi": log_ratio(records, "Exp-5", arm, "test_mse") for k, arm in OTHER_CONSTANTS.items()
        },
        "five-d-best": {
            "log_evals_3_vs_5": log_ratio(records, "Exp-5", "Exp-3", SPEED_KEY),
            "log_evals_7_vs_5": log_ratio(records, "Exp-5", "Exp-7", SPEED_KEY),
            "log_mse_3_vs_5": log_ratio(records, "Exp-5", "Exp-3", "test_mse"),
            "log_mse_7_vs_5": log_ratio(records, "Exp-5", "Exp-7", "test_mse"),
        },
        "bias-control": {
            "log_mse_ctrl_vs_exp5": log_ratio(records, "Exp-5", "Bias-ctrl", "test_mse"),
            "log_evals_ctrl_vs_exp5": log_ratio(records, "Exp-5", "Bias-ctrl", SPEED_KEY),
        },
        "zero-expansion-check": {
            "log_mse_zero_vs_std": log_ratio(records, "Std", "Exp-5 0", "test_mse"),
            "log_evals_zero_vs_std": log_ratio(records, "Std", "Exp-5 0", SPEED_KEY),
        },
    }
    return out


# ---------------------------------------------------------------- notebook helpers (tables, checks, plots)
def layout(arm: Arm) -> str:
    """'[3.14, 3.14, x, 3.14, 3.14]' for an arm's input; the bias control shows its bias scale."""
    if arm.bias_control:
        consts = expansion(arm.dim, arm.consts)
        return f"[x], bias = {math.sqrt(1 + sum(c * c for c in consts)):.3f}·β"
    consts = expansion(arm.dim, arm.consts) if arm.dim > 1 else ()
    k = len(consts) // 2
    return "[" + ", ".join([f"{c:.3g}" for c in consts[:k]] + ["x"] + [f"{c:.3g}" for c in consts[k:]]) + "]"


def exact_checks(seed: int) -> tuple[float, float]:
    """(max |Exp-5 0 - 1-D MLP|, max |Bias-ctrl - Exp-5|) on a grid, at init: both must be ~0."""
    exp0 = ARMS["Exp-5 0"].build(runtime.make_generator(seed + 123), bias_init="default")
    one_d = ExpandedMLP(())
    with torch.no_grad():
        one_d.layers[0].weight.copy_(exp0.layers[0].weight[:, 2:3])
        one_d.layers[0].bias.copy_(exp0.layers[0].bias)
        for a, b in zip(one_d.layers[1:], exp0.layers[1:]):
            a.load_state_dict(b.state_dict())
    x = torch.linspace(*functions.DOMAIN, 257)[:, None]
    exp5 = ARMS["Exp-5"].build(runtime.make_generator(seed + 7)).double()
    with torch.no_grad():
        zero_gap = float((exp0(x) - one_d(x)).abs().max())
        ctrl_gap = float((bias_control_from(exp5)(x.double()) - exp5(x.double())).abs().max())
    return zero_gap, ctrl_gap


def plot_summary(records: list[dict], literal: list[dict], arms, functions_):
    """Left: per arm, test MSE relative to Std (geometric mean over successful pairs, 95% CI).
    Right: failure rate per arm under the primary protocol, and Std / Exp-5 under the paper-literal one."""
    import matplotlib.pyplot as plt

    from . import plotting

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    others = [a for a in arms if a != "Std"]
    ms = [log_ratio(records, "Std", a, "test_mse") for a in others]
    tr = lambda v: 10 ** (v / math.log(10))  # noqa: E731  (exp, shown on a log axis)
    plotting.errorbar_points(
        a1,
        others,
        [tr(m["value"]) for m in ms],
        [tr(m["ci95"][0]) for m in ms],
        [tr(m["ci95"][1]) for m in ms],
        label="ours (95% CI)",
    )
    a1.axhline(1, color="k", lw=0.8)
    a1.set_yscale("log")
    a1.set_ylabel("test MSE / Std (geo-mean)")
    a1.set_title(f"primary protocol, {len(functions_)} functions", fontsize=10)
    rates = [failure_rate(records, a) for a in arms]
    plotting.errorbar_points(
        a2,
        list(arms),
        [r["value"] for r in rates],
        [r["ci95"][0] for r in rates],
        [r["ci95"][1] for r in rates],
        label="primary",
    )
    lit = [failure_rate(literal, a) for a in ("Std", "Exp-5")]
    idx = [list(arms).index(a) for a in ("Std", "Exp-5")]
    a2.errorbar(
        np.array(idx) + 0.2,
        [r["value"] for r in lit],
        yerr=[[r["value"] - r["ci95"][0] for r in lit], [r["ci95"][1] - r["value"] for r in lit]],
        fmt="s",
        color="C3",
        capsize=3,
        label="paper-literal",
    )
    a2.set_ylabel("failed fits")
    a2.set_ylim(-0.02, 1.02)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_fit(by_key: dict, function: str, arm: str, compare: str, seed: int, n_test: int):
    """One function: the target and two arms' test predictions; their loss at every evaluation."""
    import matplotlib.pyplot as plt

    xs = torch.linspace(*functions.DOMAIN, 2000, dtype=torch.float64)[:, None]
    xt = functions.sample(function, 1, n_test, runtime.make_generator(0), dtype=torch.float64)[2]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    a1.plot(xs.flatten(), functions.get(function)(xs).flatten(), color="k", lw=0.7, label="target")
    for name, color in ((arm, "C0"), (compare, "C1")):
        r = by_key[(function, name, seed)]
        a1.plot(
            xt.flatten(),
            r["pred"],
            ".-",
            color=color,
            ms=3,
            lw=0.8,
            label=f"{name}: test MSE {r['test_mse']:.2e}" + (f" (failed: {r['failure']})" if r["failure"] else ""),
        )
        a2.semilogy(r["losses"], color=color, label=f"{name}: {r['iters']} iters, {r['evals']} evals")
    a1.legend(fontsize=7)
    a2.set_xlabel("LBFGS function evaluation")
    a2.set_ylabel("train MSE")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig
