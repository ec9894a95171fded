r"""Membership tests :math:`y \in \mathcal Y`, batched: the pieces behind the oracles' ``contains`` methods.

Every function takes solutions ``y`` of shape ``(*batch, *solution)`` and returns a bool tensor ``(*batch)`` on
``y``'s device. They run without autograd and without a Python loop over instances (except
:func:`cvxpy_feasible`, which asks cvxpy instance by instance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

__all__: list[str] = []


def solution_batch_shape(owner: str, y: Any, solution_shape: Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """Check that ``y`` is a real tensor ending with the solution shape; return its batch shape."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{owner}.contains: y must be a torch.Tensor; got {type(y).__name__}")
    if y.is_complex():
        raise TypeError(f"{owner}.contains: y must be real; got dtype {y.dtype}")
    if y.ndim < ndim:
        raise ValueError(
            f"{owner}.contains: y must have at least {ndim} dimension(s) (*batch, *solution); "
            f"got shape {tuple(y.shape)}"
        )
    if solution_shape is not None and tuple(y.shape[y.ndim - ndim :]) != tuple(solution_shape):
        raise ValueError(
            f"{owner}.contains: y must have shape (*batch, {', '.join(str(d) for d in solution_shape)}) "
            f"(one solution per instance); got shape {tuple(y.shape)}"
        )
    return tuple(y.shape[: y.ndim - ndim])


def binary(y: torch.Tensor, ndim: int) -> torch.Tensor:
    """Every entry of the solution is 0 or 1."""
    ok = (y == 0) | (y == 1)
    return ok.flatten(ok.ndim - ndim).all(dim=-1) if ndim else ok


def counts(y: torch.Tensor) -> torch.Tensor:
    """``y`` as float32 counts (exact for 0/1 entries and sums below 2**24)."""
    return y.to(torch.float32)


# -- simplex-type sets -------------------------------------------------------------------------------------


def k_subset(y: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 vectors with exactly ``k`` ones (``k = 1``: one-hot vectors)."""
    return binary(y, 1) & (counts(y).sum(dim=-1) == k)


def permutation_of_ranks(y: torch.Tensor) -> torch.Tensor:
    """Permutations of ``(1, 2, ..., n)`` along the last dimension."""
    n = y.shape[-1]
    ranks = torch.arange(1, n + 1, device=y.device, dtype=torch.float64 if n > 2**24 else torch.float32)
    return (torch.sort(y.to(ranks.dtype), dim=-1).values == ranks).all(dim=-1)


# -- graphs ------------------------------------------------------------------------------------------------


def edge_tensors(oracle: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (tail, head) index tensors of ``oracle.edges`` on ``device``, built once per device and cached on the
    oracle (graph oracles test membership on y's device)."""
    key = (device.type, device.index)
    cache = oracle.__dict__.setdefault("_edge_tensors", {})
    if key not in cache:
        cache[key] = tuple(torch.tensor(side, device=device) for side in zip(*oracle.edges))
    return cache[key]


def unit_flow(y: torch.Tensor, tail: torch.Tensor, head: torch.Tensor, num_vertices: int, source: int, sink: int):
    r"""0/1 edge vectors carrying one unit of flow from ``source`` to ``sink``: for every vertex v,
    :math:`\sum_{e\,\text{out of}\,v} y_e - \sum_{e\,\text{into}\,v} y_e` is 1 at the source, −1 at the sink, 0
    elsewhere. In a directed acyclic graph these are exactly the source-sink paths."""
    flow = counts(y)
    balance = flow.new_zeros((*flow.shape[:-1], num_vertices))
    balance = balance.index_add(-1, tail, flow).index_add(-1, head, -flow)
    expected = torch.zeros(num_vertices, device=y.device, dtype=flow.dtype)
    expected[source] += 1.0
    expected[sink] -= 1.0
    return binary(y, 1) & (balance == expected).all(dim=-1)


def spanning_tree(y: torch.Tensor, tail: torch.Tensor, head: torch.Tensor, num_vertices: int) -> torch.Tensor:
    r"""0/1 edge vectors of spanning trees of an undirected graph: exactly :math:`|V| - 1` edges whose reduced
    Laplacian :math:`L_0 = (B\,\mathrm{diag}(y)B^\top)_{V\setminus 0}` is nonsingular. By the matrix-tree
    theorem :math:`\det L_0` counts the spanning trees inside the chosen edges: 1 for a tree, 0 otherwise."""
    ok = binary(y, 1) & (counts(y).sum(dim=-1) == num_vertices - 1)
    batch = y.shape[:-1]
    flat = y.reshape(-1, y.shape[-1]).to(torch.float64) * ok.reshape(-1, 1)
    num_edges = y.shape[-1]
    incidence = torch.zeros(num_vertices, num_edges, dtype=torch.float64, device=y.device)
    edge_index = torch.arange(num_edges, device=y.device)
    incidence[tail, edge_index] = 1.0
    incidence[head, edge_index] = -1.0
    reduced = incidence[1:]  # (V - 1, E)
    laplacian = (reduced * flat[:, None, :]) @ reduced.T  # (N, V - 1, V - 1)
    det = torch.linalg.det(laplacian) if flat.shape[0] else flat.new_zeros(0)
    return ok & ((det - 1.0).abs() < 0.5).reshape(batch)


def assignment(y: torch.Tensor) -> torch.Tensor:
    r"""0/1 matrices ``(n, m)`` matching every row (n ≤ m) or every column (m < n) exactly once: at most one 1
    per row and per column, :math:`\min(n, m)` ones in all."""
    c = counts(y)
    n, m = y.shape[-2:]
    return (
        binary(y, 2)
        & (c.sum(dim=-1) <= 1).all(dim=-1)
        & (c.sum(dim=-2) <= 1).all(dim=-1)
        & (c.sum(dim=(-2, -1)) == min(n, m))
    )


def _neighbour_count(mask: torch.Tensor) -> torch.Tensor:
    """Number of marked 8-neighbours of every tile of ``mask`` (N, h, w), as float32."""
    h, w = mask.shape[-2:]
    padded = torch.nn.functional.pad(mask, (1, 1, 1, 1))
    total = torch.zeros_like(mask)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                total = total + padded[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
    return total


def induced_grid_path(y: torch.Tensor) -> torch.Tensor:
    r"""Tile sets ``(h, w)`` of *induced* 8-neighbour paths from the top-left to the bottom-right tile.

    An induced path is one without shortcuts: no two of its tiles touch (by a side or a corner) unless they are
    consecutive on it. These are exactly the tile sets that some positive tile costs make the unique shortest
    path (put cost 1 on the path and a large cost elsewhere), and every shortest path for positive costs is
    one (a shortcut would skip a tile of positive cost). Test: 0/1 entries, both corner tiles marked, in the
    graph of marked tiles the two corners have one marked neighbour and every other marked tile two, and the
    marked tiles are connected (the degree conditions alone allow a path plus separate cycles).
    """
    batch, (h, w) = y.shape[:-2], y.shape[-2:]
    ok = binary(y, 2).reshape(-1)
    mask = (y == 1).reshape(-1, h, w).to(torch.float32)
    n = mask.shape[0]
    ok = ok & (mask[:, 0, 0] == 1) & (mask[:, h - 1, w - 1] == 1)
    expected = torch.full((h, w), 2.0, device=y.device)
    expected[0, 0] = expected[h - 1, w - 1] = 1.0
    degree_ok = (_neighbour_count(mask) == expected) | (mask == 0)
    ok = ok & degree_ok.reshape(n, h * w).all(dim=-1)
    # connectivity: grow the set reached from the start tile inside the marked tiles until it stops changing
    reached = torch.zeros_like(mask)
    reached[:, 0, 0] = mask[:, 0, 0]
    check_every = max(h, w)
    for step in range(1, h * w):  # a path has at most h * w tiles: h * w - 1 growth steps reach all of it
        grown = torch.nn.functional.max_pool2d(reached[:, None], 3, stride=1, padding=1)[:, 0] * mask
        if step % check_every == 0 and torch.equal(grown, reached):
            break
        reached = grown
    ok = ok & (reached == mask).reshape(n, h * w).all(dim=-1)
    return ok.reshape(batch)


# -- linear constraints ------------------------------------------------------------------------------------


def default_atol(dtype: torch.dtype) -> float:
    """Feasibility tolerance for solutions stored in ``dtype``: 1e-6 (HiGHS' own), or 4 ulps when coarser."""
    return max(1e-6, 4 * torch.finfo(dtype).eps) if dtype.is_floating_point else 1e-6


class LinearConstraints(NamedTuple):
    """The constraints :math:`A_{ub}y \\le b_{ub},\\ A_{eq}y = b_{eq},\\ l \\le y \\le u` of a linear program."""

    A_ub: np.ndarray
    b_ub: np.ndarray
    A_eq: np.ndarray
    b_eq: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def packing_constraints(weights: np.ndarray, capacity: np.ndarray) -> LinearConstraints:
    r"""The linear relaxation :math:`W y \le c,\ 0 \le y \le 1` of the 0/1 packings
    :math:`\{y \in \{0,1\}^m : Wy \le c\}`,
    float64 and read-only (``weights`` ``(dim, m)``, ``capacity`` ``(dim,)``)."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    m = w.shape[1]
    arrays = (w.copy(), np.asarray(capacity, dtype=np.float64).reshape(-1).copy(), np.zeros((0, m)), np.zeros(0),
              np.zeros(m), np.ones(m))
    for a in arrays:
        a.flags.writeable = False
    return LinearConstraints(*arrays)


class LinearFeasibleSet:
    r"""The set :math:`\{y : A_{ub}y \le b_{ub},\ A_{eq}y = b_{eq},\ l \le y \le u,\ y_J \in \mathbb Z\}` of a
    linear or mixed-integer program, and the membership test of its solutions.

    Built from the arguments of :class:`~colayers.oracles.LinearProgram` (already checked there). Without
    integer variables the members are the *vertices* of the polytope (what a simplex-type solver returns);
    with integer variables, the feasible points with integral integer coordinates.
    """

    def __init__(self, n, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=(0.0, None), integrality=None):
        def matrix(a):
            return np.zeros((0, n)) if a is None else np.atleast_2d(np.asarray(a, dtype=np.float64))

        def vector(v, m, fill):
            v = fill if v is None else v
            return np.broadcast_to(np.asarray(v, dtype=np.float64), (m,)).copy()

        self.n = n
        self.A_ub, self.A_eq = matrix(A_ub), matrix(A_eq)
        self.b_ub = vector(b_ub, self.A_ub.shape[0], 0.0)
        self.b_eq = vector(b_eq, self.A_eq.shape[0], 0.0)
        lo, hi = (None, None) if bounds is None else bounds
        self.lb = vector(lo, n, -np.inf)
        self.ub = vector(hi, n, np.inf)
        if integrality is None or isinstance(integrality, (bool, np.bool_)):
            self.integer = np.full(n, bool(integrality))
        else:
            self.integer = vector(integrality, n, 0.0) > 0
        self._tensors: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def constraints(self) -> LinearConstraints:
        """The constraint arrays, float64 read-only copies."""

        def frozen(a: np.ndarray) -> np.ndarray:
            a = a.copy()
            a.flags.writeable = False
            return a

        return LinearConstraints(*(frozen(a) for a in (self.A_ub, self.b_ub, self.A_eq, self.b_eq, self.lb, self.ub)))

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = (device.type, device.index)
        if key not in self._tensors:
            as_t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
            self._tensors[key] = tuple(as_t(a) for a in (self.A_ub, self.b_ub, self.A_eq, self.b_eq, self.lb, self.ub))
            self._tensors[key] += (torch.as_tensor(self.integer, device=device),)
        return self._tensors[key]

    def contains(self, y: torch.Tensor, atol: float | None = None) -> torch.Tensor:
        """Feasible within ``atol`` (relative to the size of each constraint's terms), integral where
        required (within ``atol``), and, for a pure LP, a vertex (the active constraints have rank n)."""
        atol = default_atol(y.dtype) if atol is None else float(atol)
        A_ub, b_ub, A_eq, b_eq, lb, ub, integer = self._on(y.device)
        batch = y.shape[:-1]
        x = y.reshape(-1, self.n).to(torch.float64)
        scale_ub = 1.0 + b_ub.abs() + x.abs() @ A_ub.abs().T  # (N, m_ub)
        scale_eq = 1.0 + b_eq.abs() + x.abs() @ A_eq.abs().T
        slack_ub = b_ub - x @ A_ub.T
        gap_eq = x @ A_eq.T - b_eq
        tol_x = atol * (1.0 + x.abs())
        ok = torch.isfinite(x).all(dim=-1)
        ok &= (slack_ub >= -atol * scale_ub).all(dim=-1) & (gap_eq.abs() <= atol * scale_eq).all(dim=-1)
        ok &= ((x >= lb - tol_x) & (x <= ub + tol_x)).all(dim=-1)
        if bool(integer.any()):
            return (ok & ((x - x.round()).abs() <= tol_x)[:, integer].all(dim=-1)).reshape(batch)
        # a vertex: the tight constraints (inequalities within tolerance, every equality, tight bounds) have rank n
        eye = torch.eye(self.n, dtype=torch.float64, device=y.device)
        rows = torch.cat([A_ub, A_eq, eye, eye])  # (m, n)
        tight = torch.cat(
            [
                slack_ub.abs() <= atol * scale_ub,
                torch.ones_like(gap_eq, dtype=torch.bool),
                torch.isfinite(lb) & ((x - lb).abs() <= tol_x),
                torch.isfinite(ub) & ((ub - x).abs() <= tol_x),
            ],
            dim=-1,
        )  # (N, m)
        active = rows * tight[:, :, None]  # (N, m, n)
        norms = rows.norm(dim=-1).clamp_min(1e-300)
        active = active / norms[:, None]  # unit rows: the rank tolerance is relative to 1
        if x.shape[0] == 0:
            return ok.reshape(batch)
        rank = torch.linalg.matrix_rank(active, atol=math.sqrt(atol))
        return (ok & (rank == self.n)).reshape(batch)


def cvxpy_feasible(problem: Any, variable: Any, y: torch.Tensor, atol: float | None = None, lock=None):
    """Instance by instance: does ``variable = y_i`` satisfy every constraint of ``problem`` within ``atol``
    (and the variable's boolean / integer attributes)? The variable's value is restored afterwards."""
    atol = default_atol(y.dtype) if atol is None else float(atol)
    shape = tuple(variable.shape) or (1,)
    batch = y.shape[: y.ndim - len(shape)]
    values = y.detach().reshape(-1, *shape).to(torch.float64).cpu().numpy()
    integral = bool(variable.attributes.get("boolean") or variable.attributes.get("integer"))
    boolean = bool(variable.attributes.get("boolean"))
    out = np.zeros(values.shape[0], dtype=bool)

    def check_all() -> None:
        before = variable.value
        try:
            for i, v in enumerate(values):
                v = v.reshape(variable.shape)
                if not np.isfinite(v).all():
                    continue
                if integral and np.abs(v - np.round(v)).max(initial=0.0) > atol:
                    continue
                if boolean and ((v < -atol) | (v > 1 + atol)).any():
                    continue
                try:
                    variable.value = np.round(v) if integral else v
                except ValueError:  # cvxpy refuses a value outside the variable's domain
                    continue
                out[i] = all(
                    np.max(np.asarray(c.violation(), dtype=np.float64), initial=0.0) <= atol * (1 + np.abs(v).max())
                    for c in problem.constraints
                )
        finally:
            variable.value = before

    if lock is None:
        check_all()
    else:
        with lock:
            check_all()
    return torch.from_numpy(out).to(y.device).reshape(batch)
