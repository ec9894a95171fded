"""Discovery of colayers' public pieces for the shared contract tests (``tests/test_conformance.py``).

A public piece is a class listed in the ``__all__`` of ``colayers.oracles``, ``colayers.perturb``,
``colayers.layers`` or ``colayers.losses``, or of one of their public (not ``_``-prefixed) submodules. Its kind
comes from what it subclasses (:class:`~colayers.oracles.Oracle`, :class:`~colayers.perturb.Noise`,
:class:`~colayers.perturb.Perturbation`, :class:`torch.nn.Module` — a layer in ``colayers.layers``, a loss in
``colayers.losses``); classes of no kind (rules, regularizers, errors, records) have no shared contract here.

Abstract bases are excluded by one rule, :func:`is_abstract`: a class is abstract when it still has a method
whose whole body is a bare ``raise NotImplementedError`` (the stub a subclass must fill: ``Oracle.solve``,
``Noise.sample``, ``Perturbation.apply``; an optional capability raises ``NotImplementedError`` *with a message*
and does not count), when it is a :class:`torch.nn.Module` without its own ``forward``, a ``typing.Protocol``,
or an :mod:`abc` abstract class.

Every concrete piece is built, in this order, from :data:`CASES` (a small table of constructors keyed by class
name, for the pieces that need arguments or special scores), or from its signature when every required argument
is an ``oracle`` (given :func:`small_oracle`). A public piece that is neither buildable nor in the table is
reported by :func:`discover` as a :class:`Piece` with ``error`` set, and the contract tests fail on it, naming
what to add: a new piece is never skipped silently.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from colayers.oracles import Oracle
from colayers.perturb import Noise, Perturbation

PACKAGES = ("colayers.oracles", "colayers.perturb", "colayers.layers", "colayers.losses")
KINDS = ("oracle", "noise", "perturbation", "layer", "loss")
EVENT = (5,)  # the event of the small oracle and of the layers and losses built on it


def small_oracle() -> Oracle:
    """The oracle given to a layer, a loss or a wrapper that takes one: 2-subsets of 5 items."""
    from colayers.oracles import TopKSubset

    return TopKSubset(2)


def gaussian_scores(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Default scores: i.i.d. standard normal (no ties, almost surely)."""
    return torch.randn(shape, generator=generator, dtype=dtype)


def negative_scores(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Scores θ = -cost with positive costs, for the oracles that need them (vertex-weighted shortest paths)."""
    return -gaussian_scores(shape, generator, dtype).abs() - 0.1


@dataclass
class Case:
    """How to build one piece and feed it.

    Attributes:
        build: ``build(**overrides)`` returns a fresh instance; overrides are constructor keywords the contracts
            set (``seed`` for a layer, ``reduction`` for a loss).
        event: the event shape of θ (default: the oracle's own, else :data:`EVENT`).
        scores: ``scores(shape, generator, dtype)`` draws valid θ (default: :func:`gaussian_scores`).
        loss_args: for a loss whose ``forward`` takes ``*args``: ``loss_args(theta_true, target)`` gives them.
        nonnegative: whether the loss is ≥ 0 by its definition (a contrastive loss against a pool's mean is not).
    """

    build: Callable[..., Any]
    event: tuple[int, ...] | None = None
    scores: Callable[..., torch.Tensor] = gaussian_scores
    loss_args: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None
    nonnegative: bool = True


@dataclass
class Piece:
    """A discovered public class, its kind, and its :class:`Case` (or why none could be made)."""

    name: str
    cls: type
    kind: str
    case: Case | None = None
    error: str | None = None
    modules: list[str] = field(default_factory=list)

    def build(self, **overrides: Any) -> Any:
        if self.error is not None:
            raise AssertionError(self.error)
        return self.case.build(**overrides)

    def event(self, instance: Any) -> tuple[int, ...]:
        """The event shape of θ for a built instance: the case's, else its oracle's fixed one, else :data:`EVENT`."""
        if self.case.event is not None:
            return self.case.event
        oracle = instance if isinstance(instance, Oracle) else getattr(instance, "oracle", None)
        shape = getattr(oracle, "event_shape", None)
        return tuple(shape) if shape is not None else EVENT


# ---- the table of constructors ----------------------------------------------------------------------------
def _best_of_three(theta: np.ndarray) -> np.ndarray:
    """A per-instance solver (module level, so that it pickles): the best of three fixed 0/1 vectors."""
    solutions = np.array([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    return solutions[int(np.argmax(solutions @ theta))]


_THREADS = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="conformance")


def _cvxpy_knapsack(**kw: Any) -> Oracle:
    import cvxpy as cp

    from colayers.oracles import CvxpyOracle

    theta, y = cp.Parameter(5), cp.Variable(5, boolean=True)
    problem = cp.Problem(cp.Maximize(theta @ y), [[0.5, 1.5, 2.5, 1.25, 0.75] @ y <= 3.3])
    return CvxpyOracle(problem, theta, y, **kw)


def _cave(**kw: Any) -> Any:
    from colayers.losses import ConeAlignedCosineLoss
    from colayers.oracles import LinearProgram

    # the 2-subsets that small_oracle() gives as targets are vertices of {0 ≤ y ≤ 1, Σy ≤ 2}
    return ConeAlignedCosineLoss(LinearProgram(5, A_ub=[[1.0] * 5], b_ub=[2], bounds=(0, 1)), **kw)


def _pyepo_shortest_path(**kw: Any) -> Oracle:
    import pytest

    pytest.importorskip("pyepo", reason="the optional pyepo extra is not installed")
    environ = pytest.importorskip("pyomo.environ", reason="PyEPO's Pyomo backend is not installed")
    if not environ.SolverFactory("appsi_highs").available(exception_flag=False):
        pytest.skip("Pyomo has no HiGHS (appsi_highs) solver here")
    from pyepo.model.omo import shortestPathModel

    from colayers.oracles.pyepo import PyEPOOracle

    return PyEPOOracle(shortestPathModel((2, 3), solver="appsi_highs"), **kw)


def _packing(**kw: Any) -> Oracle:
    from colayers.oracles.packing import PackingOracle, feasible_packings

    return PackingOracle(feasible_packings(np.array([[2.0, 3.0, 4.0, 1.0, 2.0]]), np.array([6.0]), 1000), **kw)


def _portfolio(**kw: Any) -> Oracle:
    from colayers.oracles import Portfolio

    # a budget that binds (1.5 times the uniform portfolio's risk): the answers lie on the curved constraint
    return Portfolio(0.05 + np.diag([0.1, 0.2, 0.3, 0.4, 0.5]), gamma=1.5, **kw)


def _argmax_one_hot(theta: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(theta.argmax(-1), theta.shape[-1]).to(theta.dtype)


def _seeded_layer(seed: int = 0) -> torch.nn.Module:
    from colayers.layers import PerturbedAdditive

    return PerturbedAdditive(small_oracle(), epsilon=0.5, num_samples=4, seed=seed)


def _pool(**kw: Any):
    from colayers.oracles import SolutionPool

    return SolutionPool(small_oracle(), solve_ratio=0.5, seed=0, **kw)


def _regret_cost(atoms: torch.Tensor, theta_true: torch.Tensor) -> torch.Tensor:
    """A regret ≥ 0: the best objective at the true scores minus the atoms'."""
    best = (theta_true * small_oracle()(theta_true)).sum(-1)
    return best - (atoms * theta_true).sum(-1)


def _oracle_cases() -> dict[str, Case]:
    from colayers.layers import FunctionOracle
    from colayers.oracles import (
        BipartiteMatching,
        EnumeratedOracle,
        GridDAGShortestPath,
        GridVertexShortestPath,
        Knapsack,
        LinearProgram,
        SolverOracle,
        SpanningTree,
        TopKSubset,
        TravelingSalesman,
        grid_dag_paths,
    )

    return {
        "SolverOracle": Case(lambda **kw: SolverOracle(_best_of_three, (5,), executor=_THREADS, **kw)),
        "TopKSubset": Case(lambda **kw: TopKSubset(2, **kw)),
        "GridDAGShortestPath": Case(lambda **kw: GridDAGShortestPath(3, 3, **kw)),
        "GridVertexShortestPath": Case(lambda **kw: GridVertexShortestPath(3, 4, **kw), scores=negative_scores),
        "LinearProgram": Case(lambda **kw: LinearProgram(5, A_ub=[[1.0] * 5], b_ub=[2], bounds=(0, 1), **kw)),
        "CvxpyOracle": Case(_cvxpy_knapsack),
        "BipartiteMatching": Case(lambda **kw: BipartiteMatching(3, 4, **kw)),
        "SpanningTree": Case(lambda **kw: SpanningTree(4, [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2), (1, 3)], **kw)),
        "Knapsack": Case(lambda **kw: Knapsack([0.5, 1.5, 2.5, 1.25, 0.75], 3.3, **kw)),
        "EnumeratedOracle": Case(lambda **kw: EnumeratedOracle(grid_dag_paths(3, 3), **kw)),
        "PyEPOOracle": Case(_pyepo_shortest_path),
        "PackingOracle": Case(_packing),
        "FunctionOracle": Case(lambda **kw: FunctionOracle(_argmax_one_hot, **kw)),
        "SolutionPool": Case(_pool),
        "TravelingSalesman": Case(lambda **kw: TravelingSalesman(5, **kw)),  # 10 edges; the integer program: tests/
        "Portfolio": Case(_portfolio),
    }


def _ranking_cases() -> dict[str, Case]:
    from colayers.losses import ListwiseRankingLoss, PairwiseRankingLoss, PointwiseRankingLoss

    args = lambda theta_true, target: (theta_true, target)  # noqa: E731 - loss(theta, theta_true, y_target)
    return {  # the listwise loss is a cross-entropy (≥ the true ranking's entropy), not ≥ 0 at its minimum only
        "ListwiseRankingLoss": Case(lambda **kw: ListwiseRankingLoss(_pool(), 0.8, **kw), loss_args=args),
        "PairwiseRankingLoss": Case(lambda **kw: PairwiseRankingLoss(_pool(), 0.3, **kw), loss_args=args),
        "PointwiseRankingLoss": Case(lambda **kw: PointwiseRankingLoss(_pool(), **kw), loss_args=args),
    }


def _other_cases() -> dict[str, Case]:
    from colayers.layers import Perturbed, Pushforward
    from colayers.losses import ExperienceLoss, FenchelYoungLoss, ImitationLoss, MAPContrastiveLoss, NCELoss, RegretLoss
    from colayers.perturb import Additive, Normal, SumOfGamma

    return {
        # noises and perturbations
        "SumOfGamma": Case(lambda: SumOfGamma(3, terms=5, temperature=0.7)),
        # layers
        "Perturbed": Case(lambda **kw: Perturbed(small_oracle(), Additive(Normal(), 0.5), num_samples=4, **kw)),
        "Pushforward": Case(lambda **kw: Pushforward(_seeded_layer(), lambda atoms: atoms[..., :2].sum(-1), **kw)),
        # losses
        "FenchelYoungLoss": Case(lambda **kw: FenchelYoungLoss(_seeded_layer(), **kw)),
        "ImitationLoss": Case(lambda **kw: ImitationLoss(lambda theta, target: small_oracle()(theta), **kw)),
        "NCELoss": Case(lambda **kw: NCELoss(_pool(), **kw), nonnegative=False),  # a pool's mean score, not a max
        "MAPContrastiveLoss": Case(lambda **kw: MAPContrastiveLoss(_pool(), **kw)),
        **_ranking_cases(),
        "RegretLoss": Case(lambda **kw: RegretLoss(_seeded_layer(), **kw)),
        "ExperienceLoss": Case(lambda **kw: ExperienceLoss(_seeded_layer(), _regret_cost, **kw),
                               loss_args=lambda theta_true, target: (theta_true,)),
        "ConeAlignedCosineLoss": Case(_cave),  # needs an oracle with LP constraints
    }


@functools.cache
def cases() -> dict[str, Case]:
    """The table of constructors, keyed by class name (see :class:`Case`)."""
    return {**_oracle_cases(), **_other_cases()}


# ---- discovery --------------------------------------------------------------------------------------------
def _public_names(package_name: str) -> dict[str, list[str]]:
    """Public names of a subpackage and of its public submodules: name -> the modules that export it."""
    package = importlib.import_module(package_name)
    found: dict[str, list[str]] = {name: [package_name] for name in package.__all__}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module_name = f"{package_name}.{info.name}"
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            found.setdefault(name, []).append(module_name)
    return found


def kind_of(cls: type, package_name: str) -> str | None:
    """The contract kind of a public class, from what it subclasses (``None``: no shared contract)."""
    if issubclass(cls, Oracle):
        return "oracle"
    if issubclass(cls, Noise):
        return "noise"
    if issubclass(cls, Perturbation):
        return "perturbation"
    if issubclass(cls, torch.nn.Module):
        return "loss" if package_name == "colayers.losses" else "layer"
    return None


@functools.cache
def _is_bare_stub(function: Callable) -> bool:
    """Whether a function's body (less its docstring) is only ``raise NotImplementedError`` without a message."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call):
        if exc.args or exc.keywords:
            return False
        exc = exc.func
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def is_abstract(cls: type) -> bool:
    """The one rule that tells an abstract base from a piece (see the module docstring)."""
    if inspect.isabstract(cls) or getattr(cls, "_is_protocol", False):
        return True
    if issubclass(cls, torch.nn.Module) and cls.forward is torch.nn.Module.forward:
        return True
    for name in dir(cls):
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if inspect.isfunction(attr) and not (attr.__module__ or "").startswith("torch") and _is_bare_stub(attr):
            return True
    return False


def _auto_case(cls: type) -> Case | str:
    """A :class:`Case` built from the signature, or why it cannot be."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError) as exc:
        return f"its signature cannot be read ({exc})"
    needs_oracle = False
    missing = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            continue
        if parameter.name == "oracle":
            needs_oracle = True
        else:
            missing.append(parameter.name)
    if missing:
        return f"its required argument(s) {', '.join(missing)} have no default"

    def build(**overrides: Any) -> Any:
        return cls(oracle=small_oracle(), **overrides) if needs_oracle else cls(**overrides)

    return Case(build)


@functools.cache
def discover() -> dict[str, list[Piece]]:
    """Every concrete public piece by kind, each with its :class:`Case` or the reason none could be made."""
    table = cases()
    pieces: dict[str, list[Piece]] = {kind: [] for kind in KINDS}
    seen: set[type] = set()
    for package_name in PACKAGES:
        for name, modules in _public_names(package_name).items():
            obj = getattr(importlib.import_module(modules[0]), name)
            if not inspect.isclass(obj) or obj in seen:
                continue
            seen.add(obj)
            kind = kind_of(obj, package_name)
            if kind is None or is_abstract(obj):
                continue
            piece = Piece(name, obj, kind, modules=modules)
            if name in table:
                piece.case = table[name]
            else:
                auto = _auto_case(obj)
                if isinstance(auto, Case):
                    piece.case = auto
                else:
                    piece.error = (
                        f"{modules[0]}.{name} ({kind}) cannot be built for the contract tests: {auto}, and it has no "
                        "entry in the table of constructors (tests/conformance/__init__.py, cases()); add one"
                    )
            pieces[kind].append(piece)
    return pieces


def abstract_bases() -> list[str]:
    """The public classes of a contract kind that :func:`is_abstract` excludes (for the report test)."""
    names = []
    for package_name in PACKAGES:
        for name, modules in _public_names(package_name).items():
            obj = getattr(importlib.import_module(modules[0]), name)
            if inspect.isclass(obj) and kind_of(obj, package_name) and is_abstract(obj):
                names.append(name)
    return names
