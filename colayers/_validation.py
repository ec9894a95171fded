"""Argument checks shared by every part of colayers.

Each helper raises a :class:`ValueError` (or :class:`TypeError`) whose message names the argument,
what was expected and what came, e.g. ``theta must be finite; found 3 NaN entries, first at index (7, 2)``.
"""

from __future__ import annotations

import contextvars
import math
import numbers
from collections.abc import Sequence

import torch

_VALIDATE_ARGS = True
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("colayers_trusted_inputs", default=False)

__all__ = [
    "set_default_validate_args",
    "get_default_validate_args",
    "resolve_validate_args",
    "ValidateArgs",
    "trusted_inputs",
    "inputs_trusted",
    "check_finite",
    "check_positive",
    "check_int_at_least",
    "check_int_in_range",
    "check_event_shape",
    "check_theta",
    "check_same_shape",
    "check_tensor",
    "on_compiled_cpu",
    "check_generator",
    "check_reduction",
    "reduce",
    "Constraint",
    "positive",
    "nonnegative",
    "real",
    "boolean",
    "integer_at_least",
    "one_of",
    "optional",
    "check_args",
]


def set_default_validate_args(value: bool) -> None:
    """Switch the checks of every colayers object built with ``validate_args=None`` on or off (as
    :meth:`torch.distributions.Distribution.set_default_validate_args`).

    The checks are on by default. The only one that costs more than a few Python operations is the
    finiteness check of θ, which reduces θ and reads one value back to the host (a device-to-host
    synchronisation on CUDA) on every layer call: switching validation off removes it. Shape, dtype and
    device checks, which read no tensor value, always run. Every oracle, layer and loss built with the default
    ``validate_args=None`` follows this switch, read at each call (:class:`ValidateArgs`); one built with
    ``validate_args=True`` or ``False`` keeps its own setting. θ is checked once per layer call: the scores a
    layer derives from it (the perturbed η, the finite-difference targets) reach the oracle unchecked
    (:func:`trusted_inputs`).

    Example:
        >>> import torch, colayers
        >>> layer = colayers.IdentityRelaxation(colayers.ArgmaxOneHot(validate_args=False))
        >>> colayers.set_default_validate_args(False)
        >>> layer(torch.tensor([float("nan"), 0.0])).shape  # not checked: no error, no host read-back
        torch.Size([2])
        >>> colayers.set_default_validate_args(True)
        >>> layer(torch.tensor([float("nan"), 0.0]))
        Traceback (most recent call last):
        ...
        ValueError: theta must be finite; found 1 NaN and 0 inf entries (first at index (0,)) in a tensor of shape (2,)
    """
    global _VALIDATE_ARGS
    if not isinstance(value, bool):
        raise TypeError(f"value must be a bool; got {type(value).__name__} {value!r}")
    _VALIDATE_ARGS = value


def get_default_validate_args() -> bool:
    """The global default set by :func:`set_default_validate_args` (``True`` unless changed)."""
    return _VALIDATE_ARGS


def resolve_validate_args(validate_args: bool | None) -> bool:
    """An object's own ``validate_args`` if it is a bool, else (``None``) the global default, read now."""
    return _VALIDATE_ARGS if validate_args is None else validate_args


def check_validate_args(validate_args: bool | None) -> bool | None:
    """Require ``None`` (follow the global default) or a bool."""
    if validate_args is not None and not isinstance(validate_args, bool):
        raise TypeError(f"validate_args must be a bool or None; got {type(validate_args).__name__} {validate_args!r}")
    return validate_args


class ValidateArgs:
    """The ``validate_args`` attribute of every colayers object: ``True``, ``False``, or ``None`` (follow the
    global default of :func:`set_default_validate_args`, read at each call).

    A data descriptor: setting ``obj.validate_args = v`` checks and stores ``v`` (``None`` or a bool);
    reading ``obj.validate_args`` gives the bool in force now. So every ``if self.validate_args:`` of an oracle,
    layer or loss built with the default ``validate_args=None`` follows the global switch.

    Example:
        >>> class Thing:
        ...     validate_args = ValidateArgs()
        ...     def __init__(self, validate_args=None):
        ...         self.validate_args = validate_args
        >>> thing = Thing()
        >>> set_default_validate_args(False); thing.validate_args
        False
        >>> set_default_validate_args(True); thing.validate_args
        True
        >>> Thing(validate_args=False).validate_args
        False
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> bool | ValidateArgs:
        if obj is None:
            return self
        own = obj.__dict__.get(self._slot)
        if own is None:
            own = _VALIDATE_ARGS
        return own

    def __set__(self, obj: object, value: bool | None) -> None:
        obj.__dict__[self._slot] = check_validate_args(value)


def inputs_trusted() -> bool:
    """Whether the caller promised (with :func:`trusted_inputs`) that the scores it passes on are sound."""
    return _TRUSTED.get()


class trusted_inputs:  # noqa: N801 - called like a function: ``with trusted_inputs():``
    """Inside the block, oracles skip the value checks of their input (finiteness: a host read-back).

    Layers and losses validate θ once, then call the oracle on tensors derived from it (the perturbed scores
    η = θ + εZ, the targets θ − λȳ of the finite-difference rule, SSVM's θ + Δ): those are not validated a
    second time. Shape checks and the checks of the oracle's *output* still run. (A class rather than a
    generator-based context manager: it is entered on every training step.)

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> with trusted_inputs():
        ...     ArgmaxOneHot()(torch.tensor([float("nan"), 0.0])).shape  # not checked
        torch.Size([2])
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _TRUSTED.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _TRUSTED.reset(self._token)


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Require a floating-point :class:`torch.Tensor`."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype; got {value.dtype}")
    return value


COMPILED_DTYPES = (torch.float32, torch.float64)  # the dtypes the compiled CPU kernels (numba) compute in


def on_compiled_cpu(*tensors: torch.Tensor) -> bool:
    """Whether the compiled CPU kernels serve these tensors: all on the CPU and all of one dtype, float32 or float64
    (the one dispatch rule of every kernel; CUDA and half precision take the tensor algorithms).

    Example:
        >>> on_compiled_cpu(torch.zeros(2), torch.ones(3)), on_compiled_cpu(torch.zeros(2), torch.ones(3).double())
        (True, False)
    """
    dtype = tensors[0].dtype
    if dtype not in COMPILED_DTYPES:
        return False
    for t in tensors:
        if t.dtype != dtype or t.device.type != "cpu":
            return False
    return True


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Require every entry of ``value`` to be finite (no NaN, no ±inf).

    The check costs one reduction and one read-back of its result to the host (on CUDA, a device-to-host
    synchronisation); the layers run it only while validation is on (``validate_args``, or the global
    :func:`set_default_validate_args`). The reduction is the sum: it is finite only if every entry is (a NaN or
    an infinity stays in it), so a finite sum passes at once; a sum that is not finite (a NaN or an infinity
    in ``value``, or finite entries whose sum overflows) goes to the entry-by-entry test, which raises only for
    entries that are not finite. A sum costs one pass, where ``isfinite(value).all()`` costs several.
    """
    total = (value.detach() if value.requires_grad else value).sum()  # no autograd node for a check
    if not value.is_complex() and math.isfinite(total.item()):
        return value
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        n_nan = int(torch.isnan(value).sum())
        n_inf = int(torch.isinf(value).sum())
        first = tuple(int(i) for i in bad[0].tolist())
        raise ValueError(
            f"{name} must be finite; found {n_nan} NaN and {n_inf} inf entries "
            f"(first at index {first}) in a tensor of shape {tuple(value.shape)}"
        )
    return value


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Require a finite real number > 0 (or ≥ 0 with ``allow_zero``); NaN and ±inf are refused.

    Example:
        >>> check_positive("epsilon", float("inf"))
        Traceback (most recent call last):
        ...
        ValueError: epsilon must be a finite number > 0; got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    bound = "≥ 0" if allow_zero else "> 0"
    if value != value or value in (math.inf, -math.inf):  # NaN and infinities
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {bound}; got {value!r}")
    return float(value)


def check_int_at_least(name: str, value: int, low: int) -> int:
    """Require an integer ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}; got {value}")
    return int(value)


def check_int_in_range(name: str, value: int, low: int, high: int) -> int:
    """Require an integer in the closed range [low, high]."""
    check_int_at_least(name, value, low)
    if value > high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value}")
    return int(value)


def check_event_shape(
    name: str, value: torch.Tensor, event_shape: Sequence[int] | None, event_ndim: int
) -> tuple[int, ...]:
    """Check that ``value`` ends with the event shape and return its batch shape.

    ``event_shape`` may be ``None`` (any shape with ``event_ndim`` dimensions).
    """
    if value.ndim < event_ndim:
        raise ValueError(
            f"{name} must have at least {event_ndim} dimension(s) (*batch, *event); "
            f"got shape {tuple(value.shape)}"
        )
    got = tuple(value.shape[value.ndim - event_ndim :])
    if event_shape is not None and got != tuple(event_shape):
        raise ValueError(
            f"{name} must have shape (*batch, {', '.join(map(str, event_shape))}); "
            f"got shape {tuple(value.shape)} whose last {event_ndim} dimension(s) are {got}"
        )
    return tuple(value.shape[: value.ndim - event_ndim])


def check_theta(
    theta: object, event_shape: Sequence[int] | None = None, event_ndim: int = 1, validate: bool = True
) -> tuple[int, ...]:
    """The one check of scores θ at a public entry point: a floating tensor ending with the event shape
    (``event_shape``, or any shape with ``event_ndim`` dimensions) and, when ``validate``, finite; returns the batch
    shape. Inside :func:`trusted_inputs` (a layer or loss that checked θ already) the finiteness, which costs a
    host read-back on CUDA, is not checked again.

    Example:
        >>> check_theta(torch.zeros(4, 3), event_ndim=1)
        (4,)
        >>> check_theta(torch.zeros(()))
        Traceback (most recent call last):
        ...
        ValueError: theta must have at least 1 dimension(s) (*batch, *event); got shape ()
    """
    check_tensor("theta", theta)
    batch = check_event_shape("theta", theta, event_shape, event_ndim)
    if validate and not inputs_trusted():
        check_finite("theta", theta)
    return batch


def check_same_shape(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Require ``value`` to have the shape of ``ref``."""
    if value.shape != ref.shape:
        raise ValueError(
            f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; got {tuple(value.shape)}"
        )


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Require a generator (if given) to live on the device type that samples are drawn on."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator must live on the device of theta ({torch.device(device).type}); "
            f"got a generator on {generator.device.type}"
        )


_REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """Require one of 'mean', 'sum', 'none'."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    return reduction


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply a checked reduction, 'mean' | 'sum' | 'none', to per-instance values ``(*batch)`` (losses and
    metrics alike; 'mean' of an empty batch is NaN, as in torch).

    Example:
        >>> reduce(torch.tensor([1.0, 3.0]), "mean")
        tensor(2.)
    """
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


# -- constructor arguments declared once (as torch.distributions' arg_constraints) ---------------------------------


class Constraint:
    """A constraint on a constructor argument: ``check(name, value)`` returns the value (normalized, e.g. an
    int as a float) or raises the :class:`TypeError` / :class:`ValueError` that names the argument, what was
    expected and what came. Classes declare theirs in ``arg_constraints`` and check them with :func:`check_args`.

    Example:
        >>> positive.check("epsilon", 2)
        2.0
        >>> optional(nonnegative).check("target_temperature", None) is None
        True
    """

    def __init__(self, check, description: str, invalid: object) -> None:
        self._check = check
        self.description = description
        self.invalid = invalid  # a value the constraint refuses (for tests and docs)

    def check(self, name: str, value: object) -> object:
        return self._check(name, value)

    def __repr__(self) -> str:
        return f"Constraint({self.description})"


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__} {value!r}")
    return value


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    if value != value or value in (math.inf, -math.inf):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


positive = Constraint(lambda name, v: check_positive(name, v), "a finite number > 0", 0.0)
nonnegative = Constraint(lambda name, v: check_positive(name, v, allow_zero=True), "a finite number ≥ 0", -1.0)
real = Constraint(_check_real, "a finite real number", math.nan)
boolean = Constraint(_check_bool, "a bool", "yes")


def integer_at_least(low: int) -> Constraint:
    """An integer ≥ ``low``."""
    return Constraint(lambda name, v: check_int_at_least(name, v, low), f"an integer ≥ {low}", low - 1)


def one_of(*choices: object) -> Constraint:
    """One of ``choices``."""

    def check(name: str, value: object) -> object:
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}; got {value!r}")
        return value

    return Constraint(check, f"one of {choices}", object())


def optional(constraint: Constraint) -> Constraint:
    """``None`` or a value that satisfies ``constraint``."""
    return Constraint(
        lambda name, v: None if v is None else constraint.check(name, v),
        f"None or {constraint.description}",
        constraint.invalid,
    )


def check_args(owner: object, **values: object) -> dict[str, object]:
    """Check each keyword against ``owner.arg_constraints`` (the one mechanism for constructor arguments) and return
    the checked values; an argument without a declared constraint is a programming error (``KeyError``).

    Example:
        >>> class Rule:
        ...     arg_constraints = {"lambda_": positive, "two_sided": boolean}
        ...     def __init__(self, lambda_=1.0, two_sided=False):
        ...         vars(self).update(check_args(self, lambda_=lambda_, two_sided=two_sided))
        >>> Rule(2).lambda_
        2.0
        >>> Rule(two_sided="yes")
        Traceback (most recent call last):
        ...
        TypeError: two_sided must be a bool; got str 'yes'
    """
    constraints = owner.arg_constraints
    return {name: constraints[name].check(name, value) for name, value in values.items()}
