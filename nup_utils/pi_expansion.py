"""Notebook 06's experiment around :mod:`nup_utils.piexp`: the tables, the claims with their statements
and paper numbers, the paper-literal sensitivity run and the fit explorer.

Shapes: ``records`` is the list of fit dicts of :func:`piexp.run_grid` (one per function, arm, seed);
``summary`` is :func:`piexp.arm_summary`'s list of per-arm dicts. Intervals come from :mod:`piexp`
(paired log ratios over successful pairs, t-interval; failure rates with Wilson intervals).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from . import functions, metrics, paper, piexp, report, results, runtime

STATEMENTS = {
    "fewer-iterations": "Exp-5 (π) fits faster than Std (paper: {p4_iter_reduction} fewer LBFGS iterations)",
    "lower-mse": "Exp-5 (π) reaches a lower final test MSE than Std (paper: {p4_mse_reduction} lower)",
    "pi-best-constant": "In 5-D, π gives a lower test MSE than e, 1, 0 and mixed (0, 1, e)",
    "five-d-best": "5-D is the best expansion dimension: faster than 3-D and 7-D",
    "bias-control": "[recon, ours] A 1-D model with Exp-5's effective bias and its scale (Bias-ctrl) fits like Exp-5",
    "zero-expansion-check": "[check] An all-zero 5-D expansion fits like Std (same function class)",
}
HEADLINES = {
    "fewer-iterations": "evals_reduction",
    "lower-mse": "mse_reduction",
    "pi-best-constant": "log_mse_0_vs_pi",
    "five-d-best": "log_evals_3_vs_5",
    "bias-control": "log_mse_ctrl_vs_exp5",
    "zero-expansion-check": "log_mse_zero_vs_std",
}
PAPER_KEYS = {
    "fewer-iterations": ("p4_iter_reduction", "p4_std_iters", "p4_exp5_iters"),
    "lower-mse": ("p4_mse_reduction", "p4_std_mse", "p4_exp5_mse", "p4_adjusted_mse"),
    "pi-best-constant": ("p4_rel_mse_mixed", "p4_rel_mse_e", "p4_rel_mse_1", "p4_rel_mse_0"),
    "five-d-best": ("p4_exp3_iters", "p4_exp5_iters", "p4_exp7_iters"),
}


# ---------------------------------------------------------------- the setting
def targets_table() -> str:
    rows = [[t.key, t.name, t.category, f"${t.formula}$"] for t in functions.TARGETS]
    return report.md_table(["key", "name", "category", "formula"], rows)


def targets_figure(n: int = 2000):
    """The ten target functions on their domain, ``n`` points each."""
    xs = torch.linspace(*functions.DOMAIN, n, dtype=torch.float64)[:, None]
    fig, axes = plt.subplots(2, 5, figsize=(12, 3.6), sharex=True)
    for ax, t in zip(axes.flat, functions.TARGETS):
        ax.plot(xs.flatten(), t(xs).flatten(), lw=0.8)
        ax.set_title(f"{t.key}: {t.name}", fontsize=8)
    fig.tight_layout()
    return fig


def parameter_counts(seed: int) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in arm.build(runtime.make_generator(seed)).parameters())
        for name, arm in piexp.ARMS.items()
    }


def arms_table(n_params: dict[str, int]) -> str:
    rows = [[n, piexp.layout(a), a.widths, f"{n_params[n]:,}", a.label] for n, a in piexp.ARMS.items()]
    return report.md_table(["arm", "input", "widths", "parameters", "label"], rows)


def _ok(value, fmt: str, scale: float = 1.0) -> str:
    """A mean over successful fits, or a dash where none succeeded (arm_summary's None)."""
    return "—" if value is None else format(scale * value, fmt)


def fits_table(summary: list[dict]) -> str:
    """Per arm: failures, iterations, evaluations, caps, speed and test MSE (successful fits; "—": none)."""
    header = ["arm", "failed", "iterations (ok)", "evaluations (ok)", "at cap", "reached R²=0.99"]
    header += ["median evals to R²=0.99 (censored)", "geo-mean test MSE ×10⁻² (ok)", "wall s/fit"]
    rows = [
        [
            s["arm"],
            f"{s['failed']}/{s['fits']}",
            _ok(s["iters_ok_mean"], ".0f"),
            _ok(s["evals_ok_mean"], ".0f"),
            f"{s['at_cap']}/{s['fits']}",
            f"{s['reached_target']}/{s['fits'] - s['failed']}",
            f"{s['evals_to_target_median_censored']:.0f}",
            _ok(s["test_mse_geomean_ok"], ".3g", 100),
            f"{s['wall_s_mean']:.1f}",
        ]
        for s in summary
    ]
    return report.md_table(header, rows)


# ---------------------------------------------------------------- claims
def claims(records: list[dict], summary: list[dict], rules: dict, *, profile: str, funcs, seeds) -> list[dict]:
    """Every declared claim, decided by its rule from :func:`piexp.claim_metrics`; the regime is computed."""
    metrics_ = piexp.claim_metrics(records)
    n_failed, n_cap = sum(s["failed"] for s in summary), sum(s["at_cap"] for s in summary)
    regime = (
        f"ours: float64 + strong-Wolfe LBFGS (the paper's precision and line search are unknown); "
        f"{len(funcs)} of 10 functions × {len(seeds)} seeds; {n_cap / len(records):.0%} of fits ran to a cap; "
        f"{n_failed} of {len(records)} fits failed"
    )
    fmt = {k: paper.fmt(k) for k in ("p4_iter_reduction", "p4_mse_reduction")}
    return [
        results.claim(
            cid,
            STATEMENTS[cid].format(**fmt),
            rules[cid],
            metrics_[cid],
            profile=profile,
            headline=HEADLINES[cid],
            paper_keys=PAPER_KEYS.get(cid, ()),
            regime=regime,
            protocol="paired log ratios over successful (function, seed) pairs; t-interval",
        )
        for cid in rules
    ]


def claim_lines(claims_: list[dict]) -> str:
    lines = []
    for c in claims_:
        lines.append(f"{c['id']}: {c['verdict']} — {c['reason']}")
        lines += [f"    {name:26s} {metrics.fmt(m, digits=3)}  (n={m['n']})" for name, m in c["metrics"].items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- sensitivity (descriptive, no verdict)
def sensitivity(literal: list[dict], records: list[dict]) -> tuple[dict, str]:
    """The paper-literal fits (Std and Exp-5) against the primary ones: failure rates and the log MSE
    ratio over successful pairs (None, said in the table, when too few pairs succeeded)."""
    arms = ("Std", "Exp-5")
    sens = {
        "failure_rate": {a: piexp.failure_rate(literal, a) for a in arms},
        "summary": piexp.arm_summary(literal, arms),
        "log_mse_exp5_vs_std": None,
        "not_computable": None,
    }
    try:
        sens["log_mse_exp5_vs_std"] = piexp.log_ratio(literal, "Std", "Exp-5", "test_mse")
    except ValueError as exc:  # too few successful pairs: said, not hidden
        sens["not_computable"] = str(exc)
    primary = piexp.claim_metrics(records)["lower-mse"]["mse_reduction"]
    rows = [
        [
            "primary (float64, strong Wolfe)",
            metrics.fmt(piexp.failure_rate(records, "Std")),
            metrics.fmt(piexp.failure_rate(records, "Exp-5")),
            metrics.fmt(primary) + " (as reduction)",
        ],
        [
            "paper-literal (float32, none, zero bias)",
            metrics.fmt(sens["failure_rate"]["Std"]),
            metrics.fmt(sens["failure_rate"]["Exp-5"]),
            metrics.fmt(sens["log_mse_exp5_vs_std"]) if sens["log_mse_exp5_vs_std"] else "— (too few pairs)",
        ],
    ]
    header = ["protocol", "failed Std", "failed Exp-5", "log test-MSE ratio Exp-5/Std (successful pairs)"]
    return sens, report.md_table(header, rows)


def extra(summary, n_params, records, literal, sens) -> dict:
    """The results file's ``extra``: every fit of both protocols and the per-arm summaries."""
    return {
        "arm_summary": summary,
        "n_params": n_params,
        "fits": [piexp.fit_record(r) for r in records],
        "paper_literal": {
            "arm_summary": sens["summary"],
            "fits": [piexp.fit_record(r) for r in literal],
            "failure_rate": sens["failure_rate"],
            "log_mse_exp5_vs_std": sens["log_mse_exp5_vs_std"],
        },
    }


# ---------------------------------------------------------------- explorer
def explorer(records: list[dict], funcs, arms, seeds, n_test: int):
    """A widget to pick (function, arm, seed, comparison arm) in a live kernel; one static example in
    batch runs (``NUP_HEADLESS=1``)."""
    from IPython.display import display

    by_key = {(r["function"], r["arm"], r["seed"]): r for r in records}

    def show_fit(function=funcs[0], arm="Exp-5", seed=seeds[0], compare="Std"):
        piexp.plot_fit(by_key, function, arm, compare, seed, n_test)
        plt.show()

    if not runtime.widgets_enabled():
        return show_fit()
    import ipywidgets as widgets

    display(
        widgets.interactive(
            show_fit,
            function=widgets.Dropdown(options=list(funcs)),
            arm=widgets.Dropdown(options=list(arms), value="Exp-5"),
            seed=widgets.Dropdown(options=list(seeds)),
            compare=widgets.Dropdown(options=list(arms), value="Std"),
        )
    )
