r"""Exact 0/1 multi-dimensional knapsack by enumeration: every feasible packing scored in one matrix product.

When the capacities are small relative to the item weights, the feasible packings
:math:`\{y \in \{0,1\}^m : W y \le c\}` are few (9,366 for PyEPO's 32 items, 2 constraints, capacity 20), so
the oracle :math:`\arg\max_{y \text{ feasible}} \langle\theta, y\rangle` is one ``(B, m) @ (m, P)`` product and
an argmax, batched and on θ's device, for any sign of θ (the empty packing is feasible).

Example:
    >>> import numpy as np, torch
    >>> W, cap = np.array([[2.0, 3.0, 4.0]]), np.array([5.0])
    >>> oracle = PackingOracle(feasible_packings(W, cap, limit=100))
    >>> oracle(torch.tensor([[1.0, 2.0, 2.5], [-1.0, -1.0, -1.0]]))
    tensor([[1., 1., 0.],
            [0., 0., 0.]])
"""

from __future__ import annotations

import numpy as np
import torch

from . import _membership
from .base import Oracle

__all__ = ["PackingOracle"]


def feasible_packings(weights: np.ndarray, capacity: np.ndarray, limit: int) -> np.ndarray | None:
    """All 0/1 packings y with W y ≤ cap (the empty one included), or None if there are more than ``limit``."""
    dim, m = weights.shape
    # grow subsets item by item, keeping only feasible ones: level j holds subsets whose largest item is < j
    subsets = [np.zeros((1, m), dtype=bool)]
    loads = [np.zeros((1, dim))]
    total = 1
    for item in range(m):
        new_loads = [ld + weights[:, item] for ld in loads]
        keep = [np.all(nl <= capacity + 1e-9, axis=1) for nl in new_loads]
        added = []
        for sub, nl, k in zip(subsets, new_loads, keep):
            if k.any():
                ys = sub[k].copy()
                ys[:, item] = True
                added.append((ys, nl[k]))
        for ys, nl in added:
            subsets.append(ys)
            loads.append(nl)
            total += len(ys)
        if total > limit:
            return None
    return np.concatenate(subsets)


class PackingOracle(Oracle):
    r"""Exact 0/1 knapsack by scoring every feasible packing (few when capacities are small): one matmul.

    Args:
        packings: the feasible packings ``(P, m)``, 0/1 (:func:`feasible_packings`).
        weights, capacity: optional, the constraints ``(dim, m)`` and ``(dim,)`` the packings satisfy; given,
            the oracle has :attr:`linear_constraints` (their linear relaxation :math:`Wy \le c`,
            :math:`0 \le y \le 1`, as :class:`~colayers.oracles.Knapsack` has), which
            :class:`~colayers.losses.ConeAlignedCosineLoss` needs.
    """

    event_ndim = 1

    def __init__(self, packings: np.ndarray, *, weights: np.ndarray | None = None,
                 capacity: np.ndarray | None = None) -> None:
        super().__init__()
        self.packings = torch.as_tensor(packings, dtype=torch.float32)
        self.event_shape = (self.packings.shape[1],)
        if (weights is None) != (capacity is None):
            raise ValueError("weights and capacity must be given together (or neither); got only "
                             f"{'weights' if capacity is None else 'capacity'}")
        self._constraints = None
        if weights is not None:
            w, cap = np.atleast_2d(np.asarray(weights, dtype=np.float64)), np.asarray(capacity, dtype=np.float64)
            if w.shape[1] != self.event_shape[0] or cap.reshape(-1).shape[0] != w.shape[0]:
                raise ValueError(
                    f"weights must be (dim, {self.event_shape[0]}) and capacity (dim,); got weights {w.shape} and "
                    f"capacity {cap.shape}"
                )
            load = self.packings.double().numpy() @ w.T
            if (load > cap.reshape(-1) + 1e-9).any():
                raise ValueError("packings must satisfy weights @ y <= capacity; some packing exceeds the capacity")
            self._constraints = _membership.packing_constraints(w, cap)
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        key = (theta.device, theta.dtype)
        if key not in self._cache:
            self._cache[key] = self.packings.to(device=theta.device, dtype=theta.dtype)
        Y = self._cache[key]
        chunk = max(1, 2**24 // Y.shape[0])  # bound the (chunk, num_packings) score matrix
        best = torch.cat([(t @ Y.T).argmax(dim=1) for t in theta.split(chunk)])
        return Y[best]

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """Whether each instance of ``y`` ``(*batch, items)`` is one of the feasible packings (exact equality; see
        :meth:`~colayers.oracles.Oracle.contains`)."""
        batch = _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        packings = self.packings.to(y.device)
        flat = y.reshape(-1, self.event_shape[0]).to(torch.float32)
        chunk = max(1, 2**24 // (packings.numel() or 1))  # bound the (chunk, num_packings, items) comparison
        found = [(part[:, None, :] == packings).all(dim=-1).any(dim=-1) for part in flat.split(chunk)]
        ok = torch.cat(found) if found else flat.new_zeros(0, dtype=torch.bool)
        return ok.reshape(batch)

    @property
    def linear_constraints(self) -> _membership.LinearConstraints | None:
        """The linear relaxation of the packings' constraints when ``weights`` and ``capacity`` were given, else
        ``None`` (then :class:`~colayers.losses.ConeAlignedCosineLoss` refuses the oracle)."""
        return self._constraints

    def __repr__(self) -> str:
        return f"PackingOracle(items={self.packings.shape[1]}, feasible_packings={self.packings.shape[0]})"
