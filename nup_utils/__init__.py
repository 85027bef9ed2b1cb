"""nup: a Jupyter-first companion that reproduces and stress-tests the Neural Uncertainty Principle papers.

Flat modules, imported module-qualified in notebooks (``from nup_utils import data, models``).
"""

__version__ = "0.1.0"
