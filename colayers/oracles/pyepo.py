r"""PyEPO models as colayers oracles: any ``pyepo.model.opt.optModel`` (Gurobi, COPT, Pyomo, OR-Tools...).

PyEPO (Tang & Khalil) states problems as cost *minimization* (``modelSense = EPO.MINIMIZE``, the default) or
maximization; colayers maximizes scores θ. :class:`PyEPOOracle` maps one to the other — for a minimizing
model it sets the PyEPO cost to ``-θ`` — and batches instances over an executor like every
:class:`~colayers.oracles.SolverOracle`. PyEPO is an optional dependency (``pip install colayers[pyepo]``,
which installs PyEPO with its Pyomo backend; HiGHS comes with colayers).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import numpy as np

from .base import SolverOracle
from .highs import _power_of_two_scale

__all__ = ["PyEPOOracle"]

_PYOMO_LOCK = threading.Lock()  # Pyomo captures solver output process-wide: its solves cannot overlap in threads


class _PyEPOSolver:
    """Picklable per-instance solver: one copy of the PyEPO model per thread (or rebuilt in a worker process)."""

    def __init__(self, model: Any, maximize: bool):
        self.maximize = maximize
        self.num_cost = int(model.num_cost)
        self.name = type(model).__name__
        self.pyomo = type(model).__module__.startswith("pyepo.model.omo")
        spec = getattr(model, "to_spec", None)
        self.spec = spec() if callable(spec) else None  # a rebuild recipe that pickles (PyEPO ≥ 2.2)
        self.model = model
        self._local = threading.local()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"], state["_lock"]
        if state["spec"] is not None:
            state["model"] = None  # solver objects (Gurobi, Pyomo factories) rarely pickle: rebuild instead
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._lock = threading.Lock()

    def _thread_model(self) -> Any:
        model = getattr(self._local, "model", None)
        if model is None:
            with self._lock:  # the first thread takes the given model, later ones a copy (or a rebuild)
                if self.model is not None and not getattr(self, "_taken", False):
                    model, self._taken = self.model, True
                elif self.spec is not None:
                    model = self.spec.build()
                else:
                    model = self.model.copy()
            self._local.model = model
        return model

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        scores = _power_of_two_scale(np.asarray(theta, dtype=np.float64).reshape(-1))  # argmax unchanged
        model = self._thread_model()
        if self.pyomo:
            with _PYOMO_LOCK:
                model.setObj(scores if self.maximize else -scores)
                solution, _ = model.solve()
        else:
            model.setObj(scores if self.maximize else -scores)
            solution, _ = model.solve()
        return np.asarray(solution, dtype=np.float64).reshape(-1)

    def __repr__(self) -> str:
        return f"PyEPO {self.name}"


class PyEPOOracle(SolverOracle):
    r"""A PyEPO ``optModel`` as a batched colayers oracle, in the maximization convention.

    .. math::  f(\theta) = \operatorname*{argmax}_{y \in \mathcal{Y}} \langle \theta, y \rangle
               = \operatorname*{argmin}_{y \in \mathcal{Y}} \langle c, y \rangle \ \text{ with } c = -\theta

    for a minimizing model (PyEPO's default sense; a maximizing model gets :math:`c = \theta`). So a PyEPO
    user passes ``theta = -cost`` — or calls :meth:`solve_costs` with costs — and the model works with
    every colayers layer and loss. Each instance's θ is scaled by a power of two first (the argmax is
    unchanged and the backend's absolute tolerances mean the same at every magnitude).

    Instances run serially or on an executor. On a thread pool each thread solves on its own copy of the
    model (``model.copy()``, or ``model.to_spec().build()``) — but Pyomo-backed models take turns, since Pyomo
    captures solver output process-wide and its solves cannot overlap in threads; for process pools and dask
    the oracle's solver pickles the model's rebuild recipe (PyEPO ≥ 2.2 ``to_spec``) and each worker builds
    its own.

    Args:
        model: a ``pyepo.model.opt.optModel`` (any backend); its ``num_cost`` is the event size.
        executor, timeout: see :class:`~colayers.oracles.SolverOracle`.
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> from pyepo.model.omo import shortestPathModel  # doctest: +SKIP
        >>> oracle = PyEPOOracle(shortestPathModel((5, 5), solver="appsi_highs"))  # doctest: +SKIP
        >>> cost = torch.rand(8, 40)  # doctest: +SKIP
        >>> paths = oracle(-cost)  # shortest paths for the costs, (8, 40)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        *,
        executor: concurrent.futures.Executor | None = None,
        timeout: float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        for method in ("setObj", "solve"):
            if not callable(getattr(model, method, None)):
                got = type(model).__name__
                raise TypeError(f"model must be a PyEPO optModel (with setObj and solve); got {got}")
        from pyepo import EPO

        maximize = getattr(model, "modelSense", EPO.MINIMIZE) == EPO.MAXIMIZE
        self.model = model
        self.maximize = maximize
        solver = _PyEPOSolver(model, maximize)
        super().__init__(
            solver, (solver.num_cost,), executor=executor, timeout=timeout, validate_args=validate_args
        )

    def solve_costs(self, cost):
        """The model's own problem on costs: argmin ⟨cost, y⟩ for a minimizing model (``self(-cost)``)."""
        return self(cost if self.maximize else -cost)

    def __repr__(self) -> str:
        sense = "maximize" if self.maximize else "minimize"
        return f"PyEPOOracle({type(self.model).__name__}, {sense}, num_cost={self.event_shape[0]})"
