"""The ten 1-D target functions of P4 (notebook 06), on the domain [0, 2*pi].

The paper's list (label "summary"): F1 sum of sines, F2 square, F3 sawtooth, F4 triangle,
F5 amplitude-modulated, F6 chirp, F7 variable-duty-cycle square, F8 unknown (probably
high-frequency), F9 Weierstrass, F10 comb of spikes. The paper's exact formulas, frequencies and
amplitudes are unknown: every constant below is OUR choice (picked so that each target has a few
features on [0, 2*pi] and stays within about [-2, 2]); F8 is our choice for the unknown function.

Every target maps a float tensor of any shape to a tensor of the same shape and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DOMAIN = (0.0, 2 * math.pi)
CATEGORIES = ("smooth", "discontinuous", "high-frequency", "non-differentiable")


def _frac(t: torch.Tensor) -> torch.Tensor:
    return t - torch.floor(t)


def sum_of_sines(x):  # F1
    return torch.sin(x) + 0.5 * torch.sin(3 * x) + 0.25 * torch.sin(5 * x)


def square(x):  # F2: 3 periods; sign(0) := +1 so the target is exactly two-valued
    return torch.where(torch.sin(3 * x) >= 0, 1.0, -1.0).to(x.dtype)


def sawtooth(x):  # F3: 3 periods, ramps from -1 to 1, jumps back
    return 2 * _frac(3 * x / (2 * math.pi)) - 1


def triangle(x):  # F4: 3 periods, kinks at the peaks
    return 1 - 2 * torch.abs(2 * _frac(3 * x / (2 * math.pi)) - 1)


def amplitude_modulated(x):  # F5: carrier 8 rad^-1 under a slow envelope
    return (1 + 0.5 * torch.cos(x)) * torch.sin(8 * x)


def chirp(x):  # F6: instantaneous frequency 2x grows from 0 to 4*pi (about 6 cycles in all)
    return torch.sin(x * x)


def variable_duty_square(x):  # F7: 4 periods; the high fraction falls from ~80% to ~20% along x
    threshold = 0.8 * (x / math.pi - 1)  # -0.8 .. 0.8
    return torch.where(torch.sin(4 * x) >= threshold, 1.0, -1.0).to(x.dtype)


def high_frequency(x):  # F8 (ours): 12 periods on [0, 2*pi] plus a slow component
    return torch.sin(12 * x) + 0.5 * torch.sin(x)


WEIERSTRASS_A, WEIERSTRASS_B, WEIERSTRASS_TERMS = 0.5, 3, 8  # a*b = 1.5 >= 1: nowhere differentiable (limit)


def weierstrass(x):  # F9: truncated sum_n a^n cos(b^n x), n = 0..7
    out = torch.zeros_like(x)
    for n in range(WEIERSTRASS_TERMS):
        out = out + WEIERSTRASS_A**n * torch.cos(WEIERSTRASS_B**n * x)
    return out


COMB_CENTRES = tuple((k + 0.5) * 2 * math.pi / 6 for k in range(6))  # 6 spikes, evenly spaced
COMB_WIDTH = 0.08  # Gaussian sigma (rad): narrow compared with the spacing 1.05


def comb(x):  # F10: sum of narrow Gaussian spikes of height 1
    out = torch.zeros_like(x)
    for c in COMB_CENTRES:
        out = out + torch.exp(-0.5 * ((x - c) / COMB_WIDTH) ** 2)
    return out


@dataclass(frozen=True)
class Target:
    key: str  # "F1" .. "F10"
    name: str
    category: str  # one of CATEGORIES (our assignment)
    formula: str  # LaTeX, shown in the notebook
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


TARGETS: tuple[Target, ...] = (
    Target("F1", "sum of sines", "smooth", r"\sin x + \tfrac12\sin 3x + \tfrac14\sin 5x", sum_of_sines),
    Target("F2", "square", "discontinuous", r"\mathrm{sgn}\,\sin 3x", square),
    Target("F3", "sawtooth", "discontinuous", r"2\,\mathrm{frac}(3x/2\pi) - 1", sawtooth),
    Target("F4", "triangle", "non-differentiable", r"1 - 2\,|2\,\mathrm{frac}(3x/2\pi) - 1|", triangle),
    Target("F5", "amplitude-modulated", "smooth", r"(1 + \tfrac12\cos x)\,\sin 8x", amplitude_modulated),
    Target("F6", "chirp", "high-frequency", r"\sin(x^2)", chirp),
    Target(
        "F7",
        "variable-duty square",
        "discontinuous",
        r"\mathrm{sgn}\,[\sin 4x - 0.8\,(x/\pi - 1)]",
        variable_duty_square,
    ),
    Target("F8", "high-frequency (ours)", "high-frequency", r"\sin 12x + \tfrac12 \sin x", high_frequency),
    Target("F9", "Weierstrass", "non-differentiable", r"\sum_{n=0}^{7} 0.5^n \cos(3^n x)", weierstrass),
    Target(
        "F10",
        "comb of spikes",
        "high-frequency",
        r"\sum_{k=0}^{5} \exp[-(x - c_k)^2 / (2\cdot 0.08^2)],\ c_k = (k+\tfrac12)\,\pi/3",
        comb,
    ),
)
KEYS = tuple(t.key for t in TARGETS)


def get(key: str) -> Target:
    for t in TARGETS:
        if t.key == key:
            return t
    raise ValueError(f"function={key!r}; allowed values: {', '.join(KEYS)}")


def sample(key: str, n_train: int, n_test: int, gen: torch.Generator, *, dtype: torch.dtype = torch.float32):
    """Training points: ``n_train`` uniform random x on [0, 2*pi] drawn with ``gen``; test points: the
    midpoints of ``n_test`` equal cells of the domain (ours: an evenly spaced grid with both ends puts
    points exactly on the jumps of F2 and F3, fixing an MSE floor for every arm; no midpoint is within
    1e-6 of a jump of F2, F3 or F7, see the tests). Returns (x_train, y_train, x_test, y_test), each (N, 1)."""
    if not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train={n_train!r}; expected a positive int")
    if not isinstance(n_test, int) or n_test < 2:
        raise ValueError(f"n_test={n_test!r}; expected an int >= 2")
    target = get(key)
    lo, hi = DOMAIN
    # drawn in float64 and cast, so float32 and float64 runs see the same points
    x_train = (lo + (hi - lo) * torch.rand(n_train, 1, generator=gen, dtype=torch.float64)).to(dtype)
    x_test = (lo + (hi - lo) * (torch.arange(n_test, dtype=torch.float64) + 0.5) / n_test)[:, None].to(dtype)
    return x_train, target(x_train), x_test, target(x_test)
