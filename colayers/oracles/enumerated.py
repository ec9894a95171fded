r"""An oracle over an explicit list of solutions: one matrix product and an argmax, exact and batched."""

from __future__ import annotations

import itertools
import math

import torch

from .._validation import check_finite, check_int_at_least, check_tensor
from .base import Oracle

__all__ = ["EnumeratedOracle", "grid_dag_paths"]


class EnumeratedOracle(Oracle):
    r"""Exact argmax over a finite set of solutions given as a list: :math:`f(\theta) = y_{k^\star}` with

    .. math::  k^\star = \operatorname*{argmax}_{k = 1..K} \langle \theta, y_k \rangle,

    computed for a whole batch as one matrix product ``theta (N, d) @ Y.T (d, K)`` and an argmax over K —
    no solver call, tensor-native on any device. When the set :math:`\mathcal{Y}` is small (the 70 paths of
    the 5 × 5 grid DAG, the :math:`\binom{n}{k}` subsets of a small n...) it is the fastest exact oracle:
    O(N d K) multiply-adds. Ties go to the lowest index k. Scores are accumulated in θ's dtype, or in float32
    for float16 / bfloat16 θ, and the solution is returned in θ's dtype on θ's device.

    Args:
        solutions: a tensor (or nested sequence) of shape ``(K, *event)``, K ≥ 1 distinct finite solutions; the
            event shape of θ is ``solutions.shape[1:]``.
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> pairs = EnumeratedOracle([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # 2-subsets of 3
        >>> pairs(torch.tensor([[3.0, -1.0, 2.0], [0.0, 1.0, 1.0]]))
        tensor([[1., 0., 1.],
                [0., 1., 1.]])
        >>> pairs.contains(torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
        tensor([ True, False])
        >>> grid = EnumeratedOracle(grid_dag_paths(5, 5))  # same answers as GridDAGShortestPath(5, 5)
        >>> grid.num_solutions, grid.event_shape
        (70, (40,))
    """

    def __init__(self, solutions, *, validate_args: bool | None = None) -> None:
        super().__init__(validate_args=validate_args)
        table = solutions if isinstance(solutions, torch.Tensor) else torch.as_tensor(solutions, dtype=torch.float64)
        check_tensor("solutions", table)
        if table.ndim < 2 or table.shape[0] == 0:
            raise ValueError(f"solutions must have shape (K, *event) with K ≥ 1; got shape {tuple(table.shape)}")
        check_finite("solutions", table)
        flat = table.reshape(table.shape[0], -1)
        if torch.unique(flat, dim=0).shape[0] != flat.shape[0]:
            raise ValueError("solutions must be distinct (a repeated row would only tie with itself)")
        self.solutions = table.detach().clone()
        self.num_solutions = table.shape[0]
        self.event_shape = tuple(table.shape[1:])
        self.event_ndim = len(self.event_shape)
        self._copies: dict[tuple, torch.Tensor] = {}

    def _table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        table = self._copies.get(key)
        if table is None:
            table = self._copies[key] = self.solutions.reshape(self.num_solutions, -1).to(device=device, dtype=dtype)
        return table

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        work = torch.float32 if theta.dtype in (torch.float16, torch.bfloat16) else theta.dtype
        flat = theta.reshape(theta.shape[0], math.prod(self.event_shape)).to(work)
        scores = flat @ self._table(theta.device, work).T  # (N, K)
        best = scores.argmax(dim=1)  # the first maximum: ties go to the lowest k
        return self._table(theta.device, theta.dtype).index_select(0, best).reshape(theta.shape)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """Whether each y (shape ``(*batch, *event)``) is one of the listed solutions: a bool tensor ``batch``."""
        check_tensor("y", y)
        batch = y.shape[: y.ndim - self.event_ndim]
        if tuple(y.shape[len(batch) :]) != self.event_shape:
            event = ", ".join(map(str, self.event_shape))
            raise ValueError(f"y must have shape (*batch, {event}); got {tuple(y.shape)}")
        flat = y.reshape(math.prod(batch), 1, math.prod(self.event_shape))
        table = self._table(y.device, y.dtype)
        return (flat == table).all(dim=-1).any(dim=-1).reshape(batch)

    def __repr__(self) -> str:
        return f"EnumeratedOracle(num_solutions={self.num_solutions}, event_shape={self.event_shape})"


def grid_dag_paths(height: int, width: int, *, max_paths: int = 100_000) -> torch.Tensor:
    r"""All :math:`\binom{h+w-2}{h-1}` top-left → bottom-right paths of the grid DAG, as 0/1 edge vectors.

    Rows are in the edge order of :class:`~colayers.oracles.GridDAGShortestPath` (PyEPO's), so
    ``EnumeratedOracle(grid_dag_paths(h, w))`` and ``GridDAGShortestPath(h, w)`` solve the same problem.

    The number of paths grows like :math:`4^{\min(h, w)}`: 70 for 5 × 5, 48,620 for 10 × 10, 155,117,520 for
    16 × 16 (300 GB as float32). A grid with more than ``max_paths`` paths is refused before anything is allocated,
    with the count; :class:`~colayers.oracles.GridDAGShortestPath` solves any grid without listing its paths.

    Args:
        height, width: the grid's size (integers ≥ 1, at least 2 vertices).
        max_paths: the most paths to list (an integer ≥ 1; raise it knowingly: the result takes
            ``4 · paths · edges`` bytes).

    Example:
        >>> grid_dag_paths(2, 2)  # down-right, then right-down; edges (0,1), (0,2), (1,3), (2,3)
        tensor([[0., 1., 0., 1.],
                [1., 0., 1., 0.]])
        >>> grid_dag_paths(16, 16)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: grid_dag_paths(16, 16) would list 155117520 paths of 480 edges (297.8 GB as float32), ...
    """
    from .grid import GridDAGShortestPath

    grid = GridDAGShortestPath(height, width)  # checks height and width
    limit = check_int_at_least("max_paths", max_paths, 1)
    h, w = grid.height, grid.width
    count, num_edges = math.comb(h + w - 2, h - 1), len(grid.edges)
    if count > limit:
        raise ValueError(
            f"grid_dag_paths({h}, {w}) would list {count} paths of {num_edges} edges "
            f"({4 * count * num_edges / 1e9:.1f} GB as float32), more than max_paths={limit}; use "
            f"GridDAGShortestPath({h}, {w}), which solves the grid without listing its paths, or raise max_paths"
        )
    edges = {edge: k for k, edge in enumerate(grid.edges)}
    steps = h + w - 2
    used = []  # the edges of each path, path after path
    for downs in itertools.combinations(range(steps), h - 1):  # which steps go down
        v = 0
        for step in range(steps):
            nxt = v + w if step in downs else v + 1
            used.append(edges[(v, nxt)])
            v = nxt
    index = torch.tensor(used, dtype=torch.long).reshape(count, steps)
    return torch.zeros((count, num_edges), dtype=torch.float32).scatter_(1, index, 1.0)
