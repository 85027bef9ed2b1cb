"""The papers' numbers: the only place where a number is typed by hand, each with its source and
label ("paper": stated in the paper's abstract/front matter; "summary": from third-party summaries of
the full text, unconfirmed). See ../shared/papers.md. Notebooks and the README read them from here.
"""

from __future__ import annotations

P1 = (
    "P1: Zhang et al., On the uncertainty principle of neural networks, arXiv 2205.01493 (iScience); "
    "sequel arXiv 2402.10983 (Natl Sci Rev 11(9) nwae141, 2024)"
)
P1_SR = "Scientific Reports 2024 companion paper to P1"
P2 = (
    "P2: Neural Uncertainty Principle: a unified view of adversarial fragility and LLM hallucination, "
    "arXiv 2603.19562 (2026)"
)
P3 = "P3: A geometric probe of the accuracy-robustness trade-off: sharp boundaries in SBDE, arXiv 2602.17948 (2026)"
P4 = "P4: Hardware-friendly input expansion for accelerating function approximation, arXiv 2602.17952 (2026)"

LABELS = ("paper", "summary")

# key -> entry. value is in the unit given (percent as 90.47, not 0.9047).
PAPER_NUMBERS: dict[str, dict] = {
    "p1_bound": dict(
        notebook="01", quantity="lower bound on dx_i * dp_i", value=0.5, unit="", label="paper", source=P1
    ),
    "p1_googlenet_clean": dict(
        notebook="01", quantity="GoogLeNet CIFAR-10 clean accuracy", value=90.78, unit="%", label="paper", source=P1_SR
    ),
    "p1_googlenet_fgsm": dict(
        notebook="01",
        quantity="GoogLeNet CIFAR-10 accuracy under FGSM",
        value=3.67,
        unit="%",
        label="paper",
        source=P1_SR,
    ),
    "p3_baseline_acc": dict(
        notebook="02",
        quantity="CIFAR-10 ResNet-18 clean accuracy, baseline",
        value=90.47,
        unit="%",
        label="paper",
        source=P3,
    ),
    "p3_sbde_acc": dict(
        notebook="02",
        quantity="CIFAR-10 ResNet-18 clean accuracy, SBDE",
        value=95.63,
        unit="%",
        label="paper",
        source=P3,
    ),
    "p2_cifar_clean": dict(
        notebook="04",
        quantity="CIFAR-10 clean accuracy (setting unknown)",
        value=89.5,
        unit="%",
        label="summary",
        source=P2,
    ),
    "p2_auroc": dict(
        notebook="05",
        quantity="prefill hallucination detection, mean AUROC (Benchmark-500)",
        value=0.6939,
        unit="",
        label="summary",
        source=P2,
    ),
    "p4_iter_reduction": dict(
        notebook="06",
        quantity="LBFGS iterations, Exp-5 vs Std, mean reduction",
        value=12.0,
        unit="%",
        label="paper",
        source=P4,
    ),
    "p4_mse_reduction": dict(
        notebook="06",
        quantity="final MSE, Exp-5 vs Std, mean reduction",
        value=66.3,
        unit="%",
        label="paper",
        source=P4,
    ),
    "p4_std_iters": dict(
        notebook="06",
        quantity="Std (1-D) iterations, mean over 10 functions",
        value=473,
        std=82,
        unit="iters",
        label="summary",
        source=P4,
    ),
    "p4_std_mse": dict(
        notebook="06",
        quantity="Std (1-D) test MSE, mean over 10 functions",
        value=7.60,
        std=11.13,
        unit="1e-2",
        label="summary",
        source=P4,
    ),
    "p4_exp5_iters": dict(
        notebook="06", quantity="Exp-5 (pi) iterations", value=416, std=131, unit="iters", label="summary", source=P4
    ),
    "p4_exp5_mse": dict(
        notebook="06", quantity="Exp-5 (pi) test MSE", value=2.56, std=4.71, unit="1e-2", label="summary", source=P4
    ),
    "p4_adjusted_iters": dict(
        notebook="06",
        quantity="Adjusted width-matched 1-D iterations",
        value=496,
        std=10,
        unit="iters",
        label="summary",
        source=P4,
    ),
    "p4_adjusted_mse": dict(
        notebook="06",
        quantity="Adjusted width-matched 1-D test MSE",
        value=4.99,
        std=6.66,
        unit="1e-2",
        label="summary",
        source=P4,
    ),
    "p4_exp3_iters": dict(
        notebook="06", quantity="Exp-3 (pi) iterations", value=461, unit="iters", label="summary", source=P4
    ),
    "p4_exp3_mse": dict(
        notebook="06", quantity="Exp-3 (pi) test MSE", value=4.73, unit="1e-2", label="summary", source=P4
    ),
    "p4_exp7_iters": dict(
        notebook="06", quantity="Exp-7 (pi) iterations", value=464, unit="iters", label="summary", source=P4
    ),
    "p4_exp7_mse": dict(
        notebook="06", quantity="Exp-7 (pi) test MSE", value=2.38, unit="1e-2", label="summary", source=P4
    ),
    "p4_rel_mse_mixed": dict(
        notebook="06",
        quantity="5-D MSE relative to pi, constants (0, 1, e)",
        value=1.08,
        unit="x",
        label="summary",
        source=P4,
    ),
    "p4_rel_mse_e": dict(
        notebook="06", quantity="5-D MSE relative to pi, constant e", value=1.15, unit="x", label="summary", source=P4
    ),
    "p4_rel_mse_1": dict(
        notebook="06", quantity="5-D MSE relative to pi, constant 1", value=1.32, unit="x", label="summary", source=P4
    ),
    "p4_rel_mse_0": dict(
        notebook="06", quantity="5-D MSE relative to pi, constant 0", value=1.47, unit="x", label="summary", source=P4
    ),
}

for _k, _e in PAPER_NUMBERS.items():  # the table itself is checked at import
    assert _e["label"] in LABELS, _k


def get(key: str) -> dict:
    if key not in PAPER_NUMBERS:
        raise KeyError(f"unknown paper number {key!r}; known: {', '.join(PAPER_NUMBERS)}")
    return {"key": key, **PAPER_NUMBERS[key]}


def for_notebook(nn: str) -> list[dict]:
    return [get(k) for k, e in PAPER_NUMBERS.items() if e["notebook"] == nn]


def fmt(key: str) -> str:
    e = get(key)
    std = f" ± {e['std']:g}" if "std" in e else ""
    unit = e["unit"] if e["unit"] in ("%", "") else f" {e['unit']}"
    return f"{e['value']:g}{std}{unit} ({e['label']})"
