r"""Classic combinatorial oracles: assignment / bipartite matching, maximum spanning tree, 0/1 knapsack.

All maximize :math:`\langle \theta, y \rangle` (a cost problem is served by ``theta = -cost``).
Matching and spanning tree wrap scipy per instance (:class:`~colayers.oracles.SolverOracle`, so they run on
any executor); the knapsack with integer weights is a tensor-native batched dynamic program (CPU or CUDA).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from .._validation import check_int_at_least
from . import _membership
from .base import Oracle, SolverOracle
from .solvers import LinearProgram

__all__ = ["BipartiteMatching", "SpanningTree", "Knapsack"]


def _assignment(theta: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(theta, maximize=True)
    y = np.zeros(theta.shape)
    y[rows, cols] = 1.0
    return y


class BipartiteMatching(SolverOracle):
    r"""Maximum-weight assignment (bipartite matching) with ``scipy.optimize.linear_sum_assignment``.

    For scores :math:`\theta \in \mathbb{R}^{n \times m}` (row i, column j) the oracle returns

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \{0,1\}^{n \times m}} \sum_{ij} \theta_{ij} y_{ij}
               \quad \text{s.t.}\ \textstyle\sum_j y_{ij} \le 1,\ \sum_i y_{ij} \le 1,\
               \sum_{ij} y_{ij} = \min(n, m),

    i.e. every row (if n ≤ m) or every column (if m < n) is matched exactly once: an assignment, which is
    a perfect matching when n = m. For a cost matrix pass ``theta = -cost``.

    Args:
        n, m: the numbers of rows and columns of θ (``m`` defaults to ``n``).
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.

    Example:
        >>> import torch
        >>> BipartiteMatching(2)(torch.tensor([[1.0, 5.0], [2.0, 3.0]]))
        tensor([[0., 1.],
                [1., 0.]])
    """

    def __init__(
        self,
        n: int,
        m: int | None = None,
        *,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        n = check_int_at_least("n", n, 1)
        m = n if m is None else check_int_at_least("m", m, 1)
        super().__init__(_assignment, (n, m), executor=executor, timeout=timeout, validate_args=validate_args)

    def __repr__(self) -> str:
        return f"BipartiteMatching(n={self.event_shape[0]}, m={self.event_shape[1]})"

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """Assignments: 0/1 matrices with at most one 1 per row and per column and min(n, m) ones in all (see
        :meth:`~colayers.oracles.Oracle.contains`).

        Example:
            >>> import torch
            >>> BipartiteMatching(2).contains(torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]]))
            tensor([ True, False])
        """
        _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 2)
        return _membership.assignment(y)


class _MaxSpanningTree:
    """Picklable per-instance solver: maximum spanning tree over fixed edges."""

    def __init__(self, num_nodes: int, src: np.ndarray, dst: np.ndarray):
        self.num_nodes, self.src, self.dst = num_nodes, src, dst
        self.edge_id = {(int(u), int(v)): k for k, (u, v) in enumerate(zip(src, dst))}

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        # A spanning tree's optimality depends only on the order of the scores, so solve on ranks: exact at
        # any scale (no shift that would swamp tiny differences). Negate the ranks to turn the maximum into a
        # minimum, and start them at 1: csgraph reads a stored 0 as "no edge".
        ranks = np.unique(theta, return_inverse=True)[1].reshape(-1)  # equal scores, equal ranks
        weight = (ranks.max() - ranks + 1).astype(np.float64)
        graph = sp.csr_matrix((weight, (self.src, self.dst)), shape=(self.num_nodes, self.num_nodes))
        tree = minimum_spanning_tree(graph).tocoo()
        y = np.zeros(theta.shape[0])
        for u, v in zip(tree.row, tree.col):
            y[self.edge_id[(int(u), int(v))]] = 1.0
        return y

    def __repr__(self) -> str:
        return f"SpanningTree(num_nodes={self.num_nodes}, num_edges={len(self.src)})"


class SpanningTree(SolverOracle):
    r"""Maximum-weight spanning tree of a fixed connected undirected graph, by ``minimum_spanning_tree``.

    For edge scores :math:`\theta \in \mathbb{R}^{E}` over the given edges the oracle returns the indicator
    :math:`y \in \{0,1\}^E` of a spanning tree maximizing :math:`\langle \theta, y \rangle` (Kruskal on
    the ranks of the negated scores, so exact at any scale). For edge costs (a minimum spanning tree) pass
    ``theta = -cost``.

    Args:
        num_nodes: the number of vertices, labelled ``0 .. num_nodes - 1``.
        edges: the undirected edges as ``(u, v)`` pairs, in the order of θ's entries; no self-loops or
            repeated pairs; the graph must be connected.
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.

    Example:
        >>> import torch
        >>> tree = SpanningTree(3, [(0, 1), (1, 2), (0, 2)])
        >>> tree(torch.tensor([1.0, 2.0, 3.0]))
        tensor([0., 1., 1.])
    """

    def __init__(
        self,
        num_nodes: int,
        edges: Sequence[tuple[int, int]],
        *,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        nv = check_int_at_least("num_nodes", num_nodes, 2)
        pairs = np.asarray(edges, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0:
            raise ValueError(f"edges must be a non-empty list of (u, v) pairs; got an array of shape {pairs.shape}")
        if (pairs < 0).any() or (pairs >= nv).any():
            raise ValueError(f"edges must join vertices in [0, {nv - 1}]; got {pairs[(pairs < 0) | (pairs >= nv)]}")
        if (pairs[:, 0] == pairs[:, 1]).any():
            raise ValueError(f"edges must not contain self-loops; got {pairs[pairs[:, 0] == pairs[:, 1]].tolist()}")
        lo, hi = pairs.min(axis=1), pairs.max(axis=1)
        if len({(int(a), int(b)) for a, b in zip(lo, hi)}) != len(lo):
            raise ValueError("edges must not repeat a pair of vertices (in either direction)")
        graph = sp.csr_matrix((np.ones(len(lo)), (lo, hi)), shape=(nv, nv))
        if connected_components(graph, directed=False)[0] != 1:
            raise ValueError("the graph given by edges must be connected (a spanning tree must exist)")
        self.num_nodes, self.edges = nv, [(int(a), int(b)) for a, b in pairs]
        super().__init__(
            _MaxSpanningTree(nv, lo, hi), (len(lo),), executor=executor, timeout=timeout, validate_args=validate_args
        )

    def __repr__(self) -> str:
        return f"SpanningTree(num_nodes={self.num_nodes}, num_edges={len(self.edges)})"

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Spanning trees: 0/1 edge vectors with ``num_nodes - 1`` edges that connect every vertex (see
        :meth:`~colayers.oracles.Oracle.contains`). Tested batched by the matrix-tree theorem: the reduced
        Laplacian of the chosen edges has determinant 1 for a tree and 0 otherwise.

        Example:
            >>> import torch
            >>> tree = SpanningTree(4, [(0, 1), (1, 2), (0, 2), (2, 3)])
            >>> tree.contains(torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]))  # the 2nd has a cycle
            tensor([ True, False])
        """
        _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        tail, head = _membership.edge_tensors(self, y.device)
        return _membership.spanning_tree(y, tail, head, self.num_nodes)


class Knapsack(Oracle):
    r"""0/1 knapsack with fixed weights and a capacity: values θ are the scores.

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \{0,1\}^n} \langle \theta, y \rangle
               \quad \text{s.t.} \quad \langle w, y \rangle \le C.

    Exact. With integer weights and capacity it is a dynamic program over the items, tensor-native and
    batched over instances (CPU or CUDA; memory n × N × (C+1) booleans for N instances), taking an item only
    when it strictly improves the value (items of score ≤ 0 are never taken). Otherwise each instance is a
    mixed-integer program solved by HiGHS (:class:`~colayers.oracles.LinearProgram`, which can run on an
    executor).

    Args:
        weights: the n item weights, > 0.
        capacity: the capacity C ≥ 0.
        executor, timeout: for the MILP path (non-integer weights), see :class:`~colayers.oracles.SolverOracle`.

    Example:
        >>> import torch
        >>> knap = Knapsack(weights=[2, 3, 4], capacity=5)
        >>> knap(torch.tensor([[3.0, 4.0, 5.0], [1.0, 1.0, 5.0]]))
        tensor([[1., 1., 0.],
                [0., 0., 1.]])
        >>> knap.method
        'dynamic programming'
    """

    event_ndim = 1

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | torch.Tensor,
        capacity: float,
        *,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        w = np.asarray(torch.as_tensor(weights).detach().cpu().numpy(), dtype=np.float64)
        if w.ndim != 1 or w.shape[0] == 0:
            raise ValueError(f"weights must be a non-empty 1-d sequence; got shape {w.shape}")
        if not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"weights must be finite and > 0; got {w}")
        if not np.isfinite(capacity) or capacity < 0:
            raise ValueError(f"capacity must be finite and ≥ 0; got {capacity!r}")
        self.weights, self.capacity = w, float(capacity)
        self.event_shape = (w.shape[0],)
        self.integer = bool(np.all(w == np.round(w)) and float(capacity) == round(float(capacity)))
        self.method = "dynamic programming" if self.integer else "mixed-integer program (HiGHS)"
        self._milp: LinearProgram | None = None
        if not self.integer:
            self._milp = LinearProgram(
                w.shape[0],
                A_ub=w[None, :],
                b_ub=[self.capacity],
                bounds=(0, 1),
                integrality=True,
                executor=executor,
                timeout=timeout,
                validate_args=validate_args,  # the certificate of optimality follows the knapsack's own switch
            )

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        if self._milp is not None:
            return self._milp.solve(theta)
        n_inst, n_items = theta.shape
        cap = int(self.capacity)
        device = theta.device
        w = [int(x) for x in self.weights]
        # best[:, c]: best value with total weight ≤ c using the items seen so far
        best = theta.new_zeros((n_inst, cap + 1))
        take = torch.zeros((n_items, n_inst, cap + 1), dtype=torch.bool, device=device)
        for i in range(n_items):
            if w[i] > cap:
                continue
            candidate = best[:, : cap + 1 - w[i]] + theta[:, i : i + 1]
            better = candidate > best[:, w[i] :]
            take[i, :, w[i] :] = better
            best = best.clone()
            best[:, w[i] :] = torch.where(better, candidate, best[:, w[i] :])
        # backtrack from the full capacity, last item first
        y = torch.zeros_like(theta)
        room = torch.full((n_inst, 1), cap, dtype=torch.long, device=device)
        for i in range(n_items - 1, -1, -1):
            took = take[i].gather(1, room)
            y[:, i] = took.squeeze(1).to(theta.dtype)
            room = room - took.long() * w[i]
        return y

    @property
    def linear_constraints(self) -> _membership.LinearConstraints:
        r"""The linear relaxation of the 0/1 program, :math:`\langle w, y\rangle \le C`, :math:`0 \le y \le 1`
        (float64, read-only), the capability that :class:`~colayers.losses.ConeAlignedCosineLoss` needs.

        The packings are the integral points of this polytope. A θ in the cone of the constraints binding at a
        packing :math:`y` makes :math:`y` optimal for the relaxation, hence for the 0/1 program: that cone is
        inside the packing's optimality cone (smaller than it, as for every binary program; Tang & Khalil's CaVE
        uses it so).

        Example:
            >>> Knapsack(weights=[2, 3, 4], capacity=5).linear_constraints.A_ub
            array([[2., 3., 4.]])
        """
        return _membership.packing_constraints(self.weights[None, :], np.array([self.capacity]))

    def __repr__(self) -> str:
        return f"Knapsack(n={self.event_shape[0]}, capacity={self.capacity:g}, method={self.method!r})"

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Feasible packings: 0/1 vectors with :math:`\langle w, y\rangle \le C` (see
        :meth:`~colayers.oracles.Oracle.contains`). Exact for integer weights; for other weights within
        HiGHS' feasibility tolerance, :math:`10^{-6}(1 + C + \sum_i w_i)`.

        Example:
            >>> import torch
            >>> Knapsack(weights=[2, 3, 4], capacity=5).contains(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
            tensor([ True, False])
        """
        _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        w = torch.as_tensor(self.weights, dtype=torch.float64, device=y.device)
        tol = 0.0 if self.integer else 1e-6 * (1.0 + self.capacity + float(self.weights.sum()))
        load = (y.to(torch.float64) * w).sum(dim=-1)
        return _membership.binary(y, 1) & (load <= self.capacity + tol)
