r"""The symmetric travelling salesman problem on a complete graph, exact: Held–Karp or an integer program.

For ``n`` cities and scores :math:`\theta \in \mathbb{R}^{E}` on the :math:`E = n(n-1)/2` edges of the complete
undirected graph, the oracle returns the indicator :math:`y \in \{0,1\}^E` of a tour (a Hamiltonian cycle)

.. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{T}_n} \ \langle \theta, y \rangle ,

so that for edge costs :math:`c` the shortest tour is ``f(-c)``. The edges are the pairs ``(i, j)``, ``i < j``,
in lexicographic order — ``itertools.combinations(range(n), 2)``, the order of PyEPO's ``tspModel.edges`` and
of ``scipy.spatial.distance.pdist`` — so PyEPO's cost and solution vectors are used as they are.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
from typing import Any

import numpy as np
import torch

from .._validation import check_args, integer_at_least, one_of
from . import _membership
from .base import Oracle, OracleError, SolverOracle
from .highs import HighsProgram

__all__ = ["TravelingSalesman"]

_DP_MAX_NODES = 16  # Held–Karp keeps 2^(n-1) (n-1) values per instance: 3.9 MB in float64 at n = 16
_AUTO_DP_NODES = 12  # "auto" uses the dynamic program up to here (faster than the integer program: benchmarks/)
_DP_BYTES = 2**28  # the instances solved at once by the dynamic program hold at most this much


class _TourProgram(HighsProgram):
    r"""One instance by HiGHS: the degree-2 integer program, re-solved with subtour cuts until the answer is a tour.

    Binary :math:`x_e`, :math:`\sum_{e \ni v} x_e = 2` for every city :math:`v`; while the optimum splits into
    several cycles, each cycle's city set :math:`S` gets the cut :math:`\sum_{e \subseteq S} x_e \le |S| - 1`
    and the program is solved again. The cuts are removed after the instance, so every instance starts from the
    same model (its answer is a function of its θ alone, whatever was solved before; see :class:`HighsProgram`).
    """

    def __init__(self, num_nodes: int, *, check_optimality: bool = False) -> None:
        edges = list(itertools.combinations(range(num_nodes), 2))
        degree = np.zeros((num_nodes, len(edges)))
        for k, (i, j) in enumerate(edges):
            degree[i, k] = degree[j, k] = 1.0
        two = np.full(num_nodes, 2.0)
        ones = np.ones(len(edges))
        super().__init__(degree, two, two, 0 * ones, ones, ones, check_optimality=check_optimality)
        self.num_nodes = num_nodes
        self.edges = np.asarray(edges, dtype=np.int64)

    def __call__(self, theta: np.ndarray, *, check_optimality: bool | None = None) -> np.ndarray:
        import highspy

        highs = self._model()
        base_rows = self.A.shape[0]
        try:
            for _ in range(2**self.num_nodes):  # every round cuts off its answer: at most one round per city subset
                x = super().__call__(theta, check_optimality=check_optimality)
                cycles = _cycles(self.num_nodes, self.edges[x > 0.5])
                if len(cycles) == 1:
                    return x
                for cities in cycles:
                    inside = np.flatnonzero(np.isin(self.edges, cities).all(axis=1)).astype(np.int32)
                    status = highs.addRow(-np.inf, len(cities) - 1.0, inside.size, inside, np.ones(inside.size))
                    if status != highspy.HighsStatus.kOk:
                        raise OracleError(f"HiGHS refused a subtour cut (status {status})")
            raise OracleError("the subtour cuts did not converge to a tour")  # pragma: no cover - bounded above
        finally:
            extra = highs.getNumRow() - base_rows
            if extra:
                highs.deleteRows(extra, np.arange(base_rows, base_rows + extra, dtype=np.int32))

    def __repr__(self) -> str:
        return f"_TourProgram(num_nodes={self.num_nodes})"


def _cycles(num_nodes: int, chosen: np.ndarray) -> list[np.ndarray]:
    """The connected components (city sets) of the graph with edges ``chosen`` ``(k, 2)``."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    graph = csr_matrix((np.ones(len(chosen)), (chosen[:, 0], chosen[:, 1])), shape=(num_nodes, num_nodes))
    count, label = connected_components(graph, directed=False)
    return [np.flatnonzero(label == c) for c in range(count)]


@functools.cache
def _held_karp_tables(num_nodes: int, device: torch.device) -> tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]:
    """Per subset size s ≥ 2, the pairs (S, j ∈ S) of the dynamic program as index tensors, and the edge index.

    Cities 1..n-1 are bits 0..m-1 (m = n - 1) of a subset S; city 0 starts and ends the tour. For each pair:
    ``S``, ``j``, ``S \\ {j}`` and the (P, m) mask of the predecessors k ∈ S \\ {j}.
    """
    m = num_nodes - 1
    masks = np.arange(1 << m)
    bits = (masks[:, None] >> np.arange(m)) & 1  # (2^m, m)
    sizes = bits.sum(axis=1)
    layers = []
    for s in range(2, m + 1):
        subset, j = np.nonzero(bits[sizes == s])
        subset = masks[sizes == s][subset]
        prev = subset ^ (1 << j)
        layers.append(tuple(torch.as_tensor(a, device=device) for a in (subset, j, prev, bits[prev].astype(bool))))
    index = np.full((num_nodes, num_nodes), -1)
    for k, (a, b) in enumerate(itertools.combinations(range(num_nodes), 2)):
        index[a, b] = index[b, a] = k
    return layers, torch.as_tensor(index, device=device)


def _held_karp(theta: torch.Tensor, num_nodes: int) -> torch.Tensor:
    r"""Best tours of a batch ``(N, E)`` by Held–Karp, vectorised over instances and over each subset size.

    ``best[S, j]`` is the largest score of a path that leaves city 0, visits the cities of S once each and ends at
    city j ∈ S: ``best[S, j] = max_{k ∈ S \ {j}} best[S \ {j}, k] + θ_{kj}``, computed for all S of one size at
    once, in float64, keeping the maximizing k (the first, lowest-numbered one on a tie) to walk the tour back.
    """
    m = num_nodes - 1
    layers, index = _held_karp_tables(num_nodes, theta.device)
    n_inst = theta.shape[0]
    scores = theta.to(torch.float64)[:, index.clamp(min=0)]  # (N, n, n): θ of edge {a, b}; the diagonal is unused
    inner = scores[:, 1:, 1:]  # between cities 1..n-1
    best = scores.new_full((n_inst, 1 << m, m), -torch.inf)
    parent = torch.zeros((n_inst, 1 << m, m), dtype=torch.int8, device=theta.device)
    singles = torch.arange(m, device=theta.device)
    best[:, 1 << singles, singles] = scores[:, 0, 1:]
    for subset, j, prev, allowed in layers:
        # candidates[n, p, k] = best[prev_p, k] + θ_{k j_p}, for k ∈ prev_p
        candidates = best[:, prev, :] + inner[:, :, j].transpose(1, 2)
        candidates = candidates.masked_fill(~allowed, -torch.inf)
        k = candidates.argmax(dim=2, keepdim=True)  # the first maximizer: documented for argmax on every device
        best[:, subset, j] = candidates.gather(2, k).squeeze(2)
        k = k.squeeze(2)
        parent[:, subset, j] = k.to(torch.int8)
    full = (1 << m) - 1
    last = (best[:, full, :] + scores[:, 1:, 0]).argmax(dim=1)  # (N,): the city before returning to 0
    y = theta.new_zeros(theta.shape)
    rows = torch.arange(n_inst, device=theta.device)
    y[rows, index[0, last + 1]] = 1
    subset = torch.full((n_inst,), full, dtype=torch.long, device=theta.device)
    for _ in range(m - 1):
        before = parent[rows, subset, last].long()
        y[rows, index[before + 1, last + 1]] = 1
        subset = subset ^ (1 << last)
        last = before
    y[rows, index[0, last + 1]] = 1  # the first city after 0
    return y


class TravelingSalesman(Oracle):
    r"""Best tour of a complete undirected graph on ``num_nodes`` cities (the symmetric TSP), exact and batched.

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{T}_n} \ \langle \theta, y \rangle ,\qquad
               \mathcal{T}_n = \{\text{0/1 edge vectors of Hamiltonian cycles}\}

    over the :math:`E = n(n-1)/2` edges ``(i, j)``, ``i < j``, in lexicographic order (``oracle.edges``:
    ``itertools.combinations(range(n), 2)``, PyEPO's order). Maximization, like every oracle: the shortest tour
    for edge costs ``c`` is ``oracle(-c)``. Scores of any sign are allowed.

    Two exact methods:

    * ``"dynamic program"`` (Held & Karp 1962): tensor code on θ's device (CPU or CUDA), batched over instances
      and vectorised over all subsets of one size, in float64; time :math:`O(2^n n^2)` and memory
      :math:`2^{n-1}(n-1)` values per instance, so for ``num_nodes ≤ 16``;
    * ``"integer program"``: per instance, on HiGHS, the degree-2 binary program
      (:math:`\sum_{e \ni v} y_e = 2`) re-solved with the subtour cut :math:`\sum_{e \subseteq S} y_e \le |S|-1`
      for every cycle :math:`S` of a solution that is not a tour, until it is one (lazy subtour elimination, the
      Dantzig–Fulkerson–Johnson formulation of PyEPO's ``tspDFJModel``); with a zero MIP gap, so the final tour
      is optimal. Instances run serially or on an ``executor`` (see :class:`~colayers.oracles.SolverOracle`).

    ``method="auto"`` (default) takes the dynamic program up to 12 cities and the integer program above.

    **Ties.** The answer is a function of θ alone (whatever was solved before, serially or on an executor).
    The dynamic program keeps, on a tie, the lowest-numbered predecessor city and the lowest-numbered last city;
    the integer program returns the tour HiGHS reaches from its fixed starting model (see
    :class:`~colayers.oracles.highs.HighsProgram`). The two methods may return different tours of equal score.

    The tour polytope has exponentially many facets, so this oracle has no ``linear_constraints``: losses that
    need them (:class:`~colayers.losses.ConeAlignedCosineLoss`) refuse it.

    Args:
        num_nodes: the number of cities n ≥ 3.
        method: ``"auto"``, ``"dynamic program"`` (n ≤ 16) or ``"integer program"``.
        executor, timeout: for the integer program, see :class:`~colayers.oracles.SolverOracle`.
        validate_args: see :class:`~colayers.oracles.Oracle`; with the integer program it also certifies each
            solve (the incumbent against HiGHS' dual bound).

    Example:
        >>> import torch
        >>> tsp = TravelingSalesman(4)
        >>> tsp.edges
        [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        >>> cost = torch.tensor([1.0, 9.0, 1.0, 1.0, 9.0, 1.0])  # the square 0-1-2-3-0 costs 4
        >>> tsp(-cost)
        tensor([1., 0., 1., 1., 0., 1.])
        >>> TravelingSalesman(4, method="integer program")(-cost)
        tensor([1., 0., 1., 1., 0., 1.])
        >>> TravelingSalesman(2)
        Traceback (most recent call last):
        ...
        ValueError: num_nodes must be an integer ≥ 3; got 2
    """

    event_ndim = 1
    arg_constraints = {
        "num_nodes": integer_at_least(3),
        "method": one_of("auto", "dynamic program", "integer program"),
    }

    def __init__(
        self,
        num_nodes: int,
        *,
        method: str = "auto",
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        checked = check_args(self, num_nodes=num_nodes, method=method)
        n = checked["num_nodes"]
        method = checked["method"]
        if method == "auto":
            method = "dynamic program" if n <= _AUTO_DP_NODES else "integer program"
        if method == "dynamic program" and n > _DP_MAX_NODES:
            raise ValueError(
                f"method 'dynamic program' holds 2^(n-1)(n-1) values per instance and takes num_nodes ≤ "
                f"{_DP_MAX_NODES}; got num_nodes={n} (use method='integer program')"
            )
        self.num_nodes, self.method = n, method
        self.edges = list(itertools.combinations(range(n), 2))
        self.event_shape = (len(self.edges),)
        self._milp: SolverOracle | None = None
        if method == "integer program":
            self._milp = _CertifiedSolverOracle(
                _TourProgram(n), self.event_shape, executor=executor, timeout=timeout, validate_args=validate_args
            )

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        if self._milp is not None:
            return self._milp.solve(theta)
        per_instance = 8 * (1 << (self.num_nodes - 1)) * (self.num_nodes - 1) * 3  # best, a layer, the candidates
        chunk = max(1, _DP_BYTES // per_instance)
        return torch.cat([_held_karp(part, self.num_nodes) for part in theta.split(chunk)])

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Tours: 0/1 edge vectors in which every city has degree 2 and that connect all cities (see
        :meth:`~colayers.oracles.Oracle.contains`). Exact, batched on ``y``'s device: a graph of degree 2
        everywhere is one cycle exactly when its reduced Laplacian has determinant n (the number of its spanning
        trees, by the matrix-tree theorem); several cycles give 0.

        Example:
            >>> import torch
            >>> tsp = TravelingSalesman(6)
            >>> one = torch.zeros(15); two = torch.zeros(15)
            >>> for a, b in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5)]: one[tsp.edges.index((a, b))] = 1
            >>> for a, b in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]: two[tsp.edges.index((a, b))] = 1
            >>> tsp.contains(torch.stack([one, two]))  # one tour; two triangles
            tensor([ True, False])
        """
        batch = _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        tail, head = _membership.edge_tensors(self, y.device)
        n = self.num_nodes
        flat = y.reshape(-1, self.event_shape[0])
        chosen = _membership.counts(flat)
        degree = chosen.new_zeros((flat.shape[0], n)).index_add(-1, tail, chosen).index_add(-1, head, chosen)
        ok = _membership.binary(flat, 1) & (degree == 2).all(dim=-1)
        weights = chosen.to(torch.float64) * ok[:, None]
        laplacian = torch.zeros((flat.shape[0], n, n), dtype=torch.float64, device=y.device)
        laplacian[:, tail, head] = -weights
        laplacian[:, head, tail] = -weights
        laplacian = laplacian + torch.diag_embed(weights.new_zeros((flat.shape[0], n)).index_add(-1, tail, weights)
                                                 .index_add(-1, head, weights))  # fmt: skip
        det = torch.linalg.det(laplacian[:, 1:, 1:]) if flat.shape[0] else weights.new_zeros(0)
        return (ok & ((det - n).abs() < 0.5)).reshape(batch)

    def __repr__(self) -> str:
        return f"TravelingSalesman(num_nodes={self.num_nodes}, method={self.method!r})"


class _CertifiedSolverOracle(SolverOracle):
    """The integer program's per-instance oracle: the certificate follows ``validate_args`` read at each call."""

    def _instance_solver(self) -> Any:
        return functools.partial(self.solver, check_optimality=bool(self.validate_args))
