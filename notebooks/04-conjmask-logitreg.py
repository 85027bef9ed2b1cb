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
# # 04 · ConjMask and LogitReg: robustness without adversarial training?
#
# What the paper claims and what is unknown about it: [docs/papers.md](../docs/papers.md).
#
# **Claim (P2).** Masking the input components with the highest input–gradient coupling (**ConjMask**) and a
# logit-side regularization (**LogitReg**) improve adversarial robustness *without adversarial training*;
# [summary] high coupling goes with fragility, reliable behaviour sits in a middle ("Goldilocks") band.
# Source: `paper.P2` (printed below). The only number known from P2 is a CIFAR-10 clean accuracy (`p2_cifar_clean`)
# (label *summary*, setting unknown); it is shown as the paper's, next to ours.
#
# We train six arms of the same small ResNet-18 and attack each one with attacks that **know the defence**
# (differentiating through the mask, BPDA through the top-r selection, EOT over random masks). A robustness
# gain that only shows against an attacker who ignores the defence is reported as **gradient masking**.
#
# | choice | value | label |
# |---|---|---|
# | coupling score | s = \|x ⊙ ∇ₓℓ\| summed over channels, per pixel; true label in training, predicted label at test | summary/recon (`papers.md` [recon]) |
# | controls | \|∇ₓℓ\| score ("gradmask" arm, train + test) and random masking (an arm) | ours (the controls) |
# | masked fill | CIFAR-10 channel mean | recon |
# | ConjMask at training | augmentation with probability `P_MASK`, r = `R_TRAIN` | ours (r in the recon's 5–30% range) |
# | ConjMask at test | top-r masking with r chosen on a validation split from `R_TEST_GRID` (also used by "both" and "gradmask"); the random arm masks `R_TRAIN` at test | ours (never on test) |
# | LogitReg | CE + λ‖z‖² ("logit squeezing") and the logit-norm variant CE(z/(τ‖z‖)), chosen on validation from `LAMBDA_GRID` × kinds; two λ values, squeeze only (budgets; full had four λ and the logit norm before issue #17's hour). Candidates are trained on the first seed only; the chosen one is then trained for every seed | recon / ours |
# | "both" arm | LogitReg (chosen λ) + ConjMask (train and test) | ours |
# | random-masking arm | random r-fraction masks in training and at test (a random defence → EOT) | ours (the control) |
# | PGD-AT anchor | the standard model fine-tuned with PGD-k adversarial training at ε = 8/255 (full: 2 epochs of PGD-5; cpu: 2 of PGD-3; quick: 1 of PGD-3) | ours (short: the CPU budget, and full's hour on one GPU) |
# | model | ResNet-18 width 64 with the CIFAR stem in full, 8 epochs one-cycle, peak lr 0.2, batch 512 (issue #17: full in about an hour on one GPU; before: 10, 30, and 60 epochs at lr 0.1, batch 100; not yet run on a GPU); **quick: width 8 with the ImageNet (torchvision) stem**, whose attack steps cost about a fifth of the CIFAR stem's on a 2-core CPU (the benchmark cell prints the throughput); **cpu tier: width 16, ImageNet stem, all 50,000 training images (45,000 + 5,000 validation), 25 epochs one-cycle, peak lr 0.2, batch 256** (issue #17: a standard arm of at least 75%) | ours (P2's architecture unknown; quick: CPU budget) |
# | data | CIFAR-10 subsets, offline JPEG re-encoding when `NUP_DATA_DIR` is set; validation carved from the train subset | ours |
# | attacks | FGSM, PGD-10, PGD-20, 1 restart, EOT 2 (full had 2 restarts and EOT 4 before issue #17's second cut); L∞, ε ∈ {2, 8}/255 (budgets: AutoAttack at every arm and ε; full had ε = 4/255, PGD-50 with 3 restarts and EOT 8 before issue #17's hour), step 2.5ε/steps; adaptive/unaware variants use the shorter PGD | ours (standard practice) |
# | reference attack | AutoAttack (torchattacks) through the deployed defence, every arm and ε: the standard version for deterministic systems, the randomized version (APGD-CE, APGD-DLR, EOT over `aa_eot` draws: 20 in quick and cpu, 10 in full) for the random-mask defence. Every profile a cut of the reference (APGD-CE + APGD-T over 3 targets, no FAB-T; Square inside it in quick and cpu): **full 20 steps, no Square inside (it runs alone at the largest ε, 300 queries), EOT 10** (the reference, 100 steps, 9 targets, FAB-T, 5,000 queries, EOT 20, did not fit full's hour on one GPU); cpu 20 steps, 1,000 queries; **quick 20 steps, 300 queries** | ours (a cut of Croce & Hein 2020; budgets) |
# | gradient-free check | Square alone (the same queries) on every arm at the largest ε; an arm where it beats all gradient attacks together is flagged for gradient masking | ours (Carlini et al. 2019) |
# | test images | clean accuracy on `N_TEST` test images; attacks on a class-balanced, shuffled subset of `N_ATK` of them (200 in quick and full, 500 in cpu) | ours (RobustBench-style counts; quick: the CI budget) |
# | seeds | `N_SEEDS` training seeds (2 in quick and cpu, 3 in full); every interval is a two-level bootstrap over test images **and** seeds | ours |
# | adaptive attacks | ConjMask: PGD/FGSM through the mask (selection constant) + BPDA; random masks: EOT over `EOT` draws | ours (required by the project) |
# | transfer attack | PGD-20 crafted on another arm's model (the standard one; for the standard arm the LogitReg one) | ours |
# | robust accuracy | correct on the clean input *and* under the attack (deployed system = model + test-time defence); "worst" = all attacks together | ours |
# | headline robustness | per image, worst-case robust correctness averaged over the three ε | ours (one number per method, decided before the run) |
# | NUP quantities | probe = Pearson correlation of x and ∇ₓℓ across components (one backward); gradient spread = RMS of ∇ₓℓ; Δx·Δp from notebook 01's estimator on a box of radius `UNC_RADIUS` around the image, state ρ ∝ e^{-ℓ} | recon / ours |
#
# Unknown in P2: architecture, training recipe, r, λ, attack settings, every robust-accuracy number.

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("04-conjmask-logitreg")))

# %%
from nup_utils import conjmask_study, dryrun, paper, plotting, results, runtime, verdicts
from nup_utils.conjmask_study import ARMS

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | cpu | full | auto (full with CUDA, else quick)
SEED = 0  # base seed: data subsets, training (seed + s for the s-th training seed), attacks
WIDTH_FULL = 64  # ResNet-18 width used in full, 64 is the standard width
P_MASK = 0.5  # probability that a training image is ConjMask-/random-masked
R_TRAIN = 0.15  # fraction of pixels masked in training
EPS_LIST = (2, 4, 8)  # attack radii, in 1/255 pixel units
EPS_LARGE = 64  # sanity radius (1/255): robust accuracy must be about 0 there
AT_EPS = 8  # adversarial-training radius (1/255)
LR = 0.1  # peak SGD learning rate (one-cycle; the cpu tier 0.2 with batch 256, full 0.2 with batch 512, as in 02)
BATCH = 100  # training batch size (cpu tier: 256; full: 512)
SEL_EPS = 2  # validation selection radius (1/255)
SANITY_TOL = 0.03  # slack (absolute accuracy) for the asserted sanity checks
MIN_GAIN = 0.02  # smallest robustness gain (robust-accuracy fraction) that counts; see RULES
REGIME_FLOOR = {"smoke": 0.0, "quick": 0.65, "cpu": 0.75, "full": 0.85}  # standard arm's clean accuracy, lower end
UNC_RADIUS = 0.03  # box radius for the local dx*dp estimate (pixel units)

# %%
profile = runtime.resolve_profile(PROFILE)
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer.started()
pick = lambda **kw: runtime.pick(profile, **kw)  # noqa: E731  (smoke / quick / cpu / full values)
EPS_CUT = (EPS_LIST[0], EPS_LIST[-1])  # the radii run (AutoAttack at every arm and radius costs; full too, #17)
AA_CUT = ("apgd-ce", "apgd-t", "square")  # the CPU tiers' cut of AutoAttack (no FAB-T)
AA_FULL = ("apgd-ce", "apgd-t")  # full's (issue #17): Square runs alone at the largest radius (gradient-free check)
setup = conjmask_study.Setup(
    seed=SEED, n_seeds=pick(smoke=2, quick=2, cpu=2, full=3), width=pick(smoke=4, quick=8, cpu=16, full=WIDTH_FULL),
    stem=pick(smoke="imagenet", quick="imagenet", cpu="imagenet", full="cifar"),  # CPU: the cheap stem (benchmark)
    n_train=pick(smoke=80, quick=2400, cpu=50000, full=50000),  # train subset incl. validation
    n_val=pick(smoke=20, quick=400, cpu=5000, full=5000),  # carved out of the train subset
    n_test=pick(smoke=12, quick=1000, cpu=10000, full=10000),  # test images for clean accuracy
    n_atk=pick(smoke=4, quick=200, cpu=500, full=200),  # a balanced, shuffled subset of them is attacked
    n_sel=pick(smoke=8, quick=150, cpu=500, full=500),  # validation images for the selection
    epochs=pick(smoke=1, quick=5, cpu=25, full=8),  # full: issue #17's hour on one GPU (before: 10, 30, 60); cpu: was 20
    schedule=pick(smoke="cosine", quick="onecycle", cpu="onecycle", full="onecycle"),
    at_epochs=pick(smoke=1, quick=1, cpu=2, full=2), at_steps=pick(smoke=1, quick=3, cpu=3, full=5), at_eps=AT_EPS,
    eps_run=pick(smoke=EPS_CUT, quick=EPS_CUT, cpu=EPS_CUT, full=EPS_CUT),  # two radii (budgets)
    eps_large=EPS_LARGE,
    pgd_steps=pick(smoke=(1, 2), quick=(10, 20), cpu=(10, 20), full=(10, 20)),  # budgets (full: was 20, 50)
    restarts=pick(smoke=1, quick=1, cpu=1, full=1), eot=pick(smoke=2, quick=2, cpu=2, full=2),  # EOT: random masks
    aa_steps=pick(smoke=2, quick=20, cpu=20, full=20), aa_eot=pick(smoke=2, quick=20, cpu=20, full=10),  # ref. 100, 20
    aa_parts=pick(smoke=AA_CUT, quick=AA_CUT, cpu=AA_CUT, full=AA_FULL),  # None: the reference's four parts
    aa_targets=pick(smoke=2, quick=3, cpu=3, full=3), aa_queries=pick(smoke=20, quick=300, cpu=1000, full=300),
    sel_eps=SEL_EPS, sel_steps=pick(smoke=1, quick=5, cpu=5, full=10),
    r_test_grid=pick(smoke=(0.1, 0.2), quick=(0.1, 0.2), cpu=(0.1, 0.2), full=(0.1, 0.2)),
    lambda_grid=pick(smoke=(0.05,), quick=(0.01, 0.05), cpu=(0.01, 0.05), full=(0.01, 0.05)),
    logit_kinds=pick(smoke=("squeeze", "norm"), quick=("squeeze",), cpu=("squeeze",), full=("squeeze",)),
    tau_norm=0.1,  # logit-norm temperature (Wei et al. 2022's CIFAR value), used where logit_kinds has "norm"
    p_mask=P_MASK, r_train=R_TRAIN, unc_radius=UNC_RADIUS, sanity_tol=SANITY_TOL,
    lr=pick(smoke=LR, quick=LR, cpu=0.2, full=0.2), batch=pick(smoke=BATCH, quick=BATCH, cpu=256, full=512),
    precision=pick(smoke="fp32", quick="auto", cpu="auto", full="auto"),  # auto: the fastest measured here
    channels_last=pick(smoke=False, quick="auto", cpu="auto", full="auto"),  # (benchmark.resolve_engine)
    n_unc=pick(smoke=2, quick=8, cpu=16, full=50), unc_samples=pick(smoke=4, quick=32, cpu=64, full=256),  # dx*dp
)  # fmt: skip
print(f"profile {profile}, device {runtime.device_name(device)}; {setup}")
print(paper.P2)

# %% [markdown]
# ## Rules, declared before any training
# * **`conjmask-robustness`, `logitreg-robustness`, `both-robustness`** — the gain of headline robustness
#   (per image and seed: worst case over *every* attack, adaptive ones included, averaged over ε) over
#   the standard arm, two-level bootstrap interval over images and seeds. *Superiority* with the minimum
#   effect `MIN_GAIN`: reproduced when the lower end clears it, not reproduced when the upper end is
#   below it, else inconclusive (underpowered when the interval is wider than `MIN_GAIN`).
#   Gradient masking is *measured*, not inferred: each claim reports `masking_gap`, the paired
#   difference between the robust accuracy under the defence-unaware attack and under the worst case
#   on the same arm, and the random-mask control's gain beside it.
# * **`conjmask-clean-accuracy`** — ConjMask's clean accuracy minus the paper's (`p2_cifar_clean`) within ±2 points
#   (*Equivalence*; the regime says how far our setting is from the paper's).
# * **`coupling-predicts-robustness`** — Spearman ρ between the arms' median probe correlation and their
#   headline robustness below 0 (*Direction*; bootstrap interval over images).
# * **Regime (every claim above).** A rule decides only when the standard arm's clean accuracy (lower end of its
#   interval) reaches the profile's floor `REGIME_FLOOR`: issue #17's 65% for quick and 75% for the cpu tier, 85% for
#   full (ours: the paper's ResNet-18 regime is about 88–91%). Below it every claim is *inconclusive* and says what
#   its rule would have said: a defence tested on a model far weaker than the paper's says little about the paper.
#
# *Revised (issue #17), after seeing quick's numbers:* the regime gate is new. Quick's standard arm reaches 32.7%
# (width 8 on 2,000 training images), where the rules had said not_reproduced for three claims; quick cannot train
# 04's fifteen models on all 50,000 images within CI's 30 minutes, so the cpu tier carries 04's verdicts. The
# gate can only turn a verdict into inconclusive; rules and thresholds are otherwise unchanged.
#
# *Revised (issue #14), after a first run of this version:* the worst case now includes AutoAttack (randomized
# version with EOT 20 for the random masks) and Square; quick attacks 500 images instead of 80, with the
# ImageNet-stem model, over ε ∈ {2, 8}/255 instead of {2, 4, 8} (a first run over three ε took 7 minutes of
# attacks, over the budget); the headline averages over the ε that ran. Rules and thresholds unchanged.
#
# *Revised (issue #17), before the cpu tier's first published run:* its training goes from 20 to 25 epochs. An
# unpublished, unfinished run at 20 epochs (another session; its attacks did not end in the time left) put the
# standard arm's clean accuracy just above 75% on average but the lower end of its interval just below the floor,
# so every rule would have been gated to inconclusive; no robustness number of that run was seen. Rules, floor and
# thresholds unchanged.
#
# *Revised again (issue #17), before any full run:* full is cut further, since the whole full tier was still
# estimated at about 110 minutes of the hour (04: 67.8, 48.3 of them attack parts counted as upper bounds; a CPU dry
# run translated onto the H200's measured throughput). Now: 8 training epochs (was 10), PGD-AT 2 epochs (was 3),
# 200 attacked images (was 500; the cpu tier keeps 500), PGD with one restart and EOT 2 (were 2 and 4: the cpu
# tier's), AutoAttack's APGD parts 20 steps (was 50: the cpu tier's), Square alone 300 queries (was 1,000:
# quick's). Full still has never run; quick and cpu unchanged; rules, floor and thresholds unchanged.
#
# *Revised (issue #17), before any full run:* full is cut to its share of the full tier's hour on one GPU. A dry
# run calibrated on an NVIDIA H200's measured throughput put the earlier full at about 1,790 minutes, 1,645 of them
# in attacks counted as upper bounds (every AutoAttack part and Square on every image). Now: 10 training epochs
# (was 30), PGD-AT 3 epochs of PGD-5 (was 10 of PGD-7), LogitReg candidates squeeze λ ∈ {0.01, 0.05} (was four
# λ and the logit norm), r_test ∈ {0.1, 0.2}; 500 attacked and 500 selection images (were 1,000), ε ∈ {2, 8}/255
# (was also 4), PGD-10/20 with 2 restarts and EOT 4 (was PGD-20/50, 3 restarts, EOT 8), AutoAttack without FAB-T,
# APGD-T over 3 targets, 50 steps, EOT 10 for the random masks, and Square (1,000 queries) only alone at 8/255, the
# gradient-free check (was the reference at every ε: 100 steps, 9 targets, FAB-T, Square 5,000 queries, EOT 20); 50 images for Δx·Δp (was 100). Full has never run; quick and
# cpu unchanged; rules, floor and thresholds unchanged.
#
# *Revised (issue #17), before an earlier run:* quick attacks 200 images instead of 300. A fresh-clone CI took 30.6
# minutes on the CI's kind of CPU, 231 s of this notebook's 290 s being its attacks; quick decides none of this
# notebook's claims (its standard arm is below the regime floor), so its attack sample is what the CI budget
# leaves. The cpu tier (500 images) carries the verdicts. Rules and thresholds unchanged.
#
# *Revised (issue #17), before an earlier run:* quick attacks 300 images instead of 500: notebooks 02 and 03 now train
# on all 50,000 training images, and a fresh-clone CI of that version took 30.2 minutes (this notebook 344 s of
# it), over the 30-minute budget. The longer `cpu` tier (width 16, all training images) attacks 500. Rules
# and thresholds unchanged.
#
# *Revised in an earlier version (issue #12), after earlier runs.* Previous rules: a robustness gain whose
# interval was above 0 counted as reproduced (no minimum effect), and "a gain only against the unaware
# attack" was called *not reproduced (gradient masking)* — but a significant gain against the unaware
# attack with a non-significant worst-case gain is low power, not evidence of masking, which is now
# measured by the paired `masking_gap`. The clean-accuracy claim was inconclusive by fiat outside the
# full profile; it is now decided by its rule everywhere, with the regime stated. The coupling claim
# used an exact permutation p-value; it now uses the interval like every other rule.

# %%
RULES = {
    **{
        f"{arm}-robustness": verdicts.Superiority(
            "robust_gain", min_effect=MIN_GAIN, label="worst-case robustness gain", scale=100, unit=" pts"
        )
        for arm in ("conjmask", "logitreg", "both")
    },
    "conjmask-clean-accuracy": verdicts.Equivalence(
        "clean_minus_paper", 0.02, label="clean accuracy − paper's", scale=100, unit=" pts"
    ),
    "coupling-predicts-robustness": verdicts.Direction("spearman_rho", "-", label="Spearman ρ(coupling, robustness)"),
}
floor = REGIME_FLOOR[profile]
RULES = {  # each rule decides only in the declared regime (see above)
    name: verdicts.Regime(rule, "clean_standard", floor=floor, label="standard arm clean accuracy", scale=100, unit="%")
    for name, rule in RULES.items()
}
for name, rule in RULES.items():
    print(f"{name:30s} {rule!r}")

# %% [markdown]
# ## Data
# A balanced train subset; the validation split is carved out of it (disjoint), the test subset is only
# used for the final evaluation.

# %%
splits = conjmask_study.split_data(setup, device=device)
assert len(set(splits.val_idx.tolist()) & set(splits.tr_idx.tolist())) == 0
print(splits.lines)

# %% [markdown]
# ## Training the arms
# Every model is cached by its full configuration. ConjMask's training scores use the true label and are
# computed in eval mode (the model's train mode is restored); the test-time defence uses the predicted label.

# %%
train = conjmask_study.Trainer(setup, splits, device=device)
print("training engine:", train.engine)
nets, logit_cands, masks = conjmask_study.train_arms(setup, train)

# %% [markdown]
# ## Choosing r (test-time) and λ on the validation split
# Criterion (ours, fixed before the run): validation robust accuracy under PGD-`SEL_STEPS` at ε = `SEL_EPS`/255
# (through the defence when there is one), among candidates whose validation clean accuracy is at least the
# standard model's minus 5 points; ties -> higher clean accuracy. Seed `SEEDS[0]` decides for all seeds.

# %%
selection, R_TEST, LOGIT_KEY, lines = conjmask_study.select(setup, splits, nets, logit_cands)
print(lines)
conjmask_study.train_chosen(setup, train, nets, logit_cands[LOGIT_KEY][0], masks["xgrad"])

# %% [markdown]
# ## Attacks
# For every arm and seed: clean accuracy of the deployed system, then FGSM and two PGD lengths at each ε, the
# adaptive variants the defence calls for, the unaware attack, AutoAttack through the deployed defence
# (randomized version with EOT for the random masks), Square alone, and a transfer attack. Only clean-correct
# images are attacked (the others count as not robust). A final PGD at ε = `EPS_LARGE`/255 is the sanity check
# that robust accuracy can be driven to about 0.

# %%
for kind in ("none", "random"):  # the library attacks of a deterministic and of the random-mask system, at 8/255
    print(kind, conjmask_study.reference_attacks(setup, 8 / 255, kind, None, SEED, square=True))
res = conjmask_study.attack_arms(setup, splits, nets, R_TEST)
summary = conjmask_study.Summary(setup, res, splits.atk_idx)  # per-image tables, two-level bootstrap intervals
print(summary.lines())

# %% [markdown]
# ## NUP quantities per arm
# The probe (correlation of x and ∇ₓℓ across the 3072 components, true label, one backward), the gradient
# spread, and Δx·Δp from notebook 01's estimator (`nup_utils.uncertainty`) on a small box around each image,
# state ρ ∝ e^{-ℓ} (P2's loss-induced state). Measured on the bare model (the probe is a property of the network).

# %%
nup, lines = conjmask_study.nup_quantities(setup, splits, nets)
print(lines)

# %% [markdown]
# ## Claims (rules declared at the top, `RULES`)

# %%
claims, coupling = conjmask_study.claims(setup, summary, nup, RULES, profile=profile, logit_key=LOGIT_KEY)
print(conjmask_study.claim_lines(claims, coupling, summary.clean_acc))

# %% [markdown]
# ## Sanity checks of the evaluation (asserted below)
# Robustness does not rise with ε, is driven to about 0 at ε = `EPS_LARGE`/255, does not rise with more PGD
# steps, AutoAttack is not weaker than our PGD, and the transfer attack is not stronger than the white-box
# ones, each within the slack max(`SANITY_TOL`, 2/N_ATK). Square (gradient-free) beating every gradient attack
# together flags the arm for gradient masking; that is asserted not to happen for the undefended standard arm
# only (for a defence it is a finding, printed and stated in its claim's protocol). *Revised (issue #14), after a run on another CPU failed "more steps" for the
# random-mask arm:* a randomized defence draws fresh masks in every evaluation, so two of its robust
# accuracies differ by evaluation noise alone; its slack is now at least two standard errors of that
# difference (`conjmask_study.noise_slack`). Deterministic arms keep the old slack.

# %%
sanity, large, lines = conjmask_study.sanity_checks(setup, summary)
print(lines)

# %% [markdown]
# ## Attack throughput on this machine (benchmark)

# %%
bench = conjmask_study.benchmark(setup, splits, nets, R_TEST)
print(bench["lines"])

# %% [markdown]
# ## Figures

# %%
_ = plotting.savefig(conjmask_study.robustness_figure(setup, summary, nup, coupling), "04-robustness")
_ = plotting.savefig(conjmask_study.nup_figure(nup), "04-nup-quantities")
plotting.plt.show()

# %% [markdown]
# ## Results file

# %%
params = setup.params() | dict(
    profile=profile, eps_list=EPS_LIST, min_gain=MIN_GAIN, conjmask_train=repr(masks["xgrad"]),
    random_train=repr(masks["random"]), engine=train.engine,
)  # fmt: skip
path = results.write_results(
    "04-conjmask-logitreg",
    profile,
    claims,
    params=params,
    data_source=splits.source,
    wall_time_s=timer.stop(),
    device=runtime.device_name(device),
    extra=conjmask_study.extra(setup, summary, nup, selection, R_TEST, LOGIT_KEY, sanity, large)
    | {"benchmark": bench["rows"]},
    rules=RULES,
    tolerance={"abs": 1 / setup.n_atk},  # a re-run on another CPU may flip one attacked image per seed
)
print(f"wrote {path}; wall time {timer.seconds:.0f}s")

# %% tags=["nbval-check-output"]
for k, v in sanity.items() if not dryrun.active() else ():  # a dry run's attacks are cut short: nothing to check
    if profile == "smoke" and k == "large_eps_zero":
        continue  # smoke models are near-constant classifiers (one epoch on 60 images): they cannot be driven to 0
    bad = [(a, s) for a, s, ok in v if not ok and (k != "gradient_free" or a == "standard")]
    assert not bad, f"sanity check {k} failed: {bad}"
assert len(set(splits.val_idx.tolist()) & set(splits.tr_idx.tolist())) == 0, "validation overlaps training"
assert all(0 <= summary.clean_acc[a]["value"] <= 1 for a in ARMS)
for a in ARMS:  # robust accuracy never exceeds clean accuracy of the deployed system
    assert all(summary.table[a][e]["value"] <= summary.clean_atk[a] + 1e-9 for e in setup.eps_run)
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# * The verdicts above rest on the **worst case over every attack**, including attacks that differentiate through
#   ConjMask's mask, BPDA through its top-r selection and EOT over random masks; the dotted curves show what an
#   attacker who ignores the test-time defence would report. A gap between the two is gradient masking, not
#   robustness.
# * Scale: the width, epochs, image counts and clean accuracies of this run are printed above and stated in each
#   claim's regime. Intervals are over test images and seeds (two-level bootstrap), but two seeds say little about
#   the seed distribution (full uses three). The clean-accuracy claim compares with the paper's number at a scale far
#   below the paper's; its verdict holds for this regime only. **Quick's standard arm (width 8, 2,000 training
#   images) is near 33%, far below issue #17's 65% for the CI tier**: training every arm on all 50,000 images did not
#   fit the 30-minute CI beside notebooks 02 and 03. The `cpu` tier (width 16, all training images, 25 epochs,
#   `python -m nup_utils.run --profile cpu`, `results/cpu/04-conjmask-logitreg.json`) carries this notebook's CPU
#   verdicts: its standard arm is inside the declared regime (the glance at the top shows its verdicts and regime).
#   That is still well below the paper's ResNet-18 regime (about 88–91%); only full can speak to it.
# * r (test time) and λ were chosen on a validation split carved from the training subset (first seed only); the
#   logit-norm variant runs only in smoke. Quick and cpu attack with PGD-10/PGD-20, one restart and EOT over
#   2 masks, as does full; the adaptive variants (BPDA, no-EOT, unaware) use the shorter PGD.
# * The PGD-AT anchor is a short fine-tune from the standard model (its steps and epochs are in the parameters above):
#   it shows that the evaluation can register real robustness, not what full adversarial training reaches.
# * The worst case includes AutoAttack (torchattacks) and Square; every profile cuts them down (no FAB-T, 3 APGD-T
#   targets; quick 20 steps and 300 Square queries; full 20 steps, and Square with 300 queries only alone at the
#   largest ε: the `repr` lines above), none runs the reference settings. Every worst case is still an upper bound on robustness. Quick uses the ImageNet stem (a CPU budget choice), full
#   the CIFAR stem; the two regimes need not agree.
# * The coupling claim is a rank correlation over seven arms; the "Goldilocks band" (a non-monotone relation) cannot be resolved with
#   so few points. Δx·Δp is estimated on a small box around each image with uniform samples (notebook 01's
#   estimator); on such a box ρ is close to uniform, so Δx is set by the box and Δp tracks the local gradient size.
