"""An oracle wrapper that counts calls and solved instances."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from .base import Oracle, OracleWrapper

__all__ = ["CountingOracle"]


class CountingOracle(OracleWrapper):
    """Wrap an oracle and count its calls and the instances it solves (``calls``, ``instances``).

    Every attribute not defined here (``edges``, ``shortest_path``...) is the wrapped oracle's. Counting can
    be paused with :meth:`paused` (a study runner does so during evaluation). With ``counter=`` another
    ``CountingOracle``, the counts go to that one instead, so that two oracles (e.g. an exact one and a
    ``min_cost`` variant used in training) share one tally.

    Args:
        oracle: the oracle to count.
        counter: the ``CountingOracle`` whose ``calls``/``instances`` to increase (default: this one).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, TopKSubset
        >>> counted = CountingOracle(ArgmaxOneHot())
        >>> _ = counted(torch.zeros(4, 2, 3))  # one call, 8 instances
        >>> shared = CountingOracle(TopKSubset(2), counter=counted)
        >>> _ = shared(torch.zeros(5, 3))
        >>> counted.calls, counted.instances, shared.calls
        (2, 13, 0)
    """

    def __init__(self, oracle: Oracle, *, counter: CountingOracle | None = None) -> None:
        super().__init__(oracle, validate_args=False)
        if counter is not None and not isinstance(counter, CountingOracle):
            raise TypeError(f"counter must be a CountingOracle or None; got {type(counter).__name__}")
        self.counter = self if counter is None else counter
        self.calls = 0
        self.instances = 0
        self._counting = True

    def __getattr__(self, name: str) -> Any:
        if name == "oracle":  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.oracle, name)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop counting inside the ``with`` block."""
        old, self._counting = self._counting, False
        try:
            yield
        finally:
            self._counting = old

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        if self._counting and self.counter._counting:
            self.counter.calls += 1
            self.counter.instances += math.prod(theta.shape[: theta.ndim - self.event_ndim])
        return self.oracle(theta)

    def __repr__(self) -> str:
        return f"CountingOracle({self.oracle!r}, calls={self.counter.calls}, instances={self.counter.instances})"
