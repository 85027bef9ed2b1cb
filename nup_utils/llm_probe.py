"""The prefill probe (paper P2): one backward pass at the prefill stage measures prompt-gradient coupling.

For any Hugging Face causal LM: the prompt's embeddings E (B, T, D) are passed as ``inputs_embeds``
with ``requires_grad``; a prefill loss (``prompt_nll``: mean NLL of the prompt's own next tokens;
``greedy_nll``: NLL of the model's greedy next token) is back-propagated once, G = dL/dE (B, T, D);
per-token coupling is cos(E_t, G_t) and <E_t, G_t>, pooled over the prompt's real tokens (mean) or
its last k tokens. Risk = low coupling (the paper's direction, fixed before any number is seen).

The same forward gives the decoding-free baselines: max softmax probability and entropy of the next
token, and the prompt's perplexity. One sampling baseline (answer agreement over K samples) shows
what a decoding-based score costs. Detection metrics (AUROC from ``metrics.roc_auc``, AUPRC, PRR)
take label 1 = hallucinated and a risk score (higher = riskier).

Padding is on the right: with causal attention a real token never attends to a pad, so a prompt's
scores do not depend on its batch (checked in tests). With ``prompt_nll`` the last prompt token
predicts nothing inside the prompt, so its gradient is exactly 0 (last-k pooling includes that 0).
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import dryrun, metrics, runtime

LOSSES = ("prompt_nll", "greedy_nll")
STATS = ("cos", "ip")
POOLS = ("mean", "last_k")
BASELINES = ("max_prob", "entropy", "prompt_ppl")  # risk = -max_prob, entropy, prompt_ppl
QA_FILE = Path(__file__).resolve().parent / "qa_benchmark.jsonl"


def hf_encoder(
    tokenizer, max_length: int | None = None, *, add_special_tokens: bool = True
) -> Callable[[list[str]], dict]:
    """Default encoder: right padding, (B, T) long tensors. ``add_special_tokens=False`` for prompts
    that already carry them (chat-template strings)."""
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")

    def encode(prompts: list[str]) -> dict:
        tokenizer.padding_side = "right"
        enc = tokenizer(
            prompts,
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="np",  # numpy -> torch.from_numpy: CPU tensors whatever the default device
            add_special_tokens=add_special_tokens,
        )
        return {k: torch.from_numpy(enc[k]).long() for k in ("input_ids", "attention_mask")}

    return encode


def _saved_bytes_hook():
    """Context that counts the bytes autograd saves for the backward (the probe's extra memory)."""
    box = {"bytes": 0}

    def pack(t):
        box["bytes"] += t.numel() * t.element_size()
        return t

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), box


class PrefillProbe:
    """Single-backward prefill probe and the decoding-free baselines from the same forward.

    ``score(prompts)`` returns numpy arrays (N,) named ``<loss>/<stat>/<pool>`` for the coupling
    (for the chosen loss, or each of a tuple of losses: one forward, one backward per loss), the
    baselines, ``greedy_id`` and per-prompt cost figures.
    """

    def __init__(
        self,
        model,
        encode: Callable[[list[str]], dict],
        *,
        loss: str | tuple[str, ...] = "greedy_nll",
        last_k: int = 4,
        batch_size: int = 64,
        eps: float = 1e-12,
    ):
        losses = (loss,) if isinstance(loss, str) else tuple(loss)
        if not losses or any(x not in LOSSES for x in losses) or len(set(losses)) != len(losses):
            raise ValueError(f"loss={loss!r}; allowed values: one of {', '.join(LOSSES)} or a tuple of distinct ones")
        if not isinstance(last_k, int) or last_k < 1:
            raise ValueError(f"last_k={last_k!r}; allowed values: int >= 1")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; allowed values: int >= 1")
        self.model, self.encode = model, encode
        self.loss = loss if isinstance(loss, str) else losses
        self.losses, self.last_k, self.batch_size, self.eps = losses, last_k, batch_size, eps

    def __repr__(self) -> str:
        return (
            f"PrefillProbe(loss={self.loss!r}, last_k={self.last_k}, batch_size={self.batch_size}, "
            f"stats={STATS}, pools={POOLS}, risk='-coupling')"
        )

    def _batch(self, prompts: list[str], with_grad: bool) -> dict:
        device = next(self.model.parameters()).device
        enc = self.encode(prompts)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (B, T)
        if (mask[:, 0] == 0).any():
            raise ValueError("prompts must be right-padded with at least one real token each")
        B = ids.shape[0]
        rows = torch.arange(B, device=device)
        last = mask.sum(1) - 1  # (B,) last real token
        E = self.model.get_input_embeddings()(ids).detach()  # (B, T, D)
        E.requires_grad_(with_grad)
        hook, box = _saved_bytes_hook()
        with torch.set_grad_enabled(with_grad), hook:
            logits = self.model(inputs_embeds=E, attention_mask=mask).logits.float()  # (B, T, V)
        logp_next = torch.log_softmax(logits[rows, last], -1)  # (B, V)
        p_next = logp_next.exp()
        max_prob, greedy = p_next.max(-1)
        entropy = -(p_next * logp_next).sum(-1)
        valid = mask[:, 1:].float()  # (B, T-1) target is real
        tok_lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        prompt_nll = -(tok_lp * valid).sum(1) / valid.sum(1).clamp(min=1)  # (B,)
        out = {"max_prob": max_prob, "entropy": entropy, "prompt_ppl": prompt_nll.exp(), "greedy_id": greedy}
        if with_grad:
            m = mask.float()  # (B, T)
            pos = torch.arange(ids.shape[1], device=device)[None]  # (1, T)
            lastk = (m * (pos > last[:, None] - self.last_k)).float()  # (B, T) last k real tokens
            per_loss = {"prompt_nll": prompt_nll, "greedy_nll": -logp_next[rows, greedy]}  # (B,) per-prompt loss
            for j, loss in enumerate(self.losses):
                # sum over prompts: each prompt's G is its own gradient (prompts do not interact)
                (G,) = torch.autograd.grad(per_loss[loss].sum(), E, retain_graph=j < len(self.losses) - 1)
                # statistics in float32 whatever the model's dtype (a bf16 model: 8-bit mantissas, D-long sums)
                Ef, G = E.detach().float(), G.float()
                cos = (Ef * G).sum(-1) / (Ef.norm(dim=-1) * G.norm(dim=-1)).clamp(min=self.eps)  # (B, T)
                ip = (Ef * G).sum(-1)  # (B, T)
                for name, c in (("cos", cos), ("ip", ip)):
                    out[f"{loss}/{name}/mean"] = (c * m).sum(1) / m.sum(1)
                    out[f"{loss}/{name}/last_k"] = (c * lastk).sum(1) / lastk.sum(1)
                if j == 0:
                    out["grad_norm"] = (G.norm(dim=-1) * m).sum(1) / m.sum(1)
        out["saved_bytes"] = torch.full((B,), box["bytes"] / B, device=device)
        return {k: v.detach().cpu() for k, v in out.items()}

    def score(self, prompts: list[str], *, with_grad: bool = True, desc: str = "probe") -> dict:
        """Scores for every prompt (numpy, (N,)), plus ``sec_per_prompt`` and ``saved_bytes_per_prompt``
        (autograd memory; with CUDA also ``cuda_peak_bytes``)."""
        if not prompts:
            raise ValueError("prompts is empty")
        self.model.eval()
        device = next(self.model.parameters()).device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        parts, t0 = [], time.perf_counter()
        key = dict(
            model=type(self.model).__name__,
            params=sum(p.numel() for p in self.model.parameters()),
            batch=self.batch_size,
            losses=list(self.losses) if with_grad else [],
        )
        # a dry run (dryrun.active()) scores the first batches only (capped by NUP_DRY_MAX_BATCH) and pads below
        slices = dryrun.batches(len(prompts), self.batch_size, "probe batch", steps=dryrun.STEPS, **key)
        n_batches = -(-len(prompts) // dryrun.batch_cap(self.batch_size))
        for sl in tqdm(slices, total=n_batches, desc=desc, disable=runtime.progress_disabled(), leave=False):
            parts.append(self._batch(prompts[sl], with_grad))
        secs = time.perf_counter() - t0
        n_run = sum(len(p["greedy_id"]) for p in parts)  # len(prompts), except in a dry run
        # (N,) per score; a dry run repeats the scored rows up to N (shapes are real, the values mean nothing)
        res = {k: dryrun.pad(torch.cat([p[k] for p in parts]), len(prompts)).numpy() for k in parts[0]}
        res["sec_per_prompt"] = secs / n_run
        res["saved_bytes_per_prompt"] = float(res.pop("saved_bytes").mean())
        if device.type == "cuda":
            res["cuda_peak_bytes"] = float(torch.cuda.max_memory_allocated(device))
        return res


def risk_scores(scores: dict) -> dict:
    """Risk (higher = more likely hallucinated) from probe/baseline outputs, directions fixed a priori:
    coupling -> -coupling (paper: weak coupling = risk), max_prob -> -max_prob, entropy, prompt_ppl."""
    out = {}
    for k, v in scores.items():
        if k.count("/") == 2:
            out[k] = -np.asarray(v, float)
    out["max_prob"] = -np.asarray(scores["max_prob"], float)
    out["entropy"] = np.asarray(scores["entropy"], float)
    out["prompt_ppl"] = np.asarray(scores["prompt_ppl"], float)
    return out


# ----------------------------------------------------------------------------- decoding


@torch.no_grad()
def generate(
    model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_id: int | None,
    gen: torch.Generator | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
) -> list[list[int]]:
    """Greedy or sampled continuation of right-padded prompts (no KV cache: prompts here are short).
    ids/mask (B, T); returns the new token ids per row, stopped before ``eos_id``."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}; allowed values: int >= 1")
    if not greedy and gen is None:
        raise ValueError("sampling needs an explicit torch.Generator (gen=...)")
    device = ids.device
    B = ids.shape[0]
    rows = torch.arange(B, device=device)
    lengths = mask.sum(1).clone()  # (B,)
    pad = torch.zeros(B, max_new_tokens, dtype=ids.dtype, device=device)
    ids, mask = torch.cat([ids, pad], 1), torch.cat([mask, pad.to(mask.dtype)], 1)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    new = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=mask).logits[rows, lengths - 1].float()  # (B, V)
        if greedy:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(device)
        nxt = torch.where(done, torch.zeros_like(nxt), nxt)
        new.append(torch.where(done, torch.full_like(nxt, -1), nxt))
        ids[rows, lengths] = nxt
        mask[rows, lengths] = (~done).to(mask.dtype)
        lengths = lengths + (~done).long()
        if eos_id is not None:
            done = done | (nxt == eos_id)
        if done.all():
            break
    toks = torch.stack(new, 1).cpu().tolist()  # (B, steps), -1 after stop
    out = []
    for row in toks:
        seq = []
        for t in row:
            if t == -1 or t == eos_id:
                break
            seq.append(t)
        out.append(seq)
    return out


def decode_answers(
    model,
    encode,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    gen: torch.Generator | None = None,
    greedy: bool = True,
    desc: str = "decode",
) -> list[str]:
    """Decoded continuations of ``prompts`` (first line, stripped)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    key = dict(
        model=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        batch=batch_size,
        max_new_tokens=max_new_tokens,
        greedy=greedy,
    )
    # a dry run (dryrun.active()) decodes the first batches only (capped by NUP_DRY_MAX_BATCH) and pads below
    what = "decode batch" if greedy else "sample batch"
    slices = dryrun.batches(len(prompts), batch_size, what, steps=dryrun.STEPS, **key)
    n_batches = -(-len(prompts) // dryrun.batch_cap(batch_size))
    for sl in tqdm(slices, total=n_batches, desc=desc, disable=runtime.progress_disabled(), leave=False):
        enc = encode(prompts[sl])
        seqs = generate(
            model,
            enc["input_ids"].to(device),
            enc["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            eos_id=tokenizer.eos_token_id,
            gen=gen,
            greedy=greedy,
        )
        out += [tokenizer.decode(s, skip_special_tokens=True).strip().split("\n")[0].strip() for s in seqs]
    return dryrun.pad(out, len(prompts))  # a dry run repeats the decoded answers up to len(prompts) (strings)


@torch.no_grad()
def greedy_decode(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    add_special_tokens: bool = True,
    desc: str = "decode",
) -> dict:
    """KV-cached batched greedy decoding with transformers' ``generate`` (left padding, stop at EOS).
    Prompts are batched in order of length (less padding) and returned in the input order.
    Returns ``answers`` (first line of each continuation, stripped), ``n_new_tokens`` and ``sec_per_prompt``."""
    if not prompts:
        raise ValueError("prompts is empty")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}; allowed values: int >= 1")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")
    device = next(model.parameters()).device
    model.eval()
    lengths = [len(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]
    order = np.argsort(lengths, kind="stable")  # (N,) prompt indices, shortest first
    got_answers, got_n_new = [], []  # in the order of ``order``: answers[order[k]] = got_answers[k]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    t0 = time.perf_counter()
    key = dict(
        model=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        batch=batch_size,
        max_new_tokens=max_new_tokens,
    )
    # a dry run (dryrun.active()) decodes the first (shortest) batches only, capped by NUP_DRY_MAX_BATCH
    slices = dryrun.batches(len(prompts), batch_size, "greedy decode batch", steps=dryrun.STEPS, **key)
    n_batches = -(-len(prompts) // dryrun.batch_cap(batch_size))
    try:
        for sl in tqdm(slices, total=n_batches, desc=desc, disable=runtime.progress_disabled(), leave=False):
            idx = order[sl]
            enc = tokenizer(
                [prompts[j] for j in idx], return_tensors="np", padding=True, add_special_tokens=add_special_tokens
            )
            enc = {k: torch.from_numpy(enc[k]).long() for k in ("input_ids", "attention_mask")}
            out = model.generate(
                input_ids=enc["input_ids"].to(device),
                attention_mask=enc["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )[:, enc["input_ids"].shape[1] :]  # (b, new) new tokens, pad after EOS
            for row in out.cpu().tolist():
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                got_n_new.append(len(row))
                got_answers.append(tokenizer.decode(row, skip_special_tokens=True).strip().split("\n")[0].strip())
    finally:
        tokenizer.padding_side = side
    secs, n_run = time.perf_counter() - t0, len(got_answers)  # n_run = N, except in a dry run
    # a dry run repeats the decoded answers (strings) and their lengths up to N, then every prompt gets one
    got_answers, got_n_new = dryrun.pad(got_answers, len(prompts)), dryrun.pad(got_n_new, len(prompts))
    answers, n_new = [None] * len(prompts), [0] * len(prompts)
    for k, j in enumerate(order):  # back to the input order
        answers[j], n_new[j] = got_answers[k], got_n_new[k]
    return {
        "answers": answers,
        "n_new_tokens": np.array(n_new),
        "sec_per_prompt": secs / n_run,
    }


class SamplingAgreement:
    """Decoding-based baseline: K sampled answers per prompt; risk = 1 - (share of the most common answer)."""

    def __init__(
        self, model, encode, tokenizer, *, k: int, max_new_tokens: int, temperature: float = 1.0, batch_size: int = 64
    ):
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"k={k!r}; allowed values: int >= 2")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}; allowed values: > 0")
        self.model, self.encode, self.tokenizer = model, encode, tokenizer
        self.k, self.max_new_tokens, self.temperature, self.batch_size = k, max_new_tokens, temperature, batch_size

    def __repr__(self) -> str:
        return (
            f"SamplingAgreement(k={self.k}, max_new_tokens={self.max_new_tokens}, "
            f"temperature={self.temperature}, risk='1 - modal share')"
        )

    def score(self, prompts: list[str], *, gen: torch.Generator) -> dict:
        t0 = time.perf_counter()
        rep = [p for p in prompts for _ in range(self.k)]  # (N*K,) prompt i at i*K .. i*K+K-1
        ans = decode_answers(
            self.model,
            self.encode,
            self.tokenizer,
            rep,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size * self.k,
            gen=gen,
            greedy=False,
            desc="sample",
        )
        agree = np.array(
            [
                Counter(normalize(a) for a in ans[i * self.k : (i + 1) * self.k]).most_common(1)[0][1] / self.k
                for i in range(len(prompts))
            ]
        )
        return {"agreement": agree, "risk": 1.0 - agree, "sec_per_prompt": (time.perf_counter() - t0) / len(prompts)}


# ----------------------------------------------------------------------------- answers and QA benchmark


def normalize(text: str) -> str:
    """Lower case, no punctuation (underscores kept), no articles, single spaces."""
    text = text.lower()
    text = "".join(" " if ch in string.punctuation and ch != "_" else ch for ch in text)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def _count_words(phrase: str, text: str) -> int:
    """Whole-word occurrences of a normalized phrase in a normalized text."""
    return len(re.findall(rf"(?<!\S){re.escape(phrase)}(?!\S)", text)) if phrase else 0


def answer_matches(generated: str, aliases: list[str], question: str | None = None) -> bool:
    """True when a normalized alias occurs as a whole-word span of the normalized answer.

    With ``question``: an alias that also occurs in the question counts only when the answer holds it
    more often than the question does, so echoing the question is not an answer ("The capital of
    Singapore is Jurong" is wrong; "The capital of Singapore is Singapore" is right). Rule: ours."""
    if not aliases:
        raise ValueError("aliases is empty")
    g, q = normalize(generated), normalize(question) if question is not None else ""
    return any(_count_words(normalize(a), g) > _count_words(normalize(a), q) for a in aliases if normalize(a))


def grade(generated: str, aliases: list[str], question: str | None = None) -> str:
    """'correct', 'wrong', or 'unanswered' (nothing left after normalization: counted, never dropped)."""
    if not normalize(generated):
        return "unanswered"
    return "correct" if answer_matches(generated, aliases, question) else "wrong"


def load_qa(path: str | Path | None = None) -> list[dict]:
    """Questions from a JSONL file (default: the shipped benchmark). Each line needs id, question,
    answers (aliases, non-empty list) and popularity (1 = very well known .. 3 = obscure)."""
    path = Path(path) if path is not None else QA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"QA_FILE={str(path)!r} does not exist")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        q = json.loads(line)
        missing = {"id", "question", "answers", "popularity"} - set(q)
        if missing or not isinstance(q["answers"], list) or not q["answers"] or q["popularity"] not in (1, 2, 3):
            raise ValueError(
                f"{path.name}:{n}: need id, question, answers (non-empty list), popularity in 1..3; got {q}"
            )
        out.append(q)
    if len({q["id"] for q in out}) != len(out):
        raise ValueError(f"{path.name}: duplicate question ids")
    return out


# ----------------------------------------------------------------------------- metrics


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(labels).astype(int).ravel(), np.asarray(scores, float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("labels must hold both classes, 1 = hallucinated, 0 = correct")
    return y, s


def _rejection_area(y: np.ndarray, s: np.ndarray) -> float:
    """Mean over k = 0..n-1 rejected (riskiest first) of the error rate among the n - k kept. Tied
    scores are rejected in random order, i.e. their errors count in expectation (no index bias)."""
    n = y.size
    _, inv, counts = np.unique(-s, return_inverse=True, return_counts=True)  # group 0 = riskiest
    grp_err = np.bincount(inv, weights=y.astype(float))  # errors per tie group
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    err_before = np.concatenate([[0.0], np.cumsum(grp_err)[:-1]])
    order = np.argsort(inv, kind="stable")  # positions grouped by risk
    g = inv[order]
    rejected = err_before[g] + (np.arange(n) - start[g] + 1) * grp_err[g] / counts[g]  # after k+1 rejected
    R = np.concatenate([[0.0], rejected[:-1]])  # (n,) errors rejected at k
    return float(np.mean((y.sum() - R) / np.arange(n, 0, -1)))


def prr_value(y: np.ndarray, s: np.ndarray) -> float:
    """Prediction rejection ratio: (area_random - area_score) / (area_random - area_oracle) of the
    error-of-kept curve. 1 = oracle order, 0 = random (or constant scores), < 0 = worse than random."""
    y, s = np.asarray(y).astype(int).ravel(), np.asarray(s, float).ravel()
    rnd = float(y.mean())
    oracle = _rejection_area(y, y.astype(float))
    return (rnd - _rejection_area(y, s)) / (rnd - oracle) if rnd != oracle else 0.0


def auprc(labels, scores, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Average precision (hallucinated = positive) with a stratified bootstrap 95% interval."""
    y, s = _check(labels, scores)
    lo, hi = metrics.stratified_bootstrap(y, s, metrics.average_precision_value, n_boot=n_boot, seed=seed)
    ap = metrics.average_precision_value(y, s)
    return metrics.metric(ap, lo, hi, y.size, f"stratified-bootstrap-{n_boot}", base_rate=float(y.mean()))


def prr(labels, scores, *, n_boot: int = 1000, seed: int = 0) -> dict:
    y, s = _check(labels, scores)
    lo, hi = metrics.stratified_bootstrap(y, s, prr_value, n_boot=n_boot, seed=seed)
    return metrics.metric(prr_value(y, s), lo, hi, y.size, f"stratified-bootstrap-{n_boot}")


def detection_metrics(labels, scores, *, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """{'auroc','auprc','prr'} or None when only one class is present (metric undefined)."""
    y = np.asarray(labels).astype(int)
    if len(np.unique(y)) < 2:
        return None
    return {
        "auroc": metrics.roc_auc(y, scores, n_boot=n_boot, seed=seed),
        "auprc": auprc(y, scores, n_boot=n_boot, seed=seed),
        "prr": prr(y, scores, n_boot=n_boot, seed=seed),
    }


def error_by_quantile(coupling, error, *, n_bins: int = 10) -> dict:
    """Error rate per coupling quantile bin (deciles by default), with Wilson intervals."""
    c, e = np.asarray(coupling, float).ravel(), np.asarray(error).astype(int).ravel()
    if c.shape != e.shape or c.size < n_bins:
        raise ValueError(f"need equal lengths >= n_bins={n_bins}; got {c.size}, {e.size}")
    ranks = np.argsort(np.argsort(c, kind="stable"), kind="stable")
    b = ranks * n_bins // c.size  # (N,) bin 0 = weakest coupling
    rows = []
    for k in range(n_bins):
        sel = b == k
        lo, hi = metrics.wilson_ci(int(e[sel].sum()), int(sel.sum()))
        rows.append(
            {
                "bin": k,
                "coupling_median": float(np.median(c[sel])),
                "error": float(e[sel].mean()),
                "ci95": [lo, hi],
                "n": int(sel.sum()),
            }
        )
    return {"bins": rows, "bin_of": b}


def goldilocks_contrast(coupling, error, *, bins=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Error in the weakest 20% / strongest 20% of coupling minus error in the middle 40% (deciles 4-7),
    each with a percentile bootstrap interval. A Goldilocks band needs both differences > 0.
    ``bins`` (N,) decile index 0..9 overrides the deciles of ``coupling`` (e.g. deciles within seeds)."""
    c, e = np.asarray(coupling, float).ravel(), np.asarray(error).astype(float).ravel()
    b = error_by_quantile(c, e, n_bins=10)["bin_of"] if bins is None else np.asarray(bins).ravel()
    if b.shape != e.shape or b.min() < 0 or b.max() > 9:
        raise ValueError("bins must be decile indices 0..9, one per error")
    groups = {"low": b <= 1, "mid": (b >= 3) & (b <= 6), "high": b >= 8}
    out = {}
    for side in ("low", "high"):
        v = np.concatenate([e[groups[side]], e[groups["mid"]]])  # side's errors, then the middle's
        part = np.r_[np.zeros(groups[side].sum()), np.ones(groups["mid"].sum())]  # two independent samples

        def diff(i, v=v, part=part):
            return v[i][part[i] == 0].mean() - v[i][part[i] == 1].mean()

        out[f"{side}_minus_mid"] = metrics.index_bootstrap_ci(diff, v.size, strata=part, n_boot=n_boot, seed=seed)
    return out


def select_template(risk: np.ndarray) -> np.ndarray:
    """Prompt selection: for each question (row) the template (column) of lowest risk. risk (Q, T)."""
    risk = np.asarray(risk, float)
    if risk.ndim != 2:
        raise ValueError(f"risk must be (questions, templates), got shape {risk.shape}")
    return np.argmin(risk, axis=1)


# ----------------------------------------------------------------------------- the real-model path


def word_tokenizer_for(texts: list[str]):
    """Offline stand-in for a hub tokenizer: word level over the whitespace-split words of ``texts``."""
    from . import factworld

    words = sorted({w for t in texts for w in t.split()} - set(factworld.SPECIAL))
    return factworld.build_tokenizer(list(factworld.SPECIAL) + words)
