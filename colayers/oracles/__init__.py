"""Combinatorial oracles: the :class:`Oracle` abstraction, the per-instance solver wrapper, built-in solvers."""

from .base import Oracle, OracleError, OracleWrapper, SolverOracle
from .cache import CachedOracle
from .combinatorial import BipartiteMatching, Knapsack, SpanningTree
from .counting import CountingOracle
from .enumerated import EnumeratedOracle, grid_dag_paths
from .grid import GridDAGShortestPath, GridVertexShortestPath
from .packing import PackingOracle
from .pool import SolutionPool
from .pyepo import PyEPOOracle  # imports the optional pyepo package only when a PyEPOOracle is built
from .simplex import ArgmaxOneHot, Ranking, TopKSubset
from .solvers import CvxpyOracle, LinearProgram

__all__ = [
    "Oracle",
    "OracleError",
    "OracleWrapper",
    "SolverOracle",
    "ArgmaxOneHot",
    "TopKSubset",
    "Ranking",
    "GridDAGShortestPath",
    "GridVertexShortestPath",
    "LinearProgram",
    "CvxpyOracle",
    "PyEPOOracle",
    "BipartiteMatching",
    "SpanningTree",
    "Knapsack",
    "CachedOracle",
    "CountingOracle",
    "SolutionPool",
    "EnumeratedOracle",
    "grid_dag_paths",
    "PackingOracle",
]
