r"""Tensor-native shortest paths on grids: the benchmark problems of decision-focused learning.

Both oracles follow the library's maximization convention: they return
:math:`\operatorname*{argmax}_{y \in \mathcal{Y}} \langle \theta, y \rangle` over the paths
:math:`\mathcal{Y}`, so a shortest path for costs ``c`` is ``oracle(-c)``, also spelled
``oracle.shortest_path(c)``. They run batched on any device (CPU or CUDA) with no Python loop over
instances, in ``theta``'s dtype, and break ties by a fixed rule so that CPU and CUDA agree exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import (
    check_args,
    check_int_at_least,
    check_tensor,
    integer_at_least,
    on_compiled_cpu,
    one_of,
    optional,
    positive,
)
from . import _grid_sweeps, _membership
from .base import Oracle, OracleError

__all__ = ["GridDAGShortestPath", "GridVertexShortestPath"]


def _check_grid(height: int, width: int) -> tuple[int, int]:
    h = check_int_at_least("height", height, 1)
    w = check_int_at_least("width", width, 1)
    if h * w < 2:
        raise ValueError(f"the grid must have at least 2 vertices; got height={h}, width={w}")
    return h, w


def _batch_last_costs(theta: torch.Tensor) -> torch.Tensor:
    """Tile costs ``-theta`` in the batch-last layout ``(h, w, N)``, in a new tensor: never a view of ``theta``
    (for one instance the transpose is already contiguous, so an in-place negation would flip the caller's θ)."""
    n, h, w = theta.shape
    return torch.neg(theta.reshape(n, h * w).t(), out=theta.new_empty((h * w, n))).view(h, w, n)


class GridDAGShortestPath(Oracle):
    r"""Shortest path on the edge-weighted grid DAG (Elmachtoub & Grigas; the PyEPO shortest-path problem).

    The graph has the ``height × width`` vertices :math:`v = r \cdot w + c` of a grid and the edges
    :math:`(v, v+1)` (a step right) and :math:`(v, v+w)` (a step down), listed in :attr:`edges` in the fixed
    order used for the vectors, **PyEPO's order** (``pyepo.model.utils._get_grid_arcs``, the columns of
    ``pyepo.data.shortestpath.genData`` costs and of PyEPO's solutions), so PyEPO's cost and solution vectors
    can be used as they are: row by row, the row's :math:`w - 1` right edges from left to right, then (but for
    the last row) its :math:`w` down edges from left to right. For 3 × 3 (vertices 0 1 2 / 3 4 5 / 6 7 8)::

        index:  0      1      2      3      4      5      6      7      8      9      10     11
        edge:   (0,1)  (1,2)  (0,3)  (1,4)  (2,5)  (3,4)  (4,5)  (3,6)  (4,7)  (5,8)  (6,7)  (7,8)

    A path runs from the top-left vertex 0 to the bottom-right vertex :math:`hw - 1`; it is encoded as
    :math:`y \in \{0, 1\}^{E}` with :math:`E = h(w-1) + (h-1)w` edges (40 for 5 × 5), and always has
    :math:`h + w - 2` edges. The oracle returns

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{Y}} \langle \theta, y \rangle,
               \qquad \theta = -\text{cost},

    i.e. the **shortest path for costs** :math:`c = -\theta` (any real costs: the graph is acyclic), by
    dynamic programming: the value of a vertex is
    :math:`V_v = \max(V_{\text{left}} + \theta_{\text{left} \to v}, V_{\text{up}} + \theta_{\text{up} \to v})`,
    summed in ``theta``'s dtype, then the path is traced back from the last vertex. Ties: a vertex is entered
    from the left rather than from above when both are optimal. Two implementations give the same paths bit
    for bit (the same sums, the same comparisons):

    * ``"kernel"``: a compiled loop over the instances (numba, CPU, float32 and float64), about 0.1 µs per
      5 × 5 instance and a few µs per call (``benchmarks/bench_grid_dag.py``); the first call of a fresh
      install compiles it (about a second per dtype; numba then caches it on disk);
    * ``"tensor"``: the dynamic program over the :math:`h + w - 1` anti-diagonals of the grid, vectorised
      over the batch and over each diagonal, then a vectorised backtracking: any device and floating dtype,
      batched on CUDA with no host synchronisation, but a few hundred tensor operations per call.

    Args:
        height, width: the grid size (at least 2 vertices).
        backend: ``"auto"`` (default): the kernel for float32/float64 scores on the CPU, the tensor algorithm
            otherwise (CUDA, float16, bfloat16); on the CPU the kernel was 6 to 130 times faster at every size measured
            (1 to 32,768 instances, grids 5 × 5 to 30 × 30, one thread), so no size threshold applies.
            ``"kernel"`` or ``"tensor"`` forces one; ``"kernel"`` refuses scores that are not on the CPU or
            not float32/float64 (nothing is moved or cast).
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> GridDAGShortestPath(3, 3).edges[:5]  # row 0: right edges, then down edges
        [(0, 1), (1, 2), (0, 3), (1, 4), (2, 5)]
        >>> oracle = GridDAGShortestPath(2, 2)
        >>> oracle.edges
        [(0, 1), (0, 2), (1, 3), (2, 3)]
        >>> cost = torch.tensor([1.0, 5.0, 1.0, 1.0])  # right-then-down costs 2, down-then-right 6
        >>> oracle.shortest_path(cost)
        tensor([1., 0., 1., 0.])
        >>> bool((oracle(-cost) == oracle.shortest_path(cost)).all())
        True
    """

    event_ndim = 1
    arg_constraints = {"backend": one_of("auto", "kernel", "tensor")}

    def __init__(
        self, height: int, width: int, *, backend: str = "auto", validate_args: bool | None = None
    ) -> None:
        super().__init__(validate_args=validate_args)
        self.height, self.width = _check_grid(height, width)
        self.backend = check_args(self, backend=backend)["backend"]
        h, w = self.height, self.width
        edges: list[tuple[int, int]] = []
        right: dict[int, int] = {}  # target vertex -> index of the edge entering it from the left
        down: dict[int, int] = {}  # target vertex -> index of the edge entering it from above
        for r in range(h):  # PyEPO's order: each row's right edges, then (but for the last row) its down edges
            for c in range(w - 1):
                v = r * w + c
                right[v + 1] = len(edges)
                edges.append((v, v + 1))
            for c in range(w if r < h - 1 else 0):
                v = r * w + c
                down[v + w] = len(edges)
                edges.append((v, v + w))
        self.edges = edges
        self.num_edges = len(edges)
        self.event_shape = (self.num_edges,)
        nv, ne = h * w, self.num_edges
        # per anti-diagonal d = r + c (d ≥ 1): cells, their left/up predecessors (vertex, edge), with the
        # sentinels nv (a vertex of value -inf) and ne (an edge of score 0) where a predecessor is missing
        self._diagonals: list[tuple[torch.Tensor, ...]] = []
        for d in range(1, h + w - 1):
            cells, lv, le, uv, ue = [], [], [], [], []
            for r in range(max(0, d - w + 1), min(h - 1, d) + 1):
                c = d - r
                v = r * w + c
                cells.append(v)
                lv.append(v - 1 if c > 0 else nv)
                le.append(right[v] if c > 0 else ne)
                uv.append(v - w if r > 0 else nv)
                ue.append(down[v] if r > 0 else ne)
            self._diagonals.append(tuple(torch.tensor(x, dtype=torch.long) for x in (cells, lv, le, uv, ue)))
        self._cache: dict[torch.device, list[tuple[torch.Tensor, ...]]] = {}

    def _tables(self, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
        if device not in self._cache:
            self._cache[device] = [tuple(t.to(device) for t in diag) for diag in self._diagonals]
        return self._cache[device]

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        on_kernel = on_compiled_cpu(theta)
        if self.backend == "tensor" or (self.backend == "auto" and not on_kernel):
            return self._solve_tensor(theta)
        if not on_kernel:
            raise ValueError(
                "backend='kernel' solves float32 or float64 scores on the CPU; got theta of dtype "
                f"{theta.dtype} on {theta.device} (use backend='auto' or 'tensor')"
            )
        from . import _dag_kernels  # numba is imported on first use only

        return _dag_kernels.solve(theta, self.height, self.width)

    def _solve_tensor(self, theta: torch.Tensor) -> torch.Tensor:
        """The batched dynamic program over the anti-diagonals (any device and floating dtype)."""
        n = theta.shape[0]
        nv, ne = self.height * self.width, self.num_edges
        # batch-last layout (every gather below reads whole contiguous rows); scores with a trailing row of 0
        # for the missing edge, values with a trailing row of -inf for the missing vertex
        scores = torch.cat([theta.t(), theta.new_zeros(1, n)], dim=0)
        # (rows are written diagonal by diagonal before they are read; the start's predecessors are never read)
        value = theta.new_empty((nv + 1, n))
        value[0] = 0.0
        value[nv] = float("-inf")
        pred_edge = torch.empty((nv, n), dtype=torch.long, device=theta.device)
        pred_vertex = torch.empty((nv, n), dtype=torch.long, device=theta.device)
        for cells, lv, le, uv, ue in self._tables(theta.device):
            from_left = value[lv] + scores[le]
            from_up = value[uv] + scores[ue]
            up = from_up > from_left  # ties enter from the left
            value[cells] = torch.where(up, from_up, from_left)
            pred_edge[cells] = torch.where(up, ue.view(-1, 1), le.view(-1, 1))
            pred_vertex[cells] = torch.where(up, uv.view(-1, 1), lv.view(-1, 1))
        # backtracking: every path has exactly h + w - 2 edges
        y = torch.zeros((ne + 1, n), dtype=theta.dtype, device=theta.device)
        current = torch.full((1, n), nv - 1, dtype=torch.long, device=theta.device)
        for _ in range(self.height + self.width - 2):
            y.scatter_(0, pred_edge.gather(0, current), 1.0)
            current = pred_vertex.gather(0, current)
        return y[:ne].t().contiguous()

    def shortest_path(self, cost: torch.Tensor) -> torch.Tensor:
        """The shortest path for edge costs ``cost`` (*batch, num_edges): the same as ``self(-cost)``."""
        check_tensor("cost", cost)
        return self(-cost)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Paths from the top-left to the bottom-right vertex (see :meth:`~colayers.oracles.Oracle.contains`).

        ``y`` ``(*batch, num_edges)`` must have 0/1 entries and carry one unit of flow from vertex 0 to vertex
        :math:`hw - 1`: out-flow minus in-flow is 1 at the start, −1 at the end and 0 elsewhere. The grid is
        acyclic, so these edge sets are exactly the paths (no detached cycle can exist). Float32/float64 ``y`` on
        the CPU is tested by the compiled kernel (unless ``backend="tensor"``), which walks from vertex 0 along the
        one edge out of each vertex and counts :math:`h + w - 2` ones in all: the same sets.

        Example:
            >>> import torch
            >>> oracle = GridDAGShortestPath(2, 2)  # edges (0,1) (0,2) (1,3) (2,3)
            >>> oracle.contains(torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]))
            tensor([ True, False])
        """
        batch = _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        if self.backend != "tensor" and on_compiled_cpu(y):
            from . import _dag_kernels

            if len(batch) == 1:
                return _dag_kernels.contains(y, self.height, self.width)
            return _dag_kernels.contains(y.reshape(-1, self.num_edges), self.height, self.width).reshape(batch)
        tail, head = _membership.edge_tensors(self, y.device)
        nv = self.height * self.width
        return _membership.unit_flow(y, tail, head, nv, 0, nv - 1)

    @property
    def linear_constraints(self) -> _membership.LinearConstraints:
        r"""The paths as the vertices of a linear program: flow conservation ``A_eq y = b_eq`` (out-flow minus
        in-flow, one row per vertex: 1 at the start, −1 at the end, 0 elsewhere) and :math:`0 \le y \le 1`; the
        matrix is totally unimodular, so the LP's vertices are exactly the paths (the capability that
        :class:`~colayers.losses.ConeAlignedCosineLoss` needs).

        Example:
            >>> GridDAGShortestPath(2, 2).linear_constraints.A_eq  # edges (0,1) (0,2) (1,3) (2,3)
            array([[ 1.,  1.,  0.,  0.],
                   [-1.,  0.,  1.,  0.],
                   [ 0., -1.,  0.,  1.],
                   [ 0.,  0., -1., -1.]])
        """
        nv, ne = self.height * self.width, self.num_edges
        a_eq, b_eq = np.zeros((nv, ne)), np.zeros(nv)
        for j, (u, v) in enumerate(self.edges):
            a_eq[u, j], a_eq[v, j] = 1.0, -1.0
        b_eq[0], b_eq[nv - 1] = 1.0, -1.0
        arrays = (np.zeros((0, ne)), np.zeros(0), a_eq, b_eq, np.zeros(ne), np.ones(ne))
        for a in arrays:
            a.flags.writeable = False
        return _membership.LinearConstraints(*arrays)

    def __repr__(self) -> str:
        extra = "" if self.backend == "auto" else f", backend={self.backend!r}"
        return f"GridDAGShortestPath(height={self.height}, width={self.width}{extra})"


# the 8 neighbour offsets (dr, dc), in the order that breaks ties between equally good predecessors
_OFFSETS = ((-1, -1), (-1, 0), (0, -1), (-1, 1), (1, -1), (0, 1), (1, 0), (1, 1))
_KERNEL: list = []  # the compiled CPU kernel module (or None where numba cannot be imported), loaded on first use


def _load_kernel():
    """The module of :class:`GridVertexShortestPath`'s compiled CPU kernel, imported on first use (numba's import
    is not paid by ``import colayers``); ``None`` where numba cannot be imported."""
    if not _KERNEL:
        try:
            from . import _vertex_kernel as module
        except ImportError:  # numba missing or broken (e.g. a Python it does not support yet)
            module = None
        _KERNEL.append(module)
    return _KERNEL[0]


class GridVertexShortestPath(Oracle):
    r"""Shortest path on the 8-neighbour vertex-weighted grid (the Warcraft maps of Vlastelica et al., 2020).

    Every tile :math:`(r, c)` of a ``height × width`` map has a cost :math:`c_{rc} > 0`. A path is a sequence
    of tiles from the top-left tile to the bottom-right tile in which consecutive tiles touch by a side or a
    corner (8 neighbours); its cost is the sum of the costs of **all** its tiles, both ends included. A path is
    encoded as :math:`y \in \{0,1\}^{h \times w}` marking its tiles, and the oracle returns

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{Y}} \langle \theta, y \rangle,
               \qquad \theta = -\text{cost} < 0,

    i.e. the **shortest path for tile costs** :math:`c = -\theta`, which must be positive (``theta < 0``;
    a :class:`ValueError` otherwise, as Dijkstra-type methods need positive costs).

    Scores of any sign (``min_cost``): perturbed scores :math:`\theta + \varepsilon Z` and the targets
    :math:`\theta - \lambda\,\mathrm{d}y` of Blackbox / I-MLE leave :math:`\theta < 0`. With
    ``min_cost=c > 0`` the oracle raises every tile cost below :math:`c` to :math:`c`, i.e. it returns

    .. math::  f_c(\theta) = \operatorname*{argmax}_{y \in \mathcal{Y}} \langle \min(\theta, -c), y \rangle
               \qquad (\text{elementwise min}),

    the plain oracle applied to the clamped scores. This is an explicit modelling choice, never a silent
    one: without ``min_cost`` non-negative scores raise. :meth:`objective` is unchanged and still evaluates
    :math:`\langle \theta, y \rangle` with the scores **given** (so regret-type metrics see the true scores);
    only the argmax uses the clamped ones.

    Method: distances :math:`D_v` (cost of the best path from the start to :math:`v`, :math:`v` included), the
    least fixed point of :math:`D_v = \min_{u \sim v} \operatorname{fl}(D_u + c_v)` in ``theta``'s dtype, then the
    traceback from the target, each step to the neighbour of least distance (ties to the first in a fixed neighbour
    order). Two implementations give the same outputs bit for bit (any order of relaxations reaches the same fixed
    point, as float addition is monotone):

    * **CPU kernel** (float32 and float64 on the CPU): compiled code (numba, compiled once per dtype and cached on
      disk), a loop over the instances of the batch, each relaxed by Gauss-Seidel sweeps (down, right, up, left)
      until four sweeps in a row change nothing, then traced back; one thread. About 4 µs per 12×12 instance and
      20 µs per 30×30 one (from 32 instances per call), 7–21× faster than a loop of scipy's Dijkstra, and faster
      than the tensor algorithm at every batch size measured (see ``benchmarks/README.md``).
    * **tensor algorithm** (CUDA, and other dtypes): batched Bellman-Ford on shifted tensors (batch last, so every
      shift is a contiguous slice), a whole row or column of every instance at a time, in rounds of the same four
      sweeps until a round changes no distance (one host synchronisation per round); then the paths are traced
      back all at once.

    ``backend="auto"`` (default) takes the kernel for float32/float64 CPU tensors and the tensor algorithm
    otherwise (CUDA stays on the device; nothing is moved or cast; where numba cannot be imported, the CPU uses the
    tensor algorithm too); ``"kernel"`` and ``"tensor"`` force one (``"kernel"`` refuses other tensors).

    Args:
        height, width: the map size (at least 2 tiles).
        min_cost: ``None`` (default: tile costs must be positive, ``theta < 0``) or a finite ``c > 0``: tile
            costs below ``c`` are raised to ``c`` (scores above ``-c`` lowered to ``-c``) before solving.
        chunk_size: instances solved together by the tensor algorithm; ``None`` picks 4096 on the CPU (the
            working set then stays in the cache) and the whole batch on CUDA. The result does not depend on it.
        backend: ``"auto"`` (default), ``"kernel"`` or ``"tensor"`` (see Method). The result does not depend on it.
        validate_args: see :class:`~colayers.oracles.Oracle`; also checks that ``theta < 0`` when
            ``min_cost`` is ``None``.

    Example:
        >>> import torch
        >>> oracle = GridVertexShortestPath(3, 3)
        >>> cost = torch.tensor([[1.0, 9.0, 9.0], [9.0, 1.0, 9.0], [9.0, 9.0, 1.0]])
        >>> oracle.shortest_path(cost)  # the diagonal, cost 3
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
        >>> theta = torch.tensor([[-1.0, 2.0, -9.0], [-9.0, -20.0, -9.0], [-9.0, -9.0, -1.0]])  # a score > 0
        >>> GridVertexShortestPath(3, 3, min_cost=0.5)(theta)  # the tile of score 2 costs 0.5: total 11.5
        tensor([[1., 1., 0.],
                [0., 0., 1.],
                [0., 0., 1.]])
    """

    event_ndim = 2
    arg_constraints = {
        "min_cost": optional(positive),
        "chunk_size": optional(integer_at_least(1)),
        "backend": one_of("auto", "kernel", "tensor"),
    }

    def __init__(
        self,
        height: int,
        width: int,
        min_cost: float | None = None,
        *,
        chunk_size: int | None = None,
        backend: str = "auto",
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        self.height, self.width = _check_grid(height, width)
        self.event_shape = (self.height, self.width)
        vars(self).update(check_args(self, min_cost=min_cost, chunk_size=chunk_size, backend=backend))

    def _padded_distances(self, cost: torch.Tensor, pred: torch.Tensor | None = None) -> torch.Tensor:
        """Distances in the padded, batch-last layout (h+2, w+2, N) with +inf on the border (and, with
        ``pred``, the predecessor offsets recorded in it; see :meth:`_sweeps`)."""
        h, w, n = cost.shape
        dist = cost.new_full((h + 2, w + 2, n), float("inf"))
        dist[1, 1] = cost[0, 0]
        # Rounds of sweeps until a round changes nothing (one host synchronisation per round). Each round
        # does at least the work of one Jacobi (all-at-once) Bellman-Ford round, so h*w rounds always suffice.
        previous = torch.empty_like(dist)
        for _ in range(h * w + 1):
            previous.copy_(dist)
            _grid_sweeps.sweeps(dist, cost, pred)
            if torch.equal(dist, previous):
                return dist
        raise OracleError(f"{self!r}: Bellman-Ford did not converge; the tile costs must be positive")

    def distances(self, cost: torch.Tensor) -> torch.Tensor:
        r"""Least path costs :math:`D` (N, h, w) from the top-left tile to every tile, both ends counted.

        ``cost`` is ``(N, h, w)`` with positive entries; the backend is chosen as for the paths.
        """
        kernel = self._kernel_for(cost)
        if kernel is None:
            return self._tensor_distances(cost)
        dist, status = kernel.distances(-cost)
        redo = torch.from_numpy(np.flatnonzero(status))  # negative or NaN costs: the tensor algorithm answers or raises
        if redo.numel():
            dist[redo] = self._tensor_distances(cost[redo])
        return dist

    def _tensor_distances(self, cost: torch.Tensor) -> torch.Tensor:
        h, w = cost.shape[1:]
        return self._padded_distances(cost.permute(1, 2, 0).contiguous())[1 : h + 1, 1 : w + 1].permute(2, 0, 1)

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        if self.min_cost is not None:
            theta = theta.clamp(max=-self.min_cost)  # a new tensor: the caller's theta is left alone
        elif self.validate_args and bool((theta >= 0).any()):
            bad = (theta >= 0).nonzero()[0].tolist()
            raise ValueError(
                "theta must be < 0 everywhere (theta = -cost with positive tile costs); "
                f"found {int((theta >= 0).sum())} entries ≥ 0, first at (instance, row, col) = {tuple(bad)} "
                f"with value {float(theta[tuple(bad)])}; pass min_cost=c > 0 to raise tile costs below c to c"
            )
        kernel = self._kernel_for(theta)
        if kernel is None:
            return self._solve_tensor(theta)
        y, status = kernel.shortest_paths(theta)
        if status.any():  # rare: costs that rounding absorbs (STUCK), or unvalidated theta > 0 or NaN (UNSUPPORTED)
            for code, redo in ((kernel.STUCK, self._solve_recording), (kernel.UNSUPPORTED, self._solve_tensor)):
                index = torch.from_numpy(np.flatnonzero(status == code))
                if index.numel():
                    y[index] = redo(theta[index])
        return y

    def _kernel_for(self, theta: torch.Tensor):
        """The kernel module where it serves ``theta`` under :attr:`backend`, else ``None`` (the tensor algorithm)."""
        if self.backend == "tensor":
            return None
        if not on_compiled_cpu(theta):
            if self.backend == "kernel":
                raise ValueError(
                    f"{self!r}: the CPU kernel solves float32 or float64 tensors on the CPU; got {theta.dtype} on "
                    f"{theta.device} (nothing is moved or cast: use backend='auto' or 'tensor' for it)"
                )
            return None
        kernel = _load_kernel()
        if kernel is None and self.backend == "kernel":
            raise ImportError(f"{self!r}: the CPU kernel needs numba, which cannot be imported")
        return kernel

    def _solve_tensor(self, theta: torch.Tensor) -> torch.Tensor:
        """The tensor algorithm (see Method), ``chunk_size`` instances at a time."""
        chunk = self.chunk_size
        if chunk is None:
            chunk = theta.shape[0] if theta.device.type == "cuda" else 4096
        if theta.shape[0] <= chunk:
            return self._solve_chunk(theta)
        return torch.cat([self._solve_chunk(part) for part in theta.split(chunk)])

    def _solve_chunk(self, theta: torch.Tensor) -> torch.Tensor:
        n, h, w = theta.shape
        device = theta.device
        cost = _batch_last_costs(theta)
        dist = self._padded_distances(cost).view((h + 2) * (w + 2), n).t().contiguous()  # (n, padded tiles)
        # Trace back from the target: the predecessor of a tile is its neighbour of least distance, ties to the
        # first in _OFFSETS; at the fixed point fl(D_u + c_v) = D_v for it (v not the start), so the path is
        # optimal up to rounding. The walk must go to a strictly smaller distance, so it cannot cycle; where
        # rounding absorbs a cost (fl(D_u + c_v) = D_u, e.g. 1e8 + 1 in float32) it may not, and those
        # instances are solved again by _solve_recording, which follows recorded predecessors instead.
        deltas = torch.tensor([[dr * (w + 2) + dc for dr, dc in _OFFSETS]], device=device)
        start = w + 3  # padded flat index of tile (0, 0)
        current = torch.full((n, 1), (h + 1) * (w + 2) - 2, dtype=torch.long, device=device)
        current_dist = dist.gather(1, current)
        stuck = torch.zeros((n, 1), dtype=torch.bool, device=device)
        visited = [current]
        steps = 0
        while True:  # a path has at least max(h, w) tiles and at most h * w
            for _ in range(max(h, w) - 1 if steps == 0 else 4):
                around = current + deltas  # (n, 8)
                best_dist, k = dist.gather(1, around).min(dim=1, keepdim=True)
                arrived = current == start
                stuck |= ~arrived & ~(best_dist < current_dist)
                stop = arrived | stuck
                current = torch.where(stop, current, around.gather(1, k))
                current_dist = torch.where(stop, current_dist, best_dist)
                visited.append(current)
                steps += 1
            if bool(((current == start) | stuck).all()):
                break
            if steps > h * w:  # unreachable: the distances strictly decrease along every walk not stopped
                raise OracleError(f"{self!r}: tracing back the paths did not reach the start tile")
        y = torch.zeros((n, (h + 2) * (w + 2)), dtype=theta.dtype, device=device)
        y.scatter_(1, torch.cat(visited, dim=1), 1.0)
        y = y.view(n, h + 2, w + 2)[:, 1 : h + 1, 1 : w + 1].contiguous()
        if bool(stuck.any()):
            redo = stuck.view(-1).nonzero().view(-1)
            y[redo] = self._solve_recording(theta[redo])
        return y

    def _solve_recording(self, theta: torch.Tensor) -> torch.Tensor:
        """Slower, rounding-proof variant: Bellman-Ford recording each tile's predecessor when its distance
        strictly decreases. The predecessor graph is then acyclic whatever the rounding (along a recorded
        chain u -> v, D_v >= D_u as costs are >= 0 and float addition is monotone, so closing a cycle would
        need D_v < D_v), and every recorded edge is tight at the fixed point."""
        n, h, w = theta.shape
        device = theta.device
        cost = _batch_last_costs(theta)
        pred = torch.zeros((h + 2, w + 2, n), dtype=torch.long, device=device)
        self._padded_distances(cost, pred)
        pred = pred.view((h + 2) * (w + 2), n).t().contiguous()
        start = w + 3
        current = torch.full((n, 1), (h + 1) * (w + 2) - 2, dtype=torch.long, device=device)
        visited = [current]
        for _ in range(h * w - 1):  # an acyclic chain has at most h*w tiles
            current = torch.where(current == start, current, current + pred.gather(1, current))
            visited.append(current)
        if not bool((current == start).all()):
            raise OracleError(f"{self!r}: tracing back the recorded predecessors did not reach the start tile")
        y = torch.zeros((n, (h + 2) * (w + 2)), dtype=theta.dtype, device=device)
        y.scatter_(1, torch.cat(visited, dim=1), 1.0)
        return y.view(n, h + 2, w + 2)[:, 1 : h + 1, 1 : w + 1].contiguous()

    def shortest_path(self, cost: torch.Tensor) -> torch.Tensor:
        """The shortest path for tile costs ``cost`` (*batch, h, w): the same as ``self(-cost)``.

        The costs must be positive, or with ``min_cost`` those below it are raised to it.
        """
        check_tensor("cost", cost)
        return self(-cost)

    @property
    def maximizes_objective(self) -> bool:
        """``False`` with ``min_cost``: the argmax is taken at the clamped scores, the objective at the given ones."""
        return self.min_cost is None

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Tile sets of induced paths from the top-left to the bottom-right tile (see
        :meth:`~colayers.oracles.Oracle.contains`).

        ``y`` ``(*batch, height, width)`` must have 0/1 entries marking a path of 8-neighbour steps with no
        shortcut: two marked tiles touch (by a side or a corner) only when they are consecutive on the path.
        These are exactly the paths that some positive tile costs make the unique shortest one, hence every
        output of this oracle; a staircase of side steps such as right-down-right is not one (its diagonal
        shortcut is shorter for every positive cost). The test: both corner tiles marked, each with one marked
        neighbour, every other marked tile with two, and the marked tiles connected.

        Example:
            >>> import torch
            >>> oracle = GridVertexShortestPath(2, 3)
            >>> diagonal_then_right = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
            >>> staircase = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # (0,0)-(1,1) is a shortcut
            >>> oracle.contains(torch.stack([diagonal_then_right, staircase]))
            tensor([ True, False])
        """
        _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 2)
        return _membership.induced_grid_path(y)

    def __repr__(self) -> str:
        extra = "" if self.min_cost is None else f", min_cost={self.min_cost}"
        extra += "" if self.backend == "auto" else f", backend={self.backend!r}"
        return f"GridVertexShortestPath(height={self.height}, width={self.width}{extra})"
