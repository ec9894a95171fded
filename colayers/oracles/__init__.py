"""Combinatorial oracles: the :class:`Oracle` abstraction, the per-instance solver wrapper, built-in solvers."""

from .base import Oracle, OracleError, SolverOracle
from .grid import GridDAGShortestPath, GridVertexShortestPath
from .simplex import ArgmaxOneHot, Ranking, TopKSubset

__all__ = [
    "Oracle",
    "OracleError",
    "SolverOracle",
    "ArgmaxOneHot",
    "TopKSubset",
    "Ranking",
    "GridDAGShortestPath",
    "GridVertexShortestPath",
]
