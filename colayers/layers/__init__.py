"""Estimators as layers: one distribution over solutions plus a vector-Jacobian-product rule.

See :mod:`colayers.layers.core` for the shared machinery (the VJP rules) and ``docs/estimators.md`` for the
formulas and a guide to choosing an estimator.
"""

from . import functional as functional  # the functional twins: colayers.layers.functional
from .core import (
    OracleLayer,
    active_set_vjp,
    finite_difference_vjp,
    identity_vjp,
    score_function_vjp,
)
from .identity import IdentityRelaxation
from .imle import AIMLE, IMLE, Blackbox
from .perturbed import Perturbed, PerturbedAdditive, PerturbedMultiplicative
from .pushforward import Pushforward
from .frank_wolfe import NegativeEntropy, Regularizer, SquaredNorm
from .regularized import RegularizedFrankWolfe, RegularizedLayer, SoftArgmax, SparseArgmax
from .soft_sort import SoftRank, SoftSort, isotonic_regression, soft_rank, soft_sort

__all__: list[str] = [
    "OracleLayer",
    "Perturbed",
    "PerturbedAdditive",
    "PerturbedMultiplicative",
    "IMLE",
    "AIMLE",
    "Blackbox",
    "IdentityRelaxation",
    "SoftArgmax",
    "SparseArgmax",
    "RegularizedFrankWolfe",
    "RegularizedLayer",
    "Regularizer",
    "SquaredNorm",
    "NegativeEntropy",
    "SoftSort",
    "SoftRank",
    "soft_sort",
    "soft_rank",
    "isotonic_regression",
    "Pushforward",
    "score_function_vjp",
    "finite_difference_vjp",
    "identity_vjp",
    "active_set_vjp",
]
