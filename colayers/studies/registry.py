r"""The registries of study problems and methods, their decorators, and plugin modules.

A *problem* is a builder ``f(*, seed, device, **params) -> Problem`` registered under a name; a *method* is a
builder ``g(ctx, **hyper) -> TrainingObjective`` (``ctx`` a :class:`~colayers.studies.methods.MethodContext`)
registered with its hyper-parameter defaults. Both registries are plain dictionaries, :data:`PROBLEMS` and
:data:`METHODS`, filled by the decorators :func:`register_problem` and :func:`register_method`:

.. code-block:: python

    from colayers.studies import register_problem, register_method

    @register_problem("my_problem")
    def my_problem(*, seed=0, device="cpu", n=100, n_test=100): ...

    @register_method("my_method", defaults={"epsilon": 0.5}, summary="my estimator")
    def my_method(ctx, *, epsilon): ...

**Plugins.** A *plugin* is a module that registers problems or methods when imported: a dotted module
name (``mypkg.study_plugin``) or the path of a ``.py`` file (``examples/spanning_tree.py``). A study lists
them in its ``plugins`` configuration key (``--plugin MODULE`` on the command line); :func:`load_plugins`
imports them in the parent process and in every worker process, so that worker processes — which start
from a fresh interpreter — know the same names. Registrations made elsewhere (a script's
``if __name__ == "__main__":`` block, a notebook) are carried to the workers as well (:func:`user_entries`
and :func:`install_entries`): their builders must then be picklable, i.e. defined at the top level of a
module.

Registering a name twice with another builder is an error (``ValueError`` naming the name and both
builders); registering the same builder again (a module imported twice) is a no-op.

Example:
    >>> from colayers.studies.registry import PROBLEMS, METHODS, register_problem
    >>> "shortest_path" in PROBLEMS and "fy" in METHODS
    True
    >>> register_problem("shortest_path")(lambda **kw: None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: problem 'shortest_path' is already registered (by colayers...shortest_path_problem); choose another name
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PROBLEMS",
    "METHODS",
    "MethodInfo",
    "register_problem",
    "register_method",
    "load_plugins",
    "user_entries",
    "install_entries",
    "TUNED",
    "tuned_defaults",
]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its name, a one-line summary, its hyper-parameter defaults and its builder.

    ``defaults`` lists every accepted hyper-parameter with its *generic* default (the value used on a problem
    for which no tuned value is recorded in :data:`TUNED`); a study may override any of them, and ``lr`` (the
    method's own learning rate, which defaults to the study's). ``choices`` restricts string-valued
    hyper-parameters to a list of values. ``search_space`` is what ``tune`` searches (besides ``lr``, searched
    for every method): ``{name: ("log", low, high) | ("float", low, high) | ("int", low, high) | ("choice",
    values)}`` (:mod:`colayers.studies.tuning`).
    """

    name: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    build: Callable[..., Any] | None = None
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    search_space: dict[str, tuple[Any, ...]] = field(default_factory=dict)


#: Problem builders by name: ``PROBLEMS[name](*, seed, device, **params) -> Problem``.
PROBLEMS: dict[str, Callable[..., Any]] = {}
#: Methods by name.
METHODS: dict[str, MethodInfo] = {}

#: Hyper-parameters tuned for a (problem, method) pair; they replace the method's generic defaults on that
#: problem (and a study's own ``params`` replace them). Filled by the modules that record the tuning.
TUNED: dict[tuple[str, str], dict[str, Any]] = {}

_BUILTIN_MODULES = ("colayers.studies.",)


def _origin(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _same(a: Any, b: Any) -> bool:
    return a is b or (_origin(a) == _origin(b) and "<lambda>" not in _origin(a) and "<locals>" not in _origin(a))


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in " ,=.") or name != name.strip():
        raise ValueError(f"a {kind} name must be a non-empty string without spaces, commas, dots or '='; got {name!r}")
    return name


def register_problem(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a problem builder ``f(*, seed=0, device="cpu", **params) -> Problem`` as ``name``.

    The builder's keyword parameters other than ``seed`` and ``device`` are the problem's parameters (their
    defaults are listed by ``colayers study --list``). It returns the builder unchanged.
    """
    _check_name("problem", name)

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"register_problem({name!r}) must decorate a callable; got {type(fn).__name__}")
        old = PROBLEMS.get(name)
        if old is not None and not _same(old, fn):
            raise ValueError(f"problem {name!r} is already registered (by {_origin(old)}); choose another name")
        PROBLEMS[name] = fn
        return fn

    return deco


def register_method(
    name: str,
    *,
    defaults: dict[str, Any] | None = None,
    summary: str = "",
    choices: dict[str, Iterable[Any]] | None = None,
    search_space: dict[str, tuple[Any, ...]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a method builder ``g(ctx, **hyper) -> TrainingObjective`` as ``name``.

    Args:
        name: the method's name in study configurations.
        defaults: every hyper-parameter the builder takes, with its generic default; a study may set only
            these (and ``lr``), any other keyword is refused with the list of valid ones.
        summary: a one-line description (``colayers study --list``).
        choices: allowed values of string hyper-parameters, e.g. ``{"task_loss": ("regret", "hamming")}``.
        search_space: the ranges ``tune`` searches, e.g. ``{"epsilon": ("log", 0.05, 5.0)}`` (kinds ``"log"``,
            ``"float"``, ``"int"``: low and high; ``"choice"``: a tuple of values); ``lr`` is searched for every
            method and need not be listed.
    """
    _check_name("method", name)
    if defaults is not None and not isinstance(defaults, dict):
        raise TypeError(f"register_method({name!r}): defaults must be a dict; got {type(defaults).__name__}")
    space = _check_space(name, search_space or {}, set(defaults or {}) | {"lr"})

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"register_method({name!r}) must decorate a callable; got {type(fn).__name__}")
        old = METHODS.get(name)
        if old is not None and not _same(old.build, fn):
            raise ValueError(f"method {name!r} is already registered (by {_origin(old.build)}); choose another name")
        METHODS[name] = MethodInfo(
            name, summary or (fn.__doc__ or "").strip().split("\n")[0], dict(defaults or {}), fn,
            {k: tuple(v) for k, v in (choices or {}).items()}, space,
        )  # fmt: skip
        return fn

    return deco


def _check_space(name: str, space: Any, known: set[str]) -> dict[str, tuple[Any, ...]]:
    """Validate a method's search space (see :func:`register_method`); return it with tuple entries."""
    if not isinstance(space, dict):
        raise TypeError(f"register_method({name!r}): search_space must be a dict; got {type(space).__name__}")
    out = {}
    for key, spec in space.items():
        where = f"register_method({name!r}): search_space[{key!r}]"
        if key not in known:
            raise ValueError(f"{where} names no hyper-parameter of the method; valid: {sorted(known)}")
        spec = tuple(spec) if isinstance(spec, (list, tuple)) else (spec,)
        kind = spec[0] if spec else None
        if kind == "choice" and len(spec) == 2 and isinstance(spec[1], (list, tuple)) and spec[1]:
            out[key] = ("choice", tuple(spec[1]))
            continue
        ok = kind in ("log", "float", "int") and len(spec) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec[1:]) and spec[1] < spec[2]
        if not ok or (kind == "log" and spec[1] <= 0):
            raise ValueError(f"{where} must be ('log'|'float'|'int', low, high) with low < high (low > 0 for 'log') "
                             f"or ('choice', (values...)); got {spec!r}")
        out[key] = spec
    return out


def tuned_defaults(problem: str, method: str) -> dict[str, Any]:
    """The method's effective defaults on ``problem``: generic defaults updated by :data:`TUNED` (a copy)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {method!r}")
    out = dict(METHODS[method].defaults)
    out.update(TUNED.get((problem, method), {}))
    return out


# ----------------------------------------------------------------------------------------------------------
# plugins


_LOADED: dict[str, Any] = {}


def _import_plugin(spec: str) -> Any:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"plugin must be a module name or a .py file path; got {spec!r}")
    if spec in _LOADED:
        return _LOADED[spec]
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ValueError(f"plugin file {spec!r} does not exist")
        modname = "colayers_plugin_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        module_spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        sys.modules[modname] = module
        try:
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            sys.modules.pop(modname, None)
            raise
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            if exc.name and spec.startswith(exc.name):
                raise ValueError(f"plugin module {spec!r} cannot be imported: {exc}") from None
            raise
    _LOADED[spec] = module
    return module


def load_plugins(plugins: Iterable[str], *, where: str = "plugins") -> None:
    """Import every plugin module (names or ``.py`` paths); a failing import is a ``ValueError`` naming it.

    Importing a plugin twice is a no-op. A plugin that registers a name already taken by another builder
    fails with the registry's ``ValueError``, prefixed by ``where``; so does one that calls ``sys.exit`` on
    import (which would otherwise end the study, or a worker, without a word).
    """
    for i, spec in enumerate(plugins or ()):
        try:
            _import_plugin(spec)
        except ValueError as exc:
            raise ValueError(f"{where}[{i}]: {exc}") from None
        except SystemExit as exc:  # a script's exit, run on import: it would end the study in silence
            raise ValueError(
                f"{where}[{i}]: plugin {spec!r} called sys.exit({exc.code!r}) on import; a plugin module must only "
                "register problems and methods (put a script's own code under `if __name__ == \"__main__\":`)"
            ) from None
        except Exception as exc:  # an error inside the plugin's own code
            raise ValueError(f"{where}[{i}]: plugin {spec!r} failed on import: {type(exc).__name__}: {exc}") from None


def _is_builtin(fn: Any) -> bool:
    return getattr(fn, "__module__", "").startswith(_BUILTIN_MODULES)


def user_entries() -> dict[str, dict[str, Any]]:
    """Registrations not made by colayers itself (to carry to worker processes): problems, methods, tunings."""
    return {
        "problems": {k: v for k, v in PROBLEMS.items() if not _is_builtin(v)},
        "methods": {k: v for k, v in METHODS.items() if not _is_builtin(v.build)},
        "tuned": {k: dict(v) for k, v in TUNED.items()},
    }


def install_entries(entries: dict[str, dict[str, Any]]) -> None:
    """Install registrations carried from the parent process (replacing same-named ones)."""
    PROBLEMS.update(entries.get("problems", {}))
    METHODS.update(entries.get("methods", {}))
    TUNED.update(entries.get("tuned", {}))


def check_picklable(entries: dict[str, dict[str, Any]]) -> None:
    """Raise ``ValueError`` naming the first registration that cannot be sent to a worker process."""
    import pickle

    for kind, items in entries.items():
        for name, value in items.items():
            try:
                pickle.dumps(value)
            except Exception as exc:
                raise ValueError(
                    f"{kind[:-1]} {name!r} cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                    "define its builder at the top level of a module, or register it in a plugin module "
                    "(--plugin MODULE / plugins = [...])"
                ) from None
