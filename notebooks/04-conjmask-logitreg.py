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
# | LogitReg | CE + λ‖z‖² ("logit squeezing") and the logit-norm variant CE(z/(τ‖z‖)), chosen on validation from `LAMBDA_GRID` × kinds; quick: two λ values, squeeze only (CPU budget). Candidates are trained on the first seed only; the chosen one is then trained for every seed | recon / ours |
# | "both" arm | LogitReg (chosen λ) + ConjMask (train and test) | ours |
# | random-masking arm | random r-fraction masks in training and at test (a random defence → EOT) | ours (the control) |
# | PGD-AT anchor | the standard model fine-tuned with PGD-k adversarial training at ε = 8/255 | ours (short, for the CPU budget) |
# | model | ResNet-18, CIFAR stem, width `WIDTH` (64 in full) | ours (P2's architecture unknown) |
# | data | CIFAR-10 subsets, offline JPEG re-encoding when `NUP_DATA_DIR` is set; validation carved from the train subset | ours |
# | attacks | FGSM, PGD-20, PGD-50 with 3 restarts (full); **quick: PGD-10 and PGD-20, 1 restart, EOT 2** (CPU budget; no PGD-50); L∞, ε ∈ {2, 4, 8}/255, step 2.5ε/steps; adaptive/unaware variants use the shorter PGD | ours (standard practice) |
# | test images | clean accuracy on `N_TEST` test images; attacks on a class-balanced subset of `N_ATK` of them (CPU budget) | ours |
# | seeds | `N_SEEDS` training seeds (2 in quick, 3 in full); every interval is a two-level bootstrap over test images **and** seeds | ours |
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
import matplotlib.pyplot as plt
import numpy as np
import torch

from nup_utils import (
    attacks,
    cache,
    data,
    defenses,
    metrics,
    models,
    paper,
    plotting,
    results,
    runtime,
    training,
    verdicts,
)

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | full | auto (full with CUDA, else quick)
SEED = 0  # base seed: data subsets, training (seed + s for the s-th training seed), attacks
WIDTH_FULL = 64  # ResNet-18 width used in full, 64 is the standard width
P_MASK = 0.5  # probability that a training image is ConjMask-/random-masked
R_TRAIN = 0.15  # fraction of pixels masked in training
EPS_LIST = (2, 4, 8)  # attack radii, in 1/255 pixel units
EPS_LARGE = 64  # sanity radius (1/255): robust accuracy must be about 0 there
AT_EPS = 8  # adversarial-training radius (1/255)
LR = 0.1  # peak SGD learning rate (one-cycle)
BATCH = 100  # training batch size
SEL_EPS = 2  # validation selection radius (1/255)
SANITY_TOL = 0.03  # slack (absolute accuracy) for the asserted sanity checks
MIN_GAIN = 0.02  # smallest robustness gain (robust-accuracy fraction) that counts; see RULES
UNC_RADIUS = 0.03  # box radius for the local dx*dp estimate (pixel units)

# %%
P = runtime.resolve_profile(PROFILE)
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer().__enter__()
WIDTH = runtime.pick(P, smoke=4, quick=8, full=WIDTH_FULL)
N_TRAIN = runtime.pick(P, smoke=80, quick=2400, full=50000)  # train subset incl. validation
N_VAL = runtime.pick(P, smoke=20, quick=400, full=5000)  # carved out of the train subset
N_TEST = runtime.pick(P, smoke=12, quick=500, full=10000)  # test images for clean accuracy
N_ATK = runtime.pick(P, smoke=4, quick=80, full=1000)  # the first N_ATK of them are attacked
EPOCHS = runtime.pick(P, smoke=1, quick=5, full=60)
SCHEDULE = runtime.pick(P, smoke="cosine", quick="onecycle", full="onecycle")  # smoke has < 4 optimizer steps
AT_EPOCHS = runtime.pick(P, smoke=1, quick=1, full=30)
AT_STEPS = runtime.pick(P, smoke=1, quick=3, full=10)
N_SEEDS = runtime.pick(P, smoke=2, quick=2, full=3)
EPS_RUN = runtime.pick(P, smoke=(EPS_LIST[0], EPS_LIST[-1]), quick=EPS_LIST, full=EPS_LIST)  # smoke: two radii
PGD_STEPS = runtime.pick(P, smoke=(1, 2), quick=(10, 20), full=(20, 50))  # quick: fewer steps for the CPU budget
RESTARTS = runtime.pick(P, smoke=1, quick=1, full=3)  # restarts of every PGD run
EOT = runtime.pick(P, smoke=2, quick=2, full=8)  # EOT draws for the random-mask defence
SEL_STEPS = runtime.pick(P, smoke=1, quick=5, full=20)
N_SEL = runtime.pick(P, smoke=8, quick=150, full=1000)  # validation images for the selection
R_TEST_GRID = runtime.pick(P, smoke=(0.1, 0.2), quick=(0.1, 0.2), full=(0.05, 0.1, 0.2, 0.3))
LAMBDA_GRID = runtime.pick(P, smoke=(0.05,), quick=(0.01, 0.05), full=(0.005, 0.02, 0.05, 0.2))
LOGIT_KINDS = runtime.pick(P, smoke=("squeeze", "norm"), quick=("squeeze",), full=("squeeze", "norm"))
TAU_NORM = 0.1  # logit-norm temperature (Wei et al. 2022's CIFAR value), used where LOGIT_KINDS has "norm"
N_UNC = runtime.pick(P, smoke=2, quick=8, full=100)  # images for the local dx*dp estimate
UNC_SAMPLES = runtime.pick(P, smoke=4, quick=32, full=256)
SEEDS = tuple(SEED + s for s in range(N_SEEDS))
EPS = tuple(e / 255 for e in EPS_RUN)
print(
    f"profile {P}, device {runtime.device_name(device)}; width {WIDTH}, train {N_TRAIN - N_VAL} + val {N_VAL}, "
    f"test {N_TEST} (attacked {N_ATK}), epochs {EPOCHS}, seeds {SEEDS}, eps {EPS_RUN}/255, PGD steps {PGD_STEPS}"
)
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
#
# *Revised in this version (issue #12), after earlier runs.* Previous rules: a robustness gain whose
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
for name, rule in RULES.items():
    print(f"{name:30s} {rule!r}")

# %% [markdown]
# ## Data
# A balanced train subset; the validation split is carved out of it (disjoint), the test subset is only
# used for the final evaluation.

# %%
train_split, test_split = data.cifar10_subsets(N_TRAIN, N_TEST, SEED)
val_idx = data.balanced_indices(train_split.y, N_VAL, SEED + 2)
tr_idx = data.balanced_indices(train_split.y, N_TRAIN - N_VAL, SEED + 3, exclude=val_idx)
assert len(set(val_idx.tolist()) & set(tr_idx.tolist())) == 0
x_tr, y_tr = data.to_float(train_split.x[tr_idx], device), train_split.y[tr_idx].to(device)
x_val, y_val = data.to_float(train_split.x[val_idx], device), train_split.y[val_idx].to(device)
x_te, y_te = data.to_float(test_split.x, device), test_split.y.to(device)  # clean accuracy on all N_TEST
# the subsets are stored class by class, so every prefix below is a balanced draw in shuffled order
# (a plain x_te[:N_ATK] would be one or two classes)
atk_idx = data.balanced_indices(test_split.y, N_ATK, SEED + 4)
atk_idx = atk_idx[torch.randperm(len(atk_idx), generator=runtime.make_generator(SEED + 5))]
sel_idx = data.balanced_indices(train_split.y[val_idx], N_SEL, SEED + 6)
sel_idx = sel_idx[torch.randperm(len(sel_idx), generator=runtime.make_generator(SEED + 7))]
DATA_SOURCE = train_split.source
print(
    "attacked classes",
    torch.bincount(test_split.y[atk_idx], minlength=10).tolist(),
    "| selection classes",
    torch.bincount(train_split.y[val_idx][sel_idx], minlength=10).tolist(),
)
print("train", data.describe(train_split.subset(tr_idx)))
print("val  ", data.describe(train_split.subset(val_idx)))
print("test ", data.describe(test_split))
x_at, y_at = x_te[atk_idx.to(device)], y_te[atk_idx.to(device)]  # the attacked subset (N_ATK, balanced, shuffled)

# %% [markdown]
# ## Training the arms
# Every model is cached by its full configuration. ConjMask's training scores use the true label and are
# computed in eval mode (the model's train mode is restored); the test-time defence uses the predicted label.

# %%
base_cfg = dict(
    arch="resnet18",
    stem="cifar",
    width=WIDTH,
    data=DATA_SOURCE,
    n_train=N_TRAIN,
    n_val=N_VAL,
    data_seed=SEED,
    epochs=EPOCHS,
    batch=BATCH,
    lr=LR,
    schedule=SCHEDULE,
    augment=["crop", "flip"],
)
conj_train = defenses.ConjMask(r=R_TRAIN, score="xgrad")
rand_train = defenses.ConjMask(r=R_TRAIN, score="random")
grad_train = defenses.ConjMask(r=R_TRAIN, score="grad")


def build():
    return models.resnet18(stem="cifar", width=WIDTH)


def train_arm(name, seed, *, batch_transform=None, loss_fn=None, extra=None, init=None, epochs=EPOCHS):
    cfg = {**base_cfg, "arm": name, "seed": seed, "epochs": epochs, **(extra or {})}

    def fit(model):
        if init is not None:
            model.load_state_dict(init.state_dict())
        h = training.train(
            model,
            x_tr,
            y_tr,
            epochs=epochs,
            batch_size=BATCH,
            lr=LR,
            seed=seed,
            schedule=SCHEDULE,
            batch_transform=batch_transform,
            loss_fn=loss_fn,
            desc=f"{name} s{seed}",
        )
        return {k: h[k] for k in ("train_loss", "train_acc", "epoch_time_s")}

    model, hist, hit = cache.cached_model(f"04-{name}", cfg, build, fit, device=device)
    print(
        f"{name:10s} seed {seed}: {'cache' if hit else 'trained'}; train time "
        f"{sum(hist['epoch_time_s']):.0f}s; final train acc {hist['train_acc'][-1]:.3f}"
    )
    return model


nets = {s: {} for s in SEEDS}
logit_cands = {}  # LogitReg candidates, trained on the first seed only (the choice is made there)
for kind in LOGIT_KINDS:
    for lam in LAMBDA_GRID if kind == "squeeze" else (None,):
        lr_ = defenses.LogitReg(kind=kind, lam=lam) if kind == "squeeze" else defenses.LogitReg(kind=kind, tau=TAU_NORM)
        logit_cands[repr(lr_)] = (lr_, train_arm("logitreg", SEEDS[0], loss_fn=lr_, extra={"loss": repr(lr_)}))
for s in SEEDS:
    nets[s]["standard"] = train_arm("standard", s)
    nets[s]["conjmask"] = train_arm(
        "conjmask", s, batch_transform=conj_train.train_transform(P_MASK), extra={"mask": repr(conj_train), "p": P_MASK}
    )
    nets[s]["gradmask"] = train_arm(
        "gradmask", s, batch_transform=grad_train.train_transform(P_MASK), extra={"mask": repr(grad_train), "p": P_MASK}
    )  # the |grad| score control
    nets[s]["random"] = train_arm(
        "random", s, batch_transform=rand_train.train_transform(P_MASK), extra={"mask": repr(rand_train), "p": P_MASK}
    )
    at = defenses.PGDTrain(eps=AT_EPS / 255, step=2.5 * AT_EPS / 255 / AT_STEPS, steps=AT_STEPS)
    nets[s]["pgd-at"] = train_arm(
        "pgd-at",
        s,
        batch_transform=at,
        init=nets[s]["standard"],
        epochs=AT_EPOCHS,
        extra={"at": repr(at), "init": "standard", "init_epochs": EPOCHS},
    )

# %% [markdown]
# ## Choosing r (test-time) and λ on the validation split
# Criterion (ours, fixed before the run): validation robust accuracy under PGD-`SEL_STEPS` at ε = `SEL_EPS`/255
# (through the defence when there is one), among candidates whose validation clean accuracy is at least the
# standard model's minus 5 points; ties -> higher clean accuracy. Seed `SEEDS[0]` decides for all seeds.

# %%
xs, ys = x_val[sel_idx.to(device)], y_val[sel_idx.to(device)]  # balanced, shuffled selection subset


def val_score(model, transform=None):
    clean = training.evaluate(model, xs, ys, input_transform=transform)
    atk = attacks.PGD(
        eps=SEL_EPS / 255, step=2.5 * SEL_EPS / 255 / SEL_STEPS, steps=SEL_STEPS, seed=SEED, transform=transform
    )
    rob = defenses.run_suite(model, xs, ys, {"sel": atk}, eval_transform=transform, only=clean, desc="select")["sel"]
    return float(clean.float().mean()), float(rob.float().mean())


s0 = SEEDS[0]
std_clean, _ = val_score(nets[s0]["standard"])
floor = std_clean - 0.05
selection = {"standard_val_clean": std_clean, "r_test": {}, "logitreg": {}}
for r in R_TEST_GRID:
    selection["r_test"][r] = val_score(nets[s0]["conjmask"], defenses.ConjMask(r=r).transform(nets[s0]["conjmask"]))
for key, (_, m) in logit_cands.items():
    selection["logitreg"][key] = val_score(m)


def choose(cands):
    ok = {k: v for k, v in cands.items() if v[0] >= floor} or cands  # none passes -> all compete
    return max(ok, key=lambda k: (ok[k][1], ok[k][0]))


R_TEST = choose(selection["r_test"])
LOGIT_KEY = choose(selection["logitreg"])
print(f"standard val clean {std_clean:.3f}")
for r, (c, rb) in selection["r_test"].items():
    print(f"  ConjMask r_test={r:<5g} val clean {c:.3f}  val robust {rb:.3f}")
for k, (c, rb) in selection["logitreg"].items():
    print(f"  {k:34s} val clean {c:.3f}  val robust {rb:.3f}")
print(f"chosen: r_test = {R_TEST}, {LOGIT_KEY}")
lr_sel = logit_cands[LOGIT_KEY][0]
for s in SEEDS:  # the chosen LogitReg for every seed (the first seed's model comes from the cache)
    nets[s]["logitreg"] = train_arm("logitreg", s, loss_fn=lr_sel, extra={"loss": repr(lr_sel)})
    nets[s]["both"] = train_arm(
        "both",
        s,
        batch_transform=conj_train.train_transform(P_MASK),
        loss_fn=lr_sel,
        extra={"mask": repr(conj_train), "p": P_MASK, "loss": repr(lr_sel)},
    )

# %% [markdown]
# ## Attacks
# For every arm and seed: clean accuracy of the deployed system, then FGSM, PGD-20, PGD-50 at each ε, the
# adaptive variants the defence calls for, the unaware attack, and a transfer attack. Only clean-correct
# images are attacked (the others count as not robust). A final PGD at ε = `EPS_LARGE`/255 is the sanity check
# that robust accuracy can be driven to about 0.

# %%
ARMS = ["standard", "conjmask", "logitreg", "both", "gradmask", "random", "pgd-at"]
TEST_DEFENCE = {"conjmask": "topr", "both": "topr", "gradmask": "topr", "random": "random"}
TEST_SCORE = {"conjmask": "xgrad", "both": "xgrad", "gradmask": "grad", "random": "random"}
SURROGATE = {a: ("logitreg" if a == "standard" else "standard") for a in ARMS}


def deployed(arm, model):
    kind = TEST_DEFENCE.get(arm, "none")
    if kind == "none":
        return None, kind
    mask = defenses.ConjMask(r=R_TEST if kind == "topr" else R_TRAIN, score=TEST_SCORE[arm])
    return mask.transform(model, seed=SEED), kind


res = {
    a: {} for a in ARMS
}  # res[arm][seed] = {"clean": bool (N_TEST,), eps: {attack: bool (N_ATK,)}, "large": bool (N_ATK,)}
transfer_adv = {}  # (surrogate arm, seed, eps) -> adversarial images (crafted once, reused)
for s in SEEDS:
    for arm in ARMS:
        model = nets[s][arm]
        dfn, kind = deployed(arm, model)
        clean = training.evaluate(model, x_te, y_te, input_transform=dfn)
        out = {"clean": clean}
        ok = clean[atk_idx]  # attack only the clean-correct images of the attacked subset
        for e_int, eps in zip(EPS_RUN, EPS):
            suite = defenses.attack_suite(
                eps=eps,
                steps=PGD_STEPS,
                restarts=RESTARTS,
                defence=dfn,
                defence_kind=kind,
                eot=EOT,
                bpda=attacks.straight_through(dfn) if kind == "topr" else None,
                seed=SEED + s,
            )
            r = defenses.run_suite(model, x_at, y_at, suite, eval_transform=dfn, only=ok, desc=f"{arm} eps{e_int}")
            key = (SURROGATE[arm], s, e_int)
            if key not in transfer_adv:
                sur = nets[s][SURROGATE[arm]]
                atk = attacks.PGD(eps=eps, step=2.5 * eps / PGD_STEPS[0], steps=PGD_STEPS[0], seed=SEED + s)
                transfer_adv[key] = torch.cat(
                    [atk(sur, x_at[i : i + 256], y_at[i : i + 256]) for i in range(0, N_ATK, 256)]
                )
            r["transfer"] = defenses.transfer_correct(model, transfer_adv[key], y_at, eval_transform=dfn, only=ok)
            out[e_int] = r
        big = defenses.attack_suite(
            eps=EPS_LARGE / 255,
            steps=PGD_STEPS[:1],
            restarts=1,
            defence=dfn,
            defence_kind=kind,
            eot=EOT,
            bpda=attacks.straight_through(dfn) if kind == "topr" else None,
            seed=SEED + s,
        )
        big = {k: v for k, v in big.items() if k.startswith("pgd") and "unaware" not in k and "noeot" not in k}
        out["large"] = torch.stack(
            list(defenses.run_suite(model, x_at, y_at, big, eval_transform=dfn, only=ok, desc=f"{arm} large").values())
        ).all(0)
        res[arm][s] = out


def worst(arm, s, e_int, exclude=()):
    """Per-image robust correctness under every attack of (arm, seed, eps) except ``exclude``."""
    return torch.stack([v for k, v in res[arm][s][e_int].items() if k not in exclude]).all(0)


def naive_name(arm):
    return f"pgd{PGD_STEPS[0]}-unaware" if arm in TEST_DEFENCE else f"pgd{PGD_STEPS[0]}"


def per_seed(fn):
    """(N, S) stack over seeds of a per-image (N,) quantity fn(seed)."""
    return torch.stack([fn(s).float() for s in SEEDS], 1)


# per-image, per-seed headline: worst-case robust correctness averaged over eps (N_ATK, S)
headline = {a: per_seed(lambda s: torch.stack([worst(a, s, e).float() for e in EPS_RUN]).mean(0)) for a in ARMS}
naive = {
    a: per_seed(lambda s: torch.stack([res[a][s][e][naive_name(a)].float() for e in EPS_RUN]).mean(0)) for a in ARMS
}
# intervals: two-level bootstrap over test images and training seeds (metrics.image_seed_bootstrap)
sib = lambda v: metrics.image_seed_bootstrap(v.numpy(), seed=SEED)  # noqa: E731
clean_acc = {a: sib(per_seed(lambda s: res[a][s]["clean"])) for a in ARMS}  # all N_TEST images
clean_atk = {a: float(per_seed(lambda s: res[a][s]["clean"][atk_idx]).mean()) for a in ARMS}  # attacked subset
table = {}
print(f"{'arm':9s} {'clean':>6s}  " + "  ".join(f"{'eps=' + str(e) + '/255 worst':>18s}" for e in EPS_RUN))
for a in ARMS:
    table[a] = {e: sib(per_seed(lambda s: worst(a, s, e))) for e in EPS_RUN}
    print(f"{a:9s} {clean_acc[a]['value']:6.3f}  " + "  ".join(f"{metrics.fmt(table[a][e]):>18s}" for e in EPS_RUN))
print("\nper attack (seed-pooled robust accuracy):")
for a in ARMS:
    for e in EPS_RUN:
        names = list(res[a][SEEDS[0]][e])
        accs = {n: float(torch.cat([res[a][s][e][n] for s in SEEDS]).float().mean()) for n in names}
        print(f"  {a:9s} eps {e}/255: " + ", ".join(f"{n} {v:.3f}" for n, v in accs.items()))

# %% [markdown]
# ## NUP quantities per arm
# The probe (correlation of x and ∇ₓℓ across the 3072 components, true label, one backward), the gradient
# spread, and Δx·Δp from notebook 01's estimator (`nup_utils.uncertainty`) on a small box around each image,
# state ρ ∝ e^{-ℓ} (P2's loss-induced state). Measured on the bare model (the probe is a property of the network).

# %%
nup = {a: {} for a in ARMS}
for a in ARMS:
    prs = [defenses.probe(nets[s][a], x_at, y_at) for s in SEEDS]
    unc = [
        defenses.local_uncertainty(
            nets[s][a], x_at[:N_UNC], y_at[:N_UNC], radius=UNC_RADIUS, n_samples=UNC_SAMPLES, seed=SEED + s
        )
        for s in SEEDS
    ]
    nup[a]["corr"] = torch.stack([p["corr"] for p in prs]).mean(0)  # (N,) seed-averaged
    nup[a]["grad_rms"] = torch.stack([p["grad_rms"] for p in prs]).mean(0)
    nup[a]["product"] = torch.stack([u["product"] for u in unc]).mean(0)  # (N_UNC,)
    nup[a]["ess"] = torch.stack([u["ess"] for u in unc]).mean(0)
    print(
        f"{a:9s} probe corr median {float(nup[a]['corr'].median()):+.4f}  grad RMS median "
        f"{float(nup[a]['grad_rms'].median()):.3e}  mean dx*dp {float(nup[a]['product'].mean()):.3e} "
        f"(ESS {float(nup[a]['ess'].mean()):.1f} of {UNC_SAMPLES})"
    )

# %% [markdown]
# ## Claims (rules declared at the top, `RULES`)

# %%
N = N_ATK
boot = lambda v: metrics.bootstrap_ci(v.numpy(), seed=SEED)  # noqa: E731


regime = (
    f"standard arm clean accuracy {100 * clean_acc['standard']['value']:.1f}% vs the paper's "
    f"{paper.get('p2_cifar_clean')['value']}% (setting unknown); ResNet-18 width {WIDTH}, "
    f"{N_TRAIN - N_VAL} training images, {EPOCHS} epochs; {N_ATK} attacked images; PGD-{PGD_STEPS[-1]}, "
    f"{RESTARTS} restart(s), EOT {EOT}"
)


def method_claim(cid, arm, statement):
    m = {
        "robust_gain": sib(headline[arm] - headline["standard"]),  # paired per image and seed
        "robust_gain_unaware": sib(naive[arm] - naive["standard"]),
        "masking_gap": sib(naive[arm] - headline[arm]),  # same arm: unaware minus worst case
        "random_mask_gain": sib(headline["random"] - headline["standard"]),
        "robust": sib(headline[arm]),
        "robust_standard": sib(headline["standard"]),
        "clean": clean_acc[arm],
        "clean_standard": clean_acc["standard"],
    }
    if N_SEEDS >= 2:
        seed_rob = lambda a: [float(torch.stack([worst(a, s, e).float() for e in EPS_RUN]).mean()) for s in SEEDS]  # noqa: E731
        m["robust_gain_seeds"] = metrics.paired_diff(seed_rob(arm), seed_rob("standard"))
    return results.claim(
        cid,
        statement,
        RULES[cid],
        m,
        profile=P,
        headline="robust_gain",
        regime=regime,
        protocol=f"worst case over FGSM, PGD-{PGD_STEPS}, adaptive variants and transfer; eps {EPS_RUN}/255",
    )


claims = [
    method_claim(
        "conjmask-robustness", "conjmask", "ConjMask (train + test) improves robustness without adversarial training"
    ),
    method_claim(
        "logitreg-robustness", "logitreg", f"LogitReg ({LOGIT_KEY}) improves robustness without adversarial training"
    ),
    method_claim("both-robustness", "both", "ConjMask + LogitReg improves robustness without adversarial training"),
]

p_clean = paper.get("p2_cifar_clean")["value"] / 100
ca = clean_acc["conjmask"]
gap = {
    **ca,
    "value": ca["value"] - p_clean,
    "ci95": [ca["ci95"][0] - p_clean, ca["ci95"][1] - p_clean],
    "method": "clean accuracy minus the paper's; " + ca["method"],
}
claims.append(
    results.claim(
        "conjmask-clean-accuracy",
        f"CIFAR-10 clean accuracy of a ConjMask model is {paper.fmt('p2_cifar_clean')} (setting unknown)",
        RULES["conjmask-clean-accuracy"],
        {"clean_minus_paper": gap, "clean_conjmask": ca, "clean_standard": clean_acc["standard"]},
        profile=P,
        headline="clean_conjmask",
        paper_keys=("p2_cifar_clean",),
        regime=regime,
    )
)

med_corr = np.array([float(nup[a]["corr"].median()) for a in ARMS])
rob = np.array([float(headline[a].mean()) for a in ARMS])
rho, p_rho = defenses.spearman(med_corr, rob)


def rho_of(i):  # Spearman rho across arms of (median coupling, robust accuracy) on resampled images i
    i = torch.as_tensor(i)
    rb = [float(headline[a][i].mean()) for a in ARMS]
    mc = [float(nup[a]["corr"][i].median()) for a in ARMS]
    return defenses.spearman(mc, rb)[0] if len(set(rb)) > 1 and len(set(mc)) > 1 else 0.0


rho_m = metrics.index_bootstrap_ci(
    rho_of, N, n_boot=200, seed=SEED, method="spearman, bootstrap over images", p_value=p_rho
)
rho_m["n"] = len(ARMS)
claims.append(
    results.claim(
        "coupling-predicts-robustness",
        "Higher input-gradient coupling goes with lower robustness across arms",
        RULES["coupling-predicts-robustness"],
        {"spearman_rho": rho_m, **{f"probe_corr_{a}": boot(nup[a]["corr"]) for a in ARMS}},
        profile=P,
        headline="spearman_rho",
        regime=regime,
    )
)
print(f"coupling: rho = {rho:+.3f} [{rho_m['ci95'][0]:+.3f}, {rho_m['ci95'][1]:+.3f}], exact p = {p_rho:.3f}")
for c in claims:
    h = c["metrics"][c["headline"]]
    print(
        f"{c['id']:30s} {c['headline']} = {h['value']:+.4f} [{h['ci95'][0]:+.4f}, {h['ci95'][1]:+.4f}]  "
        f"-> {c['verdict']} ({c['reason']})"
    )
    if "masking_gap" in c["metrics"]:
        print(
            f"{'':30s} masking gap (unaware − worst, same arm) {metrics.fmt(c['metrics']['masking_gap'], 100)} pts; "
            f"random-mask control gain {metrics.fmt(c['metrics']['random_mask_gain'], 100)} pts"
        )
print(
    f"paper's clean accuracy: {paper.fmt('p2_cifar_clean')}; ours (ConjMask) {metrics.fmt(ca, 100)} %, "
    f"standard {metrics.fmt(clean_acc['standard'], 100)} %"
)

# %% [markdown]
# ## Sanity checks of the evaluation (asserted below)

# %%
tol = max(SANITY_TOL, 2 / N)
k20, k50 = (f"pgd{k}" for k in PGD_STEPS)
sanity = {"monotone_eps": [], "large_eps_zero": [], "more_steps": [], "transfer_weaker": []}
for a in ARMS:
    for s in SEEDS:
        w = [float(worst(a, s, e).float().mean()) for e in EPS_RUN]
        sanity["monotone_eps"].append((a, s, all(w[i + 1] <= w[i] + tol for i in range(len(w) - 1))))
        sanity["large_eps_zero"].append((a, s, float(res[a][s]["large"].float().mean()) <= 0.05))
        for e in EPS_RUN:
            r = {k: float(v.float().mean()) for k, v in res[a][s][e].items()}
            sanity["more_steps"].append((a, s, r[k50] <= r[k20] + tol))
            white = min(v for k, v in r.items() if k != "transfer")
            sanity["transfer_weaker"].append((a, s, r["transfer"] >= white - tol))
for k, v in sanity.items():
    bad = [(a, s) for a, s, ok in v if not ok]
    print(f"{k:16s} {'ok' if not bad else 'FAILED for ' + str(bad)}")
large = {a: float(torch.cat([res[a][s]["large"] for s in SEEDS]).float().mean()) for a in ARMS}
print("robust accuracy at eps", EPS_LARGE, "/255:", {a: round(v, 3) for a, v in large.items()})

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for a in ARMS:
    lo_hi = np.array([table[a][e]["ci95"] for e in EPS_RUN])
    vals = np.array([table[a][e]["value"] for e in EPS_RUN])
    lo_hi = np.stack([np.minimum(lo_hi[:, 0], vals), np.maximum(lo_hi[:, 1], vals)], 1)  # float round-off
    eb = axes[0].errorbar(EPS_RUN, vals, yerr=[vals - lo_hi[:, 0], lo_hi[:, 1] - vals], marker="o", capsize=3, label=a)
    nv = [float(torch.cat([res[a][s][e][naive_name(a)] for s in SEEDS]).float().mean()) for e in EPS_RUN]
    if a in TEST_DEFENCE:
        axes[0].plot(EPS_RUN, nv, ls=":", marker="x", color=eb[0].get_color(), label=f"{a} (unaware attack)")
axes[0].set(xlabel="ε (1/255)", ylabel="robust accuracy", title="worst case over all attacks (solid)")
axes[0].legend(fontsize=7)
xs_ = [float(nup[a]["corr"].median()) for a in ARMS]
axes[1].scatter(xs_, rob)
for a, xv, yv in zip(ARMS, xs_, rob):
    axes[1].annotate(a, (xv, yv), fontsize=8)
axes[1].set(
    xlabel="median probe corr(x, ∇ₓℓ)",
    ylabel="headline robustness (mean over ε)",
    title=f"coupling vs robustness (Spearman ρ={rho:+.2f})",
)
_ = plotting.savefig(fig, "04-robustness")
plt.show()

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].boxplot([nup[a]["corr"].numpy() for a in ARMS], showfliers=False)
axes[0].set(title="probe: corr(x, ∇ₓℓ) per image", xticks=range(1, len(ARMS) + 1))
axes[0].set_xticklabels(ARMS, rotation=30)
axes[1].boxplot([np.log10(nup[a]["grad_rms"].numpy() + 1e-30) for a in ARMS], showfliers=False)
axes[1].set(title="gradient spread log10 RMS(∇ₓℓ)", xticks=range(1, len(ARMS) + 1))
axes[1].set_xticklabels(ARMS, rotation=30)
axes[2].boxplot([np.log10(nup[a]["product"].numpy() + 1e-30) for a in ARMS], showfliers=False)
axes[2].set(title="log10 mean Δx·Δp (local box)", xticks=range(1, len(ARMS) + 1))
axes[2].set_xticklabels(ARMS, rotation=30)
_ = plotting.savefig(fig, "04-nup-quantities")
plt.show()

# %% [markdown]
# ## Results file

# %%
timer.__exit__(None, None, None)
extra = {
    "selection": {
        "standard_val_clean": selection["standard_val_clean"],
        "r_test": {str(k): v for k, v in selection["r_test"].items()},
        "logitreg": selection["logitreg"],
        "chosen_r_test": R_TEST,
        "chosen_logitreg": LOGIT_KEY,
    },
    "robust_worst": {a: {str(e): table[a][e] for e in EPS_RUN} for a in ARMS},
    "robust_per_attack": {
        a: {
            str(e): {k: float(torch.cat([res[a][s][e][k] for s in SEEDS]).float().mean()) for k in res[a][SEEDS[0]][e]}
            for e in EPS_RUN
        }
        for a in ARMS
    },
    "clean": clean_acc,
    "robust_large_eps": large,
    "nup": {
        a: {
            "probe_corr": boot(nup[a]["corr"]),
            "grad_rms_median": float(nup[a]["grad_rms"].median()),
            "dxdp_mean": boot(nup[a]["product"]),
            "ess_mean": float(nup[a]["ess"].mean()),
        }
        for a in ARMS
    },
    "sanity": {k: all(ok for *_, ok in v) for k, v in sanity.items()},
}
params = dict(
    PROFILE=P,
    SEED=SEED,
    WIDTH=WIDTH,
    N_TRAIN=N_TRAIN,
    N_VAL=N_VAL,
    N_TEST=N_TEST,
    EPOCHS=EPOCHS,
    AT_EPOCHS=AT_EPOCHS,
    AT_STEPS=AT_STEPS,
    AT_EPS=AT_EPS,
    SEEDS=SEEDS,
    P_MASK=P_MASK,
    R_TRAIN=R_TRAIN,
    R_TEST_GRID=R_TEST_GRID,
    LAMBDA_GRID=LAMBDA_GRID,
    LOGIT_KINDS=LOGIT_KINDS,
    EPS_LIST=EPS_LIST,
    EPS_RUN=EPS_RUN,
    N_ATK=N_ATK,
    SCHEDULE=SCHEDULE,
    EPS_LARGE=EPS_LARGE,
    PGD_STEPS=PGD_STEPS,
    RESTARTS=RESTARTS,
    EOT=EOT,
    LR=LR,
    BATCH=BATCH,
    SEL_EPS=SEL_EPS,
    SEL_STEPS=SEL_STEPS,
    N_SEL=N_SEL,
    UNC_RADIUS=UNC_RADIUS,
    UNC_SAMPLES=UNC_SAMPLES,
    N_UNC=N_UNC,
    conjmask_train=repr(conj_train),
    random_train=repr(rand_train),
)
path = results.write_results(
    "04-conjmask-logitreg",
    P,
    claims,
    params=params,
    data_source=DATA_SOURCE,
    wall_time_s=timer.seconds,
    device=runtime.device_name(device),
    extra=extra,
    rules=RULES,
)
print(f"wrote {path}; wall time {timer.seconds:.0f}s")

# %% tags=["nbval-check-output"]
for k, v in sanity.items():
    if P == "smoke" and k == "large_eps_zero":
        continue  # smoke models are near-constant classifiers (one epoch on 60 images): they cannot be driven to 0
    assert all(ok for *_, ok in v), f"sanity check {k} failed: {[(a, s) for a, s, ok in v if not ok]}"
assert len(set(val_idx.tolist()) & set(tr_idx.tolist())) == 0, "validation overlaps training"
assert all(0 <= clean_acc[a]["value"] <= 1 for a in ARMS)
for a in ARMS:  # robust accuracy never exceeds clean accuracy of the deployed system
    assert all(table[a][e]["value"] <= clean_atk[a] + 1e-9 for e in EPS_RUN)
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
#   below the paper's; its verdict holds for this regime only.
# * r (test time) and λ were chosen on a validation split carved from the training subset (first seed only); the
#   logit-norm variant runs only in full/smoke. Quick attacks are PGD-10/PGD-20 with one restart and EOT over
#   2 masks, weaker than full's PGD-20/50 with 3 restarts and EOT 8; the adaptive variants (BPDA, no-EOT, unaware)
#   use the shorter PGD.
# * The PGD-AT anchor is a short fine-tune from the standard model (its steps and epochs are in the parameters above):
#   it shows that the evaluation can register real robustness, not what full adversarial training reaches.
# * Attacks are the project's PGD/FGSM with adaptive variants; AutoAttack and a gradient-free attack are not yet run
#   (issue #14), so the worst case is an upper bound on robustness.
# * The coupling claim is a rank correlation over seven arms; the "Goldilocks band" (a non-monotone relation) cannot be resolved with
#   so few points. Δx·Δp is estimated on a small box around each image with uniform samples (notebook 01's
#   estimator); on such a box ρ is close to uniform, so Δx is set by the box and Δp tracks the local gradient size.
