"""Notebook 05's real model in float32 and in bfloat16 on this machine: seconds per prompt of the prefill probe
(one forward + one backward, batch 16) and of greedy decoding (24 new tokens, batch 64) on the first questions of
the shipped benchmark, and how far the bf16 scores and answers are from the float32 ones.

    python scripts/bench_llm_dtype.py            # writes results/benchmarks/llm-dtype-<device>.json

Behind ``LLM_DTYPE = "auto"`` in notebook 05 (issue #17, CI budget). A record, not a test: its times are this
machine's. Run it alone (two cores: a second heavy process slows both).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nup_utils import benchmark, llm_models, llm_probe, paths, qa_probe, runtime


def measure(dtype: torch.dtype, prompts_of, n: int, device) -> dict:
    lm = llm_models.load_lm("smollm2-135m-instruct", device, dtype=dtype)
    chat = lm.formatter().chat
    prompts = sorted(prompts_of(lm), key=len)[:n]
    probe = llm_probe.PrefillProbe(
        lm.model, llm_probe.hf_encoder(lm.tokenizer, add_special_tokens=not chat), loss=("greedy_nll",), batch_size=16
    )
    probe.score(prompts[:16], desc="warm-up")  # allocation and kernel choice out of the timing
    t0 = time.perf_counter()
    scores = llm_probe.risk_scores(probe.score(prompts))
    probe_s = (time.perf_counter() - t0) / len(prompts)
    t0 = time.perf_counter()
    dec = llm_probe.greedy_decode(
        lm.model, lm.tokenizer, prompts, max_new_tokens=24, batch_size=64, add_special_tokens=not chat
    )
    decode_s = (time.perf_counter() - t0) / len(prompts)
    return {"probe_s_per_prompt": probe_s, "decode_s_per_prompt": decode_s, "scores": scores, "answers": dec["answers"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="prompts timed (the first questions, one wording)")
    ap.add_argument("--out", default=str(paths.REPO_ROOT / "results" / "benchmarks"))
    a = ap.parse_args(argv)
    device = runtime.resolve_device("cpu")
    qa = llm_probe.load_qa(llm_probe.QA_FILE)[: a.n]
    wording = list(qa_probe.WORDINGS.values())[1]
    runs = {
        name: measure(dt, lambda lm: [lm.formatter(wording)(q["question"]) for q in qa], a.n, device)
        for name, dt in llm_models.DTYPES.items()
    }
    f32, b16 = runs["float32"], runs["bfloat16"]
    rec = {
        "what": "notebook 05's real model: seconds per prompt, float32 vs bfloat16 (scripts/bench_llm_dtype.py)",
        **benchmark.machine(device),
        "auto_dtype": str(llm_models.resolve_dtype("auto", device)).removeprefix("torch."),
        "n_prompts": a.n,
        "per_dtype": {k: {m: v[m] for m in ("probe_s_per_prompt", "decode_s_per_prompt")} for k, v in runs.items()},
        "bf16_vs_fp32": {
            "probe_speedup": f32["probe_s_per_prompt"] / b16["probe_s_per_prompt"],
            "decode_speedup": f32["decode_s_per_prompt"] / b16["decode_s_per_prompt"],
            "answers_equal": float(np.mean([x == y for x, y in zip(f32["answers"], b16["answers"])])),
            "score_pearson": {
                k: float(np.corrcoef(f32["scores"][k], b16["scores"][k])[0, 1]) for k in sorted(f32["scores"])
            },
        },
    }
    path = paths.atomic_write_json(f"{a.out}/llm-dtype-{benchmark.slug(rec['device'])}.json", rec)
    print({k: rec[k] for k in ("device", "bf16_native", "auto_dtype")}, rec["per_dtype"], rec["bf16_vs_fp32"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
