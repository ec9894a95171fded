"""The solution pool lives in :mod:`colayers.oracles.pool` (it is an oracle); this module keeps its old import path."""

from ..oracles.pool import SolutionPool

__all__ = ["SolutionPool"]
