r"""A pool of known solutions that can stand in for the oracle (PyEPO's "solve ratio" trick)."""

from __future__ import annotations

import torch

from .._validation import check_generator, check_int_at_least, check_tensor
from .base import Oracle, OracleWrapper

__all__ = ["SolutionPool"]


class SolutionPool(OracleWrapper):
    r"""A deduplicated, growing set :math:`\Gamma \subset \mathcal Y` of solutions, usable as an oracle.

    Calling the pool on scores θ solves, for each batch (one random draw per call):

    * with probability ``solve_ratio``: the true oracle, :math:`f(\theta)`, and the new solutions join the pool;
    * otherwise: the best pool member, :math:`\operatorname{argmax}_{w\in\Gamma}\langle\theta, g(w)\rangle + h(w)`,
      computed for the whole batch as one ``(N, |Γ|)`` score matrix (no oracle call).

    An empty pool always calls the oracle. This is the solution-caching scheme of Mulamba et al. (2021) used by
    PyEPO's contrastive losses: with solve ratio r the oracle runs on about a fraction r of the batches.
    Being an :class:`~colayers.oracles.Oracle`, the pool can replace the oracle anywhere one is taken
    (:class:`~colayers.losses.SPOPlusLoss`, :class:`~colayers.losses.StructuredSVMLoss`, metrics...). The
    draw uses ``generator`` (a :class:`torch.Generator` on the CPU) or, when ``None``, a pool-owned generator
    made from ``seed``. Membership (:meth:`contains`) is the wrapped oracle's: the pool's members are
    solutions in Y, and Y does not change with them.

    Args:
        oracle: the oracle the pool stands in for.
        solutions: optional initial solutions ``(N, *solution_shape)`` (e.g. the training targets).
        solve_ratio: probability r ∈ [0, 1] of calling the oracle on a batch.
        seed: seed of the pool-owned generator (``None``: the global RNG is used for the draws).
        generator: an explicit CPU generator for the draws (takes precedence over ``seed``).

    Attributes:
        solutions: the pool, ``(|Γ|, *solution_shape)``, sorted lexicographically (``torch.unique``), in the
            dtype of the first solutions added and on the device of the latest ones.
        oracle_calls: the number of batches on which the oracle was called.
        pool_calls: the number of batches answered from the pool.

    Reference: M. Mulamba, J. Mandi, M. Diligenti, M. Lombardi, V. Bucarey, T. Guns, "Contrastive Losses and
    Solution Caching for Predict-and-Optimize", IJCAI 2021.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> pool = SolutionPool(ArgmaxOneHot(), solve_ratio=0.0)
        >>> pool.add(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
        >>> len(pool)
        2
        >>> pool(torch.tensor([0.0, 5.0, 1.0]))  # best member of the pool, not the true argmax
        tensor([0., 0., 1.])
    """

    deterministic = False

    def __init__(
        self,
        oracle: Oracle,
        solutions: torch.Tensor | None = None,
        solve_ratio: float = 1.0,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(oracle, validate_args=validate_args)
        self.deterministic = False  # whether the pool or the oracle answers is random
        if isinstance(solve_ratio, bool) or not isinstance(solve_ratio, (int, float)):
            raise TypeError(f"solve_ratio must be a real number in [0, 1]; got {type(solve_ratio).__name__}")
        if not 0.0 <= solve_ratio <= 1.0:
            raise ValueError(f"solve_ratio must be in [0, 1]; got {solve_ratio!r}")
        self.solve_ratio = float(solve_ratio)
        check_generator(generator, torch.device("cpu"))
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(check_int_at_least("seed", seed, 0))
        self.generator = generator
        self.solutions: torch.Tensor | None = None
        self.oracle_calls = 0
        self.pool_calls = 0
        if solutions is not None:
            self.add(solutions)

    @property
    def maximizes_objective(self) -> bool:
        """Only with ``solve_ratio = 1``: a member of the pool maximizes the objective over Γ, not over Y."""
        return self.solve_ratio >= 1.0 and self.oracle.maximizes_objective

    def __len__(self) -> int:
        return 0 if self.solutions is None else int(self.solutions.shape[0])

    def add(self, solutions: torch.Tensor) -> None:
        """Add solutions ``(*batch, *solution_shape)`` to the pool, dropping duplicates (exact equality)."""
        check_tensor("solutions", solutions)
        sol_ndim = self.event_ndim
        if self.solutions is not None:
            sol_ndim = self.solutions.ndim - 1
            if tuple(solutions.shape[solutions.ndim - sol_ndim :]) != tuple(self.solutions.shape[1:]):
                raise ValueError(
                    f"solutions must end with the pool's solution shape {tuple(self.solutions.shape[1:])}; "
                    f"got shape {tuple(solutions.shape)}"
                )
        if solutions.ndim < sol_ndim:
            raise ValueError(
                f"solutions must have at least {sol_ndim} dimension(s); got shape {tuple(solutions.shape)}"
            )
        event = tuple(solutions.shape[solutions.ndim - sol_ndim :])
        new = solutions.detach().reshape((-1, *event))
        if self.solutions is not None:  # the pool follows the device of the newest solutions
            new = torch.cat([self.solutions.to(new.device), new.to(self.solutions.dtype)])
        flat = new.reshape(new.shape[0], -1)
        self.solutions = torch.unique(flat, dim=0).reshape((-1, *event))

    def _use_oracle(self, generator: torch.Generator | None) -> bool:
        if self.solve_ratio >= 1.0 or len(self) == 0:
            return True
        if self.solve_ratio <= 0.0:
            return False
        g = generator if generator is not None else self.generator
        return bool(torch.rand((), generator=g) < self.solve_ratio)

    def best(self, theta: torch.Tensor) -> torch.Tensor:
        r"""The best pool member for each instance, :math:`\operatorname{argmax}_{w\in\Gamma}` of the objective.

        ``theta`` is ``(*batch, *event)``; returns ``(*batch, *solution_shape)``. No oracle call.
        """
        if len(self) == 0:
            raise ValueError("the solution pool is empty; add solutions or call it with solve_ratio > 0 first")
        scores = self.scores(theta)  # (*batch, P)
        idx = scores.argmax(dim=-1)
        pool = self.solutions.to(device=theta.device, dtype=theta.dtype)
        return pool[idx]

    def scores(self, theta: torch.Tensor) -> torch.Tensor:
        r"""Objective of every pool member for every instance: ``(*batch, |Γ|)``, differentiable in θ."""
        if len(self) == 0:
            raise ValueError("the solution pool is empty; add solutions first")
        pool = self.solutions.to(device=theta.device, dtype=theta.dtype)
        gw = self.oracle.g(pool)  # (P, *event)
        nd = self.event_ndim
        batch = theta.shape[: theta.ndim - nd]
        gw = gw.reshape(gw.shape[0], -1)
        flat_theta = theta.reshape(*batch, gw.shape[1])  # explicit size: an empty batch reshapes too
        scores = flat_theta @ gw.T
        hw = self.oracle.h(pool)
        if hw is not None:
            scores = scores + hw
        return scores

    def solve(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self._use_oracle(generator):
            y = self.oracle(theta)
            self.add(y)
            self.oracle_calls += 1
            return y
        self.pool_calls += 1
        return self.best(theta)

    def update(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> bool:
        """With probability ``solve_ratio``, solve θ with the oracle and add the solutions; return whether it did."""
        if self._use_oracle(generator):
            with torch.no_grad():
                self.add(self.oracle(theta.detach()))
            self.oracle_calls += 1
            return True
        return False

    def __repr__(self) -> str:
        return f"SolutionPool({self.oracle!r}, size={len(self)}, solve_ratio={self.solve_ratio})"

