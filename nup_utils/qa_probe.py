"""Notebook 05's main experiment: the prefill probe on a real pretrained LLM and the shipped QA benchmark.

Pipeline (all choices are made on the validation split of questions, reported on the test split):
  1. ``split``: questions into validation / test, stratified by category (seeded).
  2. ``run_model``: for every prompt wording, the probe (one forward, one backward per loss) with the
     decoding-free baselines from the same forward, and KV-cached greedy answers graded by
     ``llm_probe.grade`` (correct / wrong / unanswered; unanswered counts as an error, never dropped).
  3. ``analyze``: the wording with the best validation accuracy is the fixed wording; the probe variant
     (loss x statistic x pooling) and the best baseline are chosen by validation AUROC *within
     category*; test metrics pooled and within category / popularity; a "category alone" reference;
     prompt selection over wordings by the probe; the Goldilocks contrast; costs.

Hallucinated = 1 (the greedy answer is not correct). Within-category AUROC is the verdict's number
because accuracy differs several-fold between categories, so a score that only recognizes the
category would look predictive in the pooled AUROC.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import llm_probe, metrics, results

# Prompt wordings ({q} = the question); drafted (ours) by looking at the *format* of a handful of
# answers, never at accuracy. Which one is the fixed wording is chosen on validation questions.
WORDINGS = {
    "plain": "{q}",
    "answer-only": "{q} Reply with the answer only.",
    "few-words": "Answer in a few words. {q}",
    "one-line": "{q} Give a one-line answer.",
}
GRADES = ("correct", "wrong", "unanswered")


def split(questions: list[dict], *, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices, test indices), stratified by ``category`` (a missing category is one group)."""
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac={val_frac!r}; allowed values: 0 < val_frac < 1")
    rng = np.random.default_rng(seed)
    cats = np.array([q.get("category", "-") for q in questions])
    val = []
    for c in sorted(set(cats)):
        idx = rng.permutation(np.flatnonzero(cats == c))
        val.extend(idx[: int(round(val_frac * idx.size))].tolist())
    val = np.array(sorted(val), int)
    return val, np.setdiff1d(np.arange(len(questions)), val)


def run_model(
    lm,
    questions: list[dict],
    wordings: dict[str, str],
    *,
    losses: tuple[str, ...] = llm_probe.LOSSES,
    max_new_tokens: int,
    probe_batch: int = 16,
    decode_batch: int = 64,
    n_cost: int = 0,
) -> dict:
    """Probe scores (for ``losses``), baselines and graded greedy answers for every question x wording.

    Returns ``risk`` {score name: (Q, W)} (higher = riskier; directions fixed a priori in
    ``llm_probe.risk_scores``), ``grade`` (Q, W) of GRADES, ``answers`` (Q, W), ``truncated`` (Q, W)
    (hit ``max_new_tokens`` before EOS), ``prompt_tokens`` (Q, W), ``category`` / ``popularity`` (Q,)
    and ``cost`` (seconds per prompt; with ``n_cost`` > 0 also a forward-only pass on that many prompts)."""
    if not questions or not wordings:
        raise ValueError("questions and wordings must be non-empty")
    missing = [q.get("id", i) for i, q in enumerate(questions) if not {"question", "answers"} <= set(q)]
    if missing:
        raise ValueError(f"questions without 'question' or 'answers': {missing[:5]}")
    chat = lm.formatter().chat
    encode = llm_probe.hf_encoder(lm.tokenizer, add_special_tokens=not chat)
    probe = llm_probe.PrefillProbe(lm.model, encode, loss=tuple(losses), batch_size=probe_batch)
    Q, W = len(questions), len(wordings)
    risk, cost = {}, {"probe": [], "decode": []}
    grade, answers = np.empty((Q, W), object), np.empty((Q, W), object)
    truncated, prompt_tokens = np.zeros((Q, W), bool), np.zeros((Q, W), int)
    for w, (name, wording) in enumerate(wordings.items()):
        fmt = lm.formatter(wording)
        prompts = [fmt(q["question"]) for q in questions]
        prompt_tokens[:, w] = [len(x) for x in lm.tokenizer(prompts, add_special_tokens=not chat)["input_ids"]]
        order = np.argsort(prompt_tokens[:, w], kind="stable")  # batches of similar length: less padding
        sc = probe.score([prompts[i] for i in order], desc=f"probe {name}")
        for k, v in llm_probe.risk_scores(sc).items():
            risk.setdefault(k, np.zeros((Q, W)))[order, w] = v
        dec = llm_probe.greedy_decode(
            lm.model,
            lm.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=decode_batch,
            add_special_tokens=not chat,
            desc=f"decode {name}",
        )
        answers[:, w] = dec["answers"]
        truncated[:, w] = dec["n_new_tokens"] >= max_new_tokens
        grade[:, w] = [llm_probe.grade(a, q["answers"], q["question"]) for a, q in zip(dec["answers"], questions)]
        cost["probe"].append(sc["sec_per_prompt"])
        cost["decode"].append(dec["sec_per_prompt"])
    probe_s = float(np.mean(cost["probe"]))
    out_cost = {
        "probe_sec_per_prompt": probe_s,
        "probe_sec_per_prompt_per_loss": probe_s / len(probe.losses),
        "greedy_decode_sec_per_prompt": float(np.mean(cost["decode"])),
        "max_new_tokens": max_new_tokens,
        "threads": torch.get_num_threads(),
    }
    if n_cost:  # forward alone, same batching as the probe, on the first n_cost prompts of the last wording
        sub = sorted(prompts[:n_cost], key=len)
        t0 = time.perf_counter()
        probe.score(sub, with_grad=False, desc="forward only")
        out_cost["forward_sec_per_prompt"] = (time.perf_counter() - t0) / len(sub)
    return {
        "wordings": list(wordings),
        "losses": list(probe.losses),
        "risk": risk,
        "grade": grade,
        "answers": answers,
        "truncated": truncated,
        "prompt_tokens": prompt_tokens,
        "category": np.array([q.get("category", "-") for q in questions]),
        "popularity": np.array([q.get("popularity", 0) for q in questions]),
        "probe": repr(probe),
        "cost": out_cost,
    }


def _pick(candidates: list[str], key) -> str:
    """The candidate with the highest key (the first on ties: the order is fixed before any number)."""
    return max(candidates, key=lambda c: (key(c), -candidates.index(c)))


def choose(val_run: dict) -> dict:
    """Choices on the validation questions: the fixed wording (best accuracy), then under it the probe
    variant and the best baseline (highest AUROC within category), and each category's error rate (the
    "category alone" reference score)."""
    correct = val_run["grade"] == "correct"  # (Q, W)
    acc = correct.mean(0)
    w = int(np.argmax(acc))
    err, cats = (~correct[:, w]).astype(int), val_run["category"]

    def auc(k):
        try:
            return metrics.within_group_auroc_value(err, val_run["risk"][k][:, w], cats)
        except ValueError:  # no category with both classes: this score cannot be chosen
            return -np.inf

    probes = [k for k in val_run["risk"] if k.count("/") == 2]
    val_auc = {k: auc(k) for k in [*probes, *llm_probe.BASELINES]}
    variant = _pick(probes, val_auc.get)
    return {
        "wording": val_run["wordings"][w],
        "variant": variant,
        "loss": variant.split("/")[0],
        "baseline": _pick(list(llm_probe.BASELINES), val_auc.get),
        "val_accuracy": {name: float(a) for name, a in zip(val_run["wordings"], acc)},
        "val_auroc_within_category": {k: float(v) if np.isfinite(v) else None for k, v in val_auc.items()},
        "category_error": {c: float(err[cats == c].mean()) for c in sorted(set(cats.tolist()))},
        "overall_error": float(err.mean()),
        "n_val": int(err.size),
    }


def analyze(run: dict, choice: dict, *, n_boot: int, seed: int = 0) -> dict:
    """Test-split numbers for the choices made on validation. See the module docstring."""
    correct = run["grade"] == "correct"  # (Q, W)
    words = run["wordings"]
    w = words.index(choice["wording"])
    y, g, p = (~correct[:, w]).astype(int), run["category"], run["popularity"]
    variant, baseline = choice["variant"], choice["baseline"]
    scores = {k: v[:, w] for k, v in run["risk"].items()}
    scores["category_alone"] = np.array([choice["category_error"].get(c, choice["overall_error"]) for c in g])
    det = {}
    for k, s in scores.items():
        d = llm_probe.detection_metrics(y, s, n_boot=n_boot, seed=seed) or {}
        for name, grp in (("auroc_within_category", g), ("auroc_within_popularity", p)):
            if k == "category_alone" and name == "auroc_within_category":
                continue  # constant within a category: 0.5 by construction
            try:
                d[name] = metrics.within_group_auroc(y, s, grp, n_boot=n_boot, seed=seed)
            except ValueError:
                d[name] = None
        det[k] = d
    try:
        diff = metrics.within_group_auroc(y, scores[variant], g, minus=scores[baseline], n_boot=n_boot, seed=seed)
    except ValueError as e:  # no category with both classes (e.g. a model that answers nothing right)
        diff = undefined(-1.0, 1.0, str(e))
    # prompt selection: per question the wording of lowest probe risk, against the fixed wording
    pick = llm_probe.select_template(run["risk"][variant])  # (Q,)
    chosen, fixed = correct[np.arange(y.size), pick].astype(float), correct[:, w].astype(float)
    sel = {
        "accuracy_probe_choice": metrics.accuracy(chosen),
        "accuracy_fixed_wording": metrics.accuracy(fixed),
        "accuracy_random_wording": metrics.bootstrap_ci(correct.mean(1), n_boot=n_boot, seed=seed),
        "accuracy_oracle_any_wording": metrics.accuracy(correct.any(1)),
        "accuracy_gain_vs_fixed": metrics.bootstrap_ci(chosen - fixed, n_boot=n_boot, seed=seed),
    }
    coupling = -scores[variant]
    try:
        gold = llm_probe.goldilocks_contrast(coupling, y, n_boot=n_boot, seed=seed)
    except ValueError as e:
        gold = {k: undefined(-1.0, 1.0, str(e)) for k in ("low_minus_mid", "high_minus_mid")}
    return {
        "n_test": int(y.size),
        "test_accuracy": metrics.accuracy(1 - y),
        "detection": det,
        "probe_minus_baseline_within_category": diff,
        "selection": sel,
        "choice_share": {words[j]: float(np.mean(pick == j)) for j in range(len(words))},
        "goldilocks": gold,
        "deciles": llm_probe.error_by_quantile(coupling, y)["bins"],
        "grades": grade_counts(run),
        "per_category": {
            c: {"n": int((g == c).sum()), "accuracy": float(1 - y[g == c].mean())} for c in sorted(set(g.tolist()))
        },
    }


def grade_counts(run: dict) -> dict:
    """Per wording: how many answers were correct / wrong / unanswered / truncated, mean prompt length."""
    return {
        name: {
            **{k: int(np.sum(run["grade"][:, j] == k)) for k in GRADES},
            "truncated": int(run["truncated"][:, j].sum()),
            "mean_prompt_tokens": float(run["prompt_tokens"][:, j].mean()),
        }
        for j, name in enumerate(run["wordings"])
    }


def detection_table(res: dict) -> str:
    """Markdown: per score, test AUROC pooled / within category / within popularity, AUPRC, PRR."""
    from .report import fmt_metric, md_table

    cols = ("auroc", "auroc_within_category", "auroc_within_popularity", "auprc", "prr")
    header = ("risk score", "AUROC pooled", "AUROC within category", "AUROC within popularity", "AUPRC", "PRR")
    rows = [[f"`{k}`", *(fmt_metric(d[c]) if d.get(c) else "–" for c in cols)] for k, d in res["detection"].items()]
    return md_table(header, rows)


def category_table(res: dict) -> str:
    """Markdown: test questions and accuracy per category (fixed wording)."""
    from .report import md_table

    return md_table(
        ("category", "test questions", "accuracy"),
        [[c, d["n"], f"{d['accuracy']:.3f}"] for c, d in res["per_category"].items()],
    )


def undefined(lo: float, hi: float, why: str) -> dict:
    """A metric that could not be computed: its interval is every value it can take, so every rule
    returns inconclusive (never dropped, never a pass)."""
    return metrics.metric((lo + hi) / 2, lo, hi, 0, f"undefined ({why}): interval = every possible value")


def claim_metrics(res: dict, choice: dict) -> dict[str, dict]:
    """The metrics each of notebook 05's four rules reads, for the real model, by claim id."""
    det = res["detection"]
    none = undefined(0.0, 1.0, "one class only among the test answers")
    within = det[choice["variant"]].get("auroc_within_category") or none
    base = det[choice["baseline"]].get("auroc_within_category")
    sel = res["selection"]
    return {
        "probe-flags-hallucination": {
            "probe_auroc_minus_half": metrics.shifted(within, -0.5, "AUROC within category - 0.5"),
            "probe_auroc_within_category": within,
            "probe_auroc_pooled": det[choice["variant"]].get("auroc") or none,
            "category_alone_auroc_pooled": det["category_alone"].get("auroc") or none,
        },
        "probe-beats-baselines": {
            "auroc_probe_minus_best_baseline": res["probe_minus_baseline_within_category"],
            **({"best_baseline_auroc_within_category": base} if base else {}),
        },
        "prompt-selection": {k: v for k, v in sel.items()},
        "goldilocks-band": res["goldilocks"],
    }


def plot(res: dict, choice: dict):
    """Figure: test AUROC within category per risk score (left); error rate by coupling decile of the
    chosen probe variant (right). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from .plotting import errorbar_points

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    keys = [k for k, d in res["detection"].items() if d.get("auroc_within_category")]
    ms = [res["detection"][k]["auroc_within_category"] for k in keys]
    errorbar_points(ax[0], keys, [m["value"] for m in ms], [m["ci95"][0] for m in ms], [m["ci95"][1] for m in ms])
    ax[0].axhline(0.5, color="grey", ls=":")
    ax[0].set_ylabel("test AUROC within category (95% CI)")
    ax[0].tick_params(axis="x", labelsize=7)
    ax[0].set_title(f"fixed wording {choice['wording']!r}", fontsize=9)
    d = res["deciles"]
    errorbar_points(
        ax[1],
        [str(b["bin"] + 1) for b in d],
        [b["error"] for b in d],
        [b["ci95"][0] for b in d],
        [b["ci95"][1] for b in d],
    )
    ax[1].set_xlabel(f"coupling decile of {choice['variant']} (1 = weakest)")
    ax[1].set_ylabel("error rate (Wilson 95% CI)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebook 05: the experiment
def experiment(
    lm,
    questions: list[dict],
    wordings: dict,
    *,
    val_frac: float,
    seed: int,
    max_new_tokens: int,
    n_boot: int,
    n_cost: int = 64,
) -> dict:
    """Split, run every wording on the validation questions (both probe losses), choose there, run the test
    questions with the chosen loss only, and analyze. Returns the split indices, both runs, the choice,
    the test analysis and printable lines."""
    val_idx, test_idx = split(questions, val_frac=val_frac, seed=seed)
    val_run = run_model(lm, [questions[i] for i in val_idx], wordings, max_new_tokens=max_new_tokens)
    choice = choose(val_run)
    test_run = run_model(
        lm,
        [questions[i] for i in test_idx],
        wordings,
        losses=(choice["loss"],),
        max_new_tokens=max_new_tokens,
        n_cost=n_cost,
    )
    res = analyze(test_run, choice, n_boot=n_boot, seed=seed)
    lines = [
        f"model: {lm.info}",
        f"{len(val_idx)} validation / {len(test_idx)} test questions; wordings {list(wordings)}",
        f"validation accuracy per wording: {choice['val_accuracy']} -> fixed wording {choice['wording']!r}",
        f"chosen on validation: probe {choice['variant']}, baseline {choice['baseline']}",
        f"test accuracy (fixed wording): {metrics.fmt(res['test_accuracy'], 100)} %; "
        f"answers per wording: {res['grades']}",
    ]
    return dict(
        val_idx=val_idx,
        test_idx=test_idx,
        val_run=val_run,
        test_run=test_run,
        choice=choice,
        res=res,
        lines="\n".join(lines),
    )


# ---------------------------------------------------------------- notebook 05: claims, summaries, limits
STATEMENTS = {
    "probe-flags-hallucination": "Weak prefill prompt-gradient coupling flags hallucination (test AUROC > 0.5)",
    "probe-beats-baselines": "The probe beats the best decoding-free baseline from the same forward pass (our test)",
    "prompt-selection": "Choosing the paraphrase by probe score raises accuracy over a fixed one",
    "goldilocks-band": "Goldilocks band: error is lowest at middle coupling, higher at both extremes",
}
HEADLINES = {
    "probe-flags-hallucination": "probe_auroc_within_category",
    "probe-beats-baselines": "auroc_probe_minus_best_baseline",
    "prompt-selection": "accuracy_gain_vs_fixed",
    "goldilocks-band": "low_minus_mid",
}


def claims(res: dict, choice: dict, info: dict, rules: dict, *, profile: str, n_questions: int) -> list[dict]:
    """The four real-model claims, decided by the declared ``rules``; ``info`` is the loaded model's record."""
    protocol = (
        f"{info['name']}, greedy answers, wording {choice['wording']!r}, probe {choice['variant']} and baseline "
        f"{choice['baseline']} chosen on {choice['n_val']} validation questions; AUROC within category"
    )
    regime = (
        f"{info['name']} ({info['n_params'] / 1e6:.0f}M parameters, {info['dtype']}) on our {n_questions}-question "
        f"closed-book benchmark, test accuracy {res['test_accuracy']['value']:.1%} over {res['n_test']} questions; "
        "the paper's LLMs, labels and 500-prompt benchmark are unknown"
    )
    m = claim_metrics(res, choice)
    return [
        results.claim(
            k,
            f"{STATEMENTS[k]} — {info['name']}",
            rules[k],
            m[k],
            profile=profile,
            headline=HEADLINES[k],
            paper_keys=("p2_auroc",) if k == "probe-flags-hallucination" else (),
            protocol=protocol,
            regime=regime,
        )
        for k in STATEMENTS
    ]


def cost_line(c: dict) -> str:
    """Probe, forward and greedy-answer time per prompt (a run's ``cost``) and their ratios."""
    probe, fwd, greedy = c["probe_sec_per_prompt"], c["forward_sec_per_prompt"], c["greedy_decode_sec_per_prompt"]
    return (
        f"cost per prompt on this CPU ({c['threads']} threads): probe {probe * 1e3:.0f} ms, "
        f"forward {fwd * 1e3:.0f} ms, greedy answer {greedy * 1e3:.0f} ms; "
        f"probe / forward {probe / fwd:.2f}x, probe / greedy answer {probe / greedy:.2f}x"
    )


def summary_lines(res: dict, choice: dict) -> str:
    """The test split's headline numbers after the detection table."""
    sel = {k: metrics.fmt(v, 100) for k, v in res["selection"].items()}
    return "\n".join(
        [
            f"probe {choice['variant']} − baseline {choice['baseline']}, AUROC within category: "
            + metrics.fmt(res["probe_minus_baseline_within_category"], digits=3),
            f"prompt selection: {sel} choice share {res['choice_share']}",
            f"Goldilocks (error, points): { {k: metrics.fmt(v, 100) for k, v in res['goldilocks'].items()} }",
        ]
    )


def extra(res: dict, choice: dict, info: dict, val_run: dict, test_run: dict, questions: list[dict], test_idx) -> dict:
    """The results file's ``real_model`` block: model record, choices, test metrics, costs, grades and
    the first 20 test answers with their grades."""
    return {
        "model": info,
        "choice": choice,
        "test": {k: v for k, v in res.items() if k != "deciles"},
        "deciles": res["deciles"],
        "cost_per_prompt": test_run["cost"],
        "val_grades": grade_counts(val_run),
        "answers_sample": [
            [questions[i]["question"], *test_run["answers"][j].tolist(), *test_run["grade"][j].tolist()]
            for j, i in enumerate(test_idx[:20])
        ],
    }


def limits_markdown(
    res: dict, choice: dict, info: dict, test_run: dict, *, n_wordings: int, max_new_tokens: int
) -> str:
    """Notebook 05's "what this shows / limits" bullets for the real model, every number from this run."""
    c = test_run["cost"]
    det = res["detection"]
    within = {
        k: d["auroc_within_category"]["value"]
        for k, d in det.items()
        if k.count("/") == 2 and d.get("auroc_within_category")
    }
    lo, hi = min(within.values(), default=float("nan")), max(within.values(), default=float("nan"))
    grades = res["grades"].values()

    def auroc(name: str, key: str = "auroc") -> str:  # absent when the test answers hold one class only
        m = det[name].get(key)
        return metrics.fmt(m) if m else "not computable (one class only among the test answers)"

    return f"""- **Real model.** {info["name"]} ({info["n_params"] / 1e6:.0f}M parameters) is a small model: it answers
  {res["test_accuracy"]["value"]:.1%} of the {res["n_test"]} test questions correctly with the fixed wording
  {choice["wording"]!r}, so most "hallucinations" here are confident wrong answers of a weak model, and the paper's
  LLMs (unknown to us) are much larger. One model, one benchmark: the intervals carry question sampling only.
- **Confound.** The probe's pooled test AUROC is {auroc(choice["variant"])}
  and the category-alone reference's {auroc("category_alone")}; the verdict
  uses the AUROC within category, {auroc(choice["variant"], "auroc_within_category")}.
- **Direction.** The paper's direction (weak coupling = risk) was fixed before any number. Over the chosen loss's
  variants, test AUROC within category ranges from {lo:.3f} to {hi:.3f} ({len(within)} computable);
  a value far below 0.5 would mean that *strong* coupling flags errors here, the opposite of the claim
  (an observation, not a tested rule).
- **Choices.** Wording, probe variant ({choice["variant"]}) and baseline ({choice["baseline"]}) were chosen on
  {choice["n_val"]} validation questions; the test split reports only the chosen loss's variants. Our wordings
  are {n_wordings} instructions, not the paper's paraphrases (unknown).
- **Grading** is lenient (an alias anywhere in the first line of the answer, more often than in the question):
  a lucky number can count as correct. Unanswered: {sum(v["unanswered"] for v in grades)};
  answers cut at {max_new_tokens} tokens: {sum(v["truncated"] for v in grades)} over all wordings
  (counted as graded, usually wrong).
- **Cost** on this CPU ({c["threads"]} threads): the probe ({len(test_run["losses"])} loss) costs
  {c["probe_sec_per_prompt"] / c["forward_sec_per_prompt"]:.1f}x a forward pass and
  {c["probe_sec_per_prompt"] / c["greedy_decode_sec_per_prompt"]:.1f}x a greedy answer of at most {max_new_tokens}
  tokens."""
