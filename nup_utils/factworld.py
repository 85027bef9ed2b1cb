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

from . import dryrun, runtime

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
    # a dry run (dryrun.active()) runs the first steps only, at a batch of at most NUP_DRY_MAX_BATCH, and times them
    run_batch = dryrun.batch_cap(batch_size)  # batch_size, except in a dry run with NUP_DRY_MAX_BATCH
    cost_key = dict(
        model=type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        d_model=getattr(getattr(model, "config", None), "hidden_size", None),
        layers=getattr(getattr(model, "config", None), "num_hidden_layers", None),
        batch=batch_size,
        seq_len=int(ids.shape[1]),
        vocab=len(tok),
    )
    step_iter = dryrun.loop(steps, "LM train step", scale=batch_size / run_batch, **cost_key)
    for _ in tqdm(step_iter, total=steps, desc="train LM", disable=runtime.progress_disabled(), leave=False):
        # always draw batch_size indices: the generator's stream is the same in a dry run as in a real one
        i = torch.randint(0, ids.shape[0], (batch_size,), generator=gen)[:run_batch]  # (run_batch,)
        out = model(input_ids=ids[i].to(device), attention_mask=mask[i].to(device), labels=labels[i].to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    # a dry run's skipped steps repeat the losses it measured (their number is the real one; the values mean nothing)
    return {"loss": dryrun.pad(losses, steps)}


def exposure_bin(n: int) -> str:
    """Exposure strata used in the notebook: '0', '1', '2-3', '4+'."""
    if n < 0:
        raise ValueError(f"exposure n={n} must be >= 0")
    return "0" if n == 0 else "1" if n == 1 else "2-3" if n <= 3 else "4+"


EXPOSURE_BINS = ("0", "1", "2-3", "4+")


def encode_fn(tok, prompts: list[str]) -> dict:
    """Encoder for probe/decoding on fact-world prompts: <bos> + words, no <eos>, right padding."""
    return encode(tok, prompts, add_eos=False)
