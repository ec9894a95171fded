r"""Finite-difference estimators: I-MLE, adaptive I-MLE (AIMLE) and Blackbox differentiation.

All three differentiate the same perturbed mean :math:`\mu(\theta) = \mathbb E[f(\theta + \varepsilon Z)]`
that the score-function rule differentiates, by a finite difference toward a *target* score
:math:`\theta - \lambda\bar y` with the SAME noise on both sides
(:func:`~colayers.layers.core.finite_difference_vjp`):

.. math::  \widehat{J^\top\bar y} = \frac1\lambda\,\frac1S\sum_{s=1}^S
           \big[f(\theta + \varepsilon Z_s) - f(\theta - \lambda\bar y_s + \varepsilon Z_s)\big].

* I-MLE (Niepert, Minervini, Franceschi, NeurIPS 2021): ε > 0, Sum-of-Gamma noise, λ fixed;
* AIMLE (Minervini, Franceschi, Niepert, AAAI 2023): λ = β‖θ‖/‖ȳ‖ per instance with β adapted online;
* Blackbox (Vlastelica et al., ICLR 2020): ε = 0, one sample — :class:`Blackbox` IS :class:`IMLE`
  with ``epsilon=0``.

Sign check (maximization): with :math:`\theta' = \theta - \lambda\bar y`, a loss that prefers the solution
of :math:`\theta'` gets the gradient :math:`(f(\theta) - f(\theta'))/\lambda`, and a descent step
:math:`\theta \leftarrow \theta - \alpha\,\nabla` moves θ toward θ' (Vlastelica et al. write the same rule
for minimization with :math:`w' = w + \lambda\bar y`; here θ = −w).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import check_int_at_least, check_positive
from ..oracles.base import Oracle
from ..perturb import Noise, SumOfGamma
from .core import OracleLayer, PositionalFunction, _unsqueeze_to, finite_difference_vjp

__all__ = ["IMLE", "AIMLE", "Blackbox", "FiniteDifference", "FiniteDifferenceRule"]


@dataclass
class FiniteDifferenceRule:
    """The plain (non-module) settings the finite-difference backward needs.

    Attributes:
        oracle: the oracle called (once, batched) in the backward.
        epsilon: the noise scale ε ≥ 0.
        lambda_: a fixed λ > 0, or ``None`` for the adaptive λ = β‖θ‖/‖ȳ‖ (then ``state`` holds β).
        two_sided: central difference :math:`f(\\theta + \\tfrac\\lambda2\\bar y + \\varepsilon Z) -
            f(\\theta - \\tfrac\\lambda2\\bar y + \\varepsilon Z)`.
        return_mean: the forward returned the mean over samples (ȳ is then the same for every sample).
        state: AIMLE's buffers (``beta``, ``target``, ``running_nnz``, ``previous_update``) and settings,
            updated in place after each backward when ``adapt`` is true.
    """

    oracle: Oracle
    epsilon: float
    lambda_: float | None
    two_sided: bool = False
    return_mean: bool = False
    adapt: bool = False
    state: dict[str, Any] = field(default_factory=dict)

    def lambdas(self, theta: torch.Tensor, dy: torch.Tensor, event_ndim: int) -> float | torch.Tensor:
        """λ, or AIMLE's per-(sample, instance) λ = β‖θ‖/‖ȳ_s‖ ≥ 0 of shape ``(S, *batch)`` (0 allowed)."""
        if self.lambda_ is not None:
            return self.lambda_
        dims = tuple(range(-event_ndim, 0))
        norm_theta = torch.linalg.vector_norm(theta, dim=dims).unsqueeze(0)
        norm_dy = torch.linalg.vector_norm(dy, dim=dims)
        beta = self.state["beta"].to(device=theta.device, dtype=theta.dtype)  # state may live on another device
        # the raw lambda (0 when beta, theta or dy is 0): the target theta - lambda * dy is then theta itself and the
        # difference is exactly zero (torch-adaptive-imle's AdaptiveTargetDistribution); only the divisor of that
        # zero difference is replaced by 1 (see FiniteDifference.backward)
        return beta * norm_theta / torch.where(norm_dy > 0, norm_dy, 1.0)

    def update(self, diff: torch.Tensor, batch_ndim: int) -> None:
        """AIMLE's online update of β from the per-sample number of non-zero gradient entries.

        The count is reduced on ``diff``'s device (an exact int64 total), then that one scalar is moved to the
        state's device; the rest is tensor arithmetic there, with no read-back to Python.
        """
        st = self.state
        running = st["running_nnz"]
        per_sample = diff.reshape(diff.shape[: 1 + batch_ndim] + (-1,)).ne(0).sum(-1)
        total = per_sample.sum().to(device=running.device, dtype=running.dtype)
        nnz = total / max(per_sample.numel(), 1)
        decay = st["decay"]
        running.mul_(decay).add_((1.0 - decay) * nnz)
        step = (1.0 - 2.0 * (running >= st["target"]).to(running.dtype)) * st["step"]  # +step below target, else -step
        upd = st["momentum"] * st["previous_update"] + step
        st["beta"].add_(upd).clamp_(min=0.0)
        st["previous_update"].copy_(upd)


class FiniteDifference(PositionalFunction):
    r"""Hard samples forward; finite difference toward θ − λȳ (same noise) backward.

    ``apply(theta, atoms, noise, rule)`` where ``atoms = oracle(theta + epsilon * noise)`` were computed in
    the forward (``noise`` may be ``None`` when ε = 0) and ``rule`` is a :class:`FiniteDifferenceRule`.
    The backward makes ONE batched oracle call (S·B target instances, or 2·S·B for the central difference).
    """

    @staticmethod
    def forward(theta, atoms, noise, rule):
        if rule.return_mean:
            return atoms[0].clone() if atoms.shape[0] == 1 else atoms.mean(0)  # (the mean of one sample is itself)
        return atoms.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, atoms, noise, rule = inputs
        ctx.has_noise = noise is not None
        ctx.save_for_backward(theta, atoms, *((noise,) if noise is not None else ()))
        ctx.rule = rule

    @staticmethod
    def backward(ctx, grad_output):
        rule: FiniteDifferenceRule = ctx.rule
        theta, atoms, *rest = ctx.saved_tensors
        theta = theta.detach()
        s = atoms.shape[0]
        event_ndim = rule.oracle.event_ndim
        dy = grad_output.unsqueeze(0).expand_as(atoms) if rule.return_mean else grad_output
        base = theta.unsqueeze(0) + rule.epsilon * rest[0] if ctx.has_noise else theta.unsqueeze(0).expand_as(atoms)
        lam = rule.lambdas(theta, dy, event_ndim)
        lam_e = _unsqueeze_to(lam, dy.ndim) if isinstance(lam, torch.Tensor) else lam
        with torch.no_grad():
            if rule.two_sided:
                both = rule.oracle(torch.cat([base + 0.5 * lam_e * dy, base - 0.5 * lam_e * dy], 0))
                upper, lower = both[:s], both[s:]
            else:
                upper, lower = atoms, rule.oracle(base - lam_e * dy)
            # a zero lambda (AIMLE with beta = 0) perturbs nothing, so upper == lower: divide that zero by 1, not 0
            divisor = torch.where(lam > 0, lam, torch.ones_like(lam)) if isinstance(lam, torch.Tensor) else lam
            grad = finite_difference_vjp(upper, lower, divisor)
            if rule.adapt:
                rule.update(upper - lower, theta.ndim - event_ndim)
        return grad, None, None, None


def _default_noise(oracle: Oracle, k: int | None) -> Noise:
    if k is None:
        k = getattr(oracle, "k", 1)
    return SumOfGamma(k=k)


class IMLE(OracleLayer):
    r"""Implicit maximum-likelihood estimation (I-MLE; Niepert, Minervini, Franceschi, NeurIPS 2021).

    Forward: hard samples :math:`y_s = f(\theta + \varepsilon Z_s)`, shape ``(S, *batch, *event)`` (or their
    mean with ``return_mean=True``). Backward, with the noise stored from the forward:

    .. math::  \nabla_\theta \approx \frac1\lambda\frac1S\sum_s \big[f(\theta + \varepsilon Z_s)
               - f(\theta - \lambda\bar y_s + \varepsilon Z_s)\big]

    or, with ``two_sided=True``, the central difference
    :math:`\frac1\lambda\frac1S\sum_s [f(\theta + \tfrac\lambda2\bar y_s + \varepsilon Z_s) -
    f(\theta - \tfrac\lambda2\bar y_s + \varepsilon Z_s)]` (one more oracle solve per sample, no bias
    of order λ). With ``return_mean=True`` every sample uses the gradient of the mean, ȳ: the rule is then
    the finite difference :math:`(\hat\mu(\theta) - \hat\mu(\theta - \lambda\bar y))/\lambda` of the
    perturbed mean. The target instances go to the oracle in ONE batched call.

    Default noise: Sum-of-Gamma(k) with ``k = oracle.k`` when the oracle has a ``k`` (top-k), else the
    ``k`` argument (default 1, where SoG(1) approximates a Gumbel). Sum-of-Gamma noise makes the sum over a
    k-subset Gumbel-distributed, which is I-MLE's choice for k-subset distributions.

    Args:
        oracle: the maximization oracle (solution shape = θ's event shape).
        noise: the law of Z (default Sum-of-Gamma as above).
        epsilon: the noise scale ε ≥ 0 (ε = 0 is :class:`Blackbox`).
        lambda_: the finite-difference step λ > 0.
        num_samples: S ≥ 1.
        two_sided: use the central difference.
        return_mean: return the mean of the samples, shape ``(*batch, *event)``.
        k: Sum-of-Gamma's k when the oracle has no ``k``; ``None`` means 1.
        seed, validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = IMLE(TopKSubset(2), epsilon=1.0, lambda_=5.0, num_samples=3, seed=0)
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
        return_mean: bool = False,
        k: int | None = None,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(oracle, seed=seed, validate_args=validate_args)
        self.noise = _default_noise(oracle, k) if noise is None else noise
        if not isinstance(self.noise, Noise):
            raise TypeError(f"noise must be a colayers.perturb.Noise or None; got {type(self.noise).__name__}")
        self.epsilon = check_positive("epsilon", epsilon, allow_zero=True)
        self.lambda_ = check_positive("lambda_", lambda_)
        self.num_samples = check_int_at_least("num_samples", num_samples, 1)
        self.two_sided = bool(two_sided)
        self.return_mean = bool(return_mean)

    def _rule(self) -> FiniteDifferenceRule:
        return FiniteDifferenceRule(self.oracle, self.epsilon, self.lambda_, self.two_sided, self.return_mean)

    def draw_noise(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Z of shape ``(S, *theta.shape)`` (``None`` when ε = 0: no noise is drawn)."""
        if self.epsilon == 0:
            return None
        gen = self.resolve_generator(generator, theta)
        return self.noise.sample(
            (self.num_samples, *theta.shape), generator=gen, device=theta.device, dtype=theta.dtype
        )

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        oracle, s = self.oracle, self.num_samples
        if (
            self.epsilon == 0
            and s == 1
            and self.validate_args
            and getattr(oracle, "validate_args", False)
            and type(oracle).__call__ is Oracle.__call__
        ):
            # Blackbox: the one score solved is theta itself, and a validating stock oracle checks it exactly as
            # the layer would (same argument name, shape and messages); no noise is drawn
            noise = None
            with torch.no_grad():
                atoms = oracle(theta).unsqueeze(0)
        else:
            self.check_theta(theta)
            with torch.no_grad():
                noise = self.draw_noise(theta, generator)
                base = theta.detach().unsqueeze(0)
                if noise is None:
                    eta = base.expand((s, *theta.shape))
                else:
                    eta = base + noise if self.epsilon == 1.0 else base + self.epsilon * noise
                atoms = oracle(eta)
        if atoms.shape != (s, *theta.shape):
            raise ValueError(
                f"oracle must return solutions of theta's shape for the finite-difference rule; "
                f"got {tuple(atoms.shape[1:])} for theta {tuple(theta.shape)}"
            )
        return FiniteDifference.apply(theta, atoms, noise, self._rule())

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, noise={self.noise!r}, epsilon={self.epsilon}, lambda_={self.lambda_}, "
            f"num_samples={self.num_samples}, two_sided={self.two_sided}, return_mean={self.return_mean}"
        )


class Blackbox(IMLE):
    r"""Blackbox differentiation of combinatorial solvers (DBB; Vlastelica, Paulus, Musil, Martius, Rolínek, ICLR 2020).

    Exactly :class:`IMLE` with ε = 0 and one sample (no noise): forward :math:`f(\theta)`, backward

    .. math::  \nabla_\theta = \frac{f(\theta) - f(\theta - \lambda\bar y)}{\lambda},

    the gradient of a piecewise-linear interpolation of the loss (maximization convention; the paper's
    minimization form :math:`-(y - y_\lambda)/\lambda` with :math:`w' = w + \lambda\bar y` is the same rule
    for θ = −w).

    Args:
        oracle: the maximization oracle.
        lambda_: the interpolation step λ > 0 (the paper uses 10–20).
        validate_args: check θ on every call.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([2.0, 1.0, 0.0], requires_grad=True)
        >>> y = Blackbox(ArgmaxOneHot(), lambda_=5.0)(theta)
        >>> ((y - torch.tensor([0.0, 1.0, 0.0])) ** 2).sum().backward()
        >>> theta.grad  # (f(theta) - f(theta - 5 dy)) / 5 with dy = 2 (y - target)
        tensor([ 0.2000, -0.2000,  0.0000])
    """

    def __init__(self, oracle: Oracle, *, lambda_: float = 10.0, validate_args: bool = True) -> None:
        super().__init__(
            oracle,
            noise=None,
            epsilon=0.0,
            lambda_=lambda_,
            num_samples=1,
            return_mean=True,
            validate_args=validate_args,
        )


class AIMLE(IMLE):
    r"""Adaptive I-MLE (AIMLE; Minervini, Franceschi, Niepert, *Adaptive Perturbation-Based Gradient
    Estimation for Discrete Latent Variable Models*, AAAI 2023).

    :class:`IMLE` whose step is chosen per sample and instance as :math:`\lambda = \beta\,\|\theta\|/\|\bar y\|`
    (norms over the event), with β adapted online: after each backward the per-sample number of non-zero
    gradient entries is averaged, smoothed by an exponential moving average (``decay``), and β moves by
    ``+step`` if this running count is below ``target`` (too sparse a gradient: take a larger step), by
    ``-step`` otherwise (plus ``momentum`` times the previous move), clamped at β ≥ 0. β only adapts in
    training mode and with ``adapt=True``; with β frozen AIMLE is IMLE with that λ. A zero λ (β, θ or ȳ
    zero) perturbs nothing: the target score is θ itself and that sample's gradient is exactly 0 (the zero
    difference is divided by 1, not 0), as in the reference implementation (torch-adaptive-imle), so that
    β → 0 can bring the running count down to any target.

    Its state is explicit and saved by ``state_dict``: buffers ``beta``, ``target``, ``running_nnz``,
    ``previous_update``. Device and dtype rule: the state lives on the module's device (``.to(device)`` moves
    it like any buffer) and is always float64 (``.to(dtype)``, ``.half()``, ``.float()`` leave its dtype and
    values unchanged: a bfloat16 β could not move by a step of 1e-3). θ may be on another device than the
    state: β is copied to θ's device (and dtype) to form λ, and the update's statistic, one scalar, is
    moved to the state's device, so the layer works whether or not it was moved with the model; moving it
    saves those two scalar copies per call.

    Args:
        oracle, noise, epsilon, num_samples, two_sided, return_mean, k, seed, validate_args: see :class:`IMLE`.
        beta: initial β ≥ 0.
        target: the target mean number of non-zero gradient entries per sample.
        step: β's step size; momentum: momentum of β's moves; decay: the moving average's decay.
        adapt: adapt β (set to ``False`` to freeze it).

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = AIMLE(TopKSubset(2), num_samples=2, seed=0)
        >>> theta = torch.tensor([[3.0, 0.0, 2.0, 1.0]], requires_grad=True)
        >>> layer(theta)[:, 0, 1].sum().backward()
        >>> sorted(layer.state_dict())
        ['beta', 'previous_update', 'running_nnz', 'target']
        >>> bool(layer.beta != 1.0)  # beta moved after one backward
        True
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        noise: Noise | None = None,
        epsilon: float = 1.0,
        num_samples: int = 1,
        two_sided: bool = False,
        return_mean: bool = False,
        beta: float = 1.0,
        target: float = 1.0,
        step: float = 1e-3,
        momentum: float = 0.0,
        decay: float = 0.9,
        adapt: bool = True,
        k: int | None = None,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            oracle,
            noise=noise,
            epsilon=epsilon,
            lambda_=1.0,
            num_samples=num_samples,
            two_sided=two_sided,
            return_mean=return_mean,
            k=k,
            seed=seed,
            validate_args=validate_args,
        )
        self.lambda_ = None  # adaptive
        check_positive("beta", beta, allow_zero=True)
        check_positive("target", target, allow_zero=True)
        self.step = check_positive("step", step, allow_zero=True)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)
        self.decay = check_positive("decay", decay, allow_zero=True)
        if self.decay >= 1:
            raise ValueError(f"decay must be in [0, 1); got {decay!r}")
        self.adapt = bool(adapt)
        self.register_buffer("beta", torch.tensor(float(beta), dtype=torch.float64))
        self.register_buffer("target", torch.tensor(float(target), dtype=torch.float64))
        self.register_buffer("running_nnz", torch.tensor(float(target), dtype=torch.float64))
        self.register_buffer("previous_update", torch.tensor(0.0, dtype=torch.float64))

    _STATE = ("beta", "target", "running_nnz", "previous_update")

    def _apply(self, fn, recurse=True):
        # keep the state float64 with its exact values whatever fn casts to; follow fn's device
        saved = {name: self._buffers[name] for name in self._STATE}
        super()._apply(fn, recurse)
        for name, old in saved.items():
            new = self._buffers[name]
            if new.dtype != torch.float64:
                self._buffers[name] = old.to(device=new.device, dtype=torch.float64)
        return self

    def _rule(self) -> FiniteDifferenceRule:
        state = {
            "beta": self.beta,
            "target": self.target,
            "running_nnz": self.running_nnz,
            "previous_update": self.previous_update,
            "step": self.step,
            "momentum": self.momentum,
            "decay": self.decay,
        }
        return FiniteDifferenceRule(
            self.oracle,
            self.epsilon,
            None,
            self.two_sided,
            self.return_mean,
            adapt=self.adapt and self.training,
            state=state,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={float(self.beta):.4g}, target={float(self.target)}, adapt={self.adapt}"
