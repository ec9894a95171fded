"""Estimators as layers: an oracle, a perturbation and a vector-Jacobian-product rule.

:mod:`colayers.layers.core` holds the composition (:class:`Perturbed`, :func:`perturbed`, :class:`OracleLayer`),
:mod:`colayers.layers.rules` the VJP rules, :mod:`colayers.layers.active_set` the implicit differentiation of the
regularized layers; ``docs/estimators.md`` has the formulas, the table of named estimators and a guide to choosing
one.
"""

from . import functional as functional  # the functional twins: colayers.layers.functional
from .active_set import active_set_vjp
from .core import OracleLayer, Perturbed, draws_noise, perturbed
from .frank_wolfe import NegativeEntropy, Regularizer, SquaredNorm
from .identity import IdentityRelaxation
from .imle import AIMLE, IMLE, Blackbox
from .perturbed import PerturbedAdditive, PerturbedMultiplicative
from .pushforward import Pushforward, pushforward
from .regularized import RegularizedFrankWolfe, RegularizedLayer, SoftArgmax, SparseArgmax
from .rules import (
    AdaptiveLambda,
    BackwardContext,
    FiniteDifferenceRule,
    IdentityRule,
    ScoreFunctionRule,
    VJPRule,
    finite_difference_vjp,
    identity_vjp,
    score_function_vjp,
)
from .soft_sort import SoftRank, SoftSort, isotonic_regression, soft_rank, soft_sort
from .wrap import FunctionOracle, oracle_layer

__all__: list[str] = [
    "OracleLayer",
    "Perturbed",
    "perturbed",
    "draws_noise",
    "VJPRule",
    "BackwardContext",
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
