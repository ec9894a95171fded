r"""Benchmark problems for comparative studies: seeded data generators, oracles and default models.

A :class:`Problem` bundles a training and a test split of features ``x``, true scores ``theta`` and optimal
solutions ``y = oracle(theta)``, the oracle, and a factory for a fresh default model ``x -> theta``. Every
problem follows the library's MAXIMIZATION convention: for a cost-minimization problem (``sense == "min"``)
the true scores are ``theta = -cost`` and the model outputs ``-predicted cost``.

Problems (:data:`~colayers.studies.registry.PROBLEMS`, built by :func:`make_problem`; one module each in
this package; a user's own problem is registered with :func:`~colayers.studies.registry.register_problem`):

* ``"shortest_path"`` — Elmachtoub & Grigas' generator on PyEPO's grid DAG (:func:`shortest_path_problem`);
* ``"warcraft"`` — procedurally generated terrain images, 8-neighbour vertex-weighted paths
  (:func:`warcraft_problem`, generator in :mod:`colayers.studies.warcraft`);
* ``"topk"`` and ``"ranking"`` — k-subset selection and ranking of items whose values are a noisy
  polynomial of features (:func:`topk_problem`, :func:`ranking_problem`);
* ``"knapsack"`` — PyEPO's knapsack generator (:func:`knapsack_problem`);
* ``"matching"`` — maximum-weight perfect bipartite matching with feature-dependent edge weights
  (:func:`matching_problem`);
* ``"tsp"`` — PyEPO's travelling salesman generator, exact tours (:func:`tsp_problem`);
* ``"portfolio"`` — PyEPO's Markowitz portfolio under a risk budget, a convex oracle (:func:`portfolio_problem`).

Every problem has a training, a validation and a test split: the study runner reports per-epoch curves on
the validation split and its final numbers on the test split. Data are generated on the CPU from the seed
alone and then moved to ``device``, so the same seed gives the same data on every device. All tensors are
float32.
"""

from ..registry import PROBLEMS
from .base import Problem, make_problem, polynomial_costs
from .knapsack import knapsack_problem
from .matching import matching_problem
from .portfolio import portfolio_problem
from .selection import ranking_problem, topk_problem
from .shortest_path import shortest_path_problem
from .tsp import tsp_problem
from .warcraft import warcraft_problem

__all__ = [
    "Problem",
    "make_problem",
    "PROBLEMS",
    "shortest_path_problem",
    "warcraft_problem",
    "topk_problem",
    "ranking_problem",
    "knapsack_problem",
    "matching_problem",
    "tsp_problem",
    "portfolio_problem",
    "polynomial_costs",
]
