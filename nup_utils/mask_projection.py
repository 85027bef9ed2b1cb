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

from . import attacks, data, metrics, paper, plotting, results, runtime, sbde, training

THREAT_SETS = {("baseline", "a"): ("a",), **{("sbde", t): (t,) for t in sbde.THREATS}, ("sbde", "aware"): ("c", "d")}
RATIO_KEYS = ("slope", "slope_plus_half", "grad_ratio_per_coord", "grad_ratio_minus_1")  # printed unscaled


def make_attack(
    kind: str, norm: str, eps: float, steps: int = 1, restarts: int = 1, seed: int = 0, mask=None, transform=None
):
    """FGSM, or PGD with step 2.5·eps/steps (``kind`` "fgsm" | "pgd")."""
    if kind == "fgsm":
        return attacks.FGSM(eps=eps, norm=norm, mask=mask, transform=transform)
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

    def __init__(self, models: dict, transforms: dict, x: torch.Tensor, y: torch.Tensor):
        self.models, self.tf, self.x, self.y = models, transforms, x, y
        self.runs, self.cost = {}, {}  # key -> {threat: (N,) bool}; key -> images per second

    def run(self, arm, s, kind, norm, eps, steps=1, restarts=1) -> dict:
        key = (arm, s, kind, norm, round(eps, 8), steps, restarts)
        if key not in self.runs:
            mk = partial(make_attack, kind, norm, eps, steps, restarts, s)
            with runtime.Timer() as t:
                self.runs[key] = sbde.threat_model_correct(self.models[arm, s], self.tf[arm], mk, self.x, self.y)
            self.cost[key] = len(self.x) * (1 if arm == "baseline" else 3) / t.seconds
        return self.runs[key]

    def racc(self, arm, s, threat, *key) -> torch.Tensor:
        """Correctness under ``threat`` (the baseline has only (a))."""
        r = self.run(arm, s, *key)
        return r["a" if arm == "baseline" else threat]

    def linf_c_equals_d(self) -> bool:
        """Under L∞, (c) and (d) coincide (on at least 99% of images) for every run that has them."""
        return all(
            (r["c"] == r["d"]).float().mean() >= 0.99 for k, r in self.runs.items() if "c" in r and k[3] == "linf"
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
    tr: ThreatRuns, seeds, *, eps_grid, eps_l2: float, steps, head_eps: float, head_steps: int, restarts: int
) -> list[tuple]:
    """Seed 0: FGSM and PGD over the L∞ budgets (``eps_grid`` in 1/255), one L2 PGD, PGD steps and restarts
    at the headline budget; every seed: the headline attack. Returns the table rows (kind, norm, eps,
    steps, restarts) of seed 0."""
    s0 = seeds[0]
    grid = [(kind, "linf", e / 255, steps[0] if kind == "pgd" else 1) for kind in ("fgsm", "pgd") for e in eps_grid]
    grid += [("pgd", "l2", eps_l2, steps[0])]
    for kind, norm, eps, st in tqdm(grid, desc="grid", disable=runtime.progress_disabled()):
        for arm in ("baseline", "sbde"):
            tr.run(arm, s0, kind, norm, eps, st)
    for st in steps:  # convergence in steps and restarts at the headline budget
        for arm in ("baseline", "sbde"):
            tr.run(arm, s0, "pgd", "linf", head_eps, st)
    for arm in ("baseline", "sbde"):
        tr.run(arm, s0, "pgd", "linf", head_eps, steps[0], restarts)
    for s in seeds:  # headline for every seed
        for arm in ("baseline", "sbde"):
            tr.run(arm, s, "pgd", "linf", head_eps, head_steps)
    rows = [(*g, 1) for g in grid] + [("pgd", "linf", head_eps, st, 1) for st in steps[1:]]
    return rows + [("pgd", "linf", head_eps, steps[0], restarts)]


def threat_table(tr: ThreatRuns, s0, rows) -> str:
    """Seed 0's robust accuracy (Wilson intervals) per attack row, baseline and the four SBDE threat models."""
    head = f"{'attack':26s} {'baseline (a)':>22s} " + " ".join(f"{'SBDE (' + t + ')':>22s}" for t in sbde.THREATS)
    lines = [f"seed {s0}, n = {len(tr.x)} images; accuracy % [Wilson 95% CI]; baseline: (a) = (d), no Π", head]
    for kind, norm, eps, steps, restarts in rows:
        name = kind.upper() + ("" if kind == "fgsm" else f"-{steps}") + ("" if restarts == 1 else f"x{restarts}")
        name += f" {norm} {eps * 255:.0f}/255" if norm == "linf" else f" {norm} {eps}"
        cells = [("baseline", "a")] + [("sbde", t) for t in sbde.THREATS]
        row = [
            metrics.fmt(metrics.accuracy(tr.racc(a, s0, t, kind, norm, eps, steps, restarts)), 100, 1) for a, t in cells
        ]
        lines.append(f"{name:26s} " + " ".join(f"{r:>22s}" for r in row))
    return "\n".join(lines)


def robust_figure(tr: ThreatRuns, s0, *, eps_grid, steps0: int, profile: str):
    """Robust accuracy (Wilson intervals) against the L∞ budget, FGSM and PGD, every threat model (seed 0)."""
    fig, axes = plotting.plt.subplots(1, 2, figsize=(11, 3.8))
    series = [("baseline (a)=(d)", "baseline", "a", "k")] + [
        (f"SBDE ({t})", "sbde", t, f"C{i}") for i, t in enumerate(sbde.THREATS)
    ]
    for ax, kind in zip(axes, ("fgsm", "pgd")):
        steps = 1 if kind == "fgsm" else steps0
        for label, arm, t, col in series:
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
        ax.set_title(
            f"{kind.upper()}{'' if kind == 'fgsm' else '-' + str(steps)}, seed {s0}, n={len(tr.x)} (ours, {profile})"
        )
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- sharp-boundary geometry
def geometry(models: dict, tf, x, y, seeds, *, eps: float, steps: int) -> tuple[dict, list[float], list[float], str]:
    """Per SBDE seed: the input gradient split into auxiliary / original coordinates and the auxiliary share of
    the loss increase along an L∞ PGD path. Returns (per-seed arrays, per-seed geometric-mean ratio,
    per-seed mean share, printable lines)."""
    mask = tf.mask(32, 32, x.device)  # (1, 1, 64, 64), True = auxiliary
    geo, lines = {}, []
    for s in seeds:
        xt = tf(x)
        gs = sbde.grad_split(models["sbde", s], xt, y, mask)
        pa = sbde.pgd_path_attribution(models["sbde", s], xt, y, mask, eps=eps, step=2.5 * eps / steps, steps=steps)
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
def min_eps_study(models: dict, tfs: dict, x, y, grid, *, steps: int, seed: int, s0) -> tuple[dict, dict, str]:
    """Per K = 1, 2, 3 (seed ``s0``): the smallest L2 eps on ``grid`` at which L2 PGD flips each correctly
    classified image (censored at the top of the grid). Returns ({K: (n_K,) eps}, {K: d}, lines)."""
    mineps, dims, lines = {}, {}, []
    for arm, K in (("baseline", 1), ("sbde", 2), ("sbde_k3", 3)):
        fn = lambda e: attacks.PGD(eps=e, step=2.5 * e / steps, steps=steps, norm="l2", seed=seed)  # noqa: E731
        xt = tfs[arm](x)
        me = sbde.min_adv_eps(models[arm, s0], xt, y, grid, fn)
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
) -> list[dict]:
    """The five claims of notebook 03, decided by the declared ``rules`` at the headline attack."""
    key = ("pgd", "linf", head_eps, head_steps)
    si = dict(n_images=len(tr.x), n_boot=1000, seed=seed)

    def seeds_acc(arm, threats, given_clean, idx=None):
        """Per seed: share of the images ``idx`` robust to every threat in ``threats`` (headline attack);
        given_clean: among those classified correctly when clean (0 if none)."""
        out = []
        for s in seeds:
            c = clean[arm, s] if idx is None else clean[arm, s][idx]
            ok = c.clone() if given_clean else torch.ones_like(c)
            for t in threats:
                r = tr.racc(arm, s, t, *key)
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
    head = (
        f"PGD-{head_steps} L-inf eps={round(head_eps * 255)}/255, {stem} stem, seeds {list(seeds)}, "
        f"n={len(tr.x)} attacked images/seed; robust | clean = robust among the clean-correct ones; "
        "intervals: t over seeds + image bootstrap"
    )
    regime = (
        f"clean accuracy baseline {100 * m['clean_baseline']['value']:.1f}%, "
        f"SBDE {100 * m['clean_sbde']['value']:.1f}% "
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


def clean_correct(models: dict, transforms: dict, x, y) -> dict:
    """{(arm, seed): (N,) bool} clean correctness of every model on the attacked images."""
    return {(a, s): training.evaluate(m, x, y, input_transform=transforms[a]) for (a, s), m in models.items()}
