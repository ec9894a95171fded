r"""Training methods compared by a study: how a model's scores :math:`\theta` become a training loss.

A *method* turns the model output :math:`\theta` (maximization convention, ``(B, *event)``) and a batch of
targets — the true scores :math:`\bar\theta` and the optimal solutions :math:`\bar y = f(\bar\theta)` — into a
scalar loss, and says how to decode a prediction :math:`\hat y` from :math:`\theta` at evaluation time
(the oracle :math:`f(\theta)` for every method but ``direct``).

* ``spo+`` — SPO+ :math:`\max_y\langle 2\theta-\bar\theta, y\rangle - \langle 2\theta-\bar\theta, \bar y\rangle`
  (hyper-parameter ``alpha``);
* ``fy`` — perturbed Fenchel-Young :math:`\Omega^*_\varepsilon(\theta) + \Omega(\bar y) - \langle\theta,\bar y\rangle`
  (``epsilon``, ``num_samples``, ``multiplicative``: multiplicative noise keeps θ's sign);
* ``imle`` — a task loss of I-MLE samples :math:`f(\theta+\varepsilon Z)` (``epsilon``, ``lambda_``,
  ``num_samples``, ``task_loss``);
* ``aimle`` — the same with an adaptive λ (AIMLE; ``epsilon``, ``num_samples``, ``task_loss``);
* ``blackbox`` — a task loss of :math:`f(\theta)` with the blackbox-differentiation VJP (``lambda_``, ``task_loss``);
* ``identity`` — a task loss of :math:`f(\theta)` with the straight-through VJP (``task_loss``);
* ``two-stage`` — :math:`\|\theta - \bar\theta\|^2` (mean squared error), then solve;
* ``direct`` — binary cross-entropy of per-entry logits to :math:`\bar y`, no oracle in training; decoded by
  the oracle at the predicted probabilities (``decode="oracle"``) or by thresholding (``"threshold"``).

Task losses for the estimator methods (``task_loss``):

* ``"regret"`` — the decision-focused regret
  :math:`\langle\bar\theta, \bar y\rangle - \langle\bar\theta, \hat y\rangle`,
  whose gradient with respect to :math:`\hat y` is :math:`-\bar\theta` (needs the true scores);
* ``"hamming"`` — :math:`\langle \hat y, 1 - 2\bar y\rangle + \langle\bar y, 1\rangle = \|\hat y - \bar y\|_1` for 0/1
  vectors (needs the optimal solutions only: "trained from paths").

Oracles defined on part of the score space: the Warcraft vertex-weighted path oracle needs θ < 0 (positive
tile costs), which perturbed scores and finite-difference targets leave; the methods that call the oracle in
training then use ``GridVertexShortestPath(h, w, min_cost=1e-3)`` (tile costs below 10⁻³ raised to 10⁻³,
objective unclamped), and evaluation keeps the exact oracle (:func:`_training_oracle`).

Both are summed over the event and averaged over the batch (and the samples), as in the blackbox paper's
Hamming loss, so that the finite-difference step :math:`\lambda\,\mathrm{d}y` of I-MLE and blackbox has the
scale λ/B.

Example:
    >>> import torch
    >>> from colayers.studies.methods import METHODS, method_defaults
    >>> sorted(METHODS)
    ['aimle', 'blackbox', 'direct', 'fy', 'identity', 'imle', 'spo+', 'two-stage']
    >>> method_defaults("imle")["task_loss"]
    'regret'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from colayers.oracles.counting import CountingOracle

__all__ = ["METHODS", "MethodInfo", "TrainingObjective", "make_method", "method_defaults", "TASK_LOSSES"]

TASK_LOSSES = ("regret", "hamming")


class TrainingObjective(nn.Module):
    """A method instantiated for one trial: ``loss(theta, theta_true, y_true)`` and ``predict(theta)``.

    Subclasses hold the layer or loss module (which may carry state, e.g. AIMLE's adaptive λ).

    Args:
        oracle: the (counting) oracle of the problem, maximization convention.
        event_ndim: number of trailing event dimensions of θ.
    """

    uses_oracle_in_training: bool = True

    def __init__(self, oracle: Any, event_ndim: int) -> None:
        super().__init__()
        self.oracle = oracle
        self.event_ndim = event_ndim

    def loss(self, theta: torch.Tensor, theta_true: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def wrap_model(self, model: nn.Module, problem: Any = None) -> nn.Module:
        """The module trained by this method (default: the problem's model unchanged)."""
        return model

    @torch.no_grad()
    def predict(self, theta: torch.Tensor) -> torch.Tensor:
        """Decode a solution from the model output (default: the oracle at θ)."""
        return self.oracle(theta)


def _task_loss(kind: str, y_hat: torch.Tensor, theta_true: torch.Tensor, y_true: torch.Tensor, event_ndim: int):
    """Mean task loss of (possibly sample-stacked) solutions ``y_hat`` (S, B, *event) or (B, *event)."""
    dims = tuple(range(-event_ndim, 0))
    if kind == "regret":
        # <θ̄, ȳ> - <θ̄, ŷ>: the constant term keeps the value a regret (≥ 0) without changing the gradient.
        return ((theta_true * y_true).sum(dim=dims) - (theta_true * y_hat).sum(dim=dims)).mean()
    # Hamming: ||ŷ - ȳ||_1 per instance for 0/1 vectors, written linearly in ŷ so that ŷ may be a mean of samples;
    # summed over the event and averaged over the batch like the regret (the finite-difference step λ·dy of
    # I-MLE and blackbox then does not shrink with the event size).
    return (y_hat * (1 - 2 * y_true) + y_true).sum(dim=dims).mean()


def _kwargs_for(cls: Any, **kwargs: Any) -> dict[str, Any]:
    """Keep the keyword arguments that ``cls`` accepts (layers' signatures differ slightly)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in sig.parameters}


class _SPOPlus(TrainingObjective):
    def __init__(self, oracle, event_ndim, *, alpha: float, seed: int) -> None:
        super().__init__(oracle, event_ndim)
        from colayers.losses import SPOPlusLoss

        self.fn = SPOPlusLoss(_training_oracle(oracle), alpha=alpha)

    def loss(self, theta, theta_true, y_true):
        return self.fn(theta, theta_true, y_true)


class _FenchelYoung(TrainingObjective):
    def __init__(self, oracle, event_ndim, *, epsilon: float, num_samples: int, multiplicative: bool, seed: int):
        super().__init__(oracle, event_ndim)
        from colayers.layers import PerturbedAdditive, PerturbedMultiplicative
        from colayers.losses import FenchelYoungLoss

        cls = PerturbedMultiplicative if multiplicative else PerturbedAdditive
        self.layer = cls(_training_oracle(oracle), epsilon=epsilon, num_samples=num_samples, seed=seed)
        self.fn = FenchelYoungLoss(self.layer)

    def loss(self, theta, theta_true, y_true):
        return self.fn(theta, y_true)


class _TaskLossLayer(TrainingObjective):
    """A differentiable layer followed by a task loss (regret or Hamming)."""

    def __init__(self, oracle, event_ndim, layer: nn.Module, task_loss: str) -> None:
        super().__init__(oracle, event_ndim)
        self.layer = layer
        self.task_loss = task_loss

    def loss(self, theta, theta_true, y_true):
        return _task_loss(self.task_loss, self.layer(theta), theta_true, y_true, self.event_ndim)


class _TwoStage(TrainingObjective):
    uses_oracle_in_training = False

    def loss(self, theta, theta_true, y_true):
        return torch.nn.functional.mse_loss(theta, theta_true)


class _DirectHead(nn.Module):
    """Affine read-out ``a * model(x) + b`` giving per-entry path logits from the problem's model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.model(x) + self.bias


class _Direct(TrainingObjective):
    uses_oracle_in_training = False

    def __init__(self, oracle, event_ndim, *, decode: str, seed: int) -> None:
        super().__init__(oracle, event_ndim)
        self.decode = decode

    def wrap_model(self, model, problem=None):
        # A problem may provide a dedicated no-oracle model (Warcraft: DirectPathCNN, images to path logits);
        # elsewhere an affine read-out of the default model gives the logits.
        extras = getattr(problem, "extras", None) or {}
        if "make_direct_model" in extras:
            return extras["make_direct_model"]()
        return _DirectHead(model)

    def loss(self, theta, theta_true, y_true):
        return torch.nn.functional.binary_cross_entropy_with_logits(theta, y_true)

    @torch.no_grad()
    def predict(self, theta):
        prob = torch.sigmoid(theta)
        if self.decode == "threshold":
            return (prob > 0.5).to(theta.dtype)
        # "oracle": the feasible solution with the largest total predicted probability, found by the oracle at
        # scores p - 1 - 1e-3 < 0 (tile costs 1 + 1e-3 - p > 0, as vertex-weighted path oracles require).
        return self.oracle(prob - 1.0 - 1e-3)


#: Tile-cost floor of the training oracle for the vertex-weighted path oracle (see :func:`_training_oracle`).
MIN_TILE_COST = 1e-3


def _training_oracle(oracle, min_cost: float = MIN_TILE_COST):
    r"""The oracle a method trains with: ``oracle`` itself, except for the vertex-weighted path oracle.

    :class:`~colayers.oracles.GridVertexShortestPath` (Warcraft) needs tile costs > 0 (θ < 0), and perturbed
    scores θ + εZ or finite-difference targets θ − λ·dy leave that domain; training then uses the same oracle
    built with ``min_cost`` (tile costs below ``min_cost`` raised to it: :math:`f(\min(\theta, -c))`), whose
    objective is still unclamped. Evaluation keeps the problem's exact oracle. Calls are counted on the
    runner's counter when ``oracle`` is a :class:`~colayers.oracles.CountingOracle`.
    """
    from colayers.oracles.grid import GridVertexShortestPath

    counter = oracle if isinstance(oracle, CountingOracle) else None
    inner = oracle.oracle if counter is not None else oracle
    if not isinstance(inner, GridVertexShortestPath) or inner.min_cost is not None:
        return oracle
    clamped = GridVertexShortestPath(inner.height, inner.width, min_cost=min_cost)
    return clamped if counter is None else CountingOracle(clamped, counter=counter)


def _build_spo(oracle, event_ndim, seed, *, alpha):
    return _SPOPlus(oracle, event_ndim, alpha=alpha, seed=seed)


def _build_fy(oracle, event_ndim, seed, *, epsilon, num_samples, multiplicative):
    return _FenchelYoung(
        oracle, event_ndim, epsilon=epsilon, num_samples=num_samples, multiplicative=multiplicative, seed=seed
    )


def _build_imle(oracle, event_ndim, seed, *, epsilon, lambda_, num_samples, task_loss):
    from colayers.layers import IMLE

    # the task loss sees the S hard samples (I-MLE's forward), as it always has
    kw = _kwargs_for(IMLE, epsilon=epsilon, lambda_=lambda_, num_samples=num_samples, output="samples", seed=seed)
    return _TaskLossLayer(oracle, event_ndim, IMLE(_training_oracle(oracle), **kw), task_loss)


def _build_aimle(oracle, event_ndim, seed, *, epsilon, num_samples, task_loss):
    from colayers.layers import AIMLE

    kw = _kwargs_for(AIMLE, epsilon=epsilon, num_samples=num_samples, output="samples", seed=seed)
    return _TaskLossLayer(oracle, event_ndim, AIMLE(_training_oracle(oracle), **kw), task_loss)


def _build_blackbox(oracle, event_ndim, seed, *, lambda_, task_loss):
    from colayers.layers import Blackbox

    return _TaskLossLayer(oracle, event_ndim, Blackbox(_training_oracle(oracle), lambda_=lambda_), task_loss)


def _build_identity(oracle, event_ndim, seed, *, task_loss):
    from colayers.layers import IdentityRelaxation

    return _TaskLossLayer(oracle, event_ndim, IdentityRelaxation(_training_oracle(oracle)), task_loss)


def _build_two_stage(oracle, event_ndim, seed):
    return _TwoStage(oracle, event_ndim)


def _build_direct(oracle, event_ndim, seed, *, decode):
    return _Direct(oracle, event_ndim, decode=decode, seed=seed)


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its name, a one-line summary, its hyper-parameter defaults and its builder.

    ``defaults`` lists every accepted hyper-parameter; a study may override any of them (and ``lr``, the
    method's own learning rate, which defaults to the study's).
    """

    name: str
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    build: Callable[..., TrainingObjective] | None = None


METHODS: dict[str, MethodInfo] = {
    "spo+": MethodInfo(
        "spo+", "SPO+ loss (Elmachtoub & Grigas 2022); needs true scores", {"alpha": 2.0}, _build_spo
    ),
    "fy": MethodInfo(
        "fy",
        "Fenchel-Young loss of a perturbed optimizer (Berthet et al. 2020); trained from solutions",
        {"epsilon": 1.0, "num_samples": 10, "multiplicative": False},
        _build_fy,
    ),
    "imle": MethodInfo(
        "imle",
        "I-MLE (Niepert et al. 2021) with Sum-of-Gamma noise and a task loss",
        {"epsilon": 1.0, "lambda_": 10.0, "num_samples": 1, "task_loss": "regret"},
        _build_imle,
    ),
    "aimle": MethodInfo(
        "aimle",
        "Adaptive I-MLE (Minervini et al. 2023): lambda adapted during training",
        {"epsilon": 1.0, "num_samples": 1, "task_loss": "regret"},
        _build_aimle,
    ),
    "blackbox": MethodInfo(
        "blackbox",
        "Blackbox differentiation (Vlastelica et al. 2020) with a task loss",
        {"lambda_": 10.0, "task_loss": "regret"},
        _build_blackbox,
    ),
    "identity": MethodInfo(
        "identity", "Straight-through (identity Jacobian) with a task loss", {"task_loss": "regret"}, _build_identity
    ),
    "two-stage": MethodInfo(
        "two-stage", "Regress the true scores by mean squared error, then solve", {}, _build_two_stage
    ),
    "direct": MethodInfo(
        "direct",
        "Predict the solution entries directly with binary cross-entropy (no oracle in training)",
        {"decode": "oracle"},
        _build_direct,
    ),
}


def method_defaults(name: str) -> dict[str, Any]:
    """The default hyper-parameters of method ``name`` (a copy)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {name!r}")
    return dict(METHODS[name].defaults)


def check_method_params(name: str, params: dict[str, Any], where: str = "method") -> dict[str, Any]:
    """Validate ``params`` for method ``name``; return the defaults updated by them (``lr`` passes through).

    Raises:
        ValueError: unknown method, unknown hyper-parameter or a bad value; the message names ``where``.
    """
    if name not in METHODS:
        raise ValueError(f"{where}.name must be one of {sorted(METHODS)}; got {name!r}")
    full = method_defaults(name)
    for key, value in params.items():
        if key == "lr":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{where}.params.lr must be a number > 0; got {value!r}")
            continue
        if key not in full:
            raise ValueError(
                f"{where}.params has unknown hyper-parameter {key!r} for method {name!r}; "
                f"accepted: {sorted(full) + ['lr']}"
            )
        default = full[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}.params.{key} must be true or false; got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}.params.{key} must be an integer ≥ 1; got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{where}.params.{key} must be a number > 0; got {value!r}")
            value = float(value)
        elif key == "task_loss" and value not in TASK_LOSSES:
            raise ValueError(f"{where}.params.task_loss must be one of {list(TASK_LOSSES)}; got {value!r}")
        elif key == "decode" and value not in ("oracle", "threshold"):
            raise ValueError(f"{where}.params.decode must be 'oracle' or 'threshold'; got {value!r}")
        full[key] = value
    return full


def make_method(name: str, oracle: Any, event_ndim: int, *, seed: int = 0, **params: Any) -> TrainingObjective:
    """Instantiate method ``name`` on ``oracle`` for one trial.

    Args:
        name: a key of :data:`METHODS`.
        oracle: the problem's maximization oracle (the runner passes a counting wrapper).
        event_ndim: number of event dimensions of θ.
        seed: seed of the layer-owned random generator (perturbed, I-MLE layers).
        **params: hyper-parameters overriding :func:`method_defaults` (``lr`` is ignored here).

    Returns:
        a :class:`TrainingObjective` with ``loss(theta, theta_true, y_true)`` and ``predict(theta)``.

    Example:
        >>> import torch
        >>> from colayers.studies.methods import make_method
        >>> from colayers import ArgmaxOneHot
        >>> m = make_method("two-stage", ArgmaxOneHot(), 1)
        >>> float(m.loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 3)))
        1.0
    """
    full = check_method_params(name, params)
    full.pop("lr", None)
    info = METHODS[name]
    return info.build(oracle, event_ndim, seed, **{k: full[k] for k in info.defaults})
