# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The uncertainty relation between inputs and loss gradients
#
# What the paper claims and what is unknown about it: [docs/papers.md](../docs/papers.md).
#
# **Claim (P1).** For a trained classifier the input $x$ and the derivative of the normalized loss with
# respect to $x$ are conjugate: $\Delta x_i\,\Delta p_i \ge 1/2$ for every input component $i$; as training
# sharpens class boundaries (accuracy up) the gradient spread $\Delta p$ grows and robustness falls.
# Source: `paper.P1` (printed below, with the related GoogLeNet/CIFAR-10 clean and FGSM accuracies of the
# companion paper, `p1_googlenet_clean` / `p1_googlenet_fgsm`, which this notebook does not re-measure).
#
# **What is measured.** A state $\psi$ on the input box $\Omega=[0,1]^D$ is built from the loss
# $\ell(X)=\mathrm{CE}(f(X),y)$ of a fixed label $y$; with $\rho=\psi^2$:
# $\bar x_i=E_\rho x_i$, $\Delta x_i^2=\mathrm{Var}_\rho x_i$, $\Delta p_i^2=\int(\partial_i\psi)^2$, $P_i=\Delta x_i\Delta p_i$,
# $C_i=-2\int(x_i-\bar x_i)\psi\,\partial_i\psi$ and the boundary term $B_i=1-C_i$. Integration by parts and
# Cauchy–Schwarz give the **general bound** $P_i\ge\frac12|C_i|$; the **naive bound** $P_i\ge\frac12$ is a theorem
# only when $\psi$ vanishes on $\partial\Omega$ ($B_i=0$). Two states: $\psi\propto\ell$ (P1) and
# $\psi\propto e^{-\ell/2}$ (a reading of P2's "loss-induced state"). Monte Carlo, one backward per batch,
# self-normalized weights, jackknife standard errors (`nup_utils/uncertainty.py`).
#
# | choice | value | label |
# |---|---|---|
# | bound tested | $\Delta x_i\Delta p_i\ge 1/2$ per component | **paper** (P1) |
# | datasets | MNIST (quick, full), CIFAR-10 (full) | **paper** (P1 uses MNIST and CIFAR-10) |
# | state $\psi=\ell/\lVert\ell\rVert$ on $[0,1]^D$, $\Delta p_i^2=\int(\partial_i\ell)^2/\int\ell^2$ | | **recon** (papers.md; P1's integration method is unknown) |
# | state $\psi\propto e^{-\ell/2}$ | | **recon** (papers.md reading of P2) |
# | general bound $\frac12\lvert C_i\rvert$, boundary term $B_i$ | | **recon** (papers.md) |
# | uniform sampling on the box; importance sampling around data as a diagnostic | | **ours**: uniform is unbiased for an integral over the whole box; see the IS check |
# | MNIST data: the 10k official test images re-split into disjoint train/test | | **ours**: only the test split is available offline |
# | model: `small_cnn` (2 conv + MLP; width 16/hidden 64 in quick, 32/128 in full), SGD one-cycle, no augmentation | | **ours**: architecture and recipe of P1 unknown; the narrow net fits the 2-core CPU budget |
# | CIFAR-10 model (full): ResNet-18, CIFAR stem, crop+flip | | **ours**: P1's GoogLeNet recipe unknown |
# | checkpoints: init (epoch 0) and several epochs, several seeds | | **ours** |
# | attacks: FGSM and PGD (L∞, CE loss, random start), ε = 0.1 (MNIST), 8/255 (CIFAR-10) | | **ours**: P1's attack budget unknown; 0.1 keeps an undefended MNIST net off the 0% floor |
# | verdict rules (declared in the `RULES` cell, before any data) | | **ours** |

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("01-uncertainty-relation")))

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from nup_utils import attacks, data, metrics, models, paper, plotting, results, runtime, verdicts
from nup_utils import uncertainty as unc

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | full | auto (full with CUDA, else quick)
SEED = 0  # data split and first model seed; model seeds are SEED, SEED+1, ...
EPS_MNIST = 0.1  # L-inf attack budget on MNIST, pixel units in [0, 1]
EPS_CIFAR_255 = 8  # L-inf attack budget on CIFAR-10, in 1/255 units
IS_SIGMA = 0.1  # importance sampling: std of the truncated normals around data points, pixel units
IS_DEFENSIVE = 0.1  # importance sampling: weight of the uniform component of the proposal
Z_SIG = 1.96  # a naive-bound violation counts when P_i + Z_SIG * SE(P_i) < 1/2

# %%
P = runtime.resolve_profile(PROFILE)
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer().__enter__()

DATASETS = runtime.pick(P, smoke=("mnist", "cifar10"), quick=("mnist",), full=("mnist", "cifar10"))
N_SEEDS = runtime.pick(P, smoke=2, quick=3, full=3)
CLASSES = runtime.pick(P, smoke=(0, 1), quick=tuple(range(10)), full=tuple(range(10)))
N_MC = runtime.pick(P, smoke=64, quick=512, full=4096)  # Monte Carlo samples per (class, checkpoint)
MC_BATCH = runtime.pick(P, smoke=64, quick=512, full=1024)  # one forward + one backward per batch
GROUPS = runtime.pick(P, smoke=4, quick=16, full=32)  # jackknife groups
N_ATTACK = runtime.pick(P, smoke=20, quick=400, full=2000)  # test images attacked per checkpoint
PGD_STEPS = runtime.pick(P, smoke=1, quick=10, full=40)
CONTROL_N = runtime.pick(P, smoke=4096, quick=32768, full=131072)  # samples for the exactness checks
IS_CENTRES = runtime.pick(P, smoke=8, quick=64, full=256)  # training images of the class used as IS centres

CFG = {
    "mnist": dict(
        train_size=runtime.pick(P, smoke=200, quick=4000, full=8000),
        test_size=runtime.pick(P, smoke=100, quick=1000, full=2000),
        arch="small_cnn",
        arch_kwargs=runtime.pick(
            P, smoke=dict(width=32, hidden=128), quick=dict(width=16, hidden=64), full=dict(width=32, hidden=128)
        ),
        shape=(1, 28, 28),
        augment_ops=(),
        epochs=runtime.pick(P, smoke=2, quick=8, full=20),
        checkpoints=runtime.pick(P, smoke=(2,), quick=(1, 2, 4, 8), full=(1, 2, 5, 10, 20)),
        batch_size=runtime.pick(P, smoke=32, quick=128, full=128),
        lr=0.05,
        eps=EPS_MNIST,
    ),
    "cifar10": dict(
        train_size=runtime.pick(P, smoke=100, quick=10000, full=None),
        test_size=runtime.pick(P, smoke=50, quick=1000, full=2000),
        arch="resnet18",
        arch_kwargs=dict(stem="cifar", width=runtime.pick(P, smoke=4, quick=16, full=64)),
        shape=(3, 32, 32),
        augment_ops=("crop", "flip"),
        epochs=runtime.pick(P, smoke=1, quick=10, full=30),
        checkpoints=runtime.pick(P, smoke=(1,), quick=(1, 2, 5, 10), full=(1, 2, 5, 10, 20, 30)),
        batch_size=runtime.pick(P, smoke=10, quick=128, full=256),
        lr=0.1,
        eps=EPS_CIFAR_255 / 255,
    ),
}
print(
    f"profile {P} on {runtime.device_name(device)}; datasets {DATASETS}; seeds {N_SEEDS}; classes {len(CLASSES)}; "
    f"MC samples {N_MC} per class and checkpoint"
)
print(paper.P1)
for key in ("p1_bound", "p1_googlenet_clean", "p1_googlenet_fgsm"):
    print(f"  paper number {key}: {paper.fmt(key)} -- {paper.get(key)['quantity']}")

# %% [markdown]
# ## Rules, declared before any data
# * **`naive-bound-<state>-<dataset>`** — the paper's Δx_i·Δp_i ≥ ½ "for every input component": the
#   share of (class, pixel) components whose estimate meets the bound (per seed, t-interval over seeds)
#   must reach 95% (*Superiority* with minimum 0.95, ours); not reproduced when the interval's upper end
#   is below it. Reported per state: the verdict depends on the state's definition, which P1 does not give.
# * **`general-bound-check-<dataset>`** — an algebra check, not support for the paper: Δx·Δp ≥ ½|C| holds
#   by Cauchy–Schwarz, so the share of components meeting it must be ≥ 99.9%.
# * **`training-trade-off-<dataset>`** — compared checkpoints declared by a rule
#   (`uncertainty.compared_checkpoints`): the *first* trained checkpoint whose mean clean accuracy over
#   seeds is within `ACC_WITHIN` (accuracy units) of the last checkpoint's, versus the last (if none
#   qualifies, the one before the last). Between them, mean Δp (ψ ∝ loss, log ratio) must rise *and*
#   robustness fall (*Direction*, both; paired over seeds). Robustness is PGD accuracy **among the images
#   the network classifies correctly when clean** (robust | clean), so a network that merely gets more
#   images right is not counted as more robust.
#
# *Revised in this version (issue #12), after earlier runs.* Previous rules: the naive bound was judged by
# significant violations (a share over 5% → not reproduced, between → partially); the general bound needed
# exactly 1 in every seed; the trade-off compared the last checkpoint with the *first* one (epoch 1, where
# clean accuracy was far below final), so its verdict hinged on that choice, and it returned *partially*
# when one prediction held. An intermediate version (after those runs) already compared the declared
# checkpoints but measured robustness as PGD accuracy over *all* attacked images, which mixes clean
# accuracy into robustness; it is still reported (`d_pgd_acc`) but no longer decides. The intervals now
# decide every verdict. Still open: the trade-off rests on the few seeds of this profile (see limits).

# %%
ACC_WITHIN = 0.05  # ours: compare the first checkpoint within 0.05 clean accuracy of the last one with the last
RULES = {}
for _ds in DATASETS:
    for _st in unc.STATES:
        RULES[f"naive-bound-{_st}-state-{_ds}"] = verdicts.Superiority(
            "frac_naive_holds", min_effect=0.95, label="share of components with dx*dp >= 1/2"
        )
    RULES[f"general-bound-check-{_ds}"] = verdicts.Superiority(
        "frac_general_holds", min_effect=0.999, label="share of components with dx*dp >= |C|/2"
    )
    RULES[f"training-trade-off-{_ds}"] = verdicts.AllOf(
        (
            verdicts.Direction("dlog_mean_dp_loss_state", "+", label="log change of mean dp (psi ~ loss)"),
            verdicts.Direction(
                "d_pgd_given_clean", "-", label="change of PGD accuracy among clean-correct", scale=100, unit=" pts"
            ),
        ),
        # the checkpoint rule is part of the name, so it is part of the recorded declaration (hash)
        name="gradient spread up and robustness down "
        f"(checkpoints: first within {ACC_WITHIN} clean accuracy of the last, vs the last)",
    )
for name, rule in RULES.items():
    print(f"{name:36s} {rule!r}")

# %% [markdown]
# ## 1 · Exactness checks (run first)
# Known answers before any network: (a) a Gaussian state is a minimum-uncertainty state, $\Delta x\Delta p=\frac12$
# and $\frac12|C|=\frac12$ (equality in Cauchy–Schwarz), for both state definitions, by quadrature, by uniform
# Monte Carlo (2-D) and by importance sampling (8-D); (b) for 1-D and 2-D logistic losses Monte Carlo
# agrees with Gauss–Legendre quadrature (|z| = |MC − quad| / SE); (c) $C=1-B$ with $B$ from the boundary
# values in 1-D. These also show that an ordinary loss on a box gives $P<\frac12$.

# %%
controls = {
    "gauss_mc_z": [],
    "gauss_quad_err": [],
    "gauss_eq_err": [],
    "logistic_z": [],
    "ibp_err": [],
    "logistic_products": {},
}
for state in unc.STATES:
    mu2 = torch.tensor([0.5, 0.45])
    g2 = unc.gaussian_loss(mu2, 0.07, state)
    quad = unc.quadrature(g2, unc.pixel_box(2), nodes=96, states=(state,))[state]
    mc = unc.UncertaintyEstimator(n_samples=CONTROL_N, batch_size=8192, groups=16, states=(state,))(
        g2, unc.pixel_box(2), gen
    )[state]
    mu8 = torch.full((8,), 0.5)
    is8 = unc.UncertaintyEstimator(
        n_samples=CONTROL_N // 4,
        batch_size=8192,
        groups=16,
        states=(state,),
        sampler=unc.DataMixtureSampler(mu8[None], sigma=0.1, defensive=0.1),
    )(unc.gaussian_loss(mu8, 0.08, state), unc.pixel_box(8), gen)[state]
    controls["gauss_quad_err"].append(float((quad["product"] - 0.5).abs().max()))
    controls["gauss_eq_err"].append(float((quad["product"] - quad["half_c"]).abs().max()))
    for e in (mc, is8):
        controls["gauss_mc_z"] += ((e["product"] - 0.5) / e.se["product"]).tolist()
    print(f"Gaussian, psi~{state:4s}: quadrature P = {quad['product'].tolist()}, |C|/2 = {quad['half_c'].tolist()}")
    print(
        f"   uniform MC 2-D P = {[f'{v:.4f} ± {s:.4f}' for v, s in zip(mc['product'].tolist(), mc.se['product'].tolist())]} (ESS {mc.ess:.0f})"
    )
    print(
        f"   IS MC 8-D mean P = {float(is8['product'].mean()):.4f} (per-component SE ≈ {float(is8.se['product'].mean()):.4f}, ESS {is8.ess:.0f})"
    )

for dim, w, b in ((1, [5.0], -2.0), (2, [4.0, -3.0], 0.5)):
    lg = unc.logistic_loss(torch.tensor(w), b)
    quad = unc.quadrature(lg, unc.pixel_box(dim), nodes=64)
    mc = unc.UncertaintyEstimator(n_samples=CONTROL_N, batch_size=8192, groups=16)(lg, unc.pixel_box(dim), gen)
    for state in unc.STATES:
        for q in ("dx", "dp", "product", "half_c"):
            controls["logistic_z"] += ((mc[state][q] - quad[state][q]) / mc[state].se[q]).tolist()
        controls["logistic_products"][(dim, state)] = quad[state]["product"].tolist()
        print(
            f"logistic {dim}-D, psi~{state:4s}: quad P = {np.round(quad[state]['product'].tolist(), 4)}, "
            f"MC P = {np.round(mc[state]['product'].tolist(), 4)} ± {np.round(mc[state].se['product'].tolist(), 4)}, "
            f"quad |C|/2 = {np.round(quad[state]['half_c'].tolist(), 4)}"
        )
        if dim == 1:
            controls["ibp_err"].append(abs(float(quad[state]["boundary"]) - unc.boundary_term_1d(lg, 0.0, 1.0, state)))
print(
    f"max |z| Gaussian MC vs 1/2: {max(map(abs, controls['gauss_mc_z'])):.2f};  max |z| logistic MC vs quadrature: "
    f"{max(map(abs, controls['logistic_z'])):.2f};  max |B - boundary formula| = {max(controls['ibp_err']):.1e}"
)


# %% [markdown]
# ## 2 · Networks along training
# For every dataset and seed: train once (cached), keep the initialization (epoch 0) and several epochs.
# At every checkpoint: clean, FGSM and PGD accuracy on held-out images, and the per-class, per-pixel estimates
# for both states. The Monte Carlo points of a class are the same at every checkpoint of a seed (common random
# numbers), so changes along training are not sampling noise.


# %%
def build_fn(cfg, seed):
    def build():
        torch.manual_seed(seed)  # the initialization is part of the seed's run
        return models.build(cfg["arch"], **cfg["arch_kwargs"])

    return build


def load_data(ds, cfg):
    if ds == "mnist":
        return data.mnist_subsets(cfg["train_size"], cfg["test_size"], SEED)
    return data.cifar10_subsets(cfg["train_size"], cfg["test_size"], SEED)


runs, sources, train_hit, final_models = {}, {}, [], {}
for ds in DATASETS:
    cfg = CFG[ds]
    tr, te = load_data(ds, cfg)
    sources[ds] = tr.source
    print(f"{ds}: train {data.describe(tr)}\n{' ' * len(ds)}  test  {data.describe(te)}")
    xtr, ytr = data.to_float(tr.x, device), tr.y.to(device)
    xte, yte = data.to_float(te.x[:N_ATTACK]), te.y[:N_ATTACK]
    D = int(np.prod(cfg["shape"]))
    estimator = unc.UncertaintyEstimator(n_samples=N_MC, batch_size=MC_BATCH, groups=GROUPS)
    atks = {
        "fgsm": attacks.FGSM(eps=cfg["eps"]),
        "pgd": attacks.PGD(eps=cfg["eps"], step=2.5 * cfg["eps"] / PGD_STEPS, steps=PGD_STEPS, seed=SEED),
    }
    print(f"{estimator!r}\n{atks['fgsm']!r}\n{atks['pgd']!r}")
    runs[ds] = {}
    for s in range(N_SEEDS):
        seed = SEED + s
        config = {
            "dataset": ds,
            "source": tr.source,
            "train_size": cfg["train_size"],
            "data_seed": SEED,
            "arch": cfg["arch"],
            "arch_kwargs": cfg["arch_kwargs"],
            "seed": seed,
            "epochs": cfg["epochs"],
            "batch_size": cfg["batch_size"],
            "lr": cfg["lr"],
            "augment_ops": list(cfg["augment_ops"]),
            "schedule": "onecycle",
            "weight_decay": 5e-4,
        }
        model, ckpts, hist, hit = unc.train_with_checkpoints(
            f"01-{ds}",
            config,
            build_fn(cfg, seed),
            xtr,
            ytr,
            checkpoint_epochs=cfg["checkpoints"],
            device=device,
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            lr=cfg["lr"],
            seed=seed,
            augment_ops=cfg["augment_ops"],
            desc=f"{ds} seed {seed}",
        )
        train_hit.append(hit)
        runs[ds][seed] = {}
        for epoch, state_dict in ckpts.items():
            model.load_state_dict(state_dict)
            model.eval()
            correct = unc.robustness(model, xte.to(device), yte.to(device), atks)
            maps = unc.class_maps(model, cfg["shape"], CLASSES, estimator, unc.pixel_box(D), seed=seed)
            runs[ds][seed][epoch] = {"correct": correct, "maps": maps}
            print(
                f"  {ds} seed {seed} epoch {epoch:2d}: clean {float(correct['clean'].float().mean()):.3f} "
                f"fgsm {float(correct['fgsm'].float().mean()):.3f} pgd {float(correct['pgd'].float().mean()):.3f} | "
                f"mean dp (psi~l) {float(maps['loss']['values']['dp'].mean()):.4g} "
                f"mean P (psi~l) {float(maps['loss']['values']['product'].mean()):.4g}"
            )
    final_models[ds] = (model, tr, seed)  # the last seed's network, last checkpoint loaded
print(f"models from cache: {sum(train_hit)} of {len(train_hit)}")


# %% [markdown]
# ## 3 · Per-pixel maps of the final networks
# $\Delta x$, $\Delta p$, $P$ and $\frac12|C|$ for every class (first seed, last checkpoint), for both states.
# Dashed line in the histograms: the naive bound $\frac12$.


# %%
def last_epoch(ds):
    return max(CFG[ds]["checkpoints"])


def pixel_maps(values, shape):  # (K, D) -> (K, H, W), mean over channels
    return values.reshape(len(values), *shape).mean(1).numpy()


for ds in DATASETS:
    cfg, seed0 = CFG[ds], SEED
    for state in unc.STATES:
        v = runs[ds][seed0][last_epoch(ds)]["maps"][state]["values"]
        rows = [
            ("dx", r"$\Delta x_i$"),
            ("dp", r"$\Delta p_i$"),
            ("product", r"$P_i=\Delta x_i\Delta p_i$"),
            ("half_c", r"$\frac{1}{2}|C_i|$"),
        ]
        fig, axes = plt.subplots(
            len(rows), len(CLASSES), figsize=(1.3 * len(CLASSES) + 1, 1.4 * len(rows)), squeeze=False
        )
        for r, (q, label) in enumerate(rows):
            imgs = pixel_maps(v[q], cfg["shape"])
            vmin, vmax = float(imgs.min()), float(imgs.max())
            for c, k in enumerate(CLASSES):
                ax = axes[r, c]
                im = ax.imshow(imgs[c], cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
                if r == 0:
                    ax.set_title(f"class {k}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(label, fontsize=8)
            fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.8)
        fig.suptitle(
            f"{ds}, psi ~ {'loss' if state == 'loss' else 'exp(-loss/2)'}, seed {seed0}, epoch {last_epoch(ds)}"
        )
        _ = plotting.savefig(fig, f"01-maps-{ds}-{state}")
        plotting.show_compact(fig)  # a small JPEG inline; the PNG/PDF files keep full resolution

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, state in zip(axes, unc.STATES):
        v = runs[ds][seed0][last_epoch(ds)]["maps"][state]["values"]
        p, hc = v["product"].flatten().numpy(), v["half_c"].flatten().numpy()
        lo = max(min(p.min(), hc[hc > 0].min() if (hc > 0).any() else p.min()), 1e-8)
        bins = np.logspace(np.log10(lo), np.log10(max(p.max(), 1.0)), 50)
        ax.hist(p, bins=bins, alpha=0.7, label=r"$P_i$")
        ax.hist(hc, bins=bins, alpha=0.5, label=r"$\frac{1}{2}|C_i|$")
        ax.axvline(0.5, color="k", ls="--", label="naive bound 1/2")
        ax.set_xscale("log"), ax.set_xlabel("value (all classes x pixels)"), ax.legend(fontsize=8)
        ax.set_title(f"{ds}: psi ~ {'loss' if state == 'loss' else 'exp(-loss/2)'}")
    _ = plotting.savefig(fig, f"01-product-hist-{ds}")
    plt.show()

# %% [markdown]
# ### Importance sampling around data points (diagnostic)
# Same integral over the box, proposal = defensive mixture of the uniform density and truncated normals
# around training images of the class. If the state's mass sits near the data this lowers the variance;
# if it sits in the bulk of the box (noise-like images) the uniform component carries the estimate and the
# effective sample size (ESS) collapses. Either way the two estimates should agree within their errors.

# %%
is_diag = {}
for ds in DATASETS:
    cfg = CFG[ds]
    model, tr, seed_last = final_models[ds]
    k = CLASSES[0]
    centres = data.to_float(tr.x[tr.y == k][:IS_CENTRES]).flatten(1)
    D = centres.shape[1]
    n_is = runtime.pick(P, smoke=N_MC, quick=2 * N_MC, full=2 * N_MC)
    g_uni, g_is = torch.Generator().manual_seed(SEED + 11), torch.Generator().manual_seed(SEED + 12)
    uni = unc.UncertaintyEstimator(n_samples=n_is, batch_size=MC_BATCH, groups=GROUPS)(
        unc.model_loss(model, k, cfg["shape"]), unc.pixel_box(D), g_uni
    )
    sampler = unc.DataMixtureSampler(centres, sigma=IS_SIGMA, defensive=IS_DEFENSIVE)
    imp = unc.UncertaintyEstimator(n_samples=n_is, batch_size=MC_BATCH, groups=GROUPS, sampler=sampler)(
        unc.model_loss(model, k, cfg["shape"]), unc.pixel_box(D), g_is
    )
    is_diag[ds] = {}
    for state in unc.STATES:
        a, b = uni[state], imp[state]
        is_diag[ds][state] = {
            "ess_uniform": a.ess,
            "ess_is": b.ess,
            "mean_P_uniform": float(a["product"].mean()),
            "mean_P_is": float(b["product"].mean()),
        }
        print(
            f"{ds} seed {seed_last} class {k}, psi~{state:4s}: uniform mean P {float(a['product'].mean()):.4g} "
            f"(ESS {a.ess:.0f}/{n_is}) | IS {sampler!r}: mean P {float(b['product'].mean()):.4g} (ESS {b.ess:.1f}/{n_is})"
        )


# %% [markdown]
# ## 4 · Along training: accuracy, robustness and the spreads
# Means over seeds with 95% t-intervals (n = number of seeds); spreads are means over classes and pixels.


# %%
def curve(ds, fn):
    """{epoch: metrics.mean_ci over seeds of fn(run at that epoch)}"""
    seeds = sorted(runs[ds])
    epochs = sorted(runs[ds][seeds[0]])
    return {e: metrics.mean_ci([fn(runs[ds][s][e]) for s in seeds]) for e in epochs}


def acc_of(kind):
    return lambda r: float(r["correct"][kind].float().mean())


def given_clean(kind):  # accuracy under attack among the images classified correctly when clean (0 if none)
    return lambda r: float(
        (r["correct"][kind] & r["correct"]["clean"]).sum() / r["correct"]["clean"].sum().clamp_min(1)
    )


def spread_of(state, q):
    return lambda r: float(r["maps"][state]["values"][q].mean())


curves = {}
for ds in DATASETS:
    curves[ds] = {f"acc_{k}": curve(ds, acc_of(k)) for k in ("clean", "fgsm", "pgd")}
    for state in unc.STATES:
        for q in ("dx", "dp", "product"):
            curves[ds][f"{q}_{state}"] = curve(ds, spread_of(state, q))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for key, lab in (
        ("acc_clean", "clean"),
        ("acc_fgsm", f"FGSM ε={CFG[ds]['eps']:.3g}"),
        ("acc_pgd", f"PGD-{PGD_STEPS}"),
    ):
        e = sorted(curves[ds][key])
        m = np.array([curves[ds][key][i]["value"] for i in e])
        lo = np.array([curves[ds][key][i]["ci95"][0] for i in e])
        hi = np.array([curves[ds][key][i]["ci95"][1] for i in e])
        axes[0].errorbar(e, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=lab)
    axes[0].set_xlabel("epoch"), axes[0].set_ylabel("accuracy"), axes[0].legend(fontsize=8)
    for ax, state in zip(axes[1:], unc.STATES):
        for q, lab in (("dx", r"mean $\Delta x$"), ("dp", r"mean $\Delta p$"), ("product", r"mean $P$")):
            c = curves[ds][f"{q}_{state}"]
            e = sorted(c)
            m = np.array([c[i]["value"] for i in e])
            lo = np.array([c[i]["ci95"][0] for i in e])
            hi = np.array([c[i]["ci95"][1] for i in e])
            ax.errorbar(e, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=lab)
        ax.axhline(0.5, color="k", ls="--", lw=0.8)
        ax.set_yscale("log"), ax.set_xlabel("epoch"), ax.legend(fontsize=8)
        ax.set_title(f"psi ~ {'loss' if state == 'loss' else 'exp(-loss/2)'}")
    fig.suptitle(f"{ds}: {N_SEEDS} seeds, mean and 95% CI")
    _ = plotting.savefig(fig, f"01-training-{ds}")
    plt.show()


# %% [markdown]
# ## 5 · Explorer
# Choose a dataset, class, checkpoint and state (first seed). Needs a live kernel with ipywidgets; in a
# headless run the cell only renders the default view.


# %%
def show_maps(ds, klass, epoch, state):
    cfg = CFG[ds]
    if epoch not in runs[ds][SEED]:
        print(f"{ds} has no checkpoint at epoch {epoch}; available: {sorted(runs[ds][SEED])}")
        return
    v = runs[ds][SEED][epoch]["maps"][state]["values"]
    c = CLASSES.index(klass)
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
    for ax, (q, lab) in zip(axes, (("dx", "Δx"), ("dp", "Δp"), ("product", "P"), ("half_c", "|C|/2"))):
        im = ax.imshow(pixel_maps(v[q][c : c + 1], cfg["shape"])[0], cmap="viridis")
        ax.set_title(lab), ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"{ds} class {klass}, epoch {epoch}, psi~{state}")
    plt.show()


if runtime.widgets_enabled():  # live kernel: the explorer; batch runs (NUP_HEADLESS=1): the default view
    import ipywidgets as widgets
    from IPython.display import display

    explorer = widgets.interactive(
        show_maps,
        ds=widgets.Dropdown(options=list(DATASETS)),
        klass=widgets.Dropdown(options=list(CLASSES)),
        epoch=widgets.Dropdown(options=sorted(runs[DATASETS[0]][SEED])),
        state=widgets.Dropdown(options=list(unc.STATES)),
    )
    display(explorer)
else:
    show_maps(DATASETS[0], CLASSES[0], sorted(runs[DATASETS[0]][SEED])[-1], unc.STATES[0])


# %% [markdown]
# ## 6 · Claims (rules declared at the top, `RULES`)


# %%
claims, cs_min, compared = [], math.inf, {}
STATE_TXT = {"loss": "psi ~ loss (P1)", "exp": "psi ~ exp(-loss/2) (P2 reading)"}
for ds in DATASETS:
    seeds = sorted(runs[ds])
    first, last = compared[ds] = unc.compared_checkpoints(
        {e: curves[ds]["acc_clean"][e]["value"] for e in curves[ds]["acc_clean"]}, ACC_WITHIN
    )
    frac = {st: [unc.bound_fractions(runs[ds][s][last]["maps"][st], z=Z_SIG) for s in seeds] for st in unc.STATES}
    for s in seeds:  # Cauchy-Schwarz on every estimate of the run, every checkpoint and state
        for e in runs[ds][s]:
            for st in unc.STATES:
                v = runs[ds][s][e]["maps"][st]["values"]
                cs_min = min(cs_min, float(((v["product"] - v["half_c"]) / (1 + v["half_c"])).min()))
    regime = (
        f"{ds}: {CFG[ds]['arch']} {CFG[ds]['arch_kwargs']}, {CFG[ds]['train_size'] or 'all'} training images, "
        f"clean accuracy {100 * np.mean([acc_of('clean')(runs[ds][s][last]) for s in seeds]):.1f}% at epoch {last}; "
        f"state, domain and integration method are ours (P1's are unknown)"
    )
    for st in unc.STATES:
        viol = [f["naive_violated"] for f in frac[st]]
        mets = {
            "frac_naive_holds": metrics.mean_ci([f["naive_holds"] for f in frac[st]]),
            "frac_naive_violated_sig": metrics.mean_ci(viol),
            "mean_product": metrics.mean_ci([f["mean_product"] for f in frac[st]]),
            "median_boundary_term": metrics.mean_ci([f["median_boundary"] for f in frac[st]]),
        }
        cid = f"naive-bound-{st}-state-{ds}"
        claims.append(
            results.claim(
                cid,
                f"dx_i*dp_i >= 1/2 for every input component ({STATE_TXT[st]}, [0,1]^D, {ds}, last checkpoint)",
                RULES[cid],
                mets,
                profile=P,
                regime=regime,
                headline="frac_naive_holds",
                paper_keys=("p1_bound",),
                protocol=f"uniform MC, {N_MC} samples per class, {len(CLASSES)} classes, {len(seeds)} seeds; "
                f"violation = P + {Z_SIG}*SE < 1/2; CI over seeds",
            )
        )
    holds = [f["general_holds"] for st in unc.STATES for f in frac[st]]
    explains = [f["boundary_explains"] for st in unc.STATES for f in frac[st]]
    mets_g = {
        "frac_general_holds": metrics.mean_ci(holds),
        "frac_violations_explained_by_boundary": metrics.mean_ci(explains),
    }
    claims.append(
        results.claim(
            f"general-bound-check-{ds}",
            "[check] dx_i*dp_i >= |C_i|/2 with C_i = 1 - B_i for every component, both states (Cauchy-Schwarz; [recon])",
            RULES[f"general-bound-check-{ds}"],
            mets_g,
            profile=P,
            regime=regime,
            headline="frac_general_holds",
            protocol="same estimates as the naive-bound claims; CI over seeds x states",
        )
    )

    def paired(fn, log=False):  # last - first over seeds; log=True: log ratio (scale-free relative change)
        f = (lambda r: math.log(fn(r))) if log else fn
        return metrics.paired_diff([f(runs[ds][s][last]) for s in seeds], [f(runs[ds][s][first]) for s in seeds])

    d = {
        "d_clean_acc": paired(acc_of("clean")),
        "dlog_mean_dp_loss_state": paired(spread_of("loss", "dp"), log=True),
        "d_pgd_given_clean": paired(given_clean("pgd")),
        "d_fgsm_given_clean": paired(given_clean("fgsm")),
        "d_pgd_acc": paired(acc_of("pgd")),
        "d_fgsm_acc": paired(acc_of("fgsm")),
        "dlog_mean_dp_exp_state": paired(spread_of("exp", "dp"), log=True),
        "dlog_mean_product_loss_state": paired(spread_of("loss", "product"), log=True),
        "clean_acc_last": metrics.mean_ci([acc_of("clean")(runs[ds][s][last]) for s in seeds]),
        "pgd_acc_last": metrics.mean_ci([acc_of("pgd")(runs[ds][s][last]) for s in seeds]),
        "pgd_given_clean_last": metrics.mean_ci([given_clean("pgd")(runs[ds][s][last]) for s in seeds]),
    }
    claims.append(
        results.claim(
            f"training-trade-off-{ds}",
            f"from epoch {first} to {last} (declared rule: first checkpoint within {ACC_WITHIN} clean accuracy of the "
            "last vs the last): mean dp (psi ~ loss) up, PGD accuracy among clean-correct images down",
            RULES[f"training-trade-off-{ds}"],
            d,
            profile=P,
            regime=regime,
            headline="dlog_mean_dp_loss_state",
            protocol=f"paired t-interval over {len(seeds)} seeds (epoch {last} - epoch {first}); attacks on "
            f"{N_ATTACK} held-out images, eps {CFG[ds]['eps']:.4g}; robustness among the clean-correct ones",
        )
    )

wall = timer.__exit__(None, None, None) or timer.seconds
extra = {
    "controls": {
        "max_abs_z_gaussian": max(map(abs, controls["gauss_mc_z"])),
        "max_abs_z_logistic": max(map(abs, controls["logistic_z"])),
        "gauss_quad_err": max(controls["gauss_quad_err"]),
        "logistic_products_quadrature": {f"{k[0]}d-{k[1]}": v for k, v in controls["logistic_products"].items()},
    },
    "cauchy_schwarz_min_rel_gap": cs_min,
    "importance_sampling": is_diag,
    "curves": {ds: {k: {str(e): m for e, m in c.items()} for k, c in cv.items()} for ds, cv in curves.items()},
    "compared_checkpoints": compared,
    "models_from_cache": sum(train_hit),
    "models": len(train_hit),
}
path = results.write_results(
    "01-uncertainty-relation",
    P,
    claims,
    params={
        "seed": SEED,
        "n_seeds": N_SEEDS,
        "classes": list(CLASSES),
        "n_mc": N_MC,
        "groups": GROUPS,
        "n_attack": N_ATTACK,
        "pgd_steps": PGD_STEPS,
        "z_sig": Z_SIG,
        "is_sigma": IS_SIGMA,
        "is_defensive": IS_DEFENSIVE,
        "acc_within": ACC_WITHIN,
        "cfg": {ds: {k: v for k, v in CFG[ds].items()} for ds in DATASETS},
    },
    data_source="; ".join(f"{ds}: {src}" for ds, src in sources.items()),
    wall_time_s=wall,
    device=runtime.device_name(device),
    extra=extra,
    rules=RULES,
)
for c in claims:
    print(f"{c['id']}: {c['verdict']} — {c['reason']}")
    for name, m in c["metrics"].items():
        print(f"    {name:40s} {metrics.fmt(m, digits=4)}  ({m['method']}, n={m['n']})")
print(f"wall time {wall:.0f} s -> {path}")

# %% tags=["nbval-check-output"]
# Verdict cell: exact invariants first, then one line per claim.
assert max(controls["gauss_quad_err"]) < 1e-6, "Gaussian control: quadrature P != 1/2"
assert max(controls["gauss_eq_err"]) < 1e-6, "Gaussian control: P != |C|/2 (Cauchy-Schwarz equality)"
assert max(map(abs, controls["gauss_mc_z"])) < 4.5, "Gaussian control: Monte Carlo P differs from 1/2 beyond 4.5 SE"
assert max(map(abs, controls["logistic_z"])) < 4.5, (
    "logistic control: Monte Carlo differs from quadrature beyond 4.5 SE"
)
assert max(controls["ibp_err"]) < 1e-8, "integration by parts: C != 1 - B"
assert cs_min >= -1e-9, f"Cauchy-Schwarz violated: min (P - |C|/2)/(1+|C|/2) = {cs_min}"
print(results.verdict_lines(claims))

# %% [markdown]
# **What this shows / limits.**
# * The estimators are exact where the answer is known: a Gaussian state gives $\Delta x\Delta p=\frac12$ and
#   $\frac12|C|=\frac12$, Monte Carlo matches quadrature, and $C=1-B$ holds. Ordinary (logistic) losses on a box already
#   give $P<\frac12$: the naive bound is not a theorem on $[0,1]^D$ because $\psi$ does not vanish on the boundary.
# * On trained networks the verdicts above say whether the naive bound holds per pixel; the general bound
#   $P_i\ge\frac12|C_i|$ holds for every component (Cauchy–Schwarz), and wherever the naive bound fails the boundary
#   term $B_i$ is what lowers the bound. The training-trade-off verdict rests on the paired differences printed
#   above between the two checkpoints the declared rule picked (named in the claim's statement); the other
#   changes (clean and FGSM accuracy, Δp of the second state, robustness over all images) are printed with
#   their intervals beside it. The two halves of the trade-off are tested separately: a rising $\Delta p$ does
#   not by itself imply falling robustness.
# * Few seeds (this profile's count is in the claim's protocol): the paired t-intervals are wide, and they
#   cover seed-to-seed spread only, not the sampling of the attacked images (n in the protocol).
# * Limits: the state is an integral over the whole box, so uniform samples are noise-like images, not digits; the
#   importance-sampling check shows where the state's mass sits. P1's own state, integration method, model and
#   attack budget are unknown (labels in the protocol table). MNIST here is the official test split re-split
#   (source string in the results file). CIFAR-10 runs only in the full profile (GPU), which has not been run on
#   this CPU machine.
