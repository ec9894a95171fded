"""colayers: combinatorial-optimization layers and structured losses for PyTorch, under one probabilistic view.

The public API is re-exported here from the subpackages (each defines ``__all__``):
``colayers.oracles``, ``colayers.perturb``, ``colayers.layers``, ``colayers.losses``, ``colayers.metrics``.
"""

from . import layers, losses, metrics, oracles, perturb
from ._validation import get_default_validate_args, set_default_validate_args
from .distribution import SolutionDistribution
from .layers import *  # noqa: F403
from .losses import *  # noqa: F403
from .oracles import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [
    "perturb",
    "metrics",
    "SolutionDistribution",
    "set_default_validate_args",
    "get_default_validate_args",
    *oracles.__all__,
    *layers.__all__,
    *losses.__all__,
]
