r"""Finite-difference estimators: I-MLE, adaptive I-MLE (AIMLE) and Blackbox differentiation.

All three differentiate the same perturbed mean :math:`\mu(\theta) = \mathbb E[f(\theta + \varepsilon Z)]`
that the score-function rule differentiates, by a finite difference toward a *target* score
:math:`\theta - \lambda\bar y` with the SAME noise on both sides
(:class:`~colayers.layers.rules.FiniteDifferenceRule`):

.. math::  \widehat{J^\top\bar y} = \frac1\lambda\,\frac1S\sum_{s=1}^S
           \big[f(\theta + \varepsilon Z_s) - f(\theta - \lambda\bar y_s + \varepsilon Z_s)\big].

* I-MLE (Niepert, Minervini, Franceschi, NeurIPS 2021): ε > 0, Sum-of-Gamma noise, λ fixed;
* AIMLE (Minervini, Franceschi, Niepert, AAAI 2023): λ = β‖θ‖/‖ȳ‖ per instance with β adapted online
  (:class:`~colayers.layers.rules.AdaptiveLambda`);
* Blackbox (Vlastelica et al., ICLR 2020): ε = 0, one sample.

Each is :class:`~colayers.layers.core.Perturbed` with an :class:`~colayers.perturb.Additive` perturbation
(ε = 0 for Blackbox) and a :class:`~colayers.layers.rules.FiniteDifferenceRule`.

Sign check (maximization): with :math:`\theta' = \theta - \lambda\bar y`, a loss that prefers the solution
of :math:`\theta'` gets the gradient :math:`(f(\theta) - f(\theta'))/\lambda`, and a descent step
:math:`\theta \leftarrow \theta - \alpha\,\nabla` moves θ toward θ' (Vlastelica et al. write the same rule
for minimization with :math:`w' = w + \lambda\bar y`; here θ = −w).
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import boolean, check_args, nonnegative, one_of
from ..oracles.base import Oracle
from ..perturb import Additive, Noise, SumOfGamma
from .core import Perturbed
from .rules import AdaptiveLambda, FiniteDifferenceRule

__all__ = ["IMLE", "AIMLE", "Blackbox"]


def _additive(oracle: Oracle, noise: Noise | None, epsilon: float, k: float | None) -> Additive:
    """I-MLE's perturbation: ``Additive(noise, epsilon)``, by default Sum-of-Gamma(k) with ``k = oracle.k`` (top-k)
    or the ``k`` argument (default 1)."""
    if noise is None:
        noise = SumOfGamma(k=getattr(oracle, "k", 1) if k is None else k)
    elif not isinstance(noise, Noise):
        raise TypeError(f"noise must be a colayers.perturb.Noise or None; got {type(noise).__name__}")
    return Additive(noise, epsilon)


class _FiniteDifferenceSettings:
    """``lambda_`` and ``two_sided`` read from the layer's :class:`FiniteDifferenceRule`."""

    rule: FiniteDifferenceRule

    @property
    def lambda_(self) -> float:
        return self.rule.lambda_

    @property
    def two_sided(self) -> bool:
        return self.rule.two_sided


class IMLE(_FiniteDifferenceSettings, Perturbed):
    r"""Implicit maximum-likelihood estimation (I-MLE; Niepert, Minervini, Franceschi, NeurIPS 2021).

    ``Perturbed(oracle, Additive(noise, epsilon), rule=FiniteDifferenceRule(lambda_, ...))``. Forward: the mean
    of the hard samples :math:`y_s = f(\theta + \varepsilon Z_s)` (``output="mean"``, shape ``(*batch, *event)``)
    or the samples themselves (``output="samples"``, ``(S, *batch, *event)``). Backward, with the noise stored
    from the forward:

    .. math::  \nabla_\theta \approx \frac1\lambda\frac1S\sum_s \big[f(\theta + \varepsilon Z_s)
               - f(\alpha\theta - \lambda\bar y_s + \tau' Z_s)\big]

    (α = 1 and τ' = ε by default), or, with ``two_sided=True``, the central difference
    :math:`\frac1\lambda\frac1S\sum_s [f(\alpha\theta + \tfrac\lambda2\bar y_s + \tau' Z_s) -
    f(\alpha\theta - \tfrac\lambda2\bar y_s + \tau' Z_s)]` (one more oracle solve per sample, no bias
    of order λ). With ``output="mean"`` every sample uses the gradient of the mean, ȳ: the rule is then
    the finite difference :math:`(\hat\mu(\theta) - \hat\mu(\theta - \lambda\bar y))/\lambda` of the
    perturbed mean. ``num_target_samples = M`` averages M target solutions per sample (the first with
    :math:`Z_s`, the others with fresh noise drawn in the forward). The target instances go to the oracle
    in ONE batched call. See :class:`~colayers.layers.rules.FiniteDifferenceRule`.

    Default noise: Sum-of-Gamma(k) with ``k = oracle.k`` when the oracle has a ``k`` (top-k), else the
    ``k`` argument (default 1, where SoG(1) approximates a Gumbel). Sum-of-Gamma noise makes the sum over a
    k-subset Gumbel-distributed, which is I-MLE's choice for k-subset distributions.

    Args:
        oracle: the maximization oracle (solution shape = θ's event shape).
        noise: the law of Z (default Sum-of-Gamma as above).
        epsilon: the noise scale ε ≥ 0 (the input noise temperature; ε = 0 without a ``target_temperature`` is
            :class:`Blackbox`, with one the target side alone is perturbed).
        lambda_: the finite-difference step λ > 0.
        num_samples: S ≥ 1.
        two_sided: use the central difference.
        output: ``"mean"`` (default) or ``"samples"``.
        alpha: the weight α of θ in the target score αθ − λȳ.
        target_temperature: τ', the noise temperature of the target side (``None``: ε).
        num_target_samples: M ≥ 1 target solutions per sample.
        divide_by_lambda: divide the difference by λ (``False``: torch-imle's unscaled gradient).
        k: Sum-of-Gamma's k (a real number > 0) when the oracle has no ``k``; ``None`` means 1.
        seed, validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = IMLE(TopKSubset(2), epsilon=1.0, lambda_=5.0, num_samples=3, output="samples", seed=0)
        >>> theta = torch.tensor([[3.0, 0.0, 2.0, 1.0]], requires_grad=True)
        >>> y = layer(theta)
        >>> y.shape, bool((y.sum(-1) == 2).all())
        (torch.Size([3, 1, 4]), True)
        >>> ((y - torch.tensor([0.0, 1.0, 0.0, 1.0])) ** 2).sum().backward()
        >>> theta.grad.shape
        torch.Size([1, 4])
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        noise: Noise | None = None,
        epsilon: float = 1.0,
        lambda_: float = 10.0,
        num_samples: int = 1,
        two_sided: bool = False,
        output: str = "mean",
        alpha: float = 1.0,
        target_temperature: float | None = None,
        num_target_samples: int = 1,
        divide_by_lambda: bool = True,
        k: float | None = None,
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        rule = FiniteDifferenceRule(
            lambda_,
            two_sided=two_sided,
            alpha=alpha,
            target_temperature=target_temperature,
            num_target_samples=num_target_samples,
            divide_by_lambda=divide_by_lambda,
        )
        super().__init__(oracle, _additive(oracle, noise, epsilon, k), rule=rule, num_samples=num_samples,
                         output=output, seed=seed, validate_args=validate_args)


class Blackbox(_FiniteDifferenceSettings, Perturbed):
    r"""Blackbox differentiation of combinatorial solvers (DBB; Vlastelica, Paulus, Musil, Martius, Rolínek, ICLR 2020).

    ``Perturbed(oracle, Additive(epsilon=0), rule=FiniteDifferenceRule(lambda_), num_samples=1)``: :class:`IMLE`
    with no noise and one sample. Forward :math:`f(\theta)`, backward

    .. math::  \nabla_\theta = \frac{f(\theta) - f(\theta - \lambda\bar y)}{\lambda},

    the gradient of a piecewise-linear interpolation of the loss (maximization convention; the paper's
    minimization form :math:`-(y - y_\lambda)/\lambda` with :math:`w' = w + \lambda\bar y` is the same rule
    for θ = −w). Deterministic: it takes no ``seed``, ``generator``, ``epsilon``, ``num_samples`` or
    ``output`` (a TypeError says so); its :meth:`distribution` is the Dirac at f(θ).

    Args:
        oracle: the maximization oracle.
        lambda_: the interpolation step λ > 0 (the paper uses 10–20).
        two_sided: the central difference
            :math:`(f(\theta + \tfrac\lambda2\bar y) - f(\theta - \tfrac\lambda2\bar y))/\lambda`.
        validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([2.0, 1.0, 0.0], requires_grad=True)
        >>> y = Blackbox(ArgmaxOneHot(), lambda_=5.0)(theta)
        >>> ((y - torch.tensor([0.0, 1.0, 0.0])) ** 2).sum().backward()
        >>> theta.grad  # (f(theta) - f(theta - 5 dy)) / 5 with dy = 2 (y - target)
        tensor([ 0.2000, -0.2000,  0.0000])
    """

    def __init__(
        self, oracle: Oracle, *, lambda_: float = 10.0, two_sided: bool = False, validate_args: bool | None = None
    ) -> None:
        rule = FiniteDifferenceRule(lambda_, two_sided=two_sided)
        super().__init__(oracle, Additive(epsilon=0.0), rule=rule, num_samples=1, validate_args=validate_args)


class AIMLE(IMLE):
    r"""Adaptive I-MLE (AIMLE; Minervini, Franceschi, Niepert, *Adaptive Perturbation-Based Gradient
    Estimation for Discrete Latent Variable Models*, AAAI 2023).

    :class:`IMLE` whose step is :math:`\lambda = \beta\,\|\theta\|/\|\bar y\|`, with β adapted online: after each
    backward the per-sample number of non-zero gradient entries is averaged, smoothed by an exponential
    moving average (``decay``), and β moves by ``+step`` if this running count is below ``target`` (too sparse
    a gradient: take a larger step), by ``-step`` otherwise (plus ``momentum`` times the previous move),
    clamped at β ≥ 0. β only adapts in training mode and with ``adapt=True``; with β frozen AIMLE is IMLE
    with that λ. A zero λ (β, θ or ȳ zero) perturbs nothing: the target score is θ itself and that sample's
    gradient is exactly 0 (the zero difference is divided by 1, not 0), as in the reference implementation
    (torch-adaptive-imle), so that β → 0 can bring the running count down to any target. An empty batch gives
    an empty gradient and leaves the state unchanged.

    ``lambda_per`` says where the norms are taken (:class:`~colayers.layers.rules.AdaptiveLambda`):

    * ``"instance"`` (default): one λ per sample and instance, :math:`\lambda_{s,b} = \beta\|\theta_b\|/
      \|\bar y_{s,b}\|` (norms over the event), so that an instance's step does not depend on the rest of the
      batch;
    * ``"batch"``: one λ for the whole batch, :math:`\beta\|\theta\otimes 1_S\|/\|\bar y\|` over every entry, as
      torch-adaptive-imle's ``aimle`` and PyEPO's ``adaptiveImplicitMLE`` compute it.

    Both peers' symmetric form (``symmetric_perturbation=True``, ``two_sides=True``) solves at θ ± λȳ and
    divides by 2λ; colayers' ``two_sided=True`` solves at θ ± λȳ/2 and divides by λ, so it matches with β (and
    ``step``) doubled.

    Its state is explicit and saved by ``state_dict``: buffers ``beta``, ``target``, ``running_nnz``,
    ``previous_update``. Device and dtype rule: the state lives on the module's device (``.to(device)`` moves
    it like any buffer) and is always float64 (``.to(dtype)``, ``.half()``, ``.float()`` leave its dtype and
    values unchanged: a bfloat16 β could not move by a step of 1e-3). θ may be on another device than the
    state: β is copied to θ's device (and dtype) to form λ, and the update's statistic, one scalar, is
    moved to the state's device, so the layer works whether or not it was moved with the model; moving it
    saves those two scalar copies per call.

    Args:
        oracle, noise, epsilon, num_samples, two_sided, output, alpha, target_temperature, num_target_samples,
            k, seed, validate_args: see :class:`IMLE`.
        beta: initial β ≥ 0.
        lambda_per: ``"instance"`` (default) or ``"batch"``, as above.
        target: the target mean number of non-zero gradient entries per sample.
        step: β's step size; momentum: momentum of β's moves; decay: the moving average's decay.
        adapt: adapt β (set to ``False`` to freeze it).

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = AIMLE(TopKSubset(2), num_samples=2, output="samples", seed=0)
        >>> theta = torch.tensor([[3.0, 0.0, 2.0, 1.0]], requires_grad=True)
        >>> layer(theta)[:, 0, 1].sum().backward()
        >>> sorted(layer.state_dict())
        ['beta', 'previous_update', 'running_nnz', 'target']
        >>> bool(layer.beta != 1.0)  # beta moved after one backward
        True
    """

    arg_constraints = {
        "beta": nonnegative,
        "target": nonnegative,
        "adapt": boolean,
        "lambda_per": one_of("instance", "batch"),
    }

    def __init__(
        self,
        oracle: Oracle,
        *,
        noise: Noise | None = None,
        epsilon: float = 1.0,
        num_samples: int = 1,
        two_sided: bool = False,
        output: str = "mean",
        alpha: float = 1.0,
        target_temperature: float | None = None,
        num_target_samples: int = 1,
        beta: float = 1.0,
        target: float = 1.0,
        step: float = 1e-3,
        momentum: float = 0.0,
        decay: float = 0.9,
        adapt: bool = True,
        lambda_per: str = "instance",
        k: float | None = None,
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        beta, target, adapt, lambda_per = check_args(
            self, beta=beta, target=target, adapt=adapt, lambda_per=lambda_per
        ).values()
        rule = FiniteDifferenceRule(
            AdaptiveLambda(step, momentum, decay, per=lambda_per),
            two_sided=two_sided,
            alpha=alpha,
            target_temperature=target_temperature,
            num_target_samples=num_target_samples,
        )
        Perturbed.__init__(self, oracle, _additive(oracle, noise, epsilon, k), rule=rule, num_samples=num_samples,
                           output=output, seed=seed, validate_args=validate_args)
        self.adapt = adapt
        self.register_buffer("beta", torch.tensor(beta, dtype=torch.float64))
        self.register_buffer("target", torch.tensor(target, dtype=torch.float64))
        self.register_buffer("running_nnz", torch.tensor(target, dtype=torch.float64))
        self.register_buffer("previous_update", torch.tensor(0.0, dtype=torch.float64))

    _STATE = ("beta", "target", "running_nnz", "previous_update")

    @property
    def lambda_(self) -> None:
        return None  # adaptive

    @property
    def lambda_per(self) -> str:
        return self.rule.lambda_.per

    @property
    def step(self) -> float:
        return self.rule.lambda_.step

    @property
    def momentum(self) -> float:
        return self.rule.lambda_.momentum

    @property
    def decay(self) -> float:
        return self.rule.lambda_.decay

    def _apply(self, fn, recurse=True):
        # keep the state float64 with its exact values whatever fn casts to; follow fn's device
        saved = {name: self._buffers[name] for name in self._STATE if name in self._buffers}
        super()._apply(fn, recurse)
        for name, old in saved.items():
            new = self._buffers[name]
            if new.dtype != torch.float64:
                self._buffers[name] = old.to(device=new.device, dtype=torch.float64)
        return self

    def rule_state(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "target": self.target,
            "running_nnz": self.running_nnz,
            "previous_update": self.previous_update,
            "adapt": self.adapt,
        }

    def extra_repr(self) -> str:
        state = f"beta={float(self.beta):.4g}, target={float(self.target)}, adapt={self.adapt}"
        return f"{super().extra_repr()}, {state}, lambda_per={self.lambda_per!r}"
