"""Headless figures saved as PNG and PDF under ``figures/`` (or ``NUP_FIGURES_DIR``)."""

from __future__ import annotations

import io
import os

import matplotlib

if not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")  # headless scripts/tests; Jupyter kernels set MPLBACKEND to the inline backend

import matplotlib.pyplot as plt  # noqa: E402

from . import dryrun, paths  # noqa: E402

STYLE = {
    "figure.dpi": 80,  # inline (notebook) copies; files use savefig.dpi
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
}
plt.rcParams.update(STYLE)


def savefig(fig: plt.Figure, name: str, *, formats: tuple[str, ...] = ("png", "pdf")) -> list:
    """Save ``fig`` as figures/<name>.<fmt> atomically (name like '02-accuracy-per-arm')."""
    if not name or "/" in name or "." in name:
        raise ValueError(f"name={name!r}; expected a file stem like 'NN-what' without folder or extension")
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        # fixed metadata so PDFs are byte-stable across runs
        meta = {"CreationDate": None} if fmt == "pdf" else ({"Software": None} if fmt == "png" else None)
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=meta)
        out.append(paths.atomic_write_bytes(paths.figures_dir() / f"{name}.{fmt}", buf.getvalue()))
    return out


def errorbar_points(ax, labels, means, lows, highs, *, color=None, label=None, offset=0.0):
    """Points with asymmetric error bars (e.g. mean and 95% CI) at integer positions."""
    import numpy as np

    x = np.arange(len(labels)) + offset
    means, lows, highs = map(np.asarray, (means, lows, highs))
    yerr = np.array([means - lows, highs - means])  # (2, n)
    if dryrun.active():  # a dry run's padded numbers mean nothing; an interval may miss its estimate there
        yerr = np.clip(np.nan_to_num(yerr), 0, None)
    ax.errorbar(x, means, yerr=yerr, fmt="o", capsize=3, color=color, label=label)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right")
    return ax


def show_compact(fig: plt.Figure, *, dpi: int = 60, quality: int = 70) -> None:
    """Show ``fig`` inline as a small JPEG and close it: for dense heat maps, whose inline PNG would
    bloat the published notebook (the PNG/PDF files written by :func:`savefig` keep full resolution)."""
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=dpi, bbox_inches="tight", pil_kwargs={"quality": quality})
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="jpeg"))
