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
# # 02 · SBDE: do inserted constant pixels raise clean accuracy, and why?
#
# What the paper claims and what is unknown about it: [docs/papers.md](../docs/papers.md).
#
# **Claim (paper P3).** Symmetry-Breaking Dimensional Expansion (SBDE) — inserting constant-valued
# pixels between the original ones — raises CIFAR-10 clean accuracy of ResNet-18 (from
# `p3_baseline_acc` to `p3_sbde_acc`, printed below) by breaking translational symmetry (reducing
# parameter degeneracy).
# Reference: `nup_utils.paper.P3` (printed below); the two numbers are `p3_baseline_acc` and
# `p3_sbde_acc` in `nup_utils/paper.py`, labelled *paper*.
#
# We test (i) whether the gain appears at our scale, (ii) whether it depends on the ResNet-18 stem,
# and (iii) whether resolution alone (upsampling to the same 64×64 size, no constants) explains it.
#
# | choice | value | label |
# |---|---|---|
# | data | CIFAR-10, offline JPEG re-encoding (`cifar10-jpeg`) when `NUP_DATA_DIR` points at it | ours (no internet; recorded as `data_source`) |
# | expansion | K=2: 32×32 → 64×64, original pixel at the top-left of each 2×2 block, whole rows and columns inserted | summary (earlier paper arXiv 2409.06402) / recon |
# | constant | 0.5 in [0, 1] pixel space, *before* the model's normalization | recon (paper does not say; 0.5 is the summary's example) |
# | augmentation | random crop (pad 4) + horizontal flip on the 32×32 image, *then* expansion | ours (keeps the inserted grid fixed, as at test time) |
# | architecture | ResNet-18, both stems: `imagenet` (torchvision's 7×7/2 conv + max-pool) and `cifar` (3×3/1, no pool) | ours (paper's stem unknown; the paper's baseline accuracy is typical of the ImageNet stem on 32×32 inputs — recon) |
# | controls | nearest and bilinear upsampling ×2 (resolution without constants); zero-valued insertion, CIFAR-mean insertion (normalizes to 0) and K=3 are defined and smoke-tested, but since issue #17 no other profile trains them (no rule uses them) | ours (separate symmetry breaking from resolution) |
# | recipe | SGD-Nesterov momentum 0.9, weight decay 5e-4, all 50,000 training images; *full*: width 64 (standard ResNet-18), 30 epochs one-cycle, batch 512, peak lr 0.2 (issue #17: the whole full tier in an hour on one GPU; before: 40 epochs, and before that 200 epochs cosine, batch 128, lr 0.1; not yet run on a GPU); *quick*: width 16, 5 epochs one-cycle (peak lr 0.2 after a 25% warm-up), batch 256, label smoothing 0.2; precision (fp32 or bf16 autocast) and memory format: the fastest measured on the machine for each model (`benchmark.fastest`, recorded per model); *cpu* tier: quick's recipe for 20 epochs without label smoothing | ours (paper's recipe unknown; full = a fast one-cycle recipe; quick sized to the CI budget on 2 CPU cores: a baseline of about 65%) |
# | arms in quick | ImageNet stem, baseline and SBDE only; the *cpu* tier adds nearest upsampling (ImageNet stem; bilinear did not fit its 2 hours). Full: baseline, SBDE, nearest and bilinear on the ImageNet stem, baseline and SBDE on the CIFAR stem (GPU budget, issue #17: the H200's measured step times put the earlier full set, which added zero, the CIFAR-mean constant, K=3 and nearest K=3 on the ImageNet stem and nearest on the CIFAR stem, at 38 of the hour's 60 minutes; a 64×64 CIFAR-stem model costs 4× a 32×32 one, 13 GFLOP per training image); smoke runs every code path | ours (CI budget: on the full training set a 64×64 arm costs about 2.3× the baseline on 2 CPU cores, and a control arm over three seeds did not fit beside 03 and 04 in 30 minutes; the ImageNet stem is where resolution matters most and matches the paper's baseline) |
# | seeds | 3 seeds (initialization + batch order + augmentation); same seed = same batches in every arm, so differences are paired | ours |
# | test set | quick: 2,000 balanced test images; cpu and full: all 10,000 | ours |
# | statistics | mean ± std over seeds; 95% intervals = t over seeds ⊕ bootstrap over test images (in quadrature); paired differences on the same seeds and images | ours |

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("02-sbde-accuracy")))

# %%
from nup_utils import data, paper, plotting, results, runtime, sbde, sbde_accuracy, verdicts

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | cpu | full | auto (full with CUDA, else quick)
SEED = 0  # offset added to the recipe's seeds (0 -> seeds 0, 1, 2); notebook 03 must use the same

# %%
profile = runtime.resolve_profile(PROFILE)
recipe = sbde.recipe(profile)  # one recipe per profile, shared with notebook 03 (cache keys)
SEEDS = tuple(SEED + s for s in recipe["seeds"])
ARMS = runtime.pick(
    profile,
    smoke={
        "imagenet": ["baseline", "sbde", "nearest", "bilinear", "zero", "sbde_k3"],
        "cifar": ["baseline", "sbde", "mean"],
    },
    quick={"imagenet": ["baseline", "sbde"]},  # issue #17: the CI budget at a ~65% baseline (see the table)
    cpu={"imagenet": ["baseline", "sbde", "nearest"]},  # the CPU tier: the nearest control (budget: 2 hours)
    # full: the two resolution controls beside baseline and SBDE on the ImageNet stem (the mechanism rule), baseline
    # and SBDE on the CIFAR stem (4x the FLOPs per image at 32x32, 16x at 64x64); issue #17: the hour on one GPU
    full={"imagenet": ["baseline", "sbde", "nearest", "bilinear"], "cifar": ["baseline", "sbde"]},
)
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer.started()
print(f"profile {profile}; device {runtime.device_name(device)}; seeds {SEEDS}")
print("recipe:", recipe)
for stem, arms in ARMS.items():
    print(f"{stem:9s}", ", ".join(f"{a}={sbde.arm_transform(a)!r}" for a in arms))
print("paper:", paper.P3)

# %% [markdown]
# ## Rules, declared before any data
# * **`sbde-gain`** (per stem): the paper's claim made scale-free, as the relative reduction of the
#   test error, 1 − err(SBDE)/err(baseline), per seed, mean over seeds; its interval adds a t-interval over
#   seeds and a bootstrap over the test images in quadrature (`metrics.seed_image_ci`). The paper's
#   baseline → SBDE accuracies are a reduction of the error by `PAPER_ERR_REDUCTION` (computed from
#   `nup_utils/paper.py` below). *Superiority*: reproduced when the
#   interval's lower end clears the paper's reduction; partially when it clears half of it (the
#   declared minimum effect, ours); not reproduced when its upper end is below half; otherwise
#   inconclusive (underpowered when the interval is wider than the minimum effect).
# * **`gain-from-symmetry-breaking`** (ImageNet stem): SBDE beats nearest *and* bilinear upsampling to
#   the same 64×64 size (paired differences over seeds): both confirmed → reproduced; either
#   contradicted → not reproduced; else inconclusive (*Direction* rules, all of them). The rule compares
#   SBDE with the controls that were trained (`CONTROLS`); quick trains none (CI budget), so quick does
#   not decide this claim.
#
# *Revised (issue #17), before any full run:* full trains 30 epochs (was 40) and only the arms its rules use:
# baseline, SBDE, nearest and bilinear on the ImageNet stem, baseline and SBDE on the CIFAR stem (dropped: zero,
# the CIFAR-mean constant, K=3 and nearest K=3 on the ImageNet stem, nearest on the CIFAR stem, which no rule
# decides). A dry run calibrated on the H200's measured step times put the earlier design at 37.8 minutes of
# the full tier's 60. Full has never run; quick and cpu are unchanged. Rules unchanged.
#
# *Revised (issue #17), before an earlier run:* quick trains width-16 models on all 50,000 training images (a
# baseline near 65%; before: width 8 on 2,500 images, 35%) and only the baseline and SBDE arms (before: also
# nearest, bilinear, zero and K=3), so quick no longer decides `gain-from-symmetry-breaking`. Rules unchanged.
# This choice followed single-seed calibration runs on the CI's kind of CPU (not published), which measured the
# time *and* the accuracy of each arm, a nearest arm included: the cut was for time (three seeds of a control
# cost about 5 minutes), but its accuracy had been seen.
#
# *Revised (issue #12), before an earlier run:* intervals now carry test-image sampling as well as seeds
# (earlier: t-intervals over seeds only); the rules are unchanged.
#
# *Revised in an earlier version (issue #12), after earlier runs.* Previous gain rule: "CI of the paired
# accuracy gain excludes 0 and its upper end reaches the paper's gain in points → reproduced", under
# which a wider interval made "reproduced" easier and a 35%-accuracy model could reproduce a claim
# made at 90%. The mechanism rule also counted "a resolution control gains significantly while SBDE
# does not beat it" as not reproduced; that case is now inconclusive unless a control beats SBDE.

# %%
PAPER_ERR_REDUCTION = sbde_accuracy.paper_error_reduction()  # from nup_utils/paper.py
CONTROLS = sbde_accuracy.resolution_controls(ARMS)  # full: nearest and bilinear; quick: none
HALF = 0.5  # ours: half of the paper's relative error reduction is the smallest effect that counts
RULES = {
    **{
        f"sbde-gain-{stem}-stem": verdicts.Superiority(
            "rel_error_reduction",
            min_effect=HALF * PAPER_ERR_REDUCTION,
            full_effect=PAPER_ERR_REDUCTION,
            label="relative test-error reduction",
            scale=100,
            unit="%",
        )
        for stem in ARMS
    },
}
if CONTROLS:  # the mechanism rule needs a resolution control (none is trained in quick)
    RULES["gain-from-symmetry-breaking"] = verdicts.AllOf(
        tuple(
            verdicts.Direction(f"sbde_minus_{c}", "+", label=f"SBDE − {c}", scale=100, unit=" pts") for c in CONTROLS
        ),
        name=f"SBDE beats {' and '.join(CONTROLS)} upsampling",
    )
for name, rule in RULES.items():
    print(f"{name:32s} {rule!r}")

# %% [markdown]
# ## Data
# A fixed, class-balanced subset (same for every arm and seed); the test images are never used for
# any choice.

# %%
train_split, test_split = data.cifar10_subsets(recipe["train_size"], recipe["test_size"], seed=recipe["data_seed"])
DATA_SOURCE = train_split.source
print("train:", data.describe(train_split))
print("test: ", data.describe(test_split))
x_train, y_train = data.to_float(train_split.x, device), train_split.y.to(device)
x_test, y_test = data.to_float(test_split.x, device), test_split.y.to(device)

fig = sbde_accuracy.input_figure(x_test)
_ = plotting.savefig(fig, "02-inputs")

# %% [markdown]
# ## Training every arm
# Models come from the shared cache (`~/.cache/nup`) when an identical configuration was trained
# before; notebook 03 loads the same models through `sbde.train_arm`.

# %%
runs = sbde_accuracy.train_all(ARMS, SEEDS, recipe, x_train, y_train, x_test, y_test, DATA_SOURCE, device=device)
print(f"{len(runs.jobs)} models ({runs.cache_hits} from the cache)")

# %% [markdown]
# ## Accuracy per arm and paired differences against the baseline (same stem, same seed)


# %%
# intervals carry both sources: training seeds (t) and the test images (bootstrap): metrics.seed_image_ci
summary, table = sbde_accuracy.summarize(runs, seed=SEED)
print(table)

# %% [markdown]
# ## Figures: accuracy per arm (each seed and the mean with its 95% CI) and training-loss curves

# %%
_ = plotting.savefig(sbde_accuracy.accuracy_figure(runs, summary, profile), "02-accuracy-per-arm")
_ = plotting.savefig(sbde_accuracy.loss_figure(runs), "02-train-loss")

# %% [markdown]
# ## Claims (rules declared above)

# %%
claims = sbde_accuracy.claims(runs, summary, RULES, profile=profile, rec=recipe, seed=SEED)
path = results.write_results(
    "02-sbde-accuracy",
    profile,
    claims,
    params={
        "recipe": recipe,
        "seeds": list(SEEDS),
        "arms": ARMS,
        "transforms": {a: repr(sbde.arm_transform(a)) for a in sbde.ARMS},
    },
    data_source=DATA_SOURCE,
    wall_time_s=timer.stop(),
    device=runtime.device_name(device),
    extra={"accuracy_per_model": runs.accuracy(), "train_loss_per_epoch": runs.curves(), "cache_hits": runs.cache_hits},
    rules=RULES,
)
print(sbde_accuracy.claim_lines(claims))
print(f"wrote {path.name}; wall time {timer.seconds:.0f} s")

# %% tags=["nbval-check-output"]
# Invariants, then one stable line per claim.
acc = runs.accuracy()
assert len(acc) == len(runs.jobs) and all(0.0 <= a <= 1.0 for a in acc.values())
assert all(len(runs.hist[j]["train_loss"]) == recipe["epochs"] for j in runs.jobs)
if runtime.trained(profile):  # every trained model must beat chance (10 classes); not smoke, not a dry run
    assert min(acc.values()) > 0.15, "a model did not train"
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# * The printed table and `results/<profile>/02-sbde-accuracy.json` give, per stem and arm, the mean
#   accuracy over seeds and the paired difference from the baseline with its 95% interval; the paper's
#   accuracies are printed beside ours and are the paper's numbers, on the original CIFAR-10 files
#   with an unknown recipe. Ours are on a JPEG re-encoding.
# * **Scale.** The quick profile trains width-16 ResNet-18s on all of CIFAR-10's training images for 5 epochs
#   (width, epochs and the resulting baseline accuracy are in each claim's `regime`, printed above): the
#   baseline is near 65%, still far below the paper's, and a gain (or its absence) here does not settle the
#   paper's setting. The full profile (standard width, a 30-epoch one-cycle recipe, both resolution controls on the
#   ImageNet stem, baseline and SBDE on the CIFAR stem) is written, smoke-tested and dry-run on a CPU
#   (`python -m nup_utils.run --profile full --dry-run`) but needs a GPU.
# * **Mechanism.** Quick trains no resolution control, so a gain in quick is the paper's claim as stated
#   (SBDE beats the 32×32 baseline at equal epochs), not its explanation: the 64×64 input alone may explain it,
#   and an SBDE epoch costs about 2.3× a baseline epoch. `gain-from-symmetry-breaking` is decided where the
#   controls run (the cpu tier and full).
# * **Few seeds** (listed in each claim's protocol) give wide intervals; a "not reproduced" means the
#   interval's upper end is below the declared minimum effect (a fraction of the paper's relative error
#   reduction) at this scale, not that SBDE never helps. The intervals carry seeds and the sampling of the
#   fixed test subset (its size n is in the protocol).
# * Quick runs the ImageNet stem only (where 32×32 inputs are most down-sampled, and the stem that
#   matches the paper's baseline); the CIFAR-stem arms are in the full profile only (smoke runs their
#   code path), so the stem question is open at quick scale.
