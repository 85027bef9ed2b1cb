"""A synthetic fact world for the prefill-probe notebook (05), small enough to train on a CPU.

Entities are two words, ``<family> <name>`` (like "the river Ob"). Each (entity, relation) fact
has a value that usually follows its family's rule (``rule[family, relation]``) and sometimes is an
exception (a random other value). Exposure counts are heavy-tailed: entity popularity is Pareto
distributed and each fact is seen ``Poisson(rate * popularity)`` times, so many facts are seen once
or never. A model that learned the rules answers an unseen exception *confidently wrong* (with the
rule's value): its errors are not trivially flagged by low confidence, which is what makes the
detection problem non-trivial (a world of random facts makes every score separate errors).

Questions are phrased with several paraphrase templates; training uses them with unequal
frequencies, so a question in a rare template is answered less reliably (prompt selection has
something to choose from).

The tokenizer is word level, built locally with ``tokenizers`` and wrapped as a Hugging Face
``PreTrainedTokenizerFast``; the model is a ``transformers`` GPT-2 or Llama class built from a
config (random init, seeded), trained here on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics, runtime

TEMPLATES = (  # {r}: relation word, {e}: the two entity words. Answer follows "a :".
    "q : what is the {r} of {e} ? a :",
    "q : {e} has which {r} ? a :",
    "q : tell me the {r} of {e} . a :",
    "q : the {r} of {e} is what ? a :",
)
RELATIONS = ("colour", "home", "food", "sport", "job", "pet", "music", "metal")
SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>")
ARCHS = ("gpt2", "llama")


@dataclass
class FactWorld:
    """All facts of one world. Arrays are indexed by fact id f = entity * n_relations + relation."""

    seed: int
    families: np.ndarray  # (n_entities,) family index of each entity
    values: np.ndarray  # (n_entities, n_relations) value index (within the relation)
    is_exception: np.ndarray  # (n_entities, n_relations) bool: value differs from the family rule
    exposure: np.ndarray  # (n_entities, n_relations, n_templates) times the fact was seen per template
    n_values: int
    template_weights: tuple
    relations: tuple = RELATIONS
    templates: tuple = TEMPLATES
    extra: dict = field(default_factory=dict)

    @property
    def n_entities(self) -> int:
        return int(self.families.shape[0])

    @property
    def n_relations(self) -> int:
        return int(self.values.shape[1])

    def entity_words(self, e: int) -> str:
        return f"fam{int(self.families[e])} n{e}"

    def value_word(self, r: int, v: int) -> str:
        return f"{self.relations[r]}_{int(v)}"

    def prompt(self, e: int, r: int, t: int = 0) -> str:
        if not 0 <= t < len(self.templates):
            raise ValueError(f"template t={t}; allowed values: 0..{len(self.templates) - 1}")
        return self.templates[t].format(r=self.relations[r], e=self.entity_words(e))

    def answer(self, e: int, r: int) -> str:
        return self.value_word(r, self.values[e, r])

    def questions(self, template: int = 0) -> list[dict]:
        """One question per fact: prompt, answer, total exposure, exception flag."""
        out = []
        for e in range(self.n_entities):
            for r in range(self.n_relations):
                out.append(
                    {
                        "fact": e * self.n_relations + r,
                        "entity": e,
                        "relation": r,
                        "template": template,
                        "prompt": self.prompt(e, r, template),
                        "answer": self.answer(e, r),
                        "exposure": int(self.exposure[e, r].sum()),
                        "exception": bool(self.is_exception[e, r]),
                    }
                )
        return out

    def corpus(self, gen: torch.Generator) -> list[str]:
        """Training sentences: each fact once per exposure in its template, shuffled with ``gen``."""
        lines = []
        for e, r, t in zip(*np.nonzero(self.exposure)):
            lines += [f"{self.prompt(e, r, t)} {self.answer(e, r)}"] * int(self.exposure[e, r, t])
        order = torch.randperm(len(lines), generator=gen).tolist()
        return [lines[i] for i in order]

    def vocabulary(self) -> list[str]:
        words = set()
        for t in self.templates:
            words.update(t.replace("{r}", "").replace("{e}", "").split())
        words.update(self.relations)
        words.update(f"fam{g}" for g in range(int(self.families.max()) + 1))
        words.update(f"n{e}" for e in range(self.n_entities))
        words.update(self.value_word(r, v) for r in range(self.n_relations) for v in range(self.n_values))
        return list(SPECIAL) + sorted(words)


def make_world(
    *,
    n_entities: int,
    seed: int,
    n_families: int = 8,
    n_relations: int = 6,
    n_values: int = 12,
    p_exception: float = 0.25,
    exposure_rate: float = 1.5,
    pareto_alpha: float = 1.3,
    template_weights: tuple = (0.55, 0.25, 0.15, 0.05),
) -> FactWorld:
    """Draw a world. Exposure of fact (e, r) ~ Poisson(exposure_rate * w_e), w_e ~ Pareto(alpha) (min 1,
    heavy tail), capped at 50; its exposures are split over templates by ``template_weights``."""
    if n_entities < 1 or n_families < 1 or n_values < 2:
        raise ValueError(
            f"need n_entities >= 1, n_families >= 1, n_values >= 2; got {n_entities}, {n_families}, {n_values}"
        )
    if not 1 <= n_relations <= len(RELATIONS):
        raise ValueError(f"n_relations={n_relations}; allowed values: 1..{len(RELATIONS)}")
    if not 0.0 <= p_exception < 1.0:
        raise ValueError(f"p_exception={p_exception}; allowed values: [0, 1)")
    w = np.asarray(template_weights, dtype=float)
    if w.shape != (len(TEMPLATES),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"template_weights={template_weights}; need {len(TEMPLATES)} non-negative weights")
    rng = np.random.default_rng(seed)
    families = rng.integers(0, n_families, n_entities)
    rule = rng.integers(0, n_values, (n_families, n_relations))  # (G, R) the rules
    values = rule[families]  # (N, R)
    exc = rng.random((n_entities, n_relations)) < p_exception
    shift = rng.integers(1, n_values, (n_entities, n_relations))  # never equal to the rule
    values = np.where(exc, (values + shift) % n_values, values)
    popularity = 1.0 + rng.pareto(pareto_alpha, n_entities)  # (N,) heavy tail, min 1
    total = np.minimum(rng.poisson(exposure_rate * popularity[:, None], (n_entities, n_relations)), 50)
    exposure = np.stack([rng.multinomial(n, w / w.sum()) for n in total.ravel()]).reshape(
        n_entities, n_relations, len(TEMPLATES)
    )
    return FactWorld(
        seed=seed,
        families=families,
        values=values,
        is_exception=exc,
        exposure=exposure,
        n_values=n_values,
        template_weights=tuple(float(x) for x in w / w.sum()),
        relations=RELATIONS[:n_relations],
        extra={"popularity": popularity},
    )


def build_tokenizer(vocab: list[str]):
    """Word-level HF tokenizer (whitespace split) over ``vocab``: pad = <pad>, unknown words -> <unk>.
    It adds no special tokens by itself; :func:`encode` writes <bos>/<eos> into the text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if len(set(vocab)) != len(vocab) or any(s not in vocab for s in SPECIAL):
        raise ValueError("vocab must be unique and contain the special tokens " + ", ".join(SPECIAL))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
    tok.padding_side = "right"
    return tok


def build_model(
    vocab_size: int,
    *,
    arch: str = "gpt2",
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    max_len: int = 32,
    seed: int = 0,
    pad_id: int = 0,
    bos_id: int = 2,
    eos_id: int = 3,
):
    """A small transformers causal LM from a config, randomly initialized under ``seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}; allowed values: {', '.join(ARCHS)}")
    ids = dict(pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id)
    torch.manual_seed(seed)  # transformers initializes from the global generator; seed it explicitly
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_len,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_len,
        **ids,
    )
    return LlamaForCausalLM(cfg)


def encode(tok, texts: list[str], *, add_eos: bool) -> dict:
    """<bos> + words (+ <eos>), right-padded: input_ids/attention_mask (B, T) long tensors."""
    seqs = [f"<bos> {t}" + (" <eos>" if add_eos else "") for t in texts]
    enc = tok(seqs, padding=True, return_tensors="pt", add_special_tokens=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def train_lm(
    model,
    tok,
    corpus: list[str],
    *,
    steps: int,
    gen: torch.Generator,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    warmup: int = 50,
) -> dict:
    """Next-token LM training on ``corpus`` (all tokens, pads ignored), AdamW with linear warmup and
    cosine decay (warmup capped at steps // 10); batches drawn with ``gen``. Returns {"loss": [per-step loss]}."""
    if steps < 1 or batch_size < 1 or not corpus:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1 and a non-empty corpus; got {steps}, {batch_size}, {len(corpus)}"
        )
    device = next(model.parameters()).device
    enc = encode(tok, corpus, add_eos=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]  # (S, T)
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / min(warmup, max(1, steps // 10))) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))
        ),
    )
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="train LM", disable=runtime.progress_disabled(), leave=False):
        i = torch.randint(0, ids.shape[0], (batch_size,), generator=gen)
        out = model(input_ids=ids[i].to(device), attention_mask=mask[i].to(device), labels=labels[i].to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    return {"loss": losses}


def exposure_bin(n: int) -> str:
    """Exposure strata used in the notebook: '0', '1', '2-3', '4+'."""
    if n < 0:
        raise ValueError(f"exposure n={n} must be >= 0")
    return "0" if n == 0 else "1" if n == 1 else "2-3" if n <= 3 else "4+"


EXPOSURE_BINS = ("0", "1", "2-3", "4+")


def run_seed(
    seed: int,
    *,
    world_kw: dict,
    model_kw: dict,
    train_kw: dict,
    k_samples: int = 10,
    batch_size: int = 256,
    last_k: int = 4,
    val_fraction: float = 0.5,
    device="cpu",
) -> dict:
    """One seed of the notebook-05 experiment: world -> tokenizer -> cached trained model -> probe
    (both prefill losses) and baselines on every question in every template, sampling agreement on
    template 0, and a validation/test split of the entities (drawn with the seed).

    Returns numpy arrays indexed [question, template] (Q, T) for the risks and correctness, and
    per-question exposure/exception/split (Q,). Labels come from the greedy next token, which *is*
    the whole answer here (answers are one word, followed by <eos>).
    """
    from . import cache, llm_probe

    world = make_world(seed=seed, **world_kw)
    tok = build_tokenizer(world.vocabulary())
    config = {"world": world_kw, "model": model_kw, "train": train_kw, "seed": seed, "vocab": len(tok)}
    gen = runtime.make_generator(seed)

    def fit(m):
        return train_lm(m, tok, world.corpus(gen), gen=gen, **train_kw)

    model, hist, hit = cache.cached_model(
        "factworld-lm", config, lambda: build_model(len(tok), seed=seed, **model_kw), fit, device=device
    )
    encode = lambda prompts: encode_fn(tok, prompts)  # noqa: E731
    T = len(world.templates)
    qs = [world.questions(t) for t in range(T)]
    answer_ids = np.array([tok.convert_tokens_to_ids(q["answer"]) for q in qs[0]])  # (Q,)
    risks, correct, cost = {}, [], {}
    for loss in llm_probe.LOSSES:
        probe = llm_probe.PrefillProbe(model, encode, loss=loss, last_k=last_k, batch_size=batch_size)
        per_t = [probe.score([q["prompt"] for q in qs[t]], desc=f"probe {loss} t{t}") for t in range(T)]
        for name in llm_probe.risk_scores(per_t[0]):
            if name.startswith(loss) or loss == llm_probe.LOSSES[0]:
                risks[name] = np.stack([llm_probe.risk_scores(s)[name] for s in per_t], 1)  # (Q, T)
        if loss == llm_probe.LOSSES[0]:
            correct = np.stack([s["greedy_id"] == answer_ids for s in per_t], 1)  # (Q, T)
        cost[f"probe_{loss}_sec_per_prompt"] = float(np.mean([s["sec_per_prompt"] for s in per_t]))
        cost[f"probe_{loss}_saved_bytes_per_prompt"] = float(np.mean([s["saved_bytes_per_prompt"] for s in per_t]))
    fwd = llm_probe.PrefillProbe(model, encode, batch_size=batch_size).score(
        [q["prompt"] for q in qs[0]], with_grad=False, desc="forward only"
    )
    cost["forward_only_sec_per_prompt"] = float(fwd["sec_per_prompt"])
    samp = llm_probe.SamplingAgreement(
        model, encode, tok, k=k_samples, max_new_tokens=1, batch_size=batch_size // k_samples or 1
    )
    # a fresh generator: sampling must not depend on whether training ran (cache miss) or not (hit)
    s = samp.score([q["prompt"] for q in qs[0]], gen=runtime.make_generator(seed + 1_000_003))
    cost["sampling_sec_per_prompt"] = float(s["sec_per_prompt"])
    rng = np.random.default_rng(seed)
    val_entities = rng.permutation(world.n_entities)[: int(round(val_fraction * world.n_entities))]
    is_val = np.isin(np.array([q["entity"] for q in qs[0]]), val_entities)
    return {
        "seed": seed,
        "risks": risks,
        "sampling_risk": s["risk"],
        "correct": correct,
        "is_val": is_val,
        "exposure": np.array([q["exposure"] for q in qs[0]]),
        "exception": np.array([q["exception"] for q in qs[0]]),
        "cost": cost,
        "cache_hit": hit,
        "final_train_loss": float(np.mean(hist["loss"][-20:])),
        "probe_repr": repr(probe),
        "sampling_repr": repr(samp),
        "n_corpus": int(world.exposure.sum()),
    }


def encode_fn(tok, prompts: list[str]) -> dict:
    """Encoder for probe/decoding on fact-world prompts: <bos> + words, no <eos>, right padding."""
    return encode(tok, prompts, add_eos=False)


def _rank01(x: np.ndarray) -> np.ndarray:
    """Within-seed percentile ranks in [0, 1] (ties broken by index), so seeds can be pooled."""
    return np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(len(x) - 1, 1)


def analyze_seed(r: dict, *, n_boot: int = 1000, template: int = 0) -> dict:
    """Selections on the validation entities, numbers on the test entities, for one :func:`run_seed`.

    - detection (questions in ``template``): the probe variant (loss/stat/pool) and the best
      decoding-free baseline are each chosen by validation AUROC (directions fixed a priori);
      test AUROC/AUPRC/PRR for every score; paired test-bootstrap of AUROC(probe) - AUROC(baseline).
    - prompt selection (all templates): accuracy when each test question uses the fixed template
      with the best validation accuracy, a random template (mean over templates), the template of
      lowest risk by the chosen probe variant and by each baseline, and the oracle (any template right).
    """
    from . import llm_probe

    y = (~r["correct"][:, template]).astype(int)  # (Q,) 1 = hallucinated
    val, test = r["is_val"], ~r["is_val"]
    risk = {k: v[:, template] for k, v in r["risks"].items()}
    risk["sampling_agreement"] = r["sampling_risk"]
    probes = [k for k in r["risks"] if k.count("/") == 2]

    def val_auc(k):
        return metrics.auroc_value(y[val], risk[k][val]) if len(np.unique(y[val])) == 2 else 0.5

    primary = max(probes, key=val_auc)
    best_base = max(llm_probe.BASELINES, key=val_auc)
    yt = y[test]
    det = {k: llm_probe.detection_metrics(yt, risk[k][test], n_boot=n_boot, seed=r["seed"]) for k in risk}
    diff = None
    if len(np.unique(yt)) == 2:
        a, b = risk[primary][test], risk[best_base][test]
        diff = metrics.index_bootstrap_ci(
            lambda i: metrics.auroc_value(yt[i], a[i]) - metrics.auroc_value(yt[i], b[i]),
            yt.size,
            strata=yt,
            n_boot=n_boot,
            seed=r["seed"],
            method="paired-stratified-bootstrap",
        )
    C = r["correct"][test]  # (Qt, T)
    fixed = int(np.argmax(r["correct"][val].mean(0)))
    rows = np.arange(C.shape[0])
    selection = {
        "fixed_best_val_template": float(C[:, fixed].mean()),
        "random_template": float(C.mean()),
        "oracle_any_template": float(C.any(1).mean()),
    }
    for k in [primary, *llm_probe.BASELINES]:
        selection[k] = float(C[rows, llm_probe.select_template(r["risks"][k][test])].mean())
    return {
        "seed": r["seed"],
        "primary": primary,
        "best_baseline": best_base,
        "fixed_template": fixed,
        "detection": det,
        "auroc_diff": diff,
        "selection": selection,
        "test_error": yt,
        "test_exposure": r["exposure"][test],
        "test_exception": r["exception"][test],
        "test_rank": {k: _rank01(risk[k][test]) for k in risk},
        "test_coupling_primary": -risk[primary][test],
    }
