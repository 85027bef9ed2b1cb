"""Notebook 01's experiment around the estimators of :mod:`nup_utils.uncertainty`: the exactness checks,
the per-claim metrics (naive bound per state; the training trade-off over an epsilon grid) and the figures.

Shapes: a *run* is ``{seed: {epoch: {"correct": {kind: (N,) bool}, "maps": class_maps(...)}}}`` for one
dataset; ``kind`` is "clean" or an attack name such as "pgd@0.1". Intervals come from
:mod:`nup_utils.metrics` (seeds and, where images are attacked, images as well).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import metrics
from . import uncertainty as unc

STATE_TEXT = {
    "loss": "psi ~ loss (P1)",
    "exp": "psi ~ exp(-loss/2) (P2 reading)",
    "envelope": "psi ~ loss * prod sin^2(pi x) (vanishes on the boundary; ours)",
}
ENVELOPE_P = math.sqrt(math.pi**2 / 9 - 5 / 6)  # dx*dp of psi ~ sin^2(pi x) on [0, 1] (constant loss)


# ---------------------------------------------------------------- exactness checks (known answers)
def exactness_controls(gen: torch.Generator, *, n: int) -> tuple[dict, list[str]]:
    """Known answers before any network; ``n`` Monte Carlo samples per check. Returns (numbers, lines).

    gaussian: a Gaussian state is a minimum-uncertainty state (P = |C|/2 = 1/2; quadrature and MC, 2-D
    uniform and 8-D importance sampling); envelope: constant loss, P = sqrt(pi^2/9 - 5/6), B = 0;
    logistic: MC agrees with quadrature in 1-D and 2-D for every state; steep: l = 1 - sigmoid(100 x) on
    [-1, 1], where one 64-node rule is far off and the converged composite rule is not; ibp: C = 1 - B."""
    c = {k: [] for k in ("gauss_mc_z", "gauss_quad_err", "gauss_eq_err", "logistic_z", "ibp_err", "env_z")}
    c["quad_converged"], lines = [], []
    for state in unc.GAUSSIAN_STATES:
        g2 = unc.gaussian_loss(torch.tensor([0.5, 0.45]), 0.07, state)
        quad = unc.quadrature(g2, unc.pixel_box(2), states=(state,))[state]
        mc = unc.UncertaintyEstimator(n_samples=n, batch_size=8192, states=(state,))(g2, unc.pixel_box(2), gen)
        mu8 = torch.full((8,), 0.5)
        sampler = unc.DataMixtureSampler(mu8[None], sigma=0.1, defensive=0.1)
        is8 = unc.UncertaintyEstimator(n_samples=n // 4, batch_size=8192, states=(state,), sampler=sampler)(
            unc.gaussian_loss(mu8, 0.08, state), unc.pixel_box(8), gen
        )
        c["quad_converged"].append(quad.extra["converged"])
        c["gauss_quad_err"].append(float((quad["product"] - 0.5).abs().max()))
        c["gauss_eq_err"].append(float((quad["product"] - quad["half_c"]).abs().max()))
        for e in (mc[state], is8[state]):
            c["gauss_mc_z"] += ((e["product"] - 0.5) / e.se["product"]).tolist()
        lines.append(
            f"Gaussian, psi~{state}: quadrature P = {np.round(quad['product'].tolist(), 8)} "
            f"({quad.extra['nodes_per_axis']} nodes/axis); MC 2-D P = {np.round(mc[state]['product'].tolist(), 4)} "
            f"± {np.round(mc[state].se['product'].tolist(), 4)}; "
            f"IS 8-D mean P {float(is8[state]['product'].mean()):.4f}"
        )
    const = lambda x: torch.ones(len(x), dtype=x.dtype) + 0 * x.sum(1)  # noqa: E731
    qe = unc.quadrature(const, unc.pixel_box(2), states=("envelope",))["envelope"]
    me = unc.UncertaintyEstimator(n_samples=n, batch_size=8192, states=("envelope",))(const, unc.pixel_box(8), gen)
    me = me["envelope"]
    c["quad_converged"].append(qe.extra["converged"])
    c["env_quad_err"] = float((qe["product"] - ENVELOPE_P).abs().max())
    c["env_boundary_err"] = float(qe["boundary"].abs().max())
    c["env_z"] = ((me["product"] - ENVELOPE_P) / me.se["product"]).tolist()
    lines.append(
        f"envelope, constant loss: exact P = {ENVELOPE_P:.6f}; quadrature P = {np.round(qe['product'].tolist(), 8)}, "
        f"B = {np.round(qe['boundary'].tolist(), 10)}; MC 8-D mean P {float(me['product'].mean()):.4f} "
        f"(per-component SE ≈ {float(me.se['product'].mean()):.4f})"
    )
    c["logistic_products"] = {}
    for dim, w, b in ((1, [5.0], -2.0), (2, [4.0, -3.0], 0.5)):
        lg = unc.logistic_loss(torch.tensor(w), b)
        quad = unc.quadrature(lg, unc.pixel_box(dim))
        mc = unc.UncertaintyEstimator(n_samples=n, batch_size=8192)(lg, unc.pixel_box(dim), gen)
        for state in unc.STATES:
            c["quad_converged"].append(quad[state].extra["converged"])
            for q in ("dx", "dp", "product", "half_c"):
                c["logistic_z"] += ((mc[state][q] - quad[state][q]) / mc[state].se[q]).tolist()
            c["logistic_products"][f"{dim}d-{state}"] = quad[state]["product"].tolist()
            lines.append(
                f"logistic {dim}-D, psi~{state}: quad P = {np.round(quad[state]['product'].tolist(), 4)}, "
                f"MC P = {np.round(mc[state]['product'].tolist(), 4)} ± {np.round(mc[state].se['product'].tolist(), 4)}"
                f", quad |C|/2 = {np.round(quad[state]['half_c'].tolist(), 4)}"
            )
            if dim == 1:
                ibp = unc.boundary_term_1d(lg, 0.0, 1.0, state)
                c["ibp_err"].append(abs(float(quad[state]["boundary"]) - ibp))
    steep = lambda x: 1 - torch.sigmoid(100 * x[:, 0])  # noqa: E731
    box = unc.Box([-1.0], [1.0])
    one = unc._quadrature_once(steep, box, 1, 64, ("loss",), 65536)["loss"]
    ada = unc.quadrature(steep, box, states=("loss",))["loss"]
    c["quad_converged"].append(ada.extra["converged"])
    c["steep"] = {
        "fixed64_dp": float(one["dp"]),
        "fixed64_boundary": float(one["boundary"]),
        "adaptive_dp": float(ada["dp"]),
        "adaptive_dp_err": float(ada.se["dp"]),
        "adaptive_boundary": float(ada["boundary"]),
        "adaptive_nodes": ada.extra["nodes_per_axis"],
    }
    st = c["steep"]
    lines.append(
        f"steep 1-D loss 1 - sigmoid(100 x) on [-1, 1], psi~loss: one 64-node rule dp = {st['fixed64_dp']:.3f}, "
        f"B = {st['fixed64_boundary']:.3f}; converged composite rule ({st['adaptive_nodes']} nodes) "
        f"dp = {st['adaptive_dp']:.5f} ± {st['adaptive_dp_err']:.1e}, B = {st['adaptive_boundary']:.5f}"
    )
    lines.append(
        f"max |z|: Gaussian MC vs 1/2 {max(map(abs, c['gauss_mc_z'])):.2f}; envelope MC vs exact "
        f"{max(map(abs, c['env_z'])):.2f}; logistic MC vs quadrature {max(map(abs, c['logistic_z'])):.2f}; "
        f"max |B - boundary formula| {max(c['ibp_err']):.1e}; every quadrature converged: {all(c['quad_converged'])}"
    )
    return c, lines


# ---------------------------------------------------------------- claim metrics
def bound_metrics(maps_by_seed: list[dict], *, z: float) -> dict:
    """Naive-bound metrics of one state over seeds (t-intervals; one value per seed).

    frac_consistent: share of (class, component) pairs whose estimate is not significantly below 1/2
    (P + z SE >= 1/2); halfwidth_median: median z * SE(P) (the resolution of that test);
    frac_point_holds: share with P >= 1/2 (point estimates); mean_product; median_boundary_term."""
    fr = [unc.bound_fractions(m, z=z) for m in maps_by_seed]
    hw = [float((z * m["se"]["product"]).median()) for m in maps_by_seed]
    return {
        "frac_consistent": metrics.mean_ci([1 - f["naive_violated"] for f in fr]),
        "halfwidth_median": metrics.mean_ci(hw),
        "frac_point_holds": metrics.mean_ci([f["naive_holds"] for f in fr]),
        "mean_product": metrics.mean_ci([f["mean_product"] for f in fr]),
        "median_boundary_term": metrics.mean_ci([f["median_boundary"] for f in fr]),
    }


def _given_clean(correct: dict, kind: str, idx: np.ndarray) -> float:
    """Accuracy under attack ``kind`` among the images idx classified correctly when clean (0 if none)."""
    clean = correct["clean"].numpy()[idx]
    adv = correct[kind].numpy()[idx]
    return float((adv & clean).sum() / max(int(clean.sum()), 1))


def robust_given_clean(run: dict, epoch: int, kinds: list[str], *, seed: int = 0) -> dict:
    """Mean over ``kinds`` (e.g. the epsilon grid) of robust | clean at one checkpoint, over seeds and images."""
    seeds = sorted(run)
    n = len(run[seeds[0]][epoch]["correct"]["clean"])

    def per_seed(idx):
        return np.array([np.mean([_given_clean(run[s][epoch]["correct"], k, idx) for k in kinds]) for s in seeds])

    return metrics.seed_image_ci(per_seed, n, seed=seed)


def trade_off_metrics(run: dict, first: int, last: int, kinds: list[str], *, seed: int = 0) -> dict:
    """Paired changes from checkpoint ``first`` to ``last`` over seeds. Robustness is accuracy under attack
    among clean-correct images, averaged over ``kinds`` (the epsilon grid) and also given per kind; its
    intervals carry seed spread and the sampling of the attacked images (metrics.seed_image_ci)."""
    seeds = sorted(run)
    n = len(run[seeds[0]][last]["correct"]["clean"])

    def d_given_clean(ks):
        def per_seed(idx):
            return np.array(
                [
                    np.mean([_given_clean(run[s][last]["correct"], k, idx) for k in ks])
                    - np.mean([_given_clean(run[s][first]["correct"], k, idx) for k in ks])
                    for s in seeds
                ]
            )

        return metrics.seed_image_ci(per_seed, n, seed=seed)

    def d_acc(kind):
        def per_seed(idx):
            return np.array(
                [
                    run[s][last]["correct"][kind].numpy()[idx].mean()
                    - run[s][first]["correct"][kind].numpy()[idx].mean()
                    for s in seeds
                ]
            )

        return metrics.seed_image_ci(per_seed, n, seed=seed)

    def dlog(state, q):
        mean = lambda s, e: float(run[s][e]["maps"][state]["values"][q].mean())  # noqa: E731
        return metrics.paired_diff([math.log(mean(s, last)) for s in seeds], [math.log(mean(s, first)) for s in seeds])

    out = {
        "dlog_mean_dp_loss_state": dlog("loss", "dp"),
        "d_given_clean_mean_eps": d_given_clean(kinds),
        "d_clean_acc": d_acc("clean"),
    }
    for k in kinds:
        out[f"d_given_clean_{k}"] = d_given_clean([k])
    out["dlog_mean_dp_exp_state"] = dlog("exp", "dp")
    out["dlog_mean_product_loss_state"] = dlog("loss", "product")
    out["given_clean_mean_eps_last"] = robust_given_clean(run, last, kinds, seed=seed)
    return out


def curve(run: dict, fn) -> dict:
    """{epoch: metrics.mean_ci over seeds of fn(run[seed][epoch])}."""
    seeds = sorted(run)
    return {e: metrics.mean_ci([fn(run[s][e]) for s in seeds]) for e in sorted(run[seeds[0]])}


def accuracy_of(kind: str):
    return lambda r: float(r["correct"][kind].float().mean())


def given_clean_of(kind: str):
    return lambda r: _given_clean(r["correct"], kind, np.arange(len(r["correct"]["clean"])))


def spread_of(state: str, q: str):
    return lambda r: float(r["maps"][state]["values"][q].mean())


# ---------------------------------------------------------------- figures
def pixel_maps(values: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """(K, D) -> (K, H, W), mean over channels."""
    return values.reshape(len(values), *shape).mean(1).numpy()


def plot_class_maps(v: dict, shape, classes, title: str):
    """Rows dx, dp, P, |C|/2; one column per class; v = maps[state]["values"]."""
    rows = [("dx", r"$\Delta x_i$"), ("dp", r"$\Delta p_i$"), ("product", r"$P_i$"), ("half_c", r"$\frac{1}{2}|C_i|$")]
    fig, axes = plt.subplots(len(rows), len(classes), figsize=(1.3 * len(classes) + 1, 1.4 * len(rows)), squeeze=False)
    for r, (q, label) in enumerate(rows):
        imgs = pixel_maps(v[q], shape)
        vmin, vmax = float(imgs.min()), float(imgs.max())
        for c, k in enumerate(classes):
            ax = axes[r, c]
            im = ax.imshow(imgs[c], cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            if r == 0:
                ax.set_title(f"class {k}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
        fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.8)
    fig.suptitle(title)
    return fig


def plot_product_hist(maps: dict, title: str):
    """Histogram of P_i and |C_i|/2 over classes x components, one panel per state; dashed: 1/2."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 3.2), squeeze=False)
    for ax, (state, m) in zip(axes[0], maps.items()):
        p, hc = m["values"]["product"].flatten().numpy(), m["values"]["half_c"].flatten().numpy()
        lo = max(min(p.min(), hc[hc > 0].min() if (hc > 0).any() else p.min()), 1e-8)
        bins = np.logspace(np.log10(lo), np.log10(max(p.max(), 1.0)), 50)
        ax.hist(p, bins=bins, alpha=0.7, label=r"$P_i$")
        ax.hist(hc, bins=bins, alpha=0.5, label=r"$\frac{1}{2}|C_i|$")
        ax.axvline(0.5, color="k", ls="--", label="naive bound 1/2")
        ax.set_xscale("log"), ax.set_xlabel("value (classes x components)"), ax.legend(fontsize=7)
        ax.set_title(STATE_TEXT[state].split(" (")[0], fontsize=9)
    fig.suptitle(title)
    return fig


def _errorbar(ax, c: dict, label: str, marker="o"):
    e = sorted(c)
    m = np.array([c[i]["value"] for i in e])
    lo, hi = np.array([c[i]["ci95"][0] for i in e]), np.array([c[i]["ci95"][1] for i in e])
    ax.errorbar(e, m, yerr=[m - lo, hi - m], marker=marker, capsize=3, label=label)


def plot_training(curves: dict, kinds: dict, title: str):
    """Left: clean accuracy and robust | clean per attack; then mean dx, dp, P per state (log scale)."""
    states = [s for s in unc.STATES if f"dp_{s}" in curves]
    fig, axes = plt.subplots(1, 1 + len(states), figsize=(4.3 * (1 + len(states)), 3.4))
    _errorbar(axes[0], curves["acc_clean"], "clean accuracy")
    for k, lab in kinds.items():
        _errorbar(axes[0], curves[f"given_clean_{k}"], f"{lab} | clean", marker=".")
    axes[0].set_xlabel("epoch"), axes[0].set_ylabel("accuracy"), axes[0].legend(fontsize=7)
    for ax, state in zip(axes[1:], states):
        for q, lab in (("dx", r"mean $\Delta x$"), ("dp", r"mean $\Delta p$"), ("product", r"mean $P$")):
            _errorbar(ax, curves[f"{q}_{state}"], lab)
        ax.axhline(0.5, color="k", ls="--", lw=0.8)
        ax.set_yscale("log"), ax.set_xlabel("epoch"), ax.legend(fontsize=7)
        ax.set_title(STATE_TEXT[state].split(" (")[0], fontsize=9)
    fig.suptitle(title)
    return fig
