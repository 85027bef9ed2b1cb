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
# # 03 · Mask projection: does the SBDE model's fragility live in the inserted pixels?
#
# What the paper claims and what is unknown about it: [docs/papers.md](../docs/papers.md).
#
# **Claim (paper P3).** SBDE models are less robust to iterative white-box attacks; a test-time
# projection Π that resets the inserted pixels to their training value neutralizes the attacks and
# restores robustness, because the loss gradients are steep ("sharp boundaries") along the auxiliary
# axes. Reference: `nup_utils.paper.P3` (printed below). The paper gives no robust-accuracy number.
#
# Four threat models (the a–d): **(a)** all pixels attacked, no projection; **(b)** the same
# adversarial inputs, then Π, the attacker unaware of Π; **(c)** the attacker knows Π and attacks the
# whole system end to end through it; **(d)** the same ε spent on the original pixels only (for the
# baseline this is (a)). **(c) is the honest robustness of the defended system**: a defence is only
# credited with what survives the attacker who knows it.
#
# | choice | value | label |
# |---|---|---|
# | models | notebook 02's cached ImageNet-stem ResNet-18s (baseline, SBDE K=2 c=0.5, SBDE K=3), same recipe and seeds | ours (reuse; the ImageNet stem matches the paper's baseline accuracy — recon) |
# | projection Π | keep original coordinates, reset auxiliary ones to 0.5 (training value) | paper (mask projection) |
# | threat model | white-box, untargeted, cross-entropy loss, [0,1] box | ours (paper's attack settings unknown) |
# | budgets | L∞ ε ∈ {1, 2, 4, 8}/255 on the *expanded* input; one L2 budget ε₂ = 0.5 | ours (issue) |
# | attacks | FGSM; PGD with random start, step 2.5·ε/steps, 10/20/50 steps, restarts | ours (standard Madry-style PGD) |
# | headline | PGD-20 at ε = 2/255, every seed | ours, fixed before running (at larger ε the small quick models are at ≈0% under every threat model) |
# | geometry | input gradients on auxiliary vs original coordinates (L1, L2, per-coordinate ratio); 1-D loss profiles along unit-L2 random and gradient directions restricted to each subspace; first-order attribution of the PGD loss increase | ours (tests "sharp boundaries") |
# | extension | minimal L2 adversarial perturbation (smallest ε on a geometric grid that PGD breaks) vs input dimension d = 3·(32K)², K = 1, 2, 3, against the 1/√d scaling of Gao et al. (arXiv 2406.16200) | ours (related work) |
# | test images | class-balanced subset of notebook 02's test subset | ours (budget) |

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("03-mask-projection")))

# %%
from functools import partial

import numpy as np
import torch
from tqdm.auto import tqdm

from nup_utils import attacks, data, metrics, paper, plotting, results, runtime, sbde, training, verdicts

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | full | auto (full with CUDA, else quick)
SEED = 0  # must equal notebook 02's SEED so its cached models are reused
STEM = "imagenet"  # ResNet-18 stem of the models under attack: imagenet | cifar
EPS_LINF = (1, 2, 4, 8)  # L-inf budgets, in units of 1/255
HEADLINE_EPS = 2  # L-inf budget of the headline comparison, units of 1/255
EPS_L2 = 0.5  # the one L2 budget (pixel units, whole input)
RESTARTS = 3  # random restarts in the restart check

# %%
P = runtime.resolve_profile(PROFILE)
R = sbde.recipe(P)
SEEDS = tuple(SEED + s for s in R["seeds"])
STEPS = runtime.pick(P, smoke=(1, 2, 3), quick=(10, 20, 50), full=(10, 20, 50))  # PGD steps
EPS_GRID = runtime.pick(P, smoke=EPS_LINF[:2], quick=EPS_LINF, full=EPS_LINF)  # smoke: fewer budgets, same code
HEAD_STEPS = STEPS[1]
N_ATTACK = runtime.pick(P, smoke=16, quick=500, full=2000)  # images attacked per model
N_MINEPS = runtime.pick(P, smoke=8, quick=150, full=1000)  # images for the minimal-perturbation study
MINEPS_GRID = np.geomspace(0.02, 4.0, runtime.pick(P, smoke=3, quick=12, full=16)).tolist()  # L2 grid
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer().__enter__()
print(f"profile {P}; device {runtime.device_name(device)}; seeds {SEEDS}; stem {STEM}; steps {STEPS}")
print("paper:", paper.P3)

# %% [markdown]
# ## Rules, declared before any attack
# Headline: PGD-20, L∞ ε = 2/255, paired over seeds (same seed = same images and attack seed);
# intervals add a t-interval over seeds and a bootstrap over the attacked images in quadrature
# (`metrics.seed_image_ci`). Robustness in the three threat-model rules is **robust accuracy among the images the
# system classifies correctly when clean** (robust | clean; Π leaves clean inputs unchanged, so the SBDE
# model and the defended system share that set), so a lower clean accuracy is not counted as fragility.
# `MARGIN` (ours) is the loss of robust | clean we still call "no worse".
# * **`sbde-fragility`** — SBDE (a) − baseline (a) below 0 (*Direction*).
# * **`projection-restores-unaware`** — (b) − SBDE (a) above 0 *and* (b) no worse than the baseline's
#   (a) by more than the margin (*Direction* and *NonInferiority*).
# * **`projection-restores-aware`** — what the paper claims for the defended system: robust | clean
#   under the projection-aware attacker no worse than the baseline's (a) by more than the margin
#   (*NonInferiority*). The aware attacker is the worse of (c) and (d) per image (an image counts as
#   robust only if it survives both); under L∞ the two coincide (checked).
# * **`gradient-concentration`** — per-coordinate |g| ratio aux/orig above 1 *and* the auxiliary share
#   of the PGD loss increase above 3/4, their share of coordinates (*Direction* on ratio − 1 and share − 3/4).
# * **`min-perturbation-scaling`** (extension) — slope of log minimal ε vs log d within ±0.25 of −0.5
#   (*Equivalence*; an interval that also holds 0 cannot pass).
#
# *Revised (issue #12), before this run:* the intervals of the threat-model metrics carry image
# sampling as well as seeds (earlier: t-intervals over seeds only, which were far narrower than the
# binomial spread of the attacked images); the rules and margins are unchanged.
#
# *Revised in an earlier version (issue #12), after earlier runs.* Previous rules: restoration against the
# aware attacker was "reproduced" when the interval of (c) − (b) reached 0, which cannot fail under
# L∞ (every coordinate has its own budget, so attacking all pixels already moves the original ones
# almost fully); restoration against the unaware attacker counted "(b) not significantly below the
# baseline" as success (absence of evidence); scaling was "reproduced" when the slope's interval
# held −0.5 and excluded 0. All three now use declared margins. An intermediate version (after those
# runs) used the same rules on robust accuracy over *all* attacked images; robust | clean replaced it
# (issue #12 asks for robust | clean; the margin was not changed). Robust accuracy over all images is
# still reported beside each claim (`*_all_images`) but no longer decides.

# %%
MARGIN = 0.03  # ours: 3 points of robust accuracy among clean-correct images
pts = dict(scale=100, unit=" pts")
RULES = {
    "sbde-fragility": verdicts.Direction(
        "sbde_minus_baseline", "-", label="robust | clean, SBDE (a) − baseline (a)", **pts
    ),
    "projection-restores-unaware": verdicts.AllOf(
        (
            verdicts.Direction("b_minus_a", "+", label="robust | clean, SBDE (b) − SBDE (a)", **pts),
            verdicts.NonInferiority(
                "b_minus_baseline_a", MARGIN, label="robust | clean, SBDE (b) − baseline (a)", **pts
            ),
        ),
        name="Π helps and reaches the baseline",
    ),
    "projection-restores-aware": verdicts.NonInferiority(
        "aware_minus_baseline_a", MARGIN, label="robust | clean, SBDE aware (c and d) − baseline (a)", **pts
    ),
    "gradient-concentration": verdicts.AllOf(
        (
            verdicts.Direction("grad_ratio_minus_1", "+", label="per-coordinate |g| ratio aux/orig − 1"),
            verdicts.Direction("share_minus_coord_share", "+", label="auxiliary share of the PGD loss increase − 3/4"),
        ),
        name="gradients concentrate on the inserted pixels",
    ),
    "min-perturbation-scaling": verdicts.Equivalence("slope_plus_half", 0.25, label="slope + 0.5"),
}
for name, rule in RULES.items():
    print(f"{name:30s} {rule!r}")

# %% [markdown]
# ## Models from notebook 02 (cache) and the attacked images

# %%
train_split, test_split = data.cifar10_subsets(R["train_size"], R["test_size"], seed=R["data_seed"])
DATA_SOURCE = train_split.source
x_train, y_train = data.to_float(train_split.x, device), train_split.y.to(device)
sel = data.balanced_indices(test_split.y, min(N_ATTACK, len(test_split)), seed=SEED + 7)
x_att, y_att = data.to_float(test_split.x[sel], device), test_split.y[sel].to(device)
print("attacked:", data.describe(test_split.subset(sel)))

ARMS3 = ("baseline", "sbde", "sbde_k3")
model, hits = {}, 0
for arm in ARMS3:
    for s in SEEDS if arm != "sbde_k3" else SEEDS[:1]:
        model[arm, s], _, hit = sbde.train_arm(arm, STEM, s, R, x_train, y_train, DATA_SOURCE, device=device)
        hits += hit
TF = {a: sbde.arm_transform(a) for a in ARMS3}
print(f"{len(model)} models, {hits} from the cache (misses were trained here)")
clean = {(a, s): training.evaluate(m, x_att, y_att, input_transform=TF[a]) for (a, s), m in model.items()}
for (a, s), c in clean.items():
    print(f"clean accuracy {a:9s} seed {s}: {metrics.fmt(metrics.accuracy(c), 100)} %")


# %% [markdown]
# ## Robust accuracy under the four threat models
# Every attack object prints its constants. Under L∞, (c) and (d) coincide exactly (the gradient
# through Π is zero on the auxiliary coordinates, and Π removes whatever the random start put there):
# checked below. Under L2 they differ: the aware attack's random start spends part of the L2 budget on
# auxiliary coordinates that Π erases, so (d) is the stronger aware attacker there and the defended
# system's robustness is the lower of (c) and (d).


# %%
def make_attack(kind, norm, eps, steps=1, restarts=1, seed=0, mask=None, transform=None):
    if kind == "fgsm":
        return attacks.FGSM(eps=eps, norm=norm, mask=mask, transform=transform)
    return attacks.PGD(
        eps=eps,
        step=2.5 * eps / steps,
        steps=steps,
        norm=norm,
        restarts=restarts,
        seed=seed,
        mask=mask,
        transform=transform,
    )


RUNS, COST = {}, {}


def run(arm, s, kind, norm, eps, steps=1, restarts=1):
    """Threat-model correctness for one (model, attack); memoized; cost in images per second."""
    key = (arm, s, kind, norm, round(eps, 8), steps, restarts)
    if key not in RUNS:
        mk = partial(make_attack, kind, norm, eps, steps, restarts, s)
        with runtime.Timer() as t:
            RUNS[key] = sbde.threat_model_correct(model[arm, s], TF[arm], mk, x_att, y_att)
        n_attacks = 1 if arm == "baseline" else 3
        COST[key] = len(x_att) * n_attacks / t.seconds
    return RUNS[key]


print(
    "example attacks:",
    make_attack("pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS),
    "|",
    make_attack("pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS, transform=TF["sbde"].project),
)
s0 = SEEDS[0]
grid = [(kind, "linf", e / 255, STEPS[0] if kind == "pgd" else 1) for kind in ("fgsm", "pgd") for e in EPS_GRID]
grid += [("pgd", "l2", EPS_L2, STEPS[0])]
for kind, norm, eps, steps in tqdm(grid, desc="grid", disable=runtime.progress_disabled()):
    for arm in ("baseline", "sbde"):
        run(arm, s0, kind, norm, eps, steps)
for steps in STEPS:  # convergence in steps and restarts at the headline budget
    for arm in ("baseline", "sbde"):
        run(arm, s0, "pgd", "linf", HEADLINE_EPS / 255, steps)
for arm in ("baseline", "sbde"):
    run(arm, s0, "pgd", "linf", HEADLINE_EPS / 255, STEPS[0], RESTARTS)
for s in SEEDS:  # headline for every seed
    for arm in ("baseline", "sbde"):
        run(arm, s, "pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS)


def racc(arm, s, threat, *key):
    r = run(arm, s, *key)
    return r["a" if arm == "baseline" else threat]


print(f"seed {s0}, n = {len(x_att)} images; accuracy % [Wilson 95% CI]; baseline: (a) = (d), no Π")
print(f"{'attack':26s} {'baseline (a)':>22s} " + " ".join(f"{'SBDE (' + t + ')':>22s}" for t in sbde.THREATS))
rows = [(*g, 1) for g in grid] + [("pgd", "linf", HEADLINE_EPS / 255, st, 1) for st in STEPS[1:]]
rows += [("pgd", "linf", HEADLINE_EPS / 255, STEPS[0], RESTARTS)]
for kind, norm, eps, steps, restarts in rows:
    name = kind.upper() + ("" if kind == "fgsm" else f"-{steps}") + ("" if restarts == 1 else f"x{restarts}")
    name += f" {norm} {eps * 255:.0f}/255" if norm == "linf" else f" {norm} {eps}"
    row = [metrics.fmt(metrics.accuracy(racc("baseline", s0, "a", kind, norm, eps, steps, restarts)), 100, 1)]
    row += [
        metrics.fmt(metrics.accuracy(racc("sbde", s0, t, kind, norm, eps, steps, restarts)), 100, 1)
        for t in sbde.THREATS
    ]
    print(f"{name:26s} " + " ".join(f"{r:>22s}" for r in row))
for key, r in RUNS.items():
    if "c" in r and key[3] == "linf":
        assert (r["c"] == r["d"]).float().mean() >= 0.99, f"(c) and (d) differ for {key}"
cost = {f"{k[0]}/{k[2]}/{k[3]}/eps{k[4]:.4g}/steps{k[5]}x{k[6]}/seed{k[1]}": v for k, v in COST.items()}
print("attack cost, images per second (per attack run):", {k: round(v) for k, v in list(cost.items())[:4]}, "...")

# %%
fig, axes = plotting.plt.subplots(1, 2, figsize=(11, 3.8))
for ax, kind in zip(axes, ("fgsm", "pgd")):
    steps = 1 if kind == "fgsm" else STEPS[0]
    eps = [e / 255 for e in EPS_GRID]
    series = [("baseline (a)=(d)", "baseline", "a", "k")] + [
        (f"SBDE ({t})", "sbde", t, f"C{i}") for i, t in enumerate(sbde.THREATS)
    ]
    for label, arm, t, col in series:
        ms = [metrics.accuracy(racc(arm, s0, t, kind, "linf", e, steps)) for e in eps]
        ax.errorbar(
            EPS_GRID,
            [100 * m["value"] for m in ms],
            yerr=[[100 * (m["value"] - m["ci95"][0]) for m in ms], [100 * (m["ci95"][1] - m["value"]) for m in ms]],
            marker="o",
            capsize=3,
            color=col,
            label=label,
            ls="--" if t == "d" else "-",
        )
    ax.set_xlabel("L∞ ε (×1/255)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title(f"{kind.upper()}{'' if kind == 'fgsm' else '-' + str(steps)}, seed {s0}, n={len(x_att)} (ours, {P})")
    ax.legend(fontsize=8)
_ = plotting.savefig(fig, "03-robust-accuracy")

# %% [markdown]
# ## Sharp-boundary geometry
# Per image: input gradient of the loss on the SBDE input, split into auxiliary (3/4 of the
# coordinates for K=2) and original coordinates. Loss profiles move along a unit-L2 direction in one
# subspace (random Gaussian, or the gradient restricted to the subspace). The PGD attribution sums
# gᵗ·Δδᵗ along an L∞ PGD path (no random start) per subspace; under sign steps equal per-coordinate
# slopes would give the auxiliary subspace a share of 3/4, its share of coordinates.

# %%
mask = TF["sbde"].mask(32, 32, device)  # (1, 1, 64, 64), True = auxiliary
geo = {}
for s in SEEDS:
    xt = TF["sbde"](x_att)
    gs = sbde.grad_split(model["sbde", s], xt, y_att, mask)
    pa = sbde.pgd_path_attribution(
        model["sbde", s],
        xt,
        y_att,
        mask,
        eps=HEADLINE_EPS / 255,
        step=2.5 * HEADLINE_EPS / 255 / STEPS[0],
        steps=STEPS[0],
    )
    geo[s] = {
        "ratio_per_coord": gs["ratio_per_coord"],
        "ratio_l2": gs["ratio_l2"],
        "share_aux": pa["share_aux"],
        "l1_aux": gs["l1_aux"],
        "l1_orig": gs["l1_orig"],
        "l2_aux": gs["l2_aux"],
        "l2_orig": gs["l2_orig"],
        "first_order": pa["total"],
        "actual": pa["actual"],
    }
    print(
        f"seed {s}: median per-coordinate |g| ratio aux/orig {gs['ratio_per_coord'].median():.3f}; "
        f"L2 ratio {gs['ratio_l2'].median():.3f}; mean L1 aux {gs['l1_aux'].mean():.3g} vs orig {gs['l1_orig'].mean():.3g}; "
        f"PGD loss-increase share from aux {pa['share_aux'].mean():.3f} (first-order {pa['total'].mean():.3f} "
        f"vs actual {pa['actual'].mean():.3f})"
    )
# per-seed means -> t-interval over seeds (seed-level uncertainty); log-ratio averaged so the ratio is symmetric
ratio_seed = [float(torch.exp(torch.log(geo[s]["ratio_per_coord"].clamp_min(1e-12)).mean())) for s in SEEDS]
share_seed = [float(geo[s]["share_aux"].mean()) for s in SEEDS]

ts = np.linspace(0, 2.0, runtime.pick(P, smoke=3, quick=11, full=21))
n_prof = min(len(x_att), runtime.pick(P, smoke=8, quick=200, full=500))
prof = data.balanced_indices(y_att.cpu(), n_prof, seed=SEED + 17).to(device)  # x_att is class-ordered
xt, y_prof = TF["sbde"](x_att[prof]), y_att[prof]
_, g0 = sbde._input_grad(model["sbde", s0], xt, y_prof)
pgen = sbde.seed_generator(SEED + 11)
profiles = {}
for which in ("aux", "orig"):
    for dname in ("random", "gradient"):
        d = sbde.subspace_direction(
            xt.shape, mask, which, grad=g0 if dname == "gradient" else None, gen=pgen if dname == "random" else None
        ).to(device)
        profiles[which, dname] = sbde.loss_profile(model["sbde", s0], xt, y_prof, d, ts)
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
r0 = geo[s0]["ratio_per_coord"].clamp_min(1e-6).log10().numpy()
axes[1].hist(r0, bins=30, color="C3", alpha=0.8)
axes[1].axvline(0, color="k", lw=1)
axes[1].set_xlabel("log10 (mean |g| per aux coordinate / per original coordinate)")
axes[1].set_ylabel("images")
axes[1].set_title("gradient concentration per image")
_ = plotting.savefig(fig, "03-gradient-geometry")
print(
    {f"{w}/{d}": [round(float(v), 3) for v in p[[0, len(ts) // 2, -1]]] for (w, d), p in profiles.items()},
    "(loss at t = 0, middle, end)",
)

# %% [markdown]
# ## Extension: minimal adversarial perturbation against input dimension
# Gao et al. (arXiv 2406.16200) predict robustness shrinking like 1/√d. SBDE multiplies d by K².
# For the K = 1, 2, 3 models (seed 0, no projection) we find, per correctly classified image, the
# smallest L2 ε on a geometric grid at which PGD (L2, steps as in the grid) flips the prediction, and
# fit log(median ε) against log d; 1/√d is a slope of −0.5. Images never broken are censored at the
# top of the grid (an under-estimate of their ε). Bootstrap over images for the interval.

# %%
sel_m = data.balanced_indices(test_split.y, min(N_MINEPS, len(test_split)), seed=SEED + 13)
x_m, y_m = data.to_float(test_split.x[sel_m], device), test_split.y[sel_m].to(device)
mineps, dims = {}, {}
for arm, K in (("baseline", 1), ("sbde", 2), ("sbde_k3", 3)):
    fn = lambda e: attacks.PGD(eps=e, step=2.5 * e / STEPS[0], steps=STEPS[0], norm="l2", seed=SEED)  # noqa: E731
    xt = TF[arm](x_m)
    me = sbde.min_adv_eps(model[arm, s0], xt, y_m, MINEPS_GRID, fn)
    ok = me > 0  # drop images misclassified clean
    mineps[K] = torch.where(torch.isinf(me[ok]), torch.tensor(MINEPS_GRID[-1]), me[ok]).numpy()
    dims[K] = xt[0].numel()
    print(
        f"K={K}: d={dims[K]}, {int(ok.sum())} correctly classified, censored {int(torch.isinf(me[ok]).sum())}, "
        f"median minimal L2 eps {np.median(mineps[K]):.4f}"
    )
Ks = sorted(mineps)
all_eps = np.concatenate([mineps[k] for k in Ks])  # (sum n_K,) images of every K, resampled within K
part = np.concatenate([np.full(len(mineps[k]), j) for j, k in enumerate(Ks)])


def slope(i):  # log-log slope of the median minimal eps over input dimension, from resampled images i
    meds = [np.median(all_eps[i][part[i] == j]) for j in range(len(Ks))]
    return float(np.polyfit(np.log([dims[k] for k in Ks]), np.log(meds), 1)[0])


slope_m = metrics.index_bootstrap_ci(
    slope,
    all_eps.size,
    strata=part,
    n_boot=1000,
    seed=SEED,
    method="bootstrap over images within K (log-log fit of medians)",
)
fig, ax = plotting.plt.subplots(figsize=(5, 3.6))
meds = [np.median(mineps[k]) for k in Ks]
ax.loglog([dims[k] for k in Ks], meds, "o-", label="median minimal L2 ε (ours)")
ax.loglog([dims[k] for k in Ks], [meds[0] * (dims[k] / dims[1]) ** -0.5 for k in Ks], "k--", label="1/√d from K=1")
ax.set_xlabel("input dimension d")
ax.set_ylabel("minimal L2 ε")
ax.set_title(f"slope {metrics.fmt(slope_m, 1, 2)}")
ax.legend(fontsize=8)
_ = plotting.savefig(fig, "03-min-perturbation-vs-dim")
print("slope of log median eps vs log d:", metrics.fmt(slope_m, 1, 3))


# %% [markdown]
# ## Interactive: one image, ε and steps (widgets; skipped when ipywidgets is missing)
# `interact_manual` runs only on a button press, so headless runs never execute or block on it.


# %%
def show_attack(index=0, eps255=4.0, steps=10, aware=False):
    m, tf = model["sbde", s0], TF["sbde"]
    xi, yi = tf(x_att[index : index + 1]), y_att[index : index + 1]
    atk = make_attack("pgd", "linf", eps255 / 255, int(steps), transform=tf.project if aware else None)
    xa = atk(m, xi, yi)
    imgs = [("clean", xi), ("adversarial", xa), ("projected Π(adv)", tf.project(xa))]
    fig, axs = plotting.plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (name, z) in zip(axs, imgs):
        with torch.no_grad():
            pred = int(m(z).argmax(1))
        ax.imshow(z[0].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        ax.set_title(f"{name}\npred {data.CIFAR10_CLASSES[pred]} (true {data.CIFAR10_CLASSES[int(yi)]})", fontsize=8)
        ax.axis("off")
    print(atk)


if runtime.widgets_enabled():  # live kernel: the explorer; batch runs (NUP_HEADLESS=1): one static example
    import ipywidgets as widgets

    widgets.interact_manual(
        show_attack,
        index=widgets.IntSlider(0, 0, len(x_att) - 1),
        eps255=widgets.FloatSlider(value=4.0, min=0.5, max=16.0, step=0.5),
        steps=widgets.IntSlider(10, 1, 50),
        aware=widgets.Checkbox(False),
    )
else:
    show_attack()


# %% [markdown]
# ## Claims (rules declared at the top, `RULES`)
# Headline: PGD-20, L∞ ε = 2/255, paired over seeds and images (same seed = same images and attack seed);
# t over seeds ⊕ bootstrap over images.


# %%
def seeds_acc(arm, threats, given_clean, idx=None):
    """Per seed: share of the attacked images ``idx`` (default all) robust to every threat in ``threats``
    (headline attack); given_clean=True: among those classified correctly when clean (0 if none)."""
    out = []
    for s in SEEDS:
        c = clean[arm, s] if idx is None else clean[arm, s][idx]
        ok = c.clone() if given_clean else torch.ones_like(c)
        for t in threats:
            r = racc(arm, s, t, "pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS)
            ok &= r if idx is None else r[idx]
        out.append(float(ok.sum() / (c.sum().clamp_min(1) if given_clean else len(ok))))
    return np.array(out)


# intervals carry both sources: training seeds (t) and the attacked images (bootstrap), metrics.seed_image_ci
THREAT_SETS = {("baseline", "a"): ("a",), **{("sbde", t): (t,) for t in sbde.THREATS}, ("sbde", "aware"): ("c", "d")}
SI = dict(n_images=len(x_att), n_boot=1000, seed=SEED)


def diff(x, y, given_clean=True, what="robust | clean"):  # paired over seeds and over the same images
    m = metrics.seed_image_ci(
        lambda i: seeds_acc(*x[:1], THREAT_SETS[x], given_clean, i) - seeds_acc(*y[:1], THREAT_SETS[y], given_clean, i),
        **SI,
    )
    return {**m, "method": f"{m['method']}, paired, of {what}"}


M = {
    f"robust_{a}_{t}": metrics.seed_image_ci(lambda i, k=(a, t): seeds_acc(k[0], THREAT_SETS[k], True, i), **SI)
    for (a, t) in THREAT_SETS
}
M.update(
    {
        f"clean_{a}": metrics.seed_image_ci(
            lambda i, a=a: np.array([float(clean[a, s][i].float().mean()) for s in SEEDS]), **SI
        )
        for a in ("baseline", "sbde")
    }
)
BASE, ALL = ("baseline", "a"), dict(given_clean=False, what="robust accuracy over all attacked images")
ratio_m, share_m = metrics.mean_ci(ratio_seed), metrics.mean_ci(share_seed)
SMOKE = P == "smoke"


def shifted(m, by, method):  # the same interval, moved: a metric relative to a threshold
    return {
        **m,
        "value": m["value"] + by,
        "ci95": [m["ci95"][0] + by, m["ci95"][1] + by],
        "method": method + m["method"],
    }


HEAD = (
    f"PGD-{HEAD_STEPS} L-inf eps={HEADLINE_EPS}/255, {STEM} stem, seeds {list(SEEDS)}, n={len(x_att)} attacked "
    "images/seed; robust | clean = robust among the clean-correct ones; intervals: t over seeds + image bootstrap"
)
regime = (
    f"clean accuracy baseline {100 * M['clean_baseline']['value']:.1f}%, SBDE {100 * M['clean_sbde']['value']:.1f}% "
    f"(paper: {paper.get('p3_baseline_acc')['value']}% / {paper.get('p3_sbde_acc')['value']}%); width {R['width']} "
    f"ResNet-18, {R['train_size'] or 50000} training images; attack settings ours (paper's unknown)"
)
claims = [
    results.claim(
        "sbde-fragility",
        "SBDE models are less robust than the baseline to iterative white-box attacks "
        "(all pixels attacked, threat model a)",
        RULES["sbde-fragility"],
        {
            "sbde_minus_baseline": diff(("sbde", "a"), BASE),
            "sbde_minus_baseline_all_images": diff(("sbde", "a"), BASE, **ALL),
            "robust_sbde_a": M["robust_sbde_a"],
            "robust_baseline_a": M["robust_baseline_a"],
            "clean_sbde": M["clean_sbde"],
            "clean_baseline": M["clean_baseline"],
        },
        headline="sbde_minus_baseline",
        paper_keys=("p3_sbde_acc",),
        protocol=HEAD,
        profile=P,
        regime=regime,
    ),
    results.claim(
        "projection-restores-unaware",
        "Mask projection restores robustness against an attacker unaware of it (threat model b)",
        RULES["projection-restores-unaware"],
        {
            "b_minus_a": diff(("sbde", "b"), ("sbde", "a")),
            "b_minus_baseline_a": diff(("sbde", "b"), BASE),
            "b_minus_baseline_a_all_images": diff(("sbde", "b"), BASE, **ALL),
            "robust_sbde_b": M["robust_sbde_b"],
        },
        headline="b_minus_baseline_a",
        protocol=HEAD,
        profile=P,
        regime=regime,
    ),
    results.claim(
        "projection-restores-aware",
        "Mask projection restores robustness against an attacker who knows it: robust | clean of the defended "
        "SBDE system under the aware attacker (worse of c, through Pi, and d, original pixels only) is no worse "
        "than the baseline's",
        RULES["projection-restores-aware"],
        {
            "aware_minus_baseline_a": diff(("sbde", "aware"), BASE),
            "aware_minus_baseline_a_all_images": diff(("sbde", "aware"), BASE, **ALL),
            "aware_minus_b": diff(("sbde", "aware"), ("sbde", "b")),
            "robust_sbde_aware": M["robust_sbde_aware"],
            "robust_sbde_c": M["robust_sbde_c"],
            "robust_sbde_d": M["robust_sbde_d"],
            "robust_baseline_a": M["robust_baseline_a"],
        },
        headline="aware_minus_baseline_a",
        protocol=HEAD,
        profile=P,
        regime=regime,
    ),
    results.claim(
        "gradient-concentration",
        "Loss gradients are steeper along the inserted (auxiliary) axes: "
        "per-coordinate |grad| ratio aux/orig > 1 and the auxiliary share of the PGD loss increase > 3/4",
        RULES["gradient-concentration"],
        {
            "grad_ratio_minus_1": shifted(ratio_m, -1.0, "ratio - 1; "),
            "share_minus_coord_share": shifted(share_m, -0.75, "share - 3/4; "),
            "grad_ratio_per_coord": ratio_m,
            "pgd_share_aux": share_m,
        },
        headline="grad_ratio_per_coord",
        protocol=f"SBDE models, {STEM} stem, {len(x_att)} images per seed, "
        f"t-interval over seed means; PGD-{STEPS[0]} eps {HEADLINE_EPS}/255 path",
        profile=P,
        regime=regime,
    ),
    results.claim(
        "min-perturbation-scaling",
        "Extension (Gao et al.): the minimal L2 adversarial perturbation "
        "scales like 1/sqrt(d) across K = 1, 2, 3 (slope -0.5 in log-log)",
        RULES["min-perturbation-scaling"],
        {"slope_plus_half": shifted(slope_m, 0.5, "slope + 0.5; "), "slope": slope_m},
        headline="slope",
        protocol=f"seed {s0} models, {N_MINEPS} balanced test images, L2 PGD-{STEPS[0]}, "
        f"eps grid {len(MINEPS_GRID)} geometric values",
        profile=P,
        regime=regime,
    ),
]
for c in claims:
    print(f"{c['id']}: {c['verdict']} — {c['reason']}")
    for k, v in c["metrics"].items():
        scale = 1 if k in ("slope", "slope_plus_half", "grad_ratio_per_coord", "grad_ratio_minus_1") else 100
        print(f"    {k:22s} {metrics.fmt(v, scale)}  ({v['method']}, n={v['n']})")
timer.__exit__(None, None, None)
path = results.write_results(
    "03-mask-projection",
    P,
    claims,
    params={
        "recipe": R,
        "seeds": list(SEEDS),
        "stem": STEM,
        "eps_linf_255": list(EPS_LINF),
        "headline_eps_255": HEADLINE_EPS,
        "eps_l2": EPS_L2,
        "steps": list(STEPS),
        "restarts": RESTARTS,
        "n_attack": len(x_att),
        "n_mineps": N_MINEPS,
        "mineps_grid": MINEPS_GRID,
        "attack_example": repr(make_attack("pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS)),
    },
    data_source=DATA_SOURCE,
    wall_time_s=timer.seconds,
    device=runtime.device_name(device),
    extra={
        "robust_accuracy_seed0": {
            f"{k[0]}/{k[2]}/{k[3]}/eps{k[4]:.4g}/steps{k[5]}x{k[6]}": {t: float(v.float().mean()) for t, v in r.items()}
            for k, r in RUNS.items()
            if k[1] == s0
        },
        "attack_cost_images_per_s": cost,
        "median_min_l2_eps": {str(k): float(np.median(v)) for k, v in mineps.items()},
        "dims": {str(k): v for k, v in dims.items()},
        "model_cache_hits": hits,
    },
    rules=RULES,
)
print(
    f"wrote {path.name}; wall time {timer.seconds:.0f} s; median attack cost "
    f"{np.median(list(cost.values())):.0f} images/s"
)

# %% tags=["nbval-check-output"]
# Invariants, then one stable line per claim.
assert all((r["c"] == r["d"]).float().mean() >= 0.99 for k, r in RUNS.items() if "c" in r and k[3] == "linf")
for s in SEEDS if not SMOKE else ():  # an attack does not raise accuracy above clean (trained models)
    assert racc("sbde", s, "a", "pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS).sum() <= clean["sbde", s].sum()
assert torch.equal(TF["sbde"].project(TF["sbde"](x_att)), TF["sbde"](x_att))  # Pi leaves clean inputs unchanged
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# * The table above gives every threat model side by side; the headline claims rest on paired
#   differences over seeds at one budget fixed in advance. **(c) is the defended system's honest
#   robustness**: if (c) falls far below (b), the "restoration" only reflects an attacker wasting its
#   L∞ budget on pixels that Π erases, and the defence should not be credited with it.
# * Under L∞, (c) and (d) are the same attack (checked), so the aware attacker is simply an attacker on
#   the original pixels; for the baseline, (a) already is that attacker. Under L2, (d) is the stronger.
# * **Scale.** Quick models are notebook 02's width-8 ImageNet-stem ResNet-18s trained on 2,500 images
#   (their clean accuracies are printed above and in each claim's regime); robust accuracies are low
#   and intervals wide. The claims count robustness among the images each system classifies correctly
#   when clean; robust accuracy over all attacked images is reported beside them. The intervals carry
#   the training seeds and the sampling of the attacked images (n per seed is in each claim's protocol). The CIFAR-stem models and the full-width models are in the full
#   profile only (GPU).
# * The minimal-perturbation study uses a grid (upper bounds per image, censored at the top) and PGD
#   rather than an exact minimal-norm attack; it is an extension, not a claim of the papers.
