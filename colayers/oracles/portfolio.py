r"""Markowitz portfolio under a risk budget (PyEPO's ``portfolioModel``): a convex oracle solved by cvxpy.

For expected returns :math:`\theta \in \mathbb{R}^m` the oracle returns the allocation

.. math::  f(\theta) = \operatorname*{argmax}_{x} \ \langle \theta, x \rangle \quad \text{s.t.} \quad
           x^\top \Sigma x \le \gamma\, \bar\Sigma,\quad \textstyle\sum_i x_i = 1,\quad 0 \le x \le 1,

with :math:`\bar\Sigma = \frac{1}{m^2}\sum_{ij}\Sigma_{ij}` the mean entry of the covariance matrix (the risk of
the uniform portfolio). The feasible set is convex and not finite: :meth:`Portfolio.contains` tests feasibility,
and the answer is optimal up to the solver's tolerance, not exactly.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import numpy as np
import torch

from .._validation import check_args, nonnegative, one_of
from . import _membership
from .base import Oracle, OracleError, SolverOracle
from .highs import PerThread, _power_of_two_scale

__all__ = ["Portfolio"]

_SOLVERS = ("CLARABEL", "SCS", "GUROBI")  # cvxpy solvers of second-order cone programs
_FEASIBILITY_TOL = 1e-6  # a solver's answer is checked against the constraints within this (see Portfolio)


def _factor(covariance: np.ndarray) -> np.ndarray:
    """A square root F with FᵀF = Σ (from the eigendecomposition; eigenvalues clipped at 0 after the PSD check)."""
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).T


def _violation(x: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """The largest violation of each row of ``x`` ``(N, m)``, relative to the constraint's size: ``|Σx - 1|``,
    ``-x``, ``x - 1``, and ``‖Fx‖² - 1`` for the budget-scaled factor ``F`` (so the risk budget is 1)."""
    risk = ((x @ factor.T) ** 2).sum(axis=-1)
    parts = [np.abs(x.sum(axis=-1) - 1.0), (-x).max(axis=-1), (x - 1.0).max(axis=-1), risk - 1.0]
    return np.max(np.stack(parts), axis=0)


class _PortfolioSolver(PerThread):
    """Picklable per-instance solver: one cvxpy problem per thread, the returns as its Parameter."""

    def __init__(self, scaled_factor: np.ndarray, solver: str, solver_options: dict) -> None:
        self.scaled_factor, self.solver, self.solver_options = scaled_factor, solver, solver_options
        self._local = threading.local()

    def _problem(self) -> tuple[Any, Any, Any]:
        built = getattr(self._local, "problem", None)
        if built is None:
            import cvxpy as cp

            m = self.scaled_factor.shape[1]
            returns, x = cp.Parameter(m), cp.Variable(m)
            constraints = [cp.sum(x) == 1, x >= 0, x <= 1, cp.norm(self.scaled_factor @ x, 2) <= 1]
            built = self._local.problem = (cp.Problem(cp.Maximize(returns @ x), constraints), returns, x)
        return built

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        import cvxpy as cp

        problem, returns, x = self._problem()
        returns.value = _power_of_two_scale(np.asarray(theta, dtype=np.float64))  # the argmax is unchanged
        problem.solve(solver=self.solver, warm_start=False, **self.solver_options)
        if problem.status != cp.OPTIMAL or x.value is None:
            raise OracleError(f"cvxpy solver {self.solver} ended with status {problem.status!r} (not 'optimal')")
        value = np.asarray(x.value, dtype=np.float64)
        worst = float(_violation(value[None], self.scaled_factor)[0])
        if worst > _FEASIBILITY_TOL:
            raise OracleError(f"cvxpy solver {self.solver} returned a point {worst:.3g} outside the constraints")
        return value

    def __repr__(self) -> str:
        return f"_PortfolioSolver(assets={self.scaled_factor.shape[1]}, solver={self.solver})"


_CLARABEL_TIGHT = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}


def _options(solver: str, given: dict | None) -> dict:
    if given is not None:
        return dict(given)
    return dict(_CLARABEL_TIGHT) if solver == "CLARABEL" else {}


class Portfolio(Oracle):
    r"""Markowitz allocation maximizing expected return under a risk budget (PyEPO's ``portfolioModel``).

    .. math::  f(\theta) = \operatorname*{argmax}_{x \in \mathcal{X}} \ \langle \theta, x \rangle ,\qquad
               \mathcal{X} = \Bigl\{x \in [0, 1]^m : \textstyle\sum_i x_i = 1,\ x^\top \Sigma x \le
               \gamma\,\bar\Sigma \Bigr\},

    θ the expected returns (maximized as they are; for costs pass ``-cost``), :math:`\Sigma` a fixed positive
    semidefinite covariance and the risk budget :math:`\gamma\bar\Sigma` (``risk_budget``) PyEPO's: γ times the
    mean entry :math:`\bar\Sigma = \mathbf 1^\top\Sigma\mathbf 1/m^2` of Σ, which is the risk of the uniform
    portfolio (so every γ ≥ 1 is feasible; a γ for which no allocation is feasible is refused).

    Each instance is a second-order cone program (the risk constraint as :math:`\|F x\| \le 1` with
    :math:`F^\top F = \Sigma/(\gamma\bar\Sigma)`) solved by cvxpy with ``solver`` (Clarabel by default) on one
    cvxpy problem per thread whose returns are a Parameter, without warm start: an instance's answer is a
    function of its θ alone (θ is first scaled by a power of two, which leaves the argmax unchanged). Instances
    run serially or on an ``executor`` (see :class:`~colayers.oracles.SolverOracle`).

    **Not a finite set.** :math:`\mathcal{X}` is convex; the answer is a maximizer up to the solver's tolerances
    (by default Clarabel with its gap and feasibility tolerances tightened from 1e-8 to 1e-9, at no measured
    cost: over 150 random instances of 5 assets the allocation then moved by at most 1.7e-5 under a rescaling of θ,
    against 8e-5 at Clarabel's defaults; at 1e-10 Clarabel sometimes ends "optimal_inaccurate"), not an exact
    vertex, and it is checked: a status other than
    ``"optimal"`` (``"optimal_inaccurate"`` included), or an answer that violates a constraint by more than 1e-6
    (relative: the budget is scaled to 1), raises :class:`~colayers.oracles.OracleError`. When the risk
    constraint binds (as in PyEPO's data) and Σ is positive definite the maximizer is unique; when θ is
    constant the objective is too, and the answer is some feasible point. :meth:`contains` tests feasibility.

    Args:
        covariance: Σ, a symmetric positive semidefinite ``(m, m)`` matrix (array or tensor).
        gamma: the risk multiplier γ ≥ 0 (PyEPO's default 2.25).
        solver: the cvxpy solver, one of ``"CLARABEL"``, ``"SCS"``, ``"GUROBI"`` (it must be installed).
        solver_options: keyword arguments for ``cvxpy.Problem.solve`` (e.g. tolerances); ``None``: Clarabel's
            ``tol_gap_abs``, ``tol_gap_rel`` and ``tol_feas`` at 1e-9 (nothing for the other solvers).
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> portfolio = Portfolio(torch.diag(torch.tensor([1.0, 1.0, 4.0])), gamma=1.0)
        >>> portfolio.risk_budget  # γ times the mean entry of Σ
        0.6666666666666666
        >>> x = portfolio(torch.tensor([[1.0, 1.0, 2.0]], dtype=torch.float64))
        >>> x.round(decimals=4)  # risk x₁² + x₂² + 4x₃² = 2/3, the budget: the third asset is capped
        tensor([[0.3333, 0.3333, 0.3333]], dtype=torch.float64)
        >>> portfolio.contains(torch.tensor([[0.4, 0.4, 0.2], [0.0, 0.0, 1.0]]))
        tensor([ True, False])
    """

    event_ndim = 1
    arg_constraints = {"gamma": nonnegative, "solver": one_of(*_SOLVERS)}

    def __init__(
        self,
        covariance: np.ndarray | torch.Tensor,
        gamma: float = 2.25,
        *,
        solver: str = "CLARABEL",
        solver_options: dict | None = None,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        import cvxpy as cp

        super().__init__(validate_args=validate_args)
        checked = check_args(self, gamma=gamma, solver=solver)
        sigma = _covariance(covariance)
        if checked["solver"] not in cp.installed_solvers():
            raise ValueError(f"solver {solver!r} is not installed for cvxpy; installed: {cp.installed_solvers()}")
        if solver_options is not None and not isinstance(solver_options, dict):
            raise TypeError(f"solver_options must be a dict or None; got {type(solver_options).__name__}")
        m = sigma.shape[0]
        self.covariance, self.gamma = sigma, checked["gamma"]
        self.risk_budget = float(self.gamma * sigma.mean())
        least = _least_risk(sigma, checked["solver"])
        if not least <= self.risk_budget * (1 + _FEASIBILITY_TOL):
            raise ValueError(
                f"gamma={gamma!r} gives the risk budget {self.risk_budget:.6g}, below the least risk of a portfolio "
                f"({least:.6g}): no allocation is feasible (gamma ≥ 1 always is)"
            )
        self._scaled_factor = _factor(sigma) / np.sqrt(self.risk_budget) if self.risk_budget > 0 else None
        if self._scaled_factor is None:
            raise ValueError("the risk budget is 0 (gamma = 0 or a zero covariance): give gamma > 0")
        self.solver = checked["solver"]
        self.event_shape = (m,)
        self._instances = SolverOracle(
            _PortfolioSolver(self._scaled_factor, self.solver, _options(self.solver, solver_options)),
            (m,),
            executor=executor,
            timeout=timeout,
            validate_args=validate_args,
        )

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        return self._instances.solve(theta)

    def contains(self, y: torch.Tensor, atol: float | None = None) -> torch.Tensor:
        r"""Feasible allocations (see :meth:`~colayers.oracles.Oracle.contains`), within a tolerance:
        :math:`|\sum_i y_i - 1| \le \mathrm{atol}`, :math:`-\mathrm{atol} \le y_i \le 1 + \mathrm{atol}` and
        :math:`y^\top\Sigma y \le (1 + \mathrm{atol})\,\gamma\bar\Sigma`; ``atol`` defaults to
        :math:`\max(10^{-6}, 4\epsilon)` for ``y``'s dtype. Every feasible point is a member, optimal or not.

        Example:
            >>> import torch
            >>> Portfolio(torch.eye(2), gamma=2.0).contains(torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.6, 0.6]]))
            tensor([ True,  True, False])
        """
        batch = _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        atol = _membership.default_atol(y.dtype) if atol is None else float(atol)
        x = y.detach().reshape(-1, self.event_shape[0]).to(torch.float64).cpu().numpy()
        finite = np.isfinite(x).all(axis=-1)
        ok = finite & (_violation(np.where(finite[:, None], x, 0.0), self._scaled_factor) <= atol)
        return torch.from_numpy(ok).to(y.device).reshape(batch)

    def __repr__(self) -> str:
        return f"Portfolio(assets={self.event_shape[0]}, gamma={self.gamma:g}, solver={self.solver})"


def _covariance(covariance: Any) -> np.ndarray:
    if isinstance(covariance, torch.Tensor):
        covariance = covariance.detach().cpu().numpy()
    sigma = np.asarray(covariance, dtype=np.float64)
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1] or sigma.shape[0] == 0:
        raise ValueError(f"covariance must be a square (m, m) matrix with m ≥ 1; got shape {sigma.shape}")
    if not np.isfinite(sigma).all():
        raise ValueError(f"covariance must be finite; got {int((~np.isfinite(sigma)).sum())} non-finite entries")
    scale = float(np.abs(sigma).max(initial=0.0))
    if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-12 * scale):
        raise ValueError("covariance must be symmetric; got a matrix that differs from its transpose")
    low = float(np.linalg.eigvalsh(sigma).min())
    if low < -1e-10 * scale:
        raise ValueError(f"covariance must be positive semidefinite; got the eigenvalue {low:.3g}")
    return (sigma + sigma.T) / 2


def _least_risk(sigma: np.ndarray, solver: str) -> float:
    """The least risk xᵀΣx of an allocation (the uniform portfolio's, mean(Σ), when that is the budget's bound)."""
    import cvxpy as cp

    x = cp.Variable(sigma.shape[0])
    factor = _factor(sigma)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(factor @ x)), [cp.sum(x) == 1, x >= 0, x <= 1])
    problem.solve(solver=solver)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise ValueError(f"the least-risk portfolio could not be computed (cvxpy status {problem.status!r})")
    return float(min(problem.value, sigma.mean()))
