r"""The :class:`Oracle` abstraction and the per-instance solver wrapper.

An oracle solves, for every instance of a batch of scores :math:`\theta`,

.. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{Y}} \; \langle \theta, g(y) \rangle + h(y)

with :math:`\mathcal{Y}` finite (the vertices of a polytope). By default :math:`g` is the identity and
:math:`h` is zero. Scores are *maximized*: a cost-minimization problem is served by ``theta = -cost``
(the grid shortest-path oracles follow this rule too, and offer ``shortest_path(cost)`` for readability).
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._validation import (
    Constraint,
    ValidateArgs,
    boolean,
    check_args,
    check_event_shape,
    check_finite,
    check_tensor,
    inputs_trusted,
    optional,
)

__all__ = ["Oracle", "OracleWrapper", "SolverOracle", "OracleError"]


class OracleError(RuntimeError):
    """An oracle failed on one instance, returned a malformed solution, or its executor broke."""


def _check_shape(name: str, value: object) -> tuple[int, ...]:
    """A shape: a sequence of integers ≥ 0 (a dimension of size 0 is an empty event, -1 is no size)."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of integers ≥ 0 (a shape); got {type(value).__name__} {value!r}")
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in value):
        raise ValueError(f"{name} must be a sequence of integers ≥ 0 (a shape); got {tuple(value)!r}")
    return tuple(int(d) for d in value)


shape = Constraint(_check_shape, "a sequence of integers ≥ 0", (-1,))


class Oracle:
    r"""A batched solver :math:`\theta \mapsto f(\theta)` over leading batch dimensions.

    Subclasses implement :meth:`solve` on a flat batch ``(N, *event_shape)``; :meth:`__call__` handles any
    leading batch shape, validation, and turns autograd off. Outputs are on ``theta``'s device and in its
    dtype.

    Class attributes a subclass sets:

    * ``event_ndim`` — the number of trailing dimensions of ``theta`` that form one instance;
    * ``event_shape`` — the exact trailing shape, or ``None`` to accept any shape with ``event_ndim`` dims;
    * ``deterministic`` — whether equal inputs give equal outputs (enables caching);
    * ``maximizes_objective`` — whether :meth:`solve` returns a maximizer over Y of :meth:`objective` at the
      scores given (default ``True``). An oracle that solves a modified problem sets it to ``False``
      (``GridVertexShortestPath`` with ``min_cost`` clamps the scores it solves; a :class:`SolutionPool` may
      answer from its members): the losses' sign checks, which rely on it, are then skipped.

    Args:
        validate_args: check inputs (finite, shape) and outputs (shape, dtype, device) on every call;
            ``None`` (default) follows :func:`colayers.set_default_validate_args`. Switch off for speed once a
            pipeline is known to be sound: the finiteness check reads a value back to the host. Inside
            :func:`colayers._validation.trusted_inputs` (how layers and losses pass on the perturbed or
            target scores they derived from a θ they checked) the input's finiteness is not checked again.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> oracle = ArgmaxOneHot()
        >>> oracle(torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    event_ndim: int = 1
    event_shape: tuple[int, ...] | None = None
    deterministic: bool = True
    maximizes_objective: bool = True

    def __init__(self, *, validate_args: bool | None = None) -> None:
        self.validate_args = validate_args

    # -- what a subclass provides -------------------------------------------------------------------
    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        """Solve a flat batch: ``theta`` has shape ``(N, *event)``; return ``(N, *solution_shape)``."""
        raise NotImplementedError

    def solution_shape(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one solution y for one instance of scores with ``event_shape`` (default: the same)."""
        return event_shape

    def g(self, y: torch.Tensor) -> torch.Tensor:
        """The statistic g(y) paired with θ in the objective (default: identity)."""
        return y

    def h(self, y: torch.Tensor) -> torch.Tensor | None:
        """The offset h(y) of the objective, summed over the event (default: ``None`` meaning zero)."""
        return None

    def contains(self, y: torch.Tensor) -> torch.Tensor | None:
        r"""Whether each instance of ``y`` is a solution in :math:`\mathcal Y`.

        ``y`` has shape ``(*batch, *solution_shape)``; the result is a bool tensor of shape ``(*batch)`` on
        ``y``'s device. The losses check their target solutions with it (``allow_relaxed_targets=True`` skips
        the check). A wrong trailing shape raises a :class:`ValueError`; entries that are not finite are not
        members.

        Default: ``None``, meaning *membership unknown*: a loss then accepts the target unchecked. Override it
        where membership is computable (every built-in oracle does, except a bare
        :class:`SolverOracle`); wrappers (:class:`OracleWrapper`) ask the wrapped oracle.

        Example:
            >>> import torch
            >>> from colayers import TopKSubset
            >>> TopKSubset(2).contains(torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
            tensor([ True, False])
            >>> print(Oracle().contains(torch.zeros(3)))
            None
        """
        return None

    # -- shared machinery ---------------------------------------------------------------------------
    def objective(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""The objective :math:`\langle \theta, g(y) \rangle + h(y)`, reduced over the event dims.

        ``theta`` is ``(*batch, *event)`` and ``y`` broadcasts against it (e.g. ``(S, *batch, *event)``).
        """
        gy = self.g(y)
        dims = tuple(range(-self.event_ndim, 0))
        value = (theta * gy).sum(dim=dims)
        hy = self.h(y)
        return value if hy is None else value + hy

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        validate = self.validate_args
        if validate:
            check_tensor("theta", theta)
        batch_shape = check_event_shape("theta", theta, self.event_shape, self.event_ndim)
        event = tuple(theta.shape[len(batch_shape) :])
        if validate and not inputs_trusted():  # a layer that checked theta passes derived scores unchecked
            check_finite("theta", theta)
        flat = theta.detach() if theta.requires_grad else theta
        if len(batch_shape) != 1:
            flat = flat.reshape((math.prod(batch_shape), *event))  # not -1: an event may be empty
        expected = (flat.shape[0], *self.solution_shape(event))
        if flat.shape[0] == 0:
            y = flat.new_zeros(expected)
        elif torch.is_grad_enabled():
            with torch.no_grad():
                y = self.solve(flat)
        else:
            y = self.solve(flat)
        if validate:
            _check_solution(type(self).__name__, y, expected, theta)
        return y if len(batch_shape) == 1 else y.reshape((*batch_shape, *expected[1:]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OracleWrapper(Oracle):
    """Base for an oracle that wraps another one (a cache, a counter, a solution pool...).

    It takes the wrapped oracle's event shape, determinism, solution shape, ``g``, ``h`` and objective, and by
    default solves with the wrapped oracle's :meth:`Oracle.solve`; a subclass overrides only what it changes.

    Args:
        oracle: the wrapped :class:`Oracle`, kept as ``self.oracle``.
        validate_args: see :class:`Oracle`.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> class Negated(OracleWrapper):  # argmin instead of argmax
        ...     def solve(self, theta):
        ...         return self.oracle.solve(-theta)
        >>> Negated(TopKSubset(1))(torch.tensor([3.0, -1.0, 2.0]))
        tensor([0., 1., 0.])
    """

    def __init__(self, oracle: Oracle, *, validate_args: bool | None = None) -> None:
        super().__init__(validate_args=validate_args)
        if not isinstance(oracle, Oracle):
            raise TypeError(f"oracle must be a colayers Oracle; got {type(oracle).__name__}")
        self.oracle = oracle
        self.event_ndim = oracle.event_ndim
        self.event_shape = oracle.event_shape
        self.deterministic = oracle.deterministic

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        return self.oracle.solve(theta)

    def solution_shape(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.oracle.solution_shape(event_shape)

    def g(self, y: torch.Tensor) -> torch.Tensor:
        return self.oracle.g(y)

    def h(self, y: torch.Tensor) -> torch.Tensor | None:
        return self.oracle.h(y)

    def objective(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.oracle.objective(theta, y)

    def contains(self, y: torch.Tensor) -> torch.Tensor | None:
        """The wrapped oracle's :meth:`Oracle.contains` (a wrapper changes how Y is searched, not Y)."""
        return self.oracle.contains(y)

    @property
    def maximizes_objective(self) -> bool:  # noqa: D102 - the wrapped oracle's (see Oracle)
        return self.oracle.maximizes_objective

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.oracle!r})"


def linear_objective(oracle: Oracle) -> bool:
    r"""Whether ``oracle``'s objective is :math:`\langle\theta, y\rangle` itself: :meth:`Oracle.objective`,
    :meth:`Oracle.g` and :meth:`Oracle.h` as defined on :class:`Oracle` (an :class:`OracleWrapper` that only
    forwards them answers for the oracle it wraps). Losses take compiled shortcuts for such oracles.

    Example:
        >>> from colayers import TopKSubset
        >>> linear_objective(TopKSubset(2))
        True
    """
    while type(oracle).g is OracleWrapper.g and type(oracle).h is OracleWrapper.h and (
        type(oracle).objective is OracleWrapper.objective
    ):
        oracle = oracle.oracle
    cls = type(oracle)
    return cls.objective is Oracle.objective and cls.g is Oracle.g and cls.h is Oracle.h


def _check_solution(owner: str, y: Any, expected: tuple[int, ...], theta: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor):
        raise OracleError(f"{owner}.solve must return a torch.Tensor; got {type(y).__name__}")
    if tuple(y.shape) != expected:
        raise OracleError(
            f"{owner}.solve returned shape {tuple(y.shape)}; expected {expected} (instances, *solution)"
        )
    if y.dtype != theta.dtype:
        raise OracleError(f"{owner}.solve returned dtype {y.dtype}; expected theta's dtype {theta.dtype}")
    if y.device != theta.device:
        raise OracleError(f"{owner}.solve returned a tensor on {y.device}; expected theta's device {theta.device}")


def _solve_one(solver: Callable[[np.ndarray], Any], theta: np.ndarray) -> tuple[bool, Any]:
    """Run the solver on one instance, turning an exception into a one-line message (pickling-safe)."""
    try:
        return True, np.asarray(solver(theta))
    except OracleError as exc:  # the solver already says what went wrong: no second prefix
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - reported with the instance index by the caller
        return False, f"{type(exc).__name__}: {exc}"


class _DaemonWorker:
    """A daemon thread that runs submitted calls in order: a hung call never stops the interpreter exiting.

    The thread ends after ``idle`` seconds without work and is restarted by the next :meth:`submit`, so an
    oracle that is no longer used leaves no thread behind.
    """

    def __init__(self, idle: float = 30.0) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False
        self._idle = idle

    def _loop(self) -> None:
        while True:
            try:
                fn, args, future = self._tasks.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:
                    if self._tasks.empty():
                        self._running = False
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                    future.set_exception(exc)

    def submit(self, fn: Callable, *args: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._tasks.put((fn, args, future))
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="colayers-solver", daemon=True).start()
        return future


def _stop_hung_workers(executor: concurrent.futures.Executor) -> str:
    """Stop the workers of a process pool after a timeout (a hung one would keep its slot and block exit)."""
    if not isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            return (
                "; the hung thread cannot be stopped and keeps its slot (and the interpreter waits for it at exit): "
                "for a solver that may hang use executor=None or a process pool, which colayers can stop"
            )
        return ""
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
    return "; the process pool's workers were terminated (the pool is now unusable: make a new one)"


_HALF = (torch.float16, torch.bfloat16)


class SolverOracle(Oracle):
    r"""Turn a per-instance solver (a numpy/scipy/cvxpy function of one θ) into a batched :class:`Oracle`.

    The wrapper moves the batch to the CPU as numpy arrays (float16 and bfloat16 θ as float32, which holds
    them exactly), calls ``solver(theta_i)`` for each instance — serially, or on any
    :class:`concurrent.futures.Executor` (a thread pool, a process pool, or a distributed engine's executor
    such as ``dask.distributed.Client.get_executor()``) — checks every returned solution, stacks the results
    and moves them back to ``theta``'s device and dtype.

    Strict by construction: every solution must have the solution shape and be real and finite, or the call
    raises :class:`OracleError` naming the instance's flat index and what was wrong (the solver's own
    message, the shape, the dtype, or the number of NaN / inf entries). Serial runs stop at the first failing
    instance; on an executor the remaining instances are cancelled. A broken or shut-down executor (a dead
    worker process, ``shutdown()`` called) is an :class:`OracleError` with the executor's error as its cause.
    Signed zeros are normalized (a solution never holds ``-0.0``).

    Timeouts: ``timeout`` bounds the wait for each instance, in every mode. Serially (``executor=None``) with
    a timeout, instances run one after another in a daemon thread owned by the oracle, so a hung solver
    neither blocks the caller beyond ``timeout`` nor stops the interpreter from exiting (the next call starts
    a fresh thread). On a process pool a timeout terminates the pool's workers (a hung worker would keep its
    slot and block the interpreter at exit): the error says so, and the next call on that pool raises
    :class:`OracleError` (a broken pool). A thread of a ``ThreadPoolExecutor`` cannot be stopped by Python; the
    error says so too.

    Args:
        solver: ``solver(theta_i: np.ndarray) -> array-like`` for one instance. For a process pool or a
            distributed executor it must be picklable (a module-level function or a ``functools.partial``).
        event_shape: the shape of one instance of θ.
        solution_shape: the shape of one solution (default ``event_shape``).
        executor: where to run instances; ``None`` runs them serially (in this thread, or in the oracle's
            daemon thread when ``timeout`` is set).
        timeout: seconds to wait for each instance's result (``None``: wait forever), > 0.
        deterministic: whether ``solver`` is a function of θ alone.
        g, h: optional statistic and offset of the objective (see :class:`Oracle`).
        validate_args: see :class:`Oracle`.

    Example:
        >>> import numpy as np, torch
        >>> from colayers import SolverOracle
        >>> def best_of_two(theta):  # pick the better of two fixed solutions
        ...     sols = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
        ...     return sols[np.argmax(sols @ theta)]
        >>> oracle = SolverOracle(best_of_two, event_shape=(3,))
        >>> oracle(torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.0]]))
        tensor([[0., 1., 1.],
                [1., 0., 1.]])
        >>> SolverOracle(lambda t: t * np.nan, event_shape=(3,))(torch.ones(2, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        colayers.oracles.base.OracleError: solver <lambda> returned 3 NaN and 0 inf entries on instance 0 of 2; ...
    """

    arg_constraints = {"event_shape": shape, "solution_shape": optional(shape), "deterministic": boolean}

    def __init__(
        self,
        solver: Callable[[np.ndarray], Any],
        event_shape: Sequence[int],
        *,
        solution_shape: Sequence[int] | None = None,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        deterministic: bool = True,
        g: Callable[[torch.Tensor], torch.Tensor] | None = None,
        h: Callable[[torch.Tensor], torch.Tensor] | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        if not callable(solver):
            raise TypeError(f"solver must be callable; got {type(solver).__name__}")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(f"executor must be a concurrent.futures.Executor or None; got {type(executor).__name__}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise ValueError(f"timeout must be a number of seconds > 0 or None; got {timeout!r}")
            timeout = float(timeout)
        checked = check_args(self, event_shape=event_shape, solution_shape=solution_shape, deterministic=deterministic)
        self.solver = solver
        self.event_shape = checked["event_shape"]
        self.event_ndim = len(self.event_shape)
        self._solution_shape = checked["solution_shape"]
        self.executor = executor
        self.timeout = timeout
        self.deterministic = checked["deterministic"]
        self._g = g
        self._h = h
        self._worker: _DaemonWorker | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_worker"] = None  # a thread does not travel; a fresh one starts on demand
        return state

    def solution_shape(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        return event_shape if self._solution_shape is None else self._solution_shape

    def g(self, y: torch.Tensor) -> torch.Tensor:
        return y if self._g is None else self._g(y)

    def h(self, y: torch.Tensor) -> torch.Tensor | None:
        return None if self._h is None else self._h(y)

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        host = theta.detach().cpu()
        if host.dtype in _HALF:
            host = host.float()  # numpy has no bfloat16; float32 holds every half-precision value exactly
        batch = host.numpy()
        n = batch.shape[0]
        expected = self.solution_shape(tuple(batch.shape[1:]))
        out = np.empty((n, *expected), dtype=np.float64)
        name = _name(self.solver)
        results = self._run(batch, self._instance_solver())
        try:
            for i, (ok, value) in results:
                if not ok:
                    raise OracleError(f"solver {name} failed on instance {i} of {n}: {value}")
                if value.shape != expected:
                    raise OracleError(
                        f"solver {name} returned shape {value.shape} on instance {i} of {n}; expected {expected}"
                    )
                if value.dtype.kind not in "biuf":
                    raise OracleError(
                        f"solver {name} returned dtype {value.dtype} on instance {i} of {n}; "
                        "a solution must be real numbers"
                    )
                out[i] = value
                if not np.isfinite(out[i]).all():
                    n_nan, n_inf = int(np.isnan(out[i]).sum()), int(np.isinf(out[i]).sum())
                    raise OracleError(
                        f"solver {name} returned {n_nan} NaN and {n_inf} inf entries on instance {i} of {n}; "
                        "a solution must be finite"
                    )
        finally:
            results.close()  # cancels what an executor has not started yet
        out += 0.0  # no signed zeros in a solution: -0.0 + 0.0 is +0.0 (solvers round, negate and scale)
        return torch.from_numpy(out).to(device=theta.device, dtype=theta.dtype)

    def _instance_solver(self) -> Callable[[np.ndarray], Any]:
        """The per-instance callable of this call: ``solver`` (a subclass binds settings read at call time, which
        then travel with each instance to threads, processes and dask workers)."""
        return self.solver

    def _run(self, batch: np.ndarray, solver: Callable) -> Iterator[tuple[int, tuple[bool, Any]]]:
        """Yield ``(i, (ok, value))`` in instance order; the caller stops at the first failure."""
        n = batch.shape[0]
        if self.executor is None and self.timeout is None:
            for i in range(n):
                yield i, _solve_one(solver, batch[i])
            return
        if self.executor is None:  # serial with a timeout: one instance at a time on the daemon worker
            for i in range(n):
                if self._worker is None:
                    self._worker = _DaemonWorker()
                future = self._worker.submit(_solve_one, solver, batch[i])
                try:
                    result = future.result(timeout=self.timeout)
                except concurrent.futures.TimeoutError:
                    self._worker = None  # abandoned: it is a daemon thread, the interpreter does not wait for it
                    raise OracleError(
                        f"solver {_name(self.solver)} gave no result for instance {i} of {n} within "
                        f"timeout={self.timeout}s (serial mode; the hung call is left in a daemon thread)"
                    ) from None
                yield i, result
            return
        ex_name = type(self.executor).__name__
        futures: list[concurrent.futures.Future] = []
        try:
            for i in range(n):
                try:
                    futures.append(self.executor.submit(_solve_one, solver, batch[i]))
                except Exception as exc:  # shut down, or broken by an earlier failure
                    raise OracleError(
                        f"executor {ex_name} cannot run instances (submitting instance {i} of {n} failed): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            for i, fut in enumerate(futures):
                try:
                    result = fut.result(timeout=self.timeout)
                except concurrent.futures.TimeoutError as exc:
                    for other in futures:
                        other.cancel()
                    note = _stop_hung_workers(self.executor)
                    raise OracleError(
                        f"solver {_name(self.solver)} gave no result for instance {i} of {n} "
                        f"within timeout={self.timeout}s{note}"
                    ) from exc
                except Exception as exc:  # the executor itself broke (e.g. a worker process died)
                    raise OracleError(
                        f"executor {ex_name} failed on instance {i} of {n}: {type(exc).__name__}: {exc}"
                    ) from exc
                yield i, result
        finally:
            for fut in futures:
                fut.cancel()

    def __repr__(self) -> str:
        ex = "serial" if self.executor is None else type(self.executor).__name__
        return f"SolverOracle({_name(self.solver)}, event_shape={self.event_shape}, executor={ex})"


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or repr(fn)
