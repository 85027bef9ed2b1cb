"""Notebook 03's experiment around :mod:`nup_utils.sbde`: the four threat models against notebook 02's
models, the sharp-boundary geometry, the minimal-perturbation extension, the figures and the claims.

Threat models (``sbde.THREATS``): (a) all pixels attacked, no projection; (b) the same attack, then the
mask projection Π; (c) the attack through Π (projection-aware); (d) only the original pixels attacked.
Shapes: ``ThreatRuns.run`` returns ``{threat: (N,) bool}`` over the N attacked images (the baseline has
only "a"); ``clean[(arm, seed)]`` is (N,) bool. Intervals: t over seeds + bootstrap over the attacked
images (:func:`metrics.seed_image_ci`), paired where two arms share seeds and images.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from . import attacks, data, dryrun, metrics, paper, plotting, results, runtime, sbde, training

THREAT_SETS = {("baseline", "a"): ("a",), **{("sbde", t): (t,) for t in sbde.THREATS}, ("sbde", "aware"): ("c", "d")}
RATIO_KEYS = ("slope", "slope_plus_half", "grad_ratio_per_coord", "grad_ratio_minus_1")  # printed unscaled


KINDS = ("fgsm", "pgd", "autoattack", "square")
LIB_KINDS = ("autoattack", "square")  # library attacks (torchattacks): no coordinate mask, so no threat (d)


def make_attack(
    kind: str,
    norm: str,
    eps: float,
    steps: int = 1,
    restarts: int = 1,
    seed: int = 0,
    mask=None,
    transform=None,
    *,
    parts=None,
    n_targets=None,
    n_queries: int = 5000,
):
    """FGSM; PGD with step 2.5·eps/steps; AutoAttack (``steps``, ``parts``, ``n_targets``, ``n_queries``);
    or Square (``n_queries``). Library attacks cannot restrict the coordinates (``mask``)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; allowed values: {', '.join(KINDS)}")
    if kind in LIB_KINDS and mask is not None:
        raise ValueError(f"kind={kind!r} cannot attack a subset of coordinates (threat d); use kind='pgd'")
    if kind == "fgsm":
        return attacks.FGSM(eps=eps, norm=norm, mask=mask, transform=transform)
    if kind == "autoattack":
        return attacks.AutoAttack(
            eps=eps, steps=steps, norm=norm, parts=parts, n_targets=n_targets, n_queries=n_queries, seed=seed,
            transform=transform,
        )  # fmt: skip
    if kind == "square":
        return attacks.Square(eps=eps, n_queries=n_queries, norm=norm, seed=seed, transform=transform)
    step = 2.5 * eps / steps
    return attacks.PGD(
        eps=eps, step=step, steps=steps, norm=norm, restarts=restarts, seed=seed, mask=mask, transform=transform
    )


def load_models(arms, seeds, stem: str, rec: dict, x_train, y_train, data_source: str, *, device):
    """Notebook 02's models from the cache (trained here on a miss): every seed of each arm, the first
    seed only for ``sbde_k3``. Returns ({(arm, seed): model}, cache hits)."""
    models, hits = {}, 0
    for arm in arms:
        for s in seeds if arm != "sbde_k3" else seeds[:1]:
            models[arm, s], _, hit = sbde.train_arm(arm, stem, s, rec, x_train, y_train, data_source, device=device)
            hits += hit
    return models, hits


class ThreatRuns:
    """Memoized threat-model correctness per (arm, seed, attack) on the attacked images, with its cost."""

    def __init__(self, models: dict, transforms: dict, x: torch.Tensor, y: torch.Tensor, *, lib: dict | None = None):
        """``lib``: settings of the library attacks, {"autoattack": {parts, n_targets, n_queries}, "square":
        {n_queries}} (the key's ``steps`` is AutoAttack's steps)."""
        self.models, self.tf, self.x, self.y, self.lib = models, transforms, x, y, lib or {}
        self.runs, self.cost = {}, {}  # key -> {threat: (N,) bool}; key -> attacked images per second

    def run(self, arm, s, kind, norm, eps, steps=1, restarts=1) -> dict:
        key = (arm, s, kind, norm, round(eps, 8), steps, restarts)
        if key not in self.runs:
            mk = partial(make_attack, kind, norm, eps, steps, restarts, s, **self.lib.get(kind, {}))
            threats = ("a", "b", "c") if kind in LIB_KINDS else sbde.THREATS
            with runtime.Timer() as t:
                self.runs[key] = sbde.threat_model_correct(
                    self.models[arm, s], self.tf[arm], mk, self.x, self.y, threats=threats
                )
            self.cost[key] = len(self.x) * (1 if arm == "baseline" else len(threats) - 1) / t.seconds
        return self.runs[key]

    def racc(self, arm, s, threat, *key) -> torch.Tensor:
        """Correctness under ``threat`` (the baseline has only (a)); KeyError for (d) of a library attack."""
        r = self.run(arm, s, *key)
        return r["a" if arm == "baseline" else threat]

    def worst(self, arm, s, threats, keys) -> torch.Tensor:
        """(N,) bool: robust to every threat in ``threats`` under every attack in ``keys`` (a threat an
        attack does not have, (d) for a library attack, is skipped for that attack)."""
        ok = torch.ones(len(self.x), dtype=torch.bool)
        for key in keys:
            r = self.run(arm, s, *key)
            for t in ("a",) if arm == "baseline" else threats:
                if t in r:
                    ok &= r[t]
        return ok

    def linf_c_equals_d(self) -> bool:
        """Under L∞, (c) and (d) coincide (on at least 99% of images) for every run that has them."""
        return all(
            (r["c"] == r["d"]).float().mean() >= 0.99 for k, r in self.runs.items() if "d" in r and k[3] == "linf"
        )

    def cost_by_name(self) -> dict[str, float]:
        return {f"{k[0]}/{k[2]}/{k[3]}/eps{k[4]:.4g}/steps{k[5]}x{k[6]}/seed{k[1]}": v for k, v in self.cost.items()}

    def accuracy_of_seed(self, s) -> dict:
        return {
            f"{k[0]}/{k[2]}/{k[3]}/eps{k[4]:.4g}/steps{k[5]}x{k[6]}": {t: float(v.float().mean()) for t, v in r.items()}
            for k, r in self.runs.items()
            if k[1] == s
        }


def run_grid(
    tr: ThreatRuns,
    seeds,
    *,
    eps_grid,
    eps_l2: float,
    steps,
    head_eps: float,
    head_steps: int,
    restarts: int,
    aa_steps: int,
    eps_large: float,
) -> list[tuple]:
    """Seed 0: FGSM, PGD and AutoAttack over the L∞ budgets (``eps_grid`` in 1/255) and the L2 budget, PGD
    steps and restarts and Square (gradient-free) at the headline budget, PGD at ``eps_large`` (the check
    that robust accuracy goes to ~0); every seed: the headline PGD and AutoAttack. Returns the table rows
    (kind, norm, eps, steps, restarts) of seed 0."""
    s0 = seeds[0]
    n_steps = {"fgsm": 1, "pgd": steps[0], "autoattack": aa_steps}
    grid = [(kind, "linf", e / 255, n_steps[kind]) for kind in n_steps for e in eps_grid]
    grid += [(kind, "l2", eps_l2, n_steps[kind]) for kind in ("pgd", "autoattack")]
    grid += [("pgd", "linf", head_eps, st) for st in steps[1:]] + [("square", "linf", head_eps, 1)]
    rows = [(*g, 1) for g in grid] + [
        ("pgd", "linf", head_eps, steps[0], restarts),
        ("pgd", "linf", eps_large, steps[0], 1),
    ]
    for s in seeds[1:]:  # headline for every seed
        rows += [("pgd", "linf", head_eps, head_steps, 1, s), ("autoattack", "linf", head_eps, aa_steps, 1, s)]
    for row in tqdm(rows, desc="grid", disable=runtime.progress_disabled()):
        for arm in ("baseline", "sbde"):
            tr.run(arm, row[5] if len(row) > 5 else s0, *row[:5])
    return [r for r in rows if len(r) == 5]


def _name(kind, norm, eps, steps, restarts) -> str:
    name = {"fgsm": "FGSM", "pgd": f"PGD-{steps}", "autoattack": f"AA-{steps}", "square": "Square"}[kind]
    name += "" if restarts == 1 else f"x{restarts}"
    return name + (f" {norm} {eps * 255:.0f}/255" if norm == "linf" else f" {norm} {eps}")


def threat_table(tr: ThreatRuns, s0, rows) -> str:
    """Seed 0's robust accuracy (Wilson intervals) per attack row, baseline and the four SBDE threat models
    ("—": a library attack has no coordinate-restricted threat (d))."""
    head = f"{'attack':26s} {'baseline (a)':>22s} " + " ".join(f"{'SBDE (' + t + ')':>22s}" for t in sbde.THREATS)
    lines = [f"seed {s0}, n = {len(tr.x)} images; robust accuracy % [Wilson 95% CI]; baseline: (a) = (d), no Π", head]
    for row in rows:
        r = {"baseline": tr.run("baseline", s0, *row), "sbde": tr.run("sbde", s0, *row)}
        cells = [r["baseline"]["a"]] + [r["sbde"].get(t) for t in sbde.THREATS]
        txt = ["—" if c is None else metrics.fmt(metrics.accuracy(c), 100, 1) for c in cells]
        lines.append(f"{_name(*row):26s} " + " ".join(f"{c:>22s}" for c in txt))
    return "\n".join(lines)


def robust_figure(tr: ThreatRuns, s0, *, eps_grid, steps0: int, aa_steps: int, profile: str):
    """Robust accuracy (Wilson intervals) against the L∞ budget, FGSM, PGD and AutoAttack, every threat model
    (seed 0; AutoAttack has no (d))."""
    fig, axes = plotting.plt.subplots(1, 3, figsize=(15, 3.8))
    series = [("baseline (a)=(d)", "baseline", "a", "k")] + [
        (f"SBDE ({t})", "sbde", t, f"C{i}") for i, t in enumerate(sbde.THREATS)
    ]
    for ax, kind in zip(axes, ("fgsm", "pgd", "autoattack")):
        steps = {"fgsm": 1, "pgd": steps0, "autoattack": aa_steps}[kind]
        for label, arm, t, col in series:
            if kind in LIB_KINDS and t == "d":
                continue
            ms = [metrics.accuracy(tr.racc(arm, s0, t, kind, "linf", e / 255, steps)) for e in eps_grid]
            v = np.array([100 * m["value"] for m in ms])
            lo, hi = np.array([100 * m["ci95"][0] for m in ms]), np.array([100 * m["ci95"][1] for m in ms])
            lo, hi = np.minimum(lo, v), np.maximum(hi, v)  # Wilson ends at 0 or 1 can miss v by a rounding error
            ax.errorbar(
                eps_grid,
                v,
                yerr=[v - lo, hi - v],
                marker="o",
                capsize=3,
                color=col,
                label=label,
                ls="--" if t == "d" else "-",
            )
        ax.set_xlabel("L∞ ε (×1/255)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_title(f"{_name(kind, 'linf', 0, steps, 1).split()[0]}, seed {s0}, n={len(tr.x)} (ours, {profile})")
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- sharp-boundary geometry
def _batched(fn, x, y, batch_size: int) -> dict:
    """fn(x_batch, y_batch) -> {key: (B,) tensor}, over x in batches (bounded autograd memory), concatenated.
    A dry run (:mod:`dryrun`) runs the first batch, padded to len(x)."""
    parts = [fn(x[sl], y[sl]) for sl in dryrun.batches(len(x), batch_size, "geometry batch")]
    return {k: dryrun.pad(torch.cat([p[k] for p in parts]), len(x)) for k in parts[0]}


def geometry(
    models: dict, tf, x, y, seeds, *, eps: float, steps: int, batch_size: int = 250
) -> tuple[dict, list[float], list[float], str]:
    """Per SBDE seed: the input gradient split into auxiliary / original coordinates and the auxiliary share of
    the loss increase along an L∞ PGD path, in batches of ``batch_size`` images. Returns (per-seed arrays,
    per-seed geometric-mean ratio, per-seed mean share, printable lines)."""
    mask = tf.mask(32, 32, x.device)  # (1, 1, 64, 64), True = auxiliary
    geo, lines = {}, []
    for s in seeds:
        gs = _batched(lambda xb, yb, s=s: sbde.grad_split(models["sbde", s], tf(xb), yb, mask), x, y, batch_size)
        pa = _batched(
            lambda xb, yb, s=s: sbde.pgd_path_attribution(
                models["sbde", s], tf(xb), yb, mask, eps=eps, step=2.5 * eps / steps, steps=steps
            ),
            x,
            y,
            batch_size,
        )
        geo[s] = {k: gs[k] for k in ("ratio_per_coord", "ratio_l2", "l1_aux", "l1_orig", "l2_aux", "l2_orig")}
        geo[s] |= {"share_aux": pa["share_aux"], "first_order": pa["total"], "actual": pa["actual"]}
        lines.append(
            f"seed {s}: median per-coordinate |g| ratio aux/orig {gs['ratio_per_coord'].median():.3f}; "
            f"L2 ratio {gs['ratio_l2'].median():.3f}; mean L1 aux {gs['l1_aux'].mean():.3g} vs orig "
            f"{gs['l1_orig'].mean():.3g}; PGD loss-increase share from aux {pa['share_aux'].mean():.3f} "
            f"(first-order {pa['total'].mean():.3f} vs actual {pa['actual'].mean():.3f})"
        )
    # per-seed means -> t-interval over seeds; the log-ratio is averaged so the ratio is symmetric
    ratio_seed = [float(torch.exp(torch.log(geo[s]["ratio_per_coord"].clamp_min(1e-12)).mean())) for s in seeds]
    share_seed = [float(geo[s]["share_aux"].mean()) for s in seeds]
    return geo, ratio_seed, share_seed, "\n".join(lines)


def loss_profiles(model, tf, x, y, *, n: int, ts, seed: int) -> dict:
    """Mean loss along unit-L2 directions in the auxiliary and original subspaces (random Gaussian, or the
    gradient restricted to the subspace), from ``n`` class-balanced images (x is class-ordered)."""
    prof = data.balanced_indices(y.cpu(), n, seed=seed + 17).to(x.device)
    xt, y_prof = tf(x[prof]), y[prof]
    mask = tf.mask(32, 32, x.device)
    _, g0 = sbde._input_grad(model, xt, y_prof)
    pgen = sbde.seed_generator(seed + 11)
    out = {}
    for which in ("aux", "orig"):
        for dname in ("random", "gradient"):
            d = sbde.subspace_direction(
                xt.shape, mask, which, grad=g0 if dname == "gradient" else None, gen=pgen if dname == "random" else None
            ).to(x.device)
            out[which, dname] = sbde.loss_profile(model, xt, y_prof, d, ts)
    return out


def profile_line(profiles: dict) -> str:
    """Loss at the start, middle and end of each profile."""
    pts = {f"{w}/{d}": [round(float(v), 3) for v in p[[0, len(p) // 2, -1]]] for (w, d), p in profiles.items()}
    return f"{pts} (loss at t = 0, middle, end)"


def geometry_figure(profiles: dict, ts, ratio_per_coord: torch.Tensor, s0, n_prof: int):
    fig, axes = plotting.plt.subplots(1, 2, figsize=(11, 3.6))
    for (which, dname), prof in profiles.items():
        axes[0].plot(
            ts,
            prof.numpy(),
            ls="-" if dname == "gradient" else ":",
            color="C3" if which == "aux" else "C0",
            label=f"{which} subspace, {dname} direction",
        )
    axes[0].set_xlabel("step t along a unit-L2 direction")
    axes[0].set_ylabel("mean cross-entropy")
    axes[0].set_title(f"loss profiles, SBDE seed {s0}, n={n_prof}")
    axes[0].legend(fontsize=8)
    axes[1].hist(ratio_per_coord.clamp_min(1e-6).log10().numpy(), bins=30, color="C3", alpha=0.8)
    axes[1].axvline(0, color="k", lw=1)
    axes[1].set_xlabel("log10 (mean |g| per aux coordinate / per original coordinate)")
    axes[1].set_ylabel("images")
    axes[1].set_title("gradient concentration per image")
    return fig


# ---------------------------------------------------------------- minimal perturbation vs dimension
def refine_min_eps(model, x, y, me: torch.Tensor, grid, attack_fn, *, bisect: int) -> torch.Tensor:
    """``me`` (N,) from :func:`sbde.min_adv_eps` on ``grid`` refined by ``bisect`` geometric bisections of each
    image's bracket (the grid point below its first broken one, that one): per step the attack runs at the bracket's
    geometric mean, once per distinct bracket, and the image's estimate is the smallest eps that broke it. Images
    broken at the first grid point, never broken (inf) or misclassified clean (0) keep their value."""
    g, v = torch.tensor([float(e) for e in grid], dtype=torch.float64, device="cpu"), me.cpu().double()
    pos = torch.full((len(v),), -1, device="cpu")  # bookkeeping on the CPU; the attacks run on x's device
    hit = torch.isfinite(v) & (v > 0)
    pos[hit] = (v[hit, None] - g[None]).abs().argmin(1)  # the grid point me holds (stored in me's precision)
    todo = pos > 0  # a bracket below: the previous grid point did not break the image
    hi, lo = g[pos.clamp_min(0)], g[(pos - 1).clamp_min(0)]  # (N,) float64; used where todo only
    dev = x.device
    for _ in range(bisect):
        mid = (lo * hi).sqrt()
        for m in torch.unique(mid[todo]).tolist():  # one attack per distinct bracket midpoint
            idx = torch.nonzero(todo & (mid == m)).flatten()
            xa = attack_fn(m)(model, x[idx.to(dev)], y[idx.to(dev)])
            with torch.no_grad(), runtime.eval_mode(model):
                broken = (model(xa).argmax(1) != y[idx.to(dev)]).cpu()
            hi[idx[broken]], lo[idx[~broken]] = m, m
    out = me.clone()
    out[todo] = hi[todo].to(me.dtype)
    return out


def min_eps_study(
    models: dict, tfs: dict, x, y, grid, *, steps: int, seed: int, s0, bisect: int = 0
) -> tuple[dict, dict, str]:
    """Per K = 1, 2, 3 (seed ``s0``; K = 3 only where the ``sbde_k3`` model was loaded): the smallest L2 eps on
    ``grid`` at which L2 PGD flips each correctly classified image (censored at the top of the grid), refined by
    ``bisect`` bisections between grid points (:func:`refine_min_eps`). Returns ({K: (n_K,) eps}, {K: d}, lines)."""
    if not isinstance(bisect, int) or bisect < 0:
        raise ValueError(f"bisect={bisect!r}; expected an integer >= 0")
    mineps, dims, lines = {}, {}, []
    for arm, K in (("baseline", 1), ("sbde", 2), ("sbde_k3", 3)):
        if (arm, s0) not in models:
            continue
        fn = lambda e: attacks.PGD(eps=e, step=2.5 * e / steps, steps=steps, norm="l2", seed=seed)  # noqa: E731
        xt = tfs[arm](x)
        me = sbde.min_adv_eps(models[arm, s0], xt, y, grid, fn)
        me = refine_min_eps(models[arm, s0], xt, y, me, grid, fn, bisect=bisect) if bisect else me
        ok = me > 0  # images misclassified clean are not in the study
        mineps[K] = torch.where(torch.isinf(me[ok]), torch.tensor(grid[-1]), me[ok]).numpy()
        dims[K] = xt[0].numel()
        lines.append(
            f"K={K}: d={dims[K]}, {int(ok.sum())} correctly classified, censored {int(torch.isinf(me[ok]).sum())}, "
            f"median minimal L2 eps {np.median(mineps[K]):.4f}"
        )
    return mineps, dims, "\n".join(lines)


def scaling_slope(mineps: dict, dims: dict, *, seed: int, n_boot: int = 1000) -> dict:
    """Log-log slope of the median minimal eps over input dimension; bootstrap over images within K."""
    ks = sorted(mineps)
    all_eps = np.concatenate([mineps[k] for k in ks])  # (sum n_K,) images of every K, resampled within K
    part = np.concatenate([np.full(len(mineps[k]), j) for j, k in enumerate(ks)])

    def slope(i):
        meds = [np.median(all_eps[i][part[i] == j]) for j in range(len(ks))]
        return float(np.polyfit(np.log([dims[k] for k in ks]), np.log(meds), 1)[0])

    method = "bootstrap over images within K (log-log fit of medians)"
    return metrics.index_bootstrap_ci(slope, all_eps.size, strata=part, n_boot=n_boot, seed=seed, method=method)


def scaling_figure(mineps: dict, dims: dict, slope_m: dict):
    ks = sorted(mineps)
    fig, ax = plotting.plt.subplots(figsize=(5, 3.6))
    meds = [np.median(mineps[k]) for k in ks]
    ax.loglog([dims[k] for k in ks], meds, "o-", label="median minimal L2 ε (ours)")
    ax.loglog(
        [dims[k] for k in ks], [meds[0] * (dims[k] / dims[ks[0]]) ** -0.5 for k in ks], "k--", label="1/√d from K=1"
    )
    ax.set_xlabel("input dimension d")
    ax.set_ylabel("minimal L2 ε")
    ax.set_title(f"slope {metrics.fmt(slope_m, 1, 2)}")
    ax.legend(fontsize=8)
    return fig


def attack_explorer(model, tf, x, y) -> None:
    """One image, eps and steps, unaware or aware (through Π): widgets in a live kernel (runs on a button
    press), one static example in batch runs."""

    def show_attack(index=0, eps255=4.0, steps=10, aware=False):
        xi, yi = tf(x[index : index + 1]), y[index : index + 1]
        atk = make_attack("pgd", "linf", eps255 / 255, int(steps), transform=tf.project if aware else None)
        xa = atk(model, xi, yi)
        fig, axs = plotting.plt.subplots(1, 3, figsize=(9, 3.2))
        for ax, (name, z) in zip(axs, [("clean", xi), ("adversarial", xa), ("projected Π(adv)", tf.project(xa))]):
            with torch.no_grad():
                pred = int(model(z).argmax(1))
            ax.imshow(z[0].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_title(
                f"{name}\npred {data.CIFAR10_CLASSES[pred]} (true {data.CIFAR10_CLASSES[int(yi)]})", fontsize=8
            )
            ax.axis("off")
        print(atk)

    if not runtime.widgets_enabled():
        return show_attack()
    import ipywidgets as widgets

    widgets.interact_manual(
        show_attack,
        index=widgets.IntSlider(0, 0, len(x) - 1),
        eps255=widgets.FloatSlider(value=4.0, min=0.5, max=16.0, step=0.5),
        steps=widgets.IntSlider(10, 1, 50),
        aware=widgets.Checkbox(False),
    )


def benchmark(models: dict, tfs: dict, x, y, s0, *, eps: float, steps: int, aa_steps: int, lib: dict) -> dict:
    """Attack throughput on this machine (seed ``s0``'s baseline and SBDE models, threat model (a)): PGD
    (images × steps per second) and the quick/full AutoAttack (images per second). Returns {rows, lines}."""
    rows = []
    for arm in ("baseline", "sbde"):
        xt = tfs[arm](x)
        for kind, k in (("pgd", steps), ("autoattack", aa_steps)):
            atk = make_attack(kind, "linf", eps, k, seed=0, **lib.get(kind, {}))
            rows.append({"model": arm, "dim": xt[0].numel(), **attacks.throughput(models[arm, s0], atk, xt, y)})
    lines = [attacks.throughput_line(r, f"{r['model']:9s} (d={r['dim']})") for r in rows]
    return {"rows": rows, "lines": "\n".join(lines)}


# ---------------------------------------------------------------- sanity checks (asserted in the notebook)
SYSTEMS = (("baseline", "a"), ("sbde", "a"), ("sbde", "b"), ("sbde", "c"))


def sanity_checks(
    tr: ThreatRuns, s0, *, eps_grid, eps_l2, head_eps, steps, restarts, aa_steps, eps_large, tol
) -> tuple[dict, list, str]:
    """Seed 0, per system (baseline (a); SBDE (a), (b), (c)), each within ``tol`` (robust accuracy over the
    attacked images) — Carlini et al. 2019's checks:
      * monotone_eps: PGD and AutoAttack robust accuracy does not rise with the L∞ budget;
      * large_eps_zero: PGD at ``eps_large`` leaves <= 5% (systems (a) and (c), the attackers that know
        the deployed system);
      * more_steps: more PGD steps and restarts never help the defence (headline budget);
      * reference_not_weaker: AutoAttack is not weaker than the project's PGD at any budget;
      * aware_not_weaker: the aware attack (c) is not weaker than the unaware one (b), PGD and AutoAttack;
      * gradient_free: Square is not stronger than the gradient attacks (headline budget); a system that
        fails it is flagged for gradient masking (returned), the undefended baseline must pass.
    Returns ({check: [(what, ok)]}, flagged systems, lines)."""

    def acc(arm, t, *key):
        return float(tr.racc(arm, s0, t, *key).float().mean())

    head_pgd = ("pgd", "linf", head_eps, steps[0])
    checks = {k: [] for k in ("monotone_eps", "large_eps_zero", "more_steps", "reference_not_weaker")}
    checks |= {"aware_not_weaker": [], "gradient_free": []}
    budgets = [("linf", e / 255) for e in eps_grid] + [("l2", eps_l2)]
    for arm, t in SYSTEMS if "sbde" in {a for a, _ in tr.models} else SYSTEMS[:1]:
        name = f"{arm} ({t})"
        for kind, k in (("pgd", steps[0]), ("autoattack", aa_steps)):
            v = [acc(arm, t, kind, "linf", e / 255, k) for e in eps_grid]
            checks["monotone_eps"].append((f"{name} {kind}", all(b <= a + tol for a, b in zip(v, v[1:]))))
        if t in ("a", "c"):
            checks["large_eps_zero"].append((name, acc(arm, t, "pgd", "linf", eps_large, steps[0]) <= 0.05))
        r0 = acc(arm, t, *head_pgd)
        more = [(f"PGD-{k}", acc(arm, t, "pgd", "linf", head_eps, k)) for k in steps[1:]]
        more.append((f"PGD-{steps[0]}x{restarts}", acc(arm, t, *head_pgd, restarts)))
        checks["more_steps"] += [(f"{name} {n}", v <= r0 + tol) for n, v in more]
        for norm, e in budgets:
            ok = acc(arm, t, "autoattack", norm, e, aa_steps) <= acc(arm, t, "pgd", norm, e, steps[0]) + tol
            checks["reference_not_weaker"].append((f"{name} {norm} {e:.4g}", ok))
        if t != "b":
            grad = min([r0, acc(arm, t, "autoattack", "linf", head_eps, aa_steps)] + [v for _, v in more])
            checks["gradient_free"].append((name, acc(arm, t, "square", "linf", head_eps, 1) >= grad - tol))
    if "sbde" in {a for a, _ in tr.models}:
        for kind, k in (("pgd", steps[0]), ("autoattack", aa_steps)):
            for norm, e in budgets:
                ok = acc("sbde", "c", kind, norm, e, k) <= acc("sbde", "b", kind, norm, e, k) + tol
                checks["aware_not_weaker"].append((f"{kind} {norm} {e:.4g}", ok))
    flagged = [w for w, ok in checks["gradient_free"] if not ok]
    lines = [
        f"{k:22s} {'ok' if all(ok for _, ok in v) else 'FAILED for ' + str([w for w, ok in v if not ok])}"
        for k, v in checks.items()
    ]
    lines.append(
        f"flagged for gradient masking (Square beats the gradient attacks by > {tol:.2f}): {flagged or 'none'}"
    )
    return checks, flagged, "\n".join(lines)


# ---------------------------------------------------------------- claims
def claims(
    tr: ThreatRuns,
    clean: dict,
    seeds,
    rules: dict,
    *,
    ratio_seed,
    share_seed,
    slope_m: dict,
    profile: str,
    rec: dict,
    stem: str,
    head_eps: float,
    head_steps: int,
    steps0: int,
    n_mineps: int,
    n_grid: int,
    seed: int,
    aa_steps: int | None = None,
    test_acc: dict | None = None,
) -> list[dict]:
    """The five claims of notebook 03, decided by the declared ``rules`` at the headline budget: robust to
    PGD-``head_steps`` and (when ``aa_steps`` is given) to AutoAttack, per image (the worst case). ``test_acc``
    (:func:`test_accuracy`) puts the models' accuracy on the whole test split into each claim's regime."""
    keys = [("pgd", "linf", head_eps, head_steps)] + ([("autoattack", "linf", head_eps, aa_steps)] if aa_steps else [])
    si = dict(n_images=len(tr.x), n_boot=1000, seed=seed)

    def seeds_acc(arm, threats, given_clean, idx=None):
        """Per seed: share of the images ``idx`` robust to every threat in ``threats`` under every headline
        attack (the worst case); given_clean: among those classified correctly when clean (0 if none)."""
        out = []
        for s in seeds:
            c = clean[arm, s] if idx is None else clean[arm, s][idx]
            ok = c.clone() if given_clean else torch.ones_like(c)
            r = tr.worst(arm, s, threats, keys)
            ok &= r if idx is None else r[idx]
            out.append(float(ok.sum() / (c.sum().clamp_min(1) if given_clean else len(ok))))
        return np.array(out)

    def diff(x, y, given_clean=True, what="robust | clean"):  # paired over seeds and over the same images
        m = metrics.seed_image_ci(
            lambda i: seeds_acc(x[0], THREAT_SETS[x], given_clean, i) - seeds_acc(y[0], THREAT_SETS[y], given_clean, i),
            **si,
        )
        return {**m, "method": f"{m['method']}, paired, of {what}"}

    m = {
        f"robust_{a}_{t}": metrics.seed_image_ci(lambda i, k=(a, t): seeds_acc(k[0], THREAT_SETS[k], True, i), **si)
        for (a, t) in THREAT_SETS
    }
    for a in ("baseline", "sbde"):
        m[f"clean_{a}"] = metrics.seed_image_ci(
            lambda i, a=a: np.array([float(clean[a, s][i].float().mean()) for s in seeds]), **si
        )
    base, every = ("baseline", "a"), dict(given_clean=False, what="robust accuracy over all attacked images")
    ratio_m, share_m = metrics.mean_ci(ratio_seed), metrics.mean_ci(share_seed)
    attack = f"PGD-{head_steps}" + (f" and AutoAttack-{aa_steps} (worst case per image)" if aa_steps else "")
    head = (
        f"{attack} L-inf eps={round(head_eps * 255)}/255, {stem} stem, seeds {list(seeds)}, "
        f"n={len(tr.x)} attacked images/seed; robust | clean = robust among the clean-correct ones; "
        "intervals: t over seeds + image bootstrap"
    )
    on_test = ""
    if test_acc is not None:  # {arm: {"accuracy": [per seed], "n": images}}: the whole test split of this run
        n_test = test_acc["baseline"]["n"]
        on_test = (
            f"on the {n_test}-image test split baseline {100 * np.mean(test_acc['baseline']['accuracy']):.1f}%, "
            f"SBDE {100 * np.mean(test_acc['sbde']['accuracy']):.1f}% (mean over seeds); "
        )
    regime = (
        f"clean accuracy {on_test}on the {len(tr.x)} attacked images{' (a subset of it)' if on_test else ''} baseline "
        f"{100 * m['clean_baseline']['value']:.1f}%, SBDE {100 * m['clean_sbde']['value']:.1f}% "
        f"(paper: {paper.get('p3_baseline_acc')['value']}% / {paper.get('p3_sbde_acc')['value']}%); "
        f"width {rec['width']} ResNet-18, {rec['train_size'] or 50000} training images; "
        "attack settings ours (paper's unknown)"
    )
    common = dict(profile=profile, regime=regime)
    return [
        results.claim(
            "sbde-fragility",
            "SBDE models are less robust than the baseline to iterative white-box attacks "
            "(all pixels attacked, threat model a)",
            rules["sbde-fragility"],
            {
                "sbde_minus_baseline": diff(("sbde", "a"), base),
                "sbde_minus_baseline_all_images": diff(("sbde", "a"), base, **every),
                **{k: m[k] for k in ("robust_sbde_a", "robust_baseline_a", "clean_sbde", "clean_baseline")},
            },
            headline="sbde_minus_baseline",
            paper_keys=("p3_sbde_acc",),
            protocol=head,
            **common,
        ),
        results.claim(
            "projection-restores-unaware",
            "Mask projection restores robustness against an attacker unaware of it (threat model b)",
            rules["projection-restores-unaware"],
            {
                "b_minus_a": diff(("sbde", "b"), ("sbde", "a")),
                "b_minus_baseline_a": diff(("sbde", "b"), base),
                "b_minus_baseline_a_all_images": diff(("sbde", "b"), base, **every),
                "robust_sbde_b": m["robust_sbde_b"],
            },
            headline="b_minus_baseline_a",
            protocol=head,
            **common,
        ),
        results.claim(
            "projection-restores-aware",
            "Mask projection restores robustness against an attacker who knows it: robust | clean of the defended "
            "SBDE system under the aware attacker (worse of c, through Pi, and d, original pixels only) is no worse "
            "than the baseline's",
            rules["projection-restores-aware"],
            {
                "aware_minus_baseline_a": diff(("sbde", "aware"), base),
                "aware_minus_baseline_a_all_images": diff(("sbde", "aware"), base, **every),
                "aware_minus_b": diff(("sbde", "aware"), ("sbde", "b")),
                **{k: m[k] for k in ("robust_sbde_aware", "robust_sbde_c", "robust_sbde_d", "robust_baseline_a")},
            },
            headline="aware_minus_baseline_a",
            protocol=head,
            **common,
        ),
        results.claim(
            "gradient-concentration",
            "Loss gradients are steeper along the inserted (auxiliary) axes: "
            "per-coordinate |grad| ratio aux/orig > 1 and the auxiliary share of the PGD loss increase > 3/4",
            rules["gradient-concentration"],
            {
                "grad_ratio_minus_1": metrics.shifted(ratio_m, -1.0, "ratio - 1"),
                "share_minus_coord_share": metrics.shifted(share_m, -0.75, "share - 3/4"),
                "grad_ratio_per_coord": ratio_m,
                "pgd_share_aux": share_m,
            },
            headline="grad_ratio_per_coord",
            protocol=f"SBDE models, {stem} stem, {len(tr.x)} images per seed, "
            f"t-interval over seed means; PGD-{steps0} eps {round(head_eps * 255)}/255 path",
            **common,
        ),
        results.claim(
            "min-perturbation-scaling",
            "Extension (Gao et al.): the minimal L2 adversarial perturbation "
            "scales like 1/sqrt(d) across K = 1, 2, 3 (slope -0.5 in log-log)",
            rules["min-perturbation-scaling"],
            {"slope_plus_half": metrics.shifted(slope_m, 0.5, "slope + 0.5"), "slope": slope_m},
            headline="slope",
            protocol=f"seed {seeds[0]} models, {n_mineps} balanced test images, L2 PGD-{steps0}, "
            f"eps grid {n_grid} geometric values",
            **common,
        ),
    ]


def claim_lines(claims_: list[dict]) -> str:
    lines = []
    for c in claims_:
        lines.append(f"{c['id']}: {c['verdict']} — {c['reason']}")
        for k, v in c["metrics"].items():
            lines.append(f"    {k:22s} {metrics.fmt(v, 1 if k in RATIO_KEYS else 100)}  ({v['method']}, n={v['n']})")
    return "\n".join(lines)


def extra(tr: ThreatRuns, s0, *, cost: dict, hits: int, mineps: dict, dims: dict) -> dict:
    """The results file's ``extra``: seed 0's accuracy per attack and threat, attack cost, min-eps medians."""
    return {
        "robust_accuracy_seed0": tr.accuracy_of_seed(s0),
        "attack_cost_images_per_s": cost,
        "median_min_l2_eps": {str(k): float(np.median(v)) for k, v in mineps.items()},
        "dims": {str(k): v for k, v in dims.items()},
        "model_cache_hits": hits,
    }


def test_accuracy(models: dict, transforms: dict, x, y) -> dict:
    """{arm: {"accuracy": [per seed, in the models' order], "n": images}} of the models on (x, y), the whole test
    split: the regime of the models under attack (the attacked images are a small subset of it)."""
    out = {}
    for (a, _), c in clean_correct(models, transforms, x, y).items():
        out.setdefault(a, {"accuracy": [], "n": len(c)})["accuracy"].append(float(c.float().mean()))
    return out


def clean_correct(models: dict, transforms: dict, x, y) -> dict:
    """{(arm, seed): (N,) bool} clean correctness of every model on (x, y): the attacked images, or the whole
    test split (:func:`test_accuracy`)."""
    return {(a, s): training.evaluate(m, x, y, input_transform=transforms[a]) for (a, s), m in models.items()}
