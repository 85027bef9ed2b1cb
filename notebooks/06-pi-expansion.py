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
# # 06 · π-expansion: do constant inputs speed up and sharpen 1-D function fitting?
#
# **Claim (P4).** Feeding an MLP `[π, π, x, π, π]` instead of `x` cuts full-batch LBFGS iterations and
# the final MSE on average over ten 1-D functions (by the percentages `p4_iter_reduction` and
# `p4_mse_reduction`, printed below); π beats other constants; 5-D is the best dimension. Source: `paper.P4` (printed below); the paper's numbers come from
# `nup_utils/paper.py` (keys `p4_*`, labelled *paper* or *summary*). What is known and unknown about
# the paper: [docs/papers.md](../docs/papers.md).
#
# This experiment is small enough to run at the paper's scale on a CPU, so the **full** profile is the
# whole grid (10 functions × 10 arms × 4 seeds, committed in `results/full/`); **quick** runs the same
# arms on 2 functions (a smooth one, F1, and a discontinuous one, F2) and 2 seeds: a check that the code and
# the committed numbers still agree, whose verdicts are underpowered by design (issue #17 cut quick from 4
# functions to 2 for CI time; the verdicts to read are full's).

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("06-pi-expansion")))

# %% [markdown]
# **Revised protocol and rules (issue #15, this version).** Earlier versions fitted in float32 with
# LBFGS *without* a line search and zero first-layer biases. Their verdicts were driven by how failed
# fits were scored, not by the method: a fit that blew up stopped early and counted as "fast", and was
# scored with the constant predictor's MSE, so MSE gains were mostly differences in failure rates; the
# fits were chaotic, so another CPU changed which fits failed. Now: a stable primary protocol (float64,
# strong-Wolfe line search, torch's default bias initialisation; **ours**), failures detected and
# counted as failures (never as fast or as a score), paired geometric-mean statistics over the pairs
# where both fits succeeded, and the paper-literal protocol kept as a labelled sensitivity result.
# The rules were re-declared for these metrics before this protocol's first run (previous rules:
# ratio-of-means reductions with a t-interval over seeds; "reproduced" when the interval excluded 0
# and reached the paper's value).
#
# | choice | value | label |
# |---|---|---|
# | targets | ten functions on [0, 2π] (sum of sines, square, sawtooth, triangle, AM, chirp, variable-duty square, F8, Weierstrass, comb) | summary |
# | exact formulas, F8, categories | shown below | ours (unknown in the paper) |
# | data | 1000 uniform random training x; 100 test x at the midpoints of 100 equal cells (no test point on a jump) | summary (midpoints: ours) |
# | model | in→100→100→50→50→1, tanh, Xavier-uniform weights | summary |
# | bias init | torch default U(±1/√fan_in) | ours (zero biases put every first-layer kink at x = 0) |
# | loss / optimizer | MSE; `torch.optim.LBFGS`, lr 1.0, max_iter 500, one `step`, full batch | summary |
# | line search, precision | strong Wolfe, float64 | ours (stable; the paper-literal float32 / none / zero-bias variant is a sensitivity arm) |
# | tolerances | 1e-10 on both `tolerance_grad` and `tolerance_change`; evaluation cap torch's 625 | ours (which one is unknown) |
# | failure | training loss at an accepted iterate ever > 10× its first value (with the line search: the final loss, since its trial points are not iterates), non-finite, or final MSE above the constant predictor's on train **or** test | ours |
# | speed | loss evaluations until the training fit first reaches R² = 0.99 (a fit that never does, or fails, counts at the cap); raw iterations beside it | ours (see below) |
# | arms | Std, Exp-3/5/7 (π), Adjusted (102/102/52/52), Exp-5 with e, 1, 0 | summary |
# | mixed constants `[0, 1, x, e, 0]`; Bias-ctrl | 1-D MLP with Exp-5's effective first-layer bias, scale s = √(1+Σc²) | ours |
# | pairing | same seed → same training points for every arm, same init for arms of one shape | ours |
# | uncertainty | paired log ratios over (function, seed) pairs where both fits succeeded, t-interval; failure rates with Wilson intervals | ours |
#
# **Why speed is not the raw iteration count.** The paper counts LBFGS iterations until its tolerance
# stops the run. With a line search in float64 almost no fit meets a 1e-10 tolerance within 500
# iterations (the share at the cap is printed below), so raw counts cannot differ between arms; we
# measure speed as evaluations to a fixed fit quality instead, and print raw iterations beside it.

# %%
import math

import matplotlib.pyplot as plt

from nup_utils import functions, paper, pi_expansion, piexp, plotting, results, runtime, verdicts

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | full | auto (full with CUDA, else quick)
SEED = 0  # first seed; seeds are SEED, SEED+1, ...
WORKERS = 0  # fit processes, one torch thread each (0: the cores available, smoke: 1)

# %%
profile = runtime.resolve_profile(PROFILE)
gen = runtime.seed_everything(SEED)
FUNCS = runtime.pick(profile, smoke=("F1", "F2"), quick=("F1", "F2"), full=functions.KEYS)  # quick: CI budget
SEEDS = tuple(range(SEED, SEED + runtime.pick(profile, smoke=2, quick=2, full=4)))
PROTO = runtime.pick(
    profile, smoke=piexp.protocol(n_train=64, n_test=16, max_iter=10), quick=piexp.protocol(), full=piexp.protocol()
)
LITERAL = {**PROTO, **piexp.PAPER_LITERAL}  # the sensitivity arm: float32, no line search, zero biases
NPROC = 1 if profile == "smoke" else (WORKERS or runtime.available_cores())
ARMS = tuple(piexp.ARMS)
timer = runtime.Timer.started()
print(paper.P4)
print("paper:", {k: paper.fmt(k) for k in ("p4_iter_reduction", "p4_mse_reduction")})
print(f"profile {profile}; functions {FUNCS}; seeds {SEEDS}; {len(ARMS)} arms; workers {NPROC}")
print("primary protocol:", PROTO)

# %% [markdown]
# ## Rules, declared before any fit
# Minimum effects are scale-free: a declared fraction of the paper's own effect (half of it counts as
# a partial reproduction, all of it as a full one). Speed and MSE reductions are 1 − geometric-mean
# ratio Exp-5/Std over successful pairs. "π beats other constants" needs every other constant's test
# MSE to be significantly higher than π's; "5-D is best" is read on speed, where the paper's own
# numbers rank 5-D first (its MSE ranks 7-D slightly ahead of 5-D). The two checks of the
# bias explanation are equivalence tests with margins well under the claimed effects: log 1.5 on
# MSE and log 1.1 on speed (the speed margin was 0.05 on raw iterations in the previous version;
# widened with the change of speed measure, declared before running it).

# %%
PAPER_ITER = paper.get("p4_iter_reduction")["value"] / 100  # 0.12
PAPER_MSE = paper.get("p4_mse_reduction")["value"] / 100  # 0.663
HALF = 0.5  # ours: half of the paper's effect is the smallest that counts
MSE_MARGIN, SPEED_MARGIN = math.log(1.5), math.log(1.1)
pct = dict(scale=100, unit="%")
speed = dict(full_effect=PAPER_ITER, label="speed-up (evaluations to R²=0.99)", **pct)
RULES = {
    "fewer-iterations": verdicts.Superiority("evals_reduction", min_effect=HALF * PAPER_ITER, **speed),
    "lower-mse": verdicts.Superiority(
        "mse_reduction", min_effect=HALF * PAPER_MSE, full_effect=PAPER_MSE, label="test-MSE reduction", **pct
    ),
    "pi-best-constant": verdicts.AllOf(
        tuple(verdicts.Direction(f"log_mse_{k}_vs_pi", "+", label=f"log MSE {k}/π") for k in piexp.OTHER_CONSTANTS),
        name="π beats every other constant",
    ),
    "five-d-best": verdicts.AllOf(
        tuple(verdicts.Direction(f"log_evals_{k}_vs_5", "+", label=f"log evals {k}-D/5-D") for k in (3, 7)),
        name="5-D fastest",
    ),
    "bias-control": verdicts.AllOf(
        (
            verdicts.Equivalence("log_mse_ctrl_vs_exp5", MSE_MARGIN),
            verdicts.Equivalence("log_evals_ctrl_vs_exp5", SPEED_MARGIN),
        ),
        name="Bias-ctrl equivalent to Exp-5",
    ),
    "zero-expansion-check": verdicts.AllOf(
        (
            verdicts.Equivalence("log_mse_zero_vs_std", MSE_MARGIN),
            verdicts.Equivalence("log_evals_zero_vs_std", SPEED_MARGIN),
        ),
        name="Exp-5 0 equivalent to Std",
    ),
}
for name, rule in RULES.items():
    print(f"{name:22s} {rule!r}")

# %% [markdown]
# ## The ten targets

# %%
display(Markdown(pi_expansion.targets_table()))
_ = plotting.savefig(pi_expansion.targets_figure(), "06-targets")
plt.show()

# %% [markdown]
# ## The arms, and two exact checks before any fit
# 1. An all-zero expansion is the 1-D function class: `[0, 0, x, 0, 0]` computes exactly what a 1-D
#    MLP with the x column computes. 2. Bias-ctrl computes the same function as Exp-5 at init.

# %%
n_params = pi_expansion.parameter_counts(SEED)
display(Markdown(pi_expansion.arms_table(n_params)))
zero_gap, ctrl_gap = piexp.exact_checks(SEED)
print(f"max |Exp-5 0 - 1-D| = {zero_gap:.2e};  max |Bias-ctrl - Exp-5| at init = {ctrl_gap:.2e}")

# %% [markdown]
# ## Fits: every (function, arm, seed), primary protocol
# Fits are cached by their full configuration (and the code) in the shared model cache.

# %%
records = piexp.run_grid(piexp.grid(FUNCS, ARMS, SEEDS, PROTO), workers=NPROC, desc="LBFGS fits")
summary = piexp.arm_summary(records, ARMS)
n_failed, n_cap = sum(s["failed"] for s in summary), sum(s["at_cap"] for s in summary)
print(
    f"{len(records)} fits; failed: {n_failed}; at an iteration or evaluation cap: {n_cap} ({n_cap / len(records):.0%})"
)
display(Markdown(pi_expansion.fits_table(summary)))

# %% [markdown]
# ## Claims

# %%
claims = pi_expansion.claims(records, summary, RULES, profile=profile, funcs=FUNCS, seeds=SEEDS)
print(pi_expansion.claim_lines(claims))

# %% [markdown]
# ## Sensitivity: the paper-literal protocol
# Std and Exp-5 re-fitted in float32, without a line search, with zero biases (torch's LBFGS
# defaults; the summary's settings). Descriptive only: no verdict rests on it.

# %%
literal = piexp.run_grid(piexp.grid(FUNCS, ("Std", "Exp-5"), SEEDS, LITERAL), workers=NPROC, desc="paper-literal fits")
sens, table = pi_expansion.sensitivity(literal, records)
if sens["not_computable"]:  # too few successful pairs: said, not hidden
    print("paper-literal log MSE ratio not computable:", sens["not_computable"])
display(Markdown(table))

# %% [markdown]
# ## Figures

# %%
fig = piexp.plot_summary(records, literal, ARMS, FUNCS)
_ = plotting.savefig(fig, f"06-summary-{profile}")
plt.show()

# %% [markdown]
# ## Explore: pick a function, an arm and a seed
# The fit on the test points and the loss at every LBFGS evaluation (widgets; static when headless).

# %%
pi_expansion.explorer(records, FUNCS, ARMS, SEEDS, PROTO["n_test"])

# %% [markdown]
# ## Results

# %%
path = results.write_results(
    "06-pi-expansion",
    profile,
    claims,
    rules=RULES,
    params={
        "seeds": list(SEEDS),
        "functions": list(FUNCS),
        "arms": list(ARMS),
        "protocol": PROTO,
        "paper_literal": LITERAL,
        "workers": NPROC,
        "blowup_factor": piexp.BLOWUP,
    },
    data_source="synthetic: ten 1-D target functions (nup_utils.functions), no downloaded data",
    wall_time_s=timer.stop(),
    device=runtime.device_name("cpu"),
    extra=pi_expansion.extra(summary, n_params, records, literal, sens),
)
print(f"wrote {path.name}; wall time {timer.seconds:.0f} s")

# %% tags=["nbval-check-output"]
# Verdict. Invariants first (exact or structural), then one line per claim.
assert zero_gap < 1e-5, "an all-zero expansion must compute the 1-D function"
assert ctrl_gap < 1e-10, "Bias-ctrl must equal Exp-5 at init"
assert n_params["Adjusted"] == 18875 and n_params["Std"] == 17951 and n_params["Exp-5"] == 18351
assert len(records) == len(FUNCS) * len(ARMS) * len(SEEDS) and len(literal) == len(FUNCS) * 2 * len(SEEDS)
assert all(r["evals"] >= r["iters"] >= 1 and r["iters"] <= PROTO["max_iter"] for r in records)
assert all(r["failure"] in (None, *piexp.FAILURES) for r in records + literal)
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# * **Failures are counted, not scored.** A failed fit is reported per arm with its reason; the
#   paired statistics use only pairs where both fits succeeded, and how many pairs were left out is
#   in each metric's `dropped_pairs`. Under the paper-literal protocol (sensitivity table) failures are
#   frequent; under the primary protocol they are rare (counts above).
# * **Speed.** Under the primary protocol the share of fits that run to a cap is printed above; raw
#   iteration counts then say nothing about speed, which we measure as evaluations to R² = 0.99. This
#   is our operationalisation of "fewer iterations", not the paper's metric.
# * **The bias explanation.** Exactly: constants only re-parameterise the first-layer bias (the two
#   checks hold to rounding at init). Statistically, `bias-control` and `zero-expansion-check` test it
#   with equivalence margins declared above.
# * **Limits.** Function formulas, F8, the categories, the tolerances' roles, the bias init, the
#   precision and the line search are our choices; the paper's own protocol may differ in any of
#   them. Quick covers 2 functions × 2 seeds, so its intervals are wide; the full profile runs the
#   whole grid on a CPU. Timings are on a shared 2-core machine.
