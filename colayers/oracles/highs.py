r"""A persistent HiGHS model for linear and mixed-integer programs whose objective alone changes.

:class:`HighsProgram` is the per-instance solver behind :class:`~colayers.oracles.LinearProgram`: the
constraints are passed to HiGHS (through ``highspy``) once per thread or worker process, and each instance
only replaces the objective (``changeColsCost``), clears the previous solve (``clearSolver``: no warm start)
and re-runs the solver from the same starting basis, so that an instance's answer, ties included, depends on
its θ alone — not on the instance solved before it, nor on the thread or process that solves it. The object
holds the configuration alone (arrays and options), so it pickles to process pools and dask workers, which
build their own model on first use. HiGHS writes nothing: its logging is switched off before its first call.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from .base import OracleError

__all__ = []

# Options for many small solves: one thread (HiGHS' own thread pool costs more than it saves on small
# models, and an executor gives the parallelism), no presolve on LPs (on the small LPs of this library it doubles
# the time per solve), and a zero relative MIP gap (HiGHS' default 1e-4 accepts a slightly suboptimal incumbent
# as "optimal"). ``output_flag`` off: the library writes nothing to stdout (_quiet_highs: the banner too).
_DEFAULT_OPTIONS: dict[str, Any] = {"output_flag": False, "threads": 1, "mip_rel_gap": 0.0}
_LP_OPTIONS: dict[str, Any] = {"presolve": "off"}
_INTEGER_TOL = 1e-6  # HiGHS' mip_feasibility_tolerance: integer variables come back within it of an integer
_SNAP_TOL = 1e-9  # continuous values this close to an integer are returned as that integer


def _power_of_two_scale(theta: np.ndarray) -> np.ndarray:
    """θ times the power of two that brings max|θ| into [0.5, 1): exact (no rounding), argmax unchanged."""
    top = float(np.max(np.abs(theta))) if theta.size else 0.0
    if top == 0.0:
        return theta
    return np.ldexp(theta, -np.frexp(top)[1])


def _quiet_highs() -> Any:
    """A new ``highspy.Highs`` that writes nothing to the console, banner included.

    ``highspy.Highs()`` calls HiGHS once in its constructor (``enableCallbacks``), and HiGHS prints its two-line
    banner on stdout, from C++, at the first call of a process made with console logging on: setting an option
    after the constructor is too late. This subclass switches console logging off first. HiGHS then counts the
    banner as written (to no console) and prints it no more in this process, so the first such model also
    silences the models that other libraries build later (cvxpy's HIGHS interface: see :func:`silence_banner`).
    """
    return _quiet_highs_class()()


@functools.cache
def _quiet_highs_class() -> type:
    import highspy

    class QuietHighs(highspy.Highs):
        def enableCallbacks(self) -> Any:  # noqa: N802 - highspy's name
            self.setOptionValue("log_to_console", False)  # output_flag stays on here, so the banner counts as written
            return super().enableCallbacks()

    return QuietHighs


@functools.cache
def silence_banner() -> None:
    """Keep HiGHS from printing its banner in this process (once per process; called before a solver from another
    library, such as cvxpy's HIGHS interface, builds its own ``highspy.Highs``)."""
    _quiet_highs()


def _run(highs: Any) -> Any:
    """``highs.run()``, falling back to HiGHS' running thread pool when another HiGHS user of this process (cvxpy's
    HIGHS interface, a default ``highspy.Highs()``) started it with another size: a model that asks for
    ``threads=1`` then refuses to run ("the scheduler has already been initialized") and leaves its status unset."""
    import highspy

    status = highs.run()
    if status == highspy.HighsStatus.kError and highs.getModelStatus() == highspy.HighsModelStatus.kNotset:
        highs.setOptionValue("threads", 0)  # 0: use the pool that exists
        status = highs.run()
    return status


class PerThread:
    """A picklable per-instance solver with one model per thread in ``self._local`` (a ``threading.local``): the
    configuration travels when pickled (to a worker process), the models are rebuilt where they are used."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


class HighsProgram(PerThread):
    r"""Picklable solver of :math:`\max_x \langle \theta, x \rangle` s.t. ``row_lower ≤ A x ≤ row_upper``,
    ``col_lower ≤ x ≤ col_upper``, :math:`x_j \in \mathbb{Z}` for ``integrality[j] = 1``, on a persistent HiGHS
    model (one per thread).

    Per instance, θ is first multiplied by the power of two that brings :math:`\max_i |\theta_i|` into
    :math:`[0.5, 1)` — exact in floating point and without effect on the argmax — so that HiGHS' absolute
    tolerances (1e-7 on reduced costs) mean the same at every magnitude of θ: θ and :math:`10^{-8}\theta`
    get the same answer. Integer variables are rounded to the nearest integer (and checked to be within
    HiGHS' feasibility tolerance of it), continuous values within 1e-9 of an integer are snapped to it.

    **Ties.** When several vertices are optimal, the answer is the one HiGHS' simplex method (branch and bound for
    a MILP) reaches from its fixed starting basis (the slack basis), after the scaling above: each solve starts
    from that basis (``clearSolver``, no warm start), on a model built the same way in every thread and worker
    process, and HiGHS is deterministic in a single thread. So the answer is a function of θ alone (for given
    constraints, options and HiGHS version): it is the answer of a model just built for that θ, whatever was
    solved before and whichever executor solves it. Which of the tied vertices that is follows no simpler rule
    (it is not, say, the lowest index); break ties in θ itself where a particular one is wanted.

    With ``check_optimality`` the solution is certified after each solve: for an LP, the primal objective
    must match the dual objective (strong duality) to 1e-9 relative, and HiGHS must report the primal and the
    dual solutions feasible; for a MILP, the gap between the incumbent and HiGHS' dual bound must be within
    its absolute gap tolerance. A failure raises :class:`~colayers.oracles.OracleError`.

    Args:
        A: the constraint matrix, a dense ``(m, n)`` array (``m`` may be 0).
        row_lower, row_upper: the ``m`` row bounds (``±inf`` for none; equal for an equality).
        col_lower, col_upper: the ``n`` variable bounds.
        integrality: ``n`` flags, 1 for an integer variable, or ``None`` for an LP.
        options: HiGHS options, applied over colayers' defaults (``threads=1``, ``mip_rel_gap=0``, and
            ``presolve="off"`` for LPs).
        check_optimality: certify every solution (see above); a call may override it
            (``program(theta, check_optimality=...)``, as :class:`~colayers.oracles.LinearProgram` does with its
            ``validate_args`` read at each call).

    Example:
        >>> import numpy as np
        >>> one_of_three = HighsProgram(np.ones((1, 3)), [-np.inf], [1.0], np.zeros(3), np.ones(3))
        >>> one_of_three(np.array([0.5, 2.0, 1.0]))
        array([0., 1., 0.])
        >>> tie = np.array([1.0, 1.0, 0.0])
        >>> before = one_of_three(tie)
        >>> _ = one_of_three(np.array([1.0, 0.0, 0.5]))
        >>> bool((one_of_three(tie) == before).all())  # the same vertex, whatever was solved in between
        True
        >>> one_of_three(np.ones(4))
        Traceback (most recent call last):
        ...
        ValueError: theta must have shape (3,) (one score per variable); got shape (4,)
    """

    def __init__(
        self,
        A: np.ndarray,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        col_lower: np.ndarray,
        col_upper: np.ndarray,
        integrality: np.ndarray | None = None,
        options: dict[str, Any] | None = None,
        *,
        check_optimality: bool = False,
    ) -> None:
        import highspy  # noqa: F401 - fail at construction, not in a worker, if highspy is missing

        self.A = np.ascontiguousarray(A, dtype=np.float64).reshape(-1, np.asarray(col_lower).shape[0])
        self.row_lower = np.asarray(row_lower, dtype=np.float64)
        self.row_upper = np.asarray(row_upper, dtype=np.float64)
        self.col_lower = np.asarray(col_lower, dtype=np.float64)
        self.col_upper = np.asarray(col_upper, dtype=np.float64)
        self.num_variables = self.col_lower.shape[0]
        self.integrality = None if integrality is None or not np.any(integrality) else np.asarray(integrality) > 0
        self.options = {**_DEFAULT_OPTIONS, **({} if self.integrality is not None else _LP_OPTIONS), **(options or {})}
        if not isinstance(check_optimality, bool):
            got = f"{type(check_optimality).__name__} {check_optimality!r}"
            raise TypeError(f"check_optimality must be a bool; got {got}")
        self.check_optimality = check_optimality
        self._local = threading.local()

    # -- the model ----------------------------------------------------------------------------------------------
    def _build(self, *, relax: bool = False) -> Any:
        import highspy
        from scipy.sparse import csc_matrix

        highs = _quiet_highs()
        for key, value in self.options.items():
            if highs.setOptionValue(key, value) != highspy.HighsStatus.kOk:
                raise ValueError(f"HiGHS rejected the option {key}={value!r}")
        lp = highspy.HighsLp()
        n, m = self.num_variables, self.A.shape[0]
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_, lp.col_upper_ = self.col_lower, self.col_upper
        lp.row_lower_, lp.row_upper_ = self.row_lower, self.row_upper
        matrix = csc_matrix(self.A)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, m
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data
        lp.sense_ = highspy.ObjSense.kMaximize
        if self.integrality is not None and not relax:
            lp.integrality_ = [highspy.HighsVarType.kInteger if f else highspy.HighsVarType.kContinuous
                               for f in self.integrality]
        if highs.passModel(lp) != highspy.HighsStatus.kOk:
            raise ValueError("HiGHS rejected the model (check the shapes and bounds of the constraints)")
        return highs

    def _model(self) -> Any:
        highs = getattr(self._local, "highs", None)
        if highs is None:
            highs = self._local.highs = self._build()
            self._local.index = np.arange(self.num_variables, dtype=np.int32)
        return highs

    def feasible(self) -> tuple[bool, str]:
        """Whether the constraints (integrality relaxed) admit a point, as HiGHS finds with a zero objective.

        The feasible set does not depend on θ, so an infeasible model is infeasible for every θ.
        """
        import highspy

        highs = self._build(relax=True)
        _run(highs)
        status = highs.getModelStatus()
        return status != highspy.HighsModelStatus.kInfeasible, highs.modelStatusToString(status)

    # -- one instance -------------------------------------------------------------------------------------------
    def __call__(self, theta: np.ndarray, *, check_optimality: bool | None = None) -> np.ndarray:
        """Solve for one θ of shape ``(n,)``; ``check_optimality`` (``None``: the constructor's) certifies it."""
        import highspy

        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.num_variables,):
            raise ValueError(
                f"theta must have shape ({self.num_variables},) (one score per variable); got shape {theta.shape}"
            )
        cost = _power_of_two_scale(theta)
        highs = self._model()
        highs.changeColsCost(self.num_variables, self._local.index, cost)
        highs.clearSolver()  # no warm start: every instance starts from the same basis (ties depend on θ alone)
        _run(highs)
        status = highs.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise OracleError(f"HiGHS model status {int(status)} ({highs.modelStatusToString(status)})")
        x = np.array(highs.getSolution().col_value, dtype=np.float64)
        if self.check_optimality if check_optimality is None else check_optimality:
            self._certify(highs, cost, x)
        if self.integrality is not None:
            gap = np.abs(x - np.rint(x))[self.integrality]
            if gap.size and gap.max() > _INTEGER_TOL:
                raise OracleError(f"HiGHS returned an integer variable {gap.max():.3g} away from an integer")
            x[self.integrality] = np.rint(x[self.integrality])
        nearest = np.rint(x)
        x = np.where(np.abs(x - nearest) <= _SNAP_TOL, nearest, x)
        return x + 0.0  # no -0.0

    def _certify(self, highs: Any, cost: np.ndarray, x: np.ndarray) -> None:
        import highspy

        info = highs.getInfo()
        primal = float(cost @ x)
        if self.integrality is not None:
            bound = float(info.mip_dual_bound)
            tol = float(self.options.get("mip_abs_gap", 1e-6)) + 1e-9 * max(1.0, abs(primal))
            if not bound - primal <= tol:
                raise OracleError(f"not certified optimal: objective {primal!r} but HiGHS' dual bound {bound!r}")
            return
        feasible = highspy.SolutionStatus.kSolutionStatusFeasible
        if info.primal_solution_status != feasible or info.dual_solution_status != feasible:
            raise OracleError(
                f"not certified optimal: primal solution status {info.primal_solution_status}, "
                f"dual solution status {info.dual_solution_status}"
            )
        solution = highs.getSolution()
        row_dual = np.asarray(solution.row_dual, dtype=np.float64)
        col_dual = np.asarray(solution.col_dual, dtype=np.float64)
        # dual objective of max c x s.t. rl <= Ax <= ru, l <= x <= u: each dual multiplies the active bound
        dual = _bound_term(row_dual, self.row_lower, self.row_upper) + _bound_term(
            col_dual, self.col_lower, self.col_upper
        )
        if not abs(primal - dual) <= 1e-9 * max(1.0, abs(primal)) + 1e-9 * (np.abs(row_dual).sum() + 1):
            raise OracleError(f"not certified optimal: primal objective {primal!r} but dual objective {dual!r}")

    def __repr__(self) -> str:
        kind = "MILP" if self.integrality is not None else "LP"
        return f"HighsProgram({kind}, n={self.num_variables}, m={self.A.shape[0]})"


def _bound_term(dual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Σ dual_i · (the bound it prices): the upper bound for a positive dual (maximization), else the lower."""
    chosen = np.where(dual > 0, upper, np.where(dual < 0, lower, 0.0))
    chosen = np.where(np.isfinite(chosen), chosen, 0.0)
    return float(dual @ chosen)
