r"""Bring your own solver: linear and mixed-integer programs (HiGHS) and any cvxpy model.

Both are :class:`~colayers.oracles.SolverOracle`\ s: each instance of a batch is solved by a per-instance
numpy solver, serially or on a :class:`concurrent.futures.Executor` (threads, processes, or
``dask.distributed.Client.get_executor()``); the solver objects are picklable so that they travel to worker
processes.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._validation import check_int_at_least
from . import _membership
from .base import OracleError, SolverOracle
from .highs import HighsProgram, _power_of_two_scale, silence_banner

__all__ = ["LinearProgram", "CvxpyOracle"]

def _matrix(name: str, value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    a = np.atleast_2d(np.asarray(value, dtype=np.float64))
    if a.ndim != 2 or a.shape[1] != n:
        raise ValueError(f"{name} must be a matrix with {n} columns (one per variable); got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(a)).sum())} non-finite entries")
    return a


def _vector(name: str, value: Any, m: int, *, allow_inf: bool = False) -> np.ndarray:
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), (m,)).copy() if np.ndim(value) == 0 else None
    if v is None:
        v = np.asarray(value, dtype=np.float64)
        if v.shape != (m,):
            raise ValueError(f"{name} must have shape ({m},); got shape {v.shape}")
    if np.isnan(v).any() or (not allow_inf and not np.isfinite(v).all()):
        raise ValueError(f"{name} must be {'not NaN' if allow_inf else 'finite'}; got {v}")
    return v


class LinearProgram(SolverOracle):
    r"""Linear or mixed-integer program with scores in the objective, solved by HiGHS on a persistent model.

    .. math::  f(\theta) = \operatorname*{argmax}_{y} \ \langle \theta, y \rangle
               \quad \text{s.t.} \quad A_{ub} y \le b_{ub},\ A_{eq} y = b_{eq},\ l \le y \le u,\
               y_j \in \mathbb{Z} \text{ for } j \in J.

    Maximization, like every oracle: a cost-minimization LP is served by ``theta = -cost``. The constraints
    are fixed; only θ changes between instances, so each thread (or worker process) keeps one HiGHS model
    and only replaces its objective (:class:`~colayers.oracles.highs.HighsProgram`). Each instance's θ is
    scaled by a power of two so that the answer does not depend on the magnitude of θ (θ and 1e-8·θ give the
    same y). Without integrality the returned point is a vertex of the polytope found by HiGHS; integer
    variables are rounded to the nearest integer (HiGHS returns them within its feasibility tolerance).

    Ties: when several vertices are optimal, the answer is the one HiGHS reaches from its fixed starting basis
    — every instance is solved from that basis, with no warm start from the previous one — so it is a
    function of θ alone: the same whatever was solved before, serially or on any executor (it equals the
    answer of a model just built for that θ; see :class:`~colayers.oracles.highs.HighsProgram`). HiGHS writes
    nothing to stdout.

    Constraints that no point satisfies (the feasible set does not depend on θ) are rejected at
    construction, with HiGHS' verdict on the LP (for a MILP, on its relaxation). An unbounded or otherwise
    failed instance raises :class:`~colayers.oracles.OracleError` with the HiGHS status and the instance's
    index in the batch. With ``validate_args`` (read at each call: ``None``, the default, follows
    :func:`colayers.set_default_validate_args`, which is on unless switched off) every solution is also certified
    optimal (primal against dual objective for an LP, incumbent against dual bound for a MILP).

    Args:
        num_variables: the dimension n of θ and y.
        A_ub, b_ub: inequality constraints (m × n matrix, m vector), or ``None``.
        A_eq, b_eq: equality constraints, or ``None``.
        bounds: ``(lower, upper)`` bounds on y, scalars or n-vectors; ``None`` or ±inf for no bound
            (default ``(0, inf)`` as in ``scipy.optimize.linprog``).
        integrality: n-vector of 0 (continuous) / 1 (integer), or a bool for all variables (default continuous).
        options: HiGHS options (e.g. ``{"time_limit": 10.0}``), over colayers' defaults (one thread, no LP
            presolve, zero relative MIP gap).
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.
        validate_args: see :class:`~colayers.oracles.Oracle`; here it also certifies optimality.

    Example:
        >>> import torch
        >>> # choose at most 2 of 3 items (0 ≤ y ≤ 1, integer)
        >>> lp = LinearProgram(3, A_ub=[[1, 1, 1]], b_ub=[2], bounds=(0, 1), integrality=True)
        >>> lp(torch.tensor([[3.0, -1.0, 2.0], [0.5, 1.0, 2.0]]))
        tensor([[1., 0., 1.],
                [0., 1., 1.]])
        >>> theta = torch.tensor([-0.1468, 0.7861, 0.9468, -1.1143, 1.6908], dtype=torch.float64)
        >>> at_most_two = LinearProgram(5, A_ub=[[1.0] * 5], b_ub=[2], bounds=(0, 1))
        >>> at_most_two(theta), at_most_two(1e-8 * theta)  # the same at every scale
        (tensor([0., 0., 1., 0., 1.], dtype=torch.float64), tensor([0., 0., 1., 0., 1.], dtype=torch.float64))
        >>> tie = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
        >>> torch.equal(at_most_two(tie), at_most_two(torch.stack([-tie, tie]))[1])  # not the previous call's
        True
    """

    def __init__(
        self,
        num_variables: int,
        *,
        A_ub: Any = None,
        b_ub: Any = None,
        A_eq: Any = None,
        b_eq: Any = None,
        bounds: tuple[Any, Any] | None = (0.0, None),
        integrality: Any = None,
        options: dict | None = None,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        n = check_int_at_least("num_variables", num_variables, 1)
        rows, lower, upper = [], [], []
        for kind, a, b in (("ub", A_ub, b_ub), ("eq", A_eq, b_eq)):
            if (a is None) != (b is None):
                raise ValueError(f"A_{kind} and b_{kind} must be given together; got only one of them")
            mat = _matrix(f"A_{kind}", a, n)
            if mat is not None:
                rhs = _vector(f"b_{kind}", b, mat.shape[0])
                rows.append(mat)
                lower.append(rhs if kind == "eq" else np.full(mat.shape[0], -np.inf))
                upper.append(rhs)
        lo, hi = (None, None) if bounds is None else bounds
        lb = _vector("bounds[0]", -np.inf if lo is None else lo, n, allow_inf=True)
        ub = _vector("bounds[1]", np.inf if hi is None else hi, n, allow_inf=True)
        if (lb > ub).any():
            raise ValueError(f"bounds must have lower ≤ upper; got lower={lb}, upper={ub}")
        if integrality is None or isinstance(integrality, bool):
            integ = np.full(n, int(bool(integrality)))
        else:
            integ = _vector("integrality", integrality, n).astype(int)
            if not np.isin(integ, (0, 1)).all():
                raise ValueError(f"integrality must hold 0 (continuous) or 1 (integer) per variable; got {integ}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict of HiGHS options or None; got {type(options).__name__}")
        self.num_variables = n
        program = HighsProgram(
            np.vstack(rows) if rows else np.zeros((0, n)),
            np.concatenate(lower) if lower else np.zeros(0),
            np.concatenate(upper) if upper else np.zeros(0),
            lb,
            ub,
            integ if integ.any() else None,
            options,
        )
        ok, verdict = program.feasible()
        if not ok:
            what = "the LP relaxation of the constraints" if integ.any() else "the constraints"
            raise ValueError(
                f"LinearProgram: no y satisfies the constraints, whatever theta (HiGHS' status on {what}: {verdict})"
            )
        super().__init__(program, (n,), executor=executor, timeout=timeout, validate_args=validate_args)
        self._feasible_set = _membership.LinearFeasibleSet(n, A_ub, b_ub, A_eq, b_eq, bounds, integrality)

    def __repr__(self) -> str:
        return f"LinearProgram(num_variables={self.num_variables})"

    @property
    def linear_constraints(self) -> _membership.LinearConstraints:
        r"""The constraints as given, float64 and read-only: ``(A_ub, b_ub, A_eq, b_eq, lower, upper)``, with
        empty ``(0, n)`` matrices for absent ones and ±inf for absent bounds (the capability that
        :class:`~colayers.losses.ConeAlignedCosineLoss` needs).

        Example:
            >>> LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[1.0], bounds=(0, 1)).linear_constraints.b_ub
            array([1.])
        """
        return self._feasible_set.constraints()

    def _instance_solver(self) -> Callable[[np.ndarray], np.ndarray]:
        # the certificate follows validate_args as read now (the global switch for None), in this process: a worker
        # process's own switch would not see the caller's
        return functools.partial(self.solver, check_optimality=bool(self.validate_args))

    def contains(self, y: torch.Tensor, atol: float | None = None) -> torch.Tensor:
        r"""Solutions of the program (see :meth:`~colayers.oracles.Oracle.contains`), within a tolerance.

        ``y`` ``(*batch, num_variables)`` must satisfy every constraint and bound within ``atol`` relative to
        the size of the constraint's terms (:math:`|a_i^\top y - b_i| \le \mathrm{atol}(1 + |b_i| +
        |a_i|^\top|y|)`), and its integer variables must be within ``atol`` of integers. Without integer
        variables it must moreover be a **vertex** of the polytope: the constraints tight at ``y`` (within the
        tolerance) have rank ``num_variables``, which is what HiGHS' simplex method returns. ``atol`` defaults to
        :math:`\max(10^{-6}, 4\epsilon)` for ``y``'s dtype (HiGHS' feasibility tolerance, or a few ulps).

        Example:
            >>> import torch
            >>> lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[1.0], bounds=(0, 1))  # a triangle
            >>> lp.contains(torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.2, 0.2], [1.0, 1.0]]))
            tensor([ True, False, False, False])
        """
        _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)
        return self._feasible_set.contains(y, atol)


class _CvxpySolver:
    """Picklable per-instance solver: set the Parameter, solve the fixed cvxpy Problem, read the Variable."""

    def __init__(self, problem, parameter, variable, solver, solver_options, scale=False):
        self.problem, self.parameter, self.variable = problem, parameter, variable
        self.solver, self.solver_options = solver, solver_options
        self.scale = scale  # multiply θ by a power of two first (only for an objective homogeneous in θ)
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        import cvxpy as cp

        silence_banner()  # in this process (a worker's too): a HiGHS model built by cvxpy would print the banner
        value = np.asarray(theta, dtype=np.float64)
        if self.scale:
            value = _power_of_two_scale(value)
        with self._lock:  # one Problem object: instances on a thread pool take turns
            self.parameter.value = value.reshape(self.parameter.shape)
            self.problem.solve(solver=self.solver, **self.solver_options)
            status, value = self.problem.status, self.variable.value
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or value is None:
            raise OracleError(f"cvxpy solver {self.solver or 'default'} ended with status {status!r}")
        value = np.asarray(value, dtype=np.float64)
        if self.variable.attributes.get("boolean") or self.variable.attributes.get("integer"):
            value = np.rint(value)
        return value + 0.0

    def __repr__(self) -> str:
        return f"CvxpyOracle(solver={self.solver})"


class CvxpyOracle(SolverOracle):
    r"""Any problem modelled in cvxpy with an objective linear in a Parameter, as a batched oracle.

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{C}} \ \langle \theta, y \rangle

    where :math:`\mathcal{C}` is the feasible set of ``problem`` over ``variable`` and θ is the value given to
    ``parameter``. The objective must be a ``cp.Maximize`` of an expression affine in ``variable`` (typically
    ``parameter @ variable``), so that the oracle convention holds: a cost-minimization model is written as
    ``cp.Maximize(parameter @ y)`` and called with ``theta = -cost``. The problem is built (and canonicalized)
    once; per instance only the parameter's value changes, which cvxpy's parameter caching makes cheap.

    Solver: ``solver`` if given, else HiGHS for mixed-integer problems when cvxpy has it, else cvxpy's
    default. A status other than optimal raises :class:`~colayers.oracles.OracleError` with the status and
    the instance index. When the objective has no term free of θ (``parameter @ variable``, checked
    numerically at construction), each instance's θ is first scaled by a power of two so that the answer
    does not depend on the magnitude of θ (HiGHS' tolerances are absolute). On a thread pool the single
    Problem object is used by one instance at a time (a lock); process pools and dask workers each get their own copy.

    Args:
        problem: a ``cvxpy.Problem`` whose objective is linear in ``parameter``.
        parameter: the ``cvxpy.Parameter`` receiving θ (its shape is the event shape).
        variable: the ``cvxpy.Variable`` returned as the solution (shape: the solution shape).
        solver: a cvxpy solver name, or ``None`` for the default rule above.
        solver_options: keyword arguments for ``problem.solve``.
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.

    Example:
        >>> import cvxpy as cp, torch
        >>> theta, y = cp.Parameter(3), cp.Variable(3, boolean=True)
        >>> knapsack = cp.Problem(cp.Maximize(theta @ y), [[2, 3, 4] @ y <= 5])
        >>> oracle = CvxpyOracle(knapsack, theta, y)
        >>> oracle(torch.tensor([[3.0, 4.0, 5.0], [1.0, 1.0, 5.0]]))
        tensor([[1., 1., 0.],
                [0., 0., 1.]])
    """

    def __init__(
        self,
        problem: Any,
        parameter: Any,
        variable: Any,
        solver: str | None = None,
        *,
        solver_options: dict | None = None,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        import cvxpy as cp

        if not isinstance(problem, cp.Problem):
            raise TypeError(f"problem must be a cvxpy.Problem; got {type(problem).__name__}")
        if not isinstance(parameter, cp.Parameter):
            raise TypeError(f"parameter must be a cvxpy.Parameter; got {type(parameter).__name__}")
        if not isinstance(variable, cp.Variable):
            raise TypeError(f"variable must be a cvxpy.Variable; got {type(variable).__name__}")
        if not any(p is parameter for p in problem.parameters()):
            raise ValueError(f"parameter {parameter.name()} does not appear in the problem")
        if not any(v is variable for v in problem.variables()):
            raise ValueError(f"variable {variable.name()} does not appear in the problem")
        if not isinstance(problem.objective, cp.Maximize):
            raise ValueError(
                "problem must maximize (colayers' convention: write cp.Maximize(parameter @ variable) and pass "
                f"theta = -cost for a cost model); got {type(problem.objective).__name__}"
            )
        if not problem.objective.expr.is_affine():
            raise ValueError("the problem's objective must be linear (affine) in the variable and the parameter")
        if solver is None and problem.is_mixed_integer() and "HIGHS" in cp.installed_solvers():
            solver = "HIGHS"
        self.problem, self.parameter, self.variable = problem, parameter, variable
        event: Sequence[int] = tuple(parameter.shape) or (1,)
        super().__init__(
            _CvxpySolver(
                problem, parameter, variable, solver, dict(solver_options or {}), _homogeneous(problem, parameter)
            ),
            event,
            solution_shape=tuple(variable.shape) or (1,),
            executor=executor,
            timeout=timeout,
            validate_args=validate_args,
        )

    def __repr__(self) -> str:
        shapes = f"parameter={self.parameter.shape}, variable={self.variable.shape}"
        return f"CvxpyOracle({shapes}, solver={self.solver.solver})"

    def contains(self, y: torch.Tensor, atol: float | None = None) -> torch.Tensor:
        r"""Feasible points of the cvxpy problem (see :meth:`~colayers.oracles.Oracle.contains`).

        Instance by instance (on the CPU), ``variable`` is given the value ``y_i`` and every constraint's
        violation must be at most :math:`\mathrm{atol}(1 + \max|y_i|)`; a boolean or integer variable must be
        within ``atol`` of integers. Feasibility only: for a continuous problem a non-vertex feasible point is
        accepted. ``atol`` defaults to :math:`\max(10^{-6}, 4\epsilon)` for ``y``'s dtype; the variable's value
        is left as it was.

        Example:
            >>> import cvxpy as cp, torch
            >>> theta, y = cp.Parameter(3), cp.Variable(3, boolean=True)
            >>> oracle = CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [[2, 3, 4] @ y <= 5]), theta, y)
            >>> oracle.contains(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.5, 0.0, 0.0]]))
            tensor([ True, False, False])
        """
        solution = tuple(self.variable.shape) or (1,)
        _membership.solution_batch_shape(type(self).__name__, y, solution, len(solution))
        lock = getattr(self.solver, "_lock", None)
        return _membership.cvxpy_feasible(self.problem, self.variable, y, atol, lock)

def _homogeneous(problem: Any, parameter: Any) -> bool:
    """Whether the objective, at ``parameter = 0``, takes the same value at two random points of the variables.

    Then the objective has no θ-free term in the variables (it is like ``parameter @ variable``) and a positive
    scale of θ leaves the argmax unchanged. ``False`` (no scaling) when the probe cannot run.
    """
    variables = problem.variables()
    saved = [v.value for v in variables], parameter.value
    rng = np.random.default_rng(0)
    try:
        parameter.value = np.zeros(parameter.shape)
        values = []
        for _ in range(2):
            for v in variables:
                integral = v.attributes.get("boolean") or v.attributes.get("integer")
                sample = rng.integers(0, 2, size=v.shape) if integral else rng.uniform(0.5, 1.5, size=v.shape)
                v.value = sample.astype(np.float64)
            values.append(float(problem.objective.expr.value))
        return abs(values[0] - values[1]) <= 1e-12 * (1.0 + abs(values[0]))
    except Exception:  # noqa: BLE001 - a variable with attributes the probe does not meet: do not scale
        return False
    finally:
        for v, value in zip(variables, saved[0]):
            v.value = value
        parameter.value = saved[1]
