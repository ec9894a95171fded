r"""A bounded least-recently-used cache of solutions for a deterministic oracle."""

from __future__ import annotations

from collections import OrderedDict

import torch

from .._validation import check_int_at_least
from .base import Oracle, OracleWrapper

__all__ = ["CachedOracle"]


class CachedOracle(OracleWrapper):
    r"""Memoize a deterministic oracle: :math:`f(\theta)` is computed once per distinct θ, up to ``max_size`` θs.

    The key of an instance is its exact bytes (any dtype, bfloat16 included) together with its dtype, event
    shape and device, so only a
    bit-for-bit equal θ is a hit (useful for blackbox / I-MLE backward passes and for training loops that
    revisit the same scores). Per call, the instances that miss — each distinct one once — are solved in
    ONE batched call of the wrapped oracle; hits are read from the cache. The least recently used entry is
    evicted beyond ``max_size``. Lookups move θ to the CPU to hash it, so the cache pays off for expensive
    oracles (solvers called per instance), not for cheap tensor-native ones.

    Refuses oracles with ``deterministic = False``: their output is not a function of θ.

    Args:
        oracle: the deterministic oracle to memoize.
        max_size: the largest number of cached solutions (≥ 1).

    Attributes:
        hits, misses: instance counts since creation (or :meth:`clear`).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> cached = CachedOracle(ArgmaxOneHot(), max_size=100)
        >>> theta = torch.tensor([[1.0, 3.0], [1.0, 3.0], [2.0, 0.0]])
        >>> cached(theta)
        tensor([[0., 1.],
                [0., 1.],
                [1., 0.]])
        >>> cached(theta[:1]).tolist(), cached.hits, cached.misses
        ([[0.0, 1.0]], 2, 2)
    """

    def __init__(self, oracle: Oracle, max_size: int = 4096, *, validate_args: bool | None = None) -> None:
        super().__init__(oracle, validate_args=validate_args)
        if not oracle.deterministic:
            raise ValueError(
                f"oracle must be deterministic to be cached (its output a function of theta alone); "
                f"{oracle!r} has deterministic=False"
            )
        self.max_size = check_int_at_least("max_size", max_size, 1)
        self._store: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Empty the cache and reset the hit and miss counts."""
        self._store.clear()
        self.hits = self.misses = 0

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        if theta.shape[0] == 0:
            return theta.new_zeros((0, *self.solution_shape(tuple(theta.shape[1:]))))
        host = theta.detach().cpu().contiguous()
        prefix = (str(theta.device), theta.dtype, tuple(theta.shape[1:]))
        # the raw bytes of each instance (a uint8 view: numpy has no bfloat16)
        keys = [(*prefix, host[i].view(torch.uint8).numpy().tobytes()) for i in range(host.shape[0])]
        rows: list[torch.Tensor | None] = []
        pending: dict[tuple, int] = {}  # key -> position among the instances to solve
        for key in keys:
            row = self._store.get(key)
            if row is not None:
                self._store.move_to_end(key)
                self.hits += 1
            elif key in pending:
                self.hits += 1  # a repeat within this batch: solved once
            else:
                pending[key] = len(pending)
                self.misses += 1
            rows.append(row)
        if pending:
            first = {}
            for i, key in enumerate(keys):
                if key in pending and key not in first:
                    first[key] = i
            index = torch.tensor([first[k] for k in pending], device=theta.device)
            solved = self.oracle.solve(theta.index_select(0, index))
            for key, pos in pending.items():
                self._store[key] = solved[pos].clone()  # not a view: the batch is not kept alive
                if len(self._store) > self.max_size:
                    self._store.popitem(last=False)
            rows = [solved[pending[k]] if r is None else r for r, k in zip(rows, keys)]
        return torch.stack(rows)

    def __repr__(self) -> str:
        return f"CachedOracle({self.oracle!r}, max_size={self.max_size})"
