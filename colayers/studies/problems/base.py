r"""The problem contract (:class:`Problem`), :func:`make_problem`, and the helpers the generators share."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..._validation import check_int_at_least
from ...oracles.base import Oracle
from ..registry import PROBLEMS

__all__ = ["Problem", "make_problem", "polynomial_costs"]


@dataclass
class Problem:
    r"""A benchmark problem: data splits, the oracle, the default model and the sign convention.

    Attributes:
        name: the problem's name in :data:`PROBLEMS`.
        oracle: the maximization oracle; ``y = oracle(theta)``.
        x_train, theta_train, y_train: training features ``(n, *feat)``, true scores ``(n, *event)`` and
            optimal solutions ``(n, *event)``.
        x_test, theta_test, y_test: the held-out test split (final numbers of a study).
        make_model: returns a fresh default model mapping ``x (B, *feat)`` to ``theta (B, *event)``.
        event_ndim: number of trailing dimensions of ``theta`` that form one instance.
        sense: ``"min"`` if the underlying problem minimizes costs (then ``theta = -cost``), else ``"max"``.
        description: a one-line description for reports.
        params: the generator parameters (seed included), for reports.
        extras: problem-specific data beyond the contract (e.g. Warcraft's terrain codes, the knapsack's
            weights); empty for most problems.
        x_val, theta_val, y_val: the validation split (per-epoch curves and model selection of a study), or
            ``None`` when the problem has none (``n_val=0``).
        training_oracle: the oracle the methods call in training, when it differs from ``oracle`` (e.g. a
            clamped version of an oracle defined on part of the score space); ``None``: ``oracle``.
        make_direct_model: a fresh model mapping ``x`` to per-entry solution logits for the no-oracle
            ``direct`` method, when the default model is not suited to it; ``None``: an affine read-out of
            the default model.

    Example:
        >>> p = make_problem("shortest_path", seed=0, n=8, n_test=4, grid=(3, 3))
        >>> p.x_train.shape, p.theta_train.shape, p.y_train.shape, p.sense, p.event_shape
        (torch.Size([8, 5]), torch.Size([8, 12]), torch.Size([8, 12]), 'min', (12,))
    """

    name: str
    oracle: Oracle
    x_train: torch.Tensor
    theta_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    theta_test: torch.Tensor
    y_test: torch.Tensor
    make_model: Callable[[], nn.Module]
    event_ndim: int
    sense: str
    description: str
    params: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    theta_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    training_oracle: Oracle | None = None
    make_direct_model: Callable[[], nn.Module] | None = None

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one instance of ``theta``."""
        return tuple(self.theta_train.shape[self.theta_train.ndim - self.event_ndim :])

    def __repr__(self) -> str:
        return (
            f"Problem({self.name!r}, sense={self.sense!r}, n_train={self.x_train.shape[0]}, "
            f"n_val={0 if self.x_val is None else self.x_val.shape[0]}, n_test={self.x_test.shape[0]}, "
            f"feat={tuple(self.x_train.shape[1:])}, event={self.event_shape}, "
            f"device={self.x_train.device})"
        )


# ------------------------------------------------------------------------------------------------------
# shared helpers


def _check_real(name: str, value: float, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    if not (value >= low and (high is None or value <= high)):
        rng = f"[{low}, {high}]" if high is not None else f"≥ {low}"
        raise ValueError(f"{name} must be in {rng}; got {value!r}")
    return float(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    return int(seed)


def _f32(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(array)
    return t.to(device=device, dtype=torch.float32)


def polynomial_costs(x: np.ndarray, B: np.ndarray, deg: int, noise: np.ndarray) -> np.ndarray:
    r"""Elmachtoub & Grigas' polynomial map from features to costs (PyEPO's ``genData``).

    .. math::  c_{ij} = \frac{\bigl(\tfrac{1}{\sqrt p}(B x_i)_j + 3\bigr)^{\deg} + 1}{3.5^{\deg}}\;\varepsilon_{ij}

    with :math:`B \in \{0,1\}^{d\times p}`, :math:`x_i \in \mathbb{R}^p` and multiplicative noise
    :math:`\varepsilon_{ij}` (PyEPO draws it from :math:`U[1-\bar\varepsilon, 1+\bar\varepsilon]`).

    Args:
        x: features ``(n, p)``.
        B: the 0/1 matrix ``(d, p)``.
        deg: the polynomial degree (≥ 1).
        noise: the multiplicative noise ``(n, d)``.

    Returns:
        costs ``(n, d)`` (float64).

    Example:
        >>> import numpy as np
        >>> polynomial_costs(np.zeros((1, 4)), np.ones((2, 4)), 2, np.ones((1, 2)))  # (3^2 + 1) / 3.5^2
        array([[0.81632653, 0.81632653]])
    """
    p = x.shape[-1]
    return ((x @ B.T / np.sqrt(p) + 3.0) ** deg + 1.0) / 3.5**deg * noise


def _pyepo_features_costs(
    rnd: np.random.RandomState, n: int, p: int, d: int, deg: int, noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, costs and B, drawn in PyEPO's order (Bernoulli B, then Gaussian x, then uniform noise)."""
    B = rnd.binomial(1, 0.5, (d, p))
    x = rnd.normal(0.0, 1.0, (n, p))
    eps = rnd.uniform(1.0 - noise, 1.0 + noise, (n, d))
    return x, polynomial_costs(x, B, deg, eps), B


def _validation_features_costs(
    seed: int, B: np.ndarray, n_val: int, deg: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n_val`` more instances of the same generator (same B), from their own stream ``RandomState([seed, 1])``.

    The training and test instances are PyEPO's, draw for draw; the validation instances come from a second
    stream so that adding them changes neither.
    """
    rnd = np.random.RandomState([seed, 1])
    d, p = B.shape
    x = rnd.normal(0.0, 1.0, (n_val, p))
    eps = rnd.uniform(1.0 - noise, 1.0 + noise, (n_val, d))
    return x, polynomial_costs(x, B, deg, eps)


def _split(n: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        out += [t[:n].contiguous(), t[n:].contiguous()]
    return out


def _check_sizes(n: int, n_test: int, p: int, n_val: int = 0) -> None:
    check_int_at_least("n", n, 1)
    check_int_at_least("n_test", n_test, 1)
    check_int_at_least("n_val", n_val, 0)
    check_int_at_least("p", p, 1)


def _feature_values(
    seed: int, n: int, p: int, num_items: int, deg: int, noise: float, n_val: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Features and polynomial values of ``n`` instances from a fresh ``RandomState(seed)`` (PyEPO's order),
    and ``n_val`` validation instances of the same generator (``None`` if ``n_val == 0``)."""
    rnd = np.random.RandomState(seed)
    x, c, B = _pyepo_features_costs(rnd, n, p, num_items, deg, noise)
    val = _validation_features_costs(seed, B, n_val, deg, noise) if n_val else None
    return x, c, val


def _check_poly(deg: int, noise: float, what: str = "values") -> tuple[int, float]:
    deg = check_int_at_least("deg", deg, 1)
    noise = _check_real("noise", noise, 0.0, 1.0)
    if noise >= 1.0:
        raise ValueError(f"noise must be in [0, 1) so that {what} stay positive; got {noise!r}")
    return deg, noise


def _solve_and_split(
    name: str,
    oracle: Oracle,
    x: torch.Tensor,
    theta: torch.Tensor,
    n: int,
    *,
    make_model: Callable[[], nn.Module],
    event_ndim: int,
    sense: str,
    description: str,
    params: dict,
    extras: dict | None = None,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Problem:
    """Solve every instance of ``theta`` with ``oracle``; the first ``n`` instances train, the rest test.

    ``val = (x_val, theta_val)`` adds a validation split (solved by ``oracle`` too)."""
    y = oracle(theta)
    x_tr, x_te, th_tr, th_te, y_tr, y_te = _split(n, x, theta, y)
    x_val = th_val = y_val = None
    if val is not None:
        x_val, th_val = val
        y_val = oracle(th_val)
    return Problem(
        name=name,
        oracle=oracle,
        x_train=x_tr,
        theta_train=th_tr,
        y_train=y_tr,
        x_test=x_te,
        theta_test=th_te,
        y_test=y_te,
        make_model=make_model,
        event_ndim=event_ndim,
        sense=sense,
        description=description,
        params=params,
        extras={} if extras is None else extras,
        x_val=x_val,
        theta_val=th_val,
        y_val=y_val,
    )


def _grid(name: str, grid: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = grid
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (height, width) of integers ≥ 2; got {grid!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 2:
            raise ValueError(f"{name} must be a pair (height, width) of integers ≥ 2; got {grid!r}")
    return int(h), int(w)


def make_problem(name: str, *, seed: int = 0, device: str | torch.device = "cpu", **params) -> Problem:
    """Build the benchmark problem ``name`` from :data:`PROBLEMS` with generator parameters ``params``.

    Args:
        name: a key of :data:`PROBLEMS`.
        seed: the data seed (same seed, same data, on every device).
        device: where the tensors live.
        **params: the problem's generator parameters (see each builder, e.g. :func:`shortest_path_problem`).

    Returns:
        the :class:`Problem`.

    Raises:
        ValueError: unknown problem name or a bad parameter value; TypeError: an unknown parameter name.

    Example:
        >>> prob = make_problem("shortest_path", seed=0, n=20, n_test=10)
        >>> prob.name, prob.sense, tuple(prob.x_train.shape), prob.oracle.num_edges
        ('shortest_path', 'min', (20, 5), 40)
    """
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}; got {name!r}")
    builder = PROBLEMS[name]
    accepted = [k for k in inspect.signature(builder).parameters if k not in ("seed", "device")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"unknown parameter(s) {unknown} for problem {name!r}; accepted: {accepted}")
    return builder(seed=seed, device=device, **params)
