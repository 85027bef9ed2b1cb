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
# # 00 · Overview: what each notebook tests, and what it found
#
# **nup** reproduces and stress-tests the claims of the "Neural Uncertainty Principle" papers. Each
# numbered notebook tests one family of claims with rules declared before its data are touched,
# intervals on every number, and a verdict with the reason its rule generated. What the papers say,
# and what is unknown about them: [docs/papers.md](../docs/papers.md).
#
# | notebook | claim | paper |
# |---|---|---|
# | [01-uncertainty-relation](01-uncertainty-relation.ipynb) | inputs and loss gradients are conjugate: Δx·Δp ≥ ½; training sharpens boundaries | P1 |
# | [02-sbde-accuracy](02-sbde-accuracy.ipynb) | inserting constant pixels (SBDE) raises CIFAR-10 accuracy | P3 |
# | [03-mask-projection](03-mask-projection.ipynb) | SBDE's fragility sits in the inserted pixels; a mask projection restores robustness | P3 |
# | [04-conjmask-logitreg](04-conjmask-logitreg.ipynb) | ConjMask and LogitReg give robustness without adversarial training | P2 |
# | [05-llm-probe](05-llm-probe.ipynb) | a single-backward prefill probe flags LLM hallucination | P2 |
# | [06-pi-expansion](06-pi-expansion.ipynb) | [π, π, x, π, π] inputs speed up and sharpen 1-D function fitting | P4 |
#
# Everything below is generated: our numbers from the committed `results/<profile>/*.json`, the
# papers' numbers from `nup_utils/paper.py` (labelled *paper* or *summary*). Verdicts are
# `reproduced`, `partially_reproduced`, `not_reproduced` or `inconclusive`; a claim marked
# *borderline* sits so close to its rule's threshold that a re-run on another CPU may land on the
# neighbouring verdict.

# %%
import json
import os

import torch
from IPython.display import Markdown, display

from nup_utils import data, paper, paths, report, runtime

# %% tags=["parameters"]
PROFILE = "auto"  # smoke | quick | cpu | full | auto (full with CUDA, else quick)
SEED = 0  # unused here; every notebook starts with the same two parameters

# %% [markdown]
# ## Verdicts at a glance
# Per notebook and claim: the headline metric with its 95% interval and the verdict with its reason,
# for the `quick` profile (CPU, minutes; what CI re-runs), the `cpu` tier (notebooks 02–04 only: up to two
# hours on 2 CPU cores, baselines of at least 75%, the CPU verdicts of those notebooks) and the `full` profile
# (GPU) side by side; then the regime of each run — how its setting differs from the paper's, with that run's
# numbers.

# %% tags=["results-overview"]
display(Markdown(report.overview(runtime.PUBLISHED)))

# %% [markdown]
# ## The papers' numbers (one table in code, with labels)

# %%
rows = ["| notebook | key | value | quantity |", "|---|---|---|---|"]
rows += [
    f"| {e['notebook']} | `{key}` | {paper.fmt(key)} | {e['quantity']} |" for key, e in paper.PAPER_NUMBERS.items()
]
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Environment check
# Versions, device, threads, and the offline data (`NUP_DATA_DIR`; CI uses `../shared/data`,
# unset means torchvision downloads). A missing dataset is reported here, never silently replaced.

# %%
P = runtime.resolve_profile(PROFILE)
device = runtime.resolve_device("auto")
print(f"profile: {PROFILE} -> {P}")
print(f"device:  {runtime.device_name(device)}  (CUDA available: {torch.cuda.is_available()})")
print(f"threads: {runtime.threads_info()}")
print(json.dumps(runtime.versions(), indent=1))
print("NUP_DATA_DIR =", os.environ.get("NUP_DATA_DIR", "(unset: torchvision downloads)"))
print("cache dir    =", paths.cache_dir())
found = {}
for name, loader in [
    ("CIFAR-10 test", lambda: data.load_cifar10("test")),
    ("MNIST test", lambda: data.load_mnist("test")),
]:
    try:
        split = loader()
        found[name] = split.source
        print(f"{name:14s} {data.describe(split)}")
    except data.DataNotFoundError as exc:
        found[name] = None
        print(f"{name:14s} NOT FOUND: {exc}")

# %% tags=["nbval-check-output"]
# Verdict: the environment can run the notebooks.
assert torch.__version__.startswith("2.13.0"), torch.__version__
import torchvision  # noqa: E402,F401  (fails with the wrong torch build)

assert all(found.values()), f"missing data: {[k for k, v in found.items() if not v]}"
print("environment: ok")

# %% [markdown]
# **What this shows / limits.** Only that the environment and data are in place, and what the
# committed results say. Each claim's protocol, controls, rules and uncertainty are in its own
# notebook; a verdict holds for the regime its run states, not beyond it.
