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
# | models | notebook 02's cached ImageNet-stem ResNet-18s (baseline, SBDE K=2 c=0.5; SBDE K=3 in smoke only), same recipe and seeds: in quick width 16 on all 50,000 training images | ours (reuse; the ImageNet stem matches the paper's baseline accuracy — recon) |
# | projection Π | keep original coordinates, reset auxiliary ones to 0.5 (training value) | paper (mask projection) |
# | threat model | white-box, untargeted, cross-entropy loss, [0,1] box | ours (paper's attack settings unknown) |
# | budgets | L∞ ε ∈ {1, 2, 4, 8}/255 on the *expanded* input (**quick: {2, 8}**, CI budget); one L2 budget ε₂ = 0.5 | ours (issue) |
# | attacks | FGSM; PGD with random start, step 2.5·ε/steps, 10/20/50 steps, restarts (the project's: the only one that restricts the attack to original pixels, threat d) | ours (standard Madry-style PGD) |
# | reference attack | AutoAttack (torchattacks) on threat models a–c at every budget: every profile: APGD-CE, APGD-T over `AA_TARGETS` targets, Square, `AA_STEPS` steps, `AA_QUERIES` queries, no FAB-T; full: 100 steps, 3 targets, 1,000 queries (the reference, with APGD-T and FAB-T over 9 targets and 5,000 queries, did not fit full's hour on one GPU); quick: 20 steps, 300 queries | ours (a cut of Croce & Hein 2020's standard version; budgets) |
# | gradient-free check | Square alone (`AA_QUERIES` queries) at the headline budget on (a), (c) and the baseline | ours (Carlini et al. 2019's checklist) |
# | robust accuracy | an image counts only if the system also classifies it correctly when clean; clean mistakes are not attacked | ours (RobustBench) |
# | headline | the worst case of PGD-20 and AutoAttack per image at ε = 2/255, every seed | ours, fixed before running (a small budget, where the small quick models keep some robust accuracy under every threat model; every budget is in the table) |
# | geometry | input gradients on auxiliary vs original coordinates (L1, L2, per-coordinate ratio); 1-D loss profiles along unit-L2 random and gradient directions restricted to each subspace; first-order attribution of the PGD loss increase | ours (tests "sharp boundaries") |
# | extension | minimal L2 adversarial perturbation (smallest ε that PGD breaks: a geometric grid, each image's bracket then bisected `MINEPS_BISECT` times) vs input dimension d = 3·(32K)², K = 1, 2, 3 (**K = 1, 2 in quick, cpu and full**: a K = 3 model at 96×96 costs about 5× a baseline on the full training set, over the CPU budgets and full's hour; smoke runs K = 3's code path), against the 1/√d scaling of Gao et al. (arXiv 2406.16200) | ours (related work) |
# | test images | class-balanced, shuffled subset of notebook 02's test subset (`N_ATTACK` per model: 200 in quick, 500 in cpu and full) | ours (budget) |

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("03-mask-projection")))

# %%
import numpy as np
import torch

from nup_utils import data, mask_projection, metrics, paper, plotting, results, runtime, sbde, verdicts

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | cpu | full | auto (full with CUDA, else quick)
SEED = 0  # must equal notebook 02's SEED so its cached models are reused
STEM = "imagenet"  # ResNet-18 stem of notebook 02's models under attack (every profile): imagenet | cifar
EPS_LINF = (1, 2, 4, 8)  # L-inf budgets, in units of 1/255
HEADLINE_EPS = 2  # L-inf budget of the headline comparison, units of 1/255
EPS_L2 = 0.5  # the one L2 budget (pixel units, whole input)
RESTARTS = 3  # random restarts in the restart check
EPS_LARGE = 32  # sanity budget (1/255): PGD must drive robust accuracy to about 0 there
SANITY_TOL = 0.03  # slack (robust-accuracy fraction) of the asserted sanity checks

# %%
profile = runtime.resolve_profile(PROFILE)
recipe = sbde.recipe(profile)
pick = lambda **kw: runtime.pick(profile, **kw)  # noqa: E731  (smoke / quick / cpu / full values)
SEEDS = tuple(SEED + s for s in recipe["seeds"])
AA_CUT = ("apgd-ce", "apgd-t", "square")  # the cut of AutoAttack (no FAB-T), every profile (issue #17: full's hour)
ARMS_K3 = ("baseline", "sbde", "sbde_k3")  # notebook 02's models under attack; sbde_k3 for the scaling study
ARMS_K2 = ("baseline", "sbde")  # without the K=3 model: 96x96 on all training images costs about 5x a baseline
STEPS = pick(smoke=(1, 2, 3), quick=(10, 20, 50), cpu=(10, 20, 50), full=(10, 20, 50))  # PGD steps
EPS_GRID = pick(smoke=EPS_LINF[:2], quick=(2, 8), cpu=EPS_LINF, full=EPS_LINF)  # smoke, quick: fewer (budget)
HEAD_STEPS = STEPS[1]
AA_STEPS = pick(smoke=2, quick=20, cpu=20, full=100)  # AutoAttack iterations (reference 100)
AA_PARTS = pick(smoke=AA_CUT, quick=AA_CUT, cpu=AA_CUT, full=AA_CUT)  # None would be all four
AA_TARGETS = pick(smoke=2, quick=3, cpu=3, full=3)  # APGD-T target classes (reference 9)
AA_QUERIES = pick(smoke=20, quick=300, cpu=1000, full=1000)  # Square queries (reference 5000)
N_ATTACK = pick(smoke=16, quick=200, cpu=500, full=500)  # images attacked per model (quick: CI budget, issue #17)
N_MINEPS = pick(smoke=8, quick=100, cpu=300, full=300)  # images for the minimal-perturbation study
MINEPS_GRID = np.geomspace(0.02, 4.0, pick(smoke=3, quick=12, cpu=16, full=16)).tolist()  # L2 grid
MINEPS_BISECT = pick(smoke=1, quick=4, cpu=4, full=4)  # geometric bisections of each image's grid bracket
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer.started()
print(f"profile {profile}; device {runtime.device_name(device)}; seeds {SEEDS}; stem {STEM}; steps {STEPS}")
print("paper:", paper.P3)

# %% [markdown]
# ## Rules, declared before any attack
# Headline: PGD-20, L∞ ε = 2/255, paired over seeds (same seed = same images and attack seed);
# intervals add a t-interval over seeds and a bootstrap over the attacked images in quadrature
# (`metrics.seed_image_ci`). Robustness in the three threat-model rules is **robust accuracy among the images the
# system classifies correctly when clean** (robust | clean; Π leaves clean inputs unchanged, so the SBDE
# model and the defended system share that set), so a lower clean accuracy is not counted as fragility.
# `MARGIN` (ours) is the loss of robust | clean we still call "no worse".
# Robust means robust to PGD-20 *and* AutoAttack (per image, the worst case).
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
# *Revised (this version), after seeing the cpu tier's numbers: the measurement, not the rule.* The minimal ε was
# the first point of the geometric grid at which PGD breaks the image (a factor 1.42 per step on the cpu tier's 16
# points, 1.62 on quick's 12); between d = 3,072 and 12,288 one grid step is a slope of 0.25 (cpu) to 0.35 (quick),
# about the rule's margin, so the medians of two K often fell on the same grid point (the cpu tier's slope was 0 to
# 16 digits) and the rule could reproduce only at exactly two steps apart. Each image's bracket (the grid point
# below its first broken one, that one) is now bisected `MINEPS_BISECT` = 4 times geometrically (a resolution of
# 1/16 of a grid step); the rule, margin, grid and images are unchanged.
#
# *Revised (issue #17), before any full run:* full is cut to its share of the full tier's hour on one GPU (a dry
# run calibrated on an NVIDIA H200's measured throughput put the earlier full at 115 minutes, 113 of them in
# attacks on 2,000 images, AutoAttack's parts counted as upper bounds): 500 attacked images (was 2,000), AutoAttack without FAB-T, APGD-T over 3 targets
# and Square with 1,000 queries (was the standard version: 9 targets, 5,000 queries; 100 steps kept), no K = 3
# model (notebook 02's full no longer trains it), 300 images in the minimal-perturbation study and 300 loss
# profiles (were 1,000 and 500). Full has never run; quick and cpu unchanged; rules and margins unchanged.
#
# *Revised (issue #17), before an earlier run:* the models are notebook 02's new quick models (width 16, all 50,000
# training images, baseline near 65%; before: width 8 on 2,500 images), and quick's scaling extension fits K = 1, 2
# only (two dimensions). To keep the CI within 30 minutes with these models (a first run of this version took
# 561 s, 518 of them in the attack grid), quick attacks 200 images per model instead of 500, at ε ∈ {2, 8}/255
# instead of {1, 2, 4, 8} (the headline budget stays 2/255; full keeps every budget), with 100 images (was
# 150) in the minimal-perturbation study and 100 (was 200) loss profiles; a fresh-clone CI with 250 attacked
# images took 30.2 minutes, so quick attacks 200. Rules and margins unchanged.
#
# *Revised (issue #14), before an earlier run:* the headline attack was PGD-20 alone; it is now the worst case of
# PGD-20 and AutoAttack per image, and clean mistakes are no longer attacked (they count as not robust;
# earlier an image misclassified clean could count as robust under attack). Rules and margins unchanged.
#
# *Revised (issue #12), before an earlier run:* the intervals of the threat-model metrics carry image
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
train_split, test_split = data.cifar10_subsets(recipe["train_size"], recipe["test_size"], seed=recipe["data_seed"])
DATA_SOURCE = train_split.source
x_train, y_train = data.to_float(train_split.x, device), train_split.y.to(device)
sel = data.balanced_indices(test_split.y, min(N_ATTACK, len(test_split)), seed=SEED + 7)
sel = sel[torch.randperm(len(sel), generator=runtime.make_generator(SEED + 8))]  # the subsets are class-ordered
x_att, y_att = data.to_float(test_split.x[sel], device), test_split.y[sel].to(device)
print("attacked:", data.describe(test_split.subset(sel)))
ARMS3 = pick(smoke=ARMS_K3, quick=ARMS_K2, cpu=ARMS_K2, full=ARMS_K2)  # no K=3 but in smoke (budgets)
model, hits = mask_projection.load_models(ARMS3, SEEDS, STEM, recipe, x_train, y_train, DATA_SOURCE, device=device)
transforms = {a: sbde.arm_transform(a) for a in ARMS3}
print(f"{len(model)} models, {hits} from the cache (misses were trained here)")
clean = mask_projection.clean_correct(model, transforms, x_att, y_att)
for (a, s), c in clean.items():
    print(f"clean accuracy {a:9s} seed {s}: {metrics.fmt(metrics.accuracy(c), 100)} %")
# the models' regime: accuracy on the whole test split (the attacked images above are a subset of it)
test_acc = mask_projection.test_accuracy(
    model, transforms, data.to_float(test_split.x, device), test_split.y.to(device)
)
for a, v in test_acc.items():
    print(f"test-set accuracy {a:9s} ({v['n']} images): " + ", ".join(f"{100 * q:.1f}%" for q in v["accuracy"]))

# %% [markdown]
# ## Robust accuracy under the four threat models
# Every attack object prints its constants. Under L∞, (c) and (d) coincide exactly (the gradient
# through Π is zero on the auxiliary coordinates, and Π removes whatever the random start put there):
# checked below. Under L2 they differ: the aware attack's random start spends part of the L2 budget on
# auxiliary coordinates that Π erases, so (d) is the stronger aware attacker there and the defended
# system's robustness is the lower of (c) and (d).


# %%
head_attack = mask_projection.make_attack("pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS)
aware_attack = mask_projection.make_attack(
    "pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS, transform=transforms["sbde"].project
)
print("example attacks:", head_attack, "|", aware_attack)
lib = {
    "autoattack": dict(parts=AA_PARTS, n_targets=AA_TARGETS, n_queries=AA_QUERIES),
    "square": dict(n_queries=AA_QUERIES),
}
print(
    "reference:", mask_projection.make_attack("autoattack", "linf", HEADLINE_EPS / 255, AA_STEPS, **lib["autoattack"])
)
threats = mask_projection.ThreatRuns(model, transforms, x_att, y_att, lib=lib)
s0 = SEEDS[0]
grid_kw = dict(eps_grid=EPS_GRID, eps_l2=EPS_L2, steps=STEPS, head_eps=HEADLINE_EPS / 255, restarts=RESTARTS)
grid_kw |= dict(aa_steps=AA_STEPS, eps_large=EPS_LARGE / 255)
rows = mask_projection.run_grid(threats, SEEDS, head_steps=HEAD_STEPS, **grid_kw)
print(mask_projection.threat_table(threats, s0, rows))
assert threats.linf_c_equals_d(), "(c) and (d) differ under L-inf"
cost = threats.cost_by_name()
print("attack cost, images per second (per attack run):", {k: round(v) for k, v in list(cost.items())[:4]}, "...")

# %%
fig = mask_projection.robust_figure(threats, s0, eps_grid=EPS_GRID, steps0=STEPS[0], aa_steps=AA_STEPS, profile=profile)
_ = plotting.savefig(fig, "03-robust-accuracy")

# %% [markdown]
# ## Sanity checks of the evaluation (asserted in the last cell)
# Carlini et al. (2019): robust accuracy does not rise with ε and reaches about 0 at ε = `EPS_LARGE`/255;
# more PGD steps or restarts never help the defence; AutoAttack is not weaker than our PGD; the aware
# attack (c) is not weaker than the unaware one (b); the gradient-free Square is not stronger than the
# gradient attacks — a system that fails this is flagged for gradient masking (the undefended baseline
# must pass). Slack `SANITY_TOL` (robust accuracy over the attacked images), seed 0.

# %%
sanity, masking_flags, lines = mask_projection.sanity_checks(threats, s0, tol=SANITY_TOL, **grid_kw)
print(lines)

# %% [markdown]
# ## Attack throughput on this machine (benchmark)

# %%
bench_kw = dict(eps=HEADLINE_EPS / 255, steps=STEPS[0], aa_steps=AA_STEPS, lib=lib)
bench = mask_projection.benchmark(model, transforms, x_att[:100], y_att[:100], s0, **bench_kw)
print(bench["lines"])

# %% [markdown]
# ## Sharp-boundary geometry
# Per image: input gradient of the loss on the SBDE input, split into auxiliary (3/4 of the
# coordinates for K=2) and original coordinates. Loss profiles move along a unit-L2 direction in one
# subspace (random Gaussian, or the gradient restricted to the subspace). The PGD attribution sums
# gᵗ·Δδᵗ along an L∞ PGD path (no random start) per subspace; under sign steps equal per-coordinate
# slopes would give the auxiliary subspace a share of 3/4, its share of coordinates.

# %%
geo, ratio_seed, share_seed, lines = mask_projection.geometry(
    model, transforms["sbde"], x_att, y_att, SEEDS, eps=HEADLINE_EPS / 255, steps=STEPS[0]
)
print(lines)
ts = np.linspace(0, 2.0, pick(smoke=3, quick=11, cpu=21, full=21))
n_prof = min(len(x_att), pick(smoke=8, quick=100, cpu=300, full=300))
profiles = mask_projection.loss_profiles(
    model["sbde", s0], transforms["sbde"], x_att, y_att, n=n_prof, ts=ts, seed=SEED
)
fig = mask_projection.geometry_figure(profiles, ts, geo[s0]["ratio_per_coord"], s0, n_prof)
_ = plotting.savefig(fig, "03-gradient-geometry")
print(mask_projection.profile_line(profiles))

# %% [markdown]
# ## Extension: minimal adversarial perturbation against input dimension
# Gao et al. (arXiv 2406.16200) predict robustness shrinking like 1/√d. SBDE multiplies d by K².
# For the K = 1, 2, 3 models (seed 0, no projection; K = 1, 2 in quick and cpu) we find, per correctly classified image, the
# smallest L2 ε on a geometric grid at which PGD (L2, steps as in the grid) flips the prediction, refined by
# `MINEPS_BISECT` geometric bisections between that grid point and the one below it, and
# fit log(median ε) against log d; 1/√d is a slope of −0.5. Images never broken are censored at the
# top of the grid (an under-estimate of their ε). Bootstrap over images for the interval.

# %%
sel_m = data.balanced_indices(test_split.y, min(N_MINEPS, len(test_split)), seed=SEED + 13)
x_m, y_m = data.to_float(test_split.x[sel_m], device), test_split.y[sel_m].to(device)
mineps, dims, lines = mask_projection.min_eps_study(
    model, transforms, x_m, y_m, MINEPS_GRID, steps=STEPS[0], seed=SEED, s0=s0, bisect=MINEPS_BISECT
)
print(lines)
slope_m = mask_projection.scaling_slope(mineps, dims, seed=SEED)
_ = plotting.savefig(mask_projection.scaling_figure(mineps, dims, slope_m), "03-min-perturbation-vs-dim")
print("slope of log median eps vs log d:", metrics.fmt(slope_m, 1, 3))

# %% [markdown]
# ## Interactive: one image, ε and steps (widgets; skipped when ipywidgets is missing)
# `interact_manual` runs only on a button press, so headless runs never execute or block on it.


# %%
mask_projection.attack_explorer(model["sbde", s0], transforms["sbde"], x_att, y_att)

# %% [markdown]
# ## Claims (rules declared at the top, `RULES`)
# Headline: PGD-20, L∞ ε = 2/255, paired over seeds and images (same seed = same images and attack seed);
# t over seeds ⊕ bootstrap over images.


# %%
kw = dict(ratio_seed=ratio_seed, share_seed=share_seed, slope_m=slope_m, profile=profile, rec=recipe, stem=STEM)
kw |= dict(head_eps=HEADLINE_EPS / 255, head_steps=HEAD_STEPS, steps0=STEPS[0], n_mineps=N_MINEPS, aa_steps=AA_STEPS)
kw |= dict(test_acc=test_acc)
claims = mask_projection.claims(threats, clean, SEEDS, RULES, n_grid=len(MINEPS_GRID), seed=SEED, **kw)
print(mask_projection.claim_lines(claims))
params = dict(recipe=recipe, seeds=list(SEEDS), stem=STEM, eps_linf_255=list(EPS_LINF), headline_eps_255=HEADLINE_EPS)
params |= dict(eps_l2=EPS_L2, steps=list(STEPS), restarts=RESTARTS, n_attack=len(x_att), n_mineps=N_MINEPS)
params |= dict(mineps_grid=MINEPS_GRID, mineps_bisect=MINEPS_BISECT, attack_example=repr(head_attack))
params |= dict(eps_large_255=EPS_LARGE)
params |= dict(
    aa_steps=AA_STEPS, aa_parts=AA_PARTS, aa_targets=AA_TARGETS, aa_queries=AA_QUERIES, sanity_tol=SANITY_TOL
)
extra = mask_projection.extra(threats, s0, cost=cost, hits=hits, mineps=mineps, dims=dims)
extra |= {"sanity": {k: all(ok for _, ok in v) for k, v in sanity.items()}, "masking_flags": masking_flags}
extra |= {"benchmark": bench["rows"], "test_accuracy": test_acc}
path = results.write_results(
    "03-mask-projection",
    profile,
    claims,
    params=params,
    data_source=DATA_SOURCE,
    wall_time_s=timer.stop(),
    device=runtime.device_name(device),
    extra=extra,
    rules=RULES,
)
print(
    f"wrote {path.name}; wall time {timer.seconds:.0f} s; median attack cost {np.median(list(cost.values())):.0f} img/s"
)

# %% tags=["nbval-check-output"]
# Invariants, then one stable line per claim.
assert threats.linf_c_equals_d()
for k, v in (
    sanity.items() if runtime.trained(profile) else ()
):  # smoke models are near-constant: checks need trained ones
    bad = [w for w, ok in v if not ok and (k != "gradient_free" or w.startswith("baseline"))]
    assert not bad, f"sanity check {k} failed for {bad}"
for s in SEEDS if runtime.trained(profile) else ():  # an attack does not raise accuracy above clean (trained models)
    assert threats.racc("sbde", s, "a", "pgd", "linf", HEADLINE_EPS / 255, HEAD_STEPS).sum() <= clean["sbde", s].sum()
assert torch.equal(
    transforms["sbde"].project(transforms["sbde"](x_att)), transforms["sbde"](x_att)
)  # Pi leaves clean inputs unchanged
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# * The table above gives every threat model side by side; the headline claims rest on paired
#   differences over seeds at one budget fixed in advance. **(c) is the defended system's honest
#   robustness**: if (c) falls far below (b), the "restoration" only reflects an attacker wasting its
#   L∞ budget on pixels that Π erases, and the defence should not be credited with it.
# * Under L∞, (c) and (d) are the same attack (checked), so the aware attacker is simply an attacker on
#   the original pixels; for the baseline, (a) already is that attacker. Under L2, (d) is the stronger.
# * **Scale.** Quick models are notebook 02's width-16 ImageNet-stem ResNet-18s trained for 5 epochs on all
#   50,000 training images (their clean accuracies on the whole test split and on the attacked images are
#   printed above and in each claim's regime; the paper's are about 90–96%); robust accuracies are low and intervals wide. The claims count robustness among the images each system classifies correctly
#   when clean; robust accuracy over all attacked images is reported beside them. The intervals carry
#   the training seeds and the sampling of the attacked images (n per seed is in each claim's protocol).
#   The attacked models have the stem set by `STEM` (the ImageNet stem, in every profile); notebook 02's
#   CIFAR-stem models are attacked by setting `STEM = "cifar"`, which no published run has done yet. The
#   full-width models are in the full profile only (GPU).
# * Every profile runs a cut-down AutoAttack (no FAB-T, APGD-T over 3 targets, fewer Square queries; quick also
#   fewer steps; its `repr` is printed), not the reference version: a weaker attacker can only overstate
#   robustness. Systems flagged by the gradient-free check are listed above.
# * The minimal-perturbation study uses a grid (upper bounds per image, censored at the top) and PGD
#   rather than an exact minimal-norm attack; it is an extension, not a claim of the papers.
