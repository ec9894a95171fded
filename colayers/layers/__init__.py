"""Estimators as layers: an oracle, a perturbation and a vector-Jacobian-product rule.

See :mod:`colayers.layers.core` for the shared pieces (the rules, :class:`Perturbed`, :func:`perturbed`) and
``docs/estimators.md`` for the formulas, the table of presets and a guide to choosing an estimator.
"""

from . import functional as functional  # the functional twins: colayers.layers.functional
from .core import (
    AdaptiveLambda,
    FiniteDifferenceRule,
    IdentityRule,
    OracleLayer,
    Perturbed,
    Preset,
    ScoreFunctionRule,
    VJPRule,
    active_set_vjp,
    finite_difference_vjp,
    identity_vjp,
    perturbed,
    score_function_vjp,
)
from .identity import IdentityRelaxation
from .imle import AIMLE, IMLE, Blackbox
from .frank_wolfe import NegativeEntropy, Regularizer, SquaredNorm
from .perturbed import PerturbedAdditive, PerturbedMultiplicative
from .pushforward import Pushforward, pushforward
from .regularized import RegularizedFrankWolfe, RegularizedLayer, SoftArgmax, SparseArgmax
from .soft_sort import SoftRank, SoftSort, isotonic_regression, soft_rank, soft_sort
from .wrap import FunctionOracle, oracle_layer

__all__: list[str] = [
    "OracleLayer",
    "Perturbed",
    "Preset",
    "perturbed",
    "VJPRule",
    "ScoreFunctionRule",
    "FiniteDifferenceRule",
    "AdaptiveLambda",
    "IdentityRule",
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
    "pushforward",
    "FunctionOracle",
    "oracle_layer",
    "score_function_vjp",
    "finite_difference_vjp",
    "identity_vjp",
    "active_set_vjp",
]
