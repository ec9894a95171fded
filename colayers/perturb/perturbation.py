r"""Perturbations: the law of a perturbed score :math:`\eta` given :math:`\theta`.

* :class:`Additive`: :math:`\eta = \theta + \varepsilon Z`, with score
  :math:`\nabla_\theta \log p(\eta\mid\theta) = -\tfrac{1}{\varepsilon}\,(\nabla_z\log\rho)(Z)`
  (for Normal noise: :math:`Z/\varepsilon`).
* :class:`Multiplicative`: :math:`\eta = \theta \odot \exp(\varepsilon Z - \varepsilon^2/2)`, so that
  :math:`\mathbb E[\eta] = \theta` for Normal Z; score
  :math:`\nabla_\theta \log p(\eta\mid\theta) = -\tfrac{1}{\varepsilon\,\theta}\,(\nabla_z\log\rho)(Z)`
  (for Normal noise: :math:`Z/(\varepsilon\theta)`).

Samples have shape ``(S, *theta.shape)`` on θ's device and dtype and are drawn with an explicit
``generator`` (the global RNG is used only when none is given, and is never reseeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import (
    boolean,
    check_args,
    check_generator,
    check_int_at_least,
    check_tensor,
    inputs_trusted,
    nonnegative,
)
from .noise import Noise, Normal

__all__ = [
    "Perturbation",
    "PerturbedSample",
    "Additive",
    "Multiplicative",
    "leave_one_out_centered",
    "leave_group_out_centered",
]


@dataclass(frozen=True)
class PerturbedSample:
    """S perturbed copies of θ and the noise that made them.

    Attributes:
        eta: the perturbed scores, ``(S, *theta.shape)``.
        noise: the standard noise Z, ``(S, *theta.shape)``; finite-difference rules reuse it on both sides.
            ``None`` when ε = 0 (no noise is drawn; η = θ).
        groups: ``None`` when the S samples are independent; else an int64 tensor ``(S,)`` labelling groups of
            dependent samples (samples in different groups are independent), e.g. the antithetic pairs
            ``[0, 1, .., S/2 - 1, 0, 1, .., S/2 - 1]``. The score-function baseline of a sample only uses
            samples of other groups, which keeps the gradient unbiased.
    """

    eta: torch.Tensor
    noise: torch.Tensor | None
    groups: torch.Tensor | None = None


def leave_one_out_centered(values: torch.Tensor) -> torch.Tensor:
    r"""Return :math:`v_s - b_s` with :math:`b_s = \frac{1}{S-1}\sum_{t\ne s} v_t` along dim 0.

    Since :math:`v_s - b_s = \frac{S}{S-1}(v_s - \bar v)`, it costs one mean. With ``S == 1`` there is no
    other sample and the values are returned unchanged (no baseline).

    Example:
        >>> leave_one_out_centered(torch.tensor([1.0, 2.0, 6.0]))
        tensor([-3.0000, -1.5000,  4.5000])
    """
    s = values.shape[0]
    if s < 2:
        return values
    return (values - values.mean(0, keepdim=True)) * (s / (s - 1))


def leave_group_out_centered(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    r"""Return :math:`v_s - b_s` with :math:`b_s` the mean of the values of the samples *outside* s's group.

    .. math::  b_s = \frac{1}{|\{t : g_t \ne g_s\}|}\sum_{t:\,g_t\ne g_s} v_t

    :math:`b_s` is independent of sample s when groups are independent, so
    :math:`\mathbb E[(v_s - b_s)\nabla\log p(\eta_s)] = \mathbb E[v_s\nabla\log p(\eta_s)]`: the baseline
    adds no bias. A sample whose group holds every sample gets no baseline (:math:`b_s = 0`).

    Args:
        values: ``(S, ...)``.
        groups: int64 ``(S,)`` group labels (on ``values``' device).

    Example:
        >>> v = torch.tensor([1.0, 2.0, 6.0, 3.0])
        >>> leave_group_out_centered(v, torch.tensor([0, 1, 0, 1]))  # antithetic pairs (0, 2) and (1, 3)
        tensor([-1.5000, -1.5000,  3.5000, -0.5000])
    """
    s = values.shape[0]
    num_groups = s  # labels are < S; no read-back of groups.max()
    sums = values.new_zeros((num_groups, *values.shape[1:])).index_add_(0, groups, values)
    sizes = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(
        0, groups, torch.ones(s, dtype=values.dtype, device=values.device)
    )
    others = (s - sizes)[groups]  # (S,)
    outside = values.sum(0, keepdim=True) - sums[groups]
    shape = (s,) + (1,) * (values.ndim - 1)
    baseline = torch.where(others.reshape(shape) > 0, outside / others.clamp(min=1).reshape(shape), 0.0)
    return values - baseline


class Perturbation:
    r"""Maps θ to the law of a perturbed η; subclasses implement :meth:`apply` and :meth:`score`.

    Args:
        noise: the law of the standard noise Z (default :class:`Normal`).
        epsilon: the noise scale ε ≥ 0; ε = 0 is no noise (η = θ, a Dirac at θ: Blackbox and
            IdentityRelaxation are built on it). The score exists only for ε > 0.
        antithetic: draw the S samples as S/2 antithetic pairs :math:`(Z_s, Z'_s)` with
            :math:`Z'_s = F^{-1}(1 - F(Z_s))` (``-Z_s`` for Normal noise): each sample keeps the law of Z, and
            the pairs lower the variance of monotone estimates. S must be even. The samples carry their
            pairs as ``groups``, so the score-function baseline excludes each sample's partner and stays
            unbiased (:func:`leave_group_out_centered`).

    A subclass may draw its samples its own way by overriding :meth:`sample` (or :meth:`draw_noise`). Its
    samples are then of unknown dependence, and the score-function rule refuses to use its leave-one-out
    baseline unless the subclass says how: set the class attribute ``iid_samples = True`` (independent
    samples), return a :class:`PerturbedSample` with ``groups``, or override :meth:`centered`.

    Example:
        >>> import torch
        >>> pert = Additive(Normal(), epsilon=0.5, antithetic=True)
        >>> s = pert.sample(torch.zeros(3), 4, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(s.noise[:2], -s.noise[2:]), s.groups.tolist()
        (True, [0, 1, 0, 1])
        >>> Additive(epsilon=0.0).sample(torch.ones(2), 3).eta  # epsilon = 0: no noise
        tensor([[1., 1.],
                [1., 1.],
                [1., 1.]])
    """

    #: True: :meth:`sample` draws independent samples (or labels its dependent ones with ``groups``).
    #: ``None`` (set automatically on a subclass that overrides the sampling without saying): unknown.
    iid_samples: bool | None = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if ("sample" in own or "draw_noise" in own) and "iid_samples" not in own and "centered" not in own:
            cls.iid_samples = None

    arg_constraints = {"epsilon": nonnegative, "antithetic": boolean}

    def __init__(self, noise: Noise | None = None, epsilon: float = 1.0, *, antithetic: bool = False) -> None:
        self.noise = Normal() if noise is None else noise
        if not isinstance(self.noise, Noise):
            raise TypeError(f"noise must be a colayers.perturb.Noise; got {type(self.noise).__name__}")
        checked = check_args(Perturbation, epsilon=epsilon, antithetic=antithetic)
        self.epsilon = checked["epsilon"]
        if antithetic and not self.noise.has_mirror:
            raise ValueError(
                f"antithetic sampling needs a noise with a mirror (Normal or Gumbel); got {self.noise!r}"
            )
        self.antithetic = antithetic

    @property
    def has_score(self) -> bool:
        """Whether :meth:`score` exists: ε > 0 and a noise with a closed-form density."""
        return self.epsilon > 0 and self.noise.has_score

    def check_num_samples(self, num_samples: int) -> int:
        """Require S ≥ 1 (and S even with antithetic sampling); return S."""
        check_int_at_least("num_samples", num_samples, 1)
        if self.antithetic and num_samples % 2:
            raise ValueError(f"num_samples must be even for antithetic sampling (pairs); got {num_samples}")
        return num_samples

    def draw_noise(
        self, theta: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Standard noise Z of shape ``(num_samples, *theta.shape)`` on θ's device and dtype (antithetic:
        the first S/2 draws, then their mirrors). Inside :func:`~colayers._validation.trusted_inputs` (a layer
        that checked its arguments once) the arguments are not checked again."""
        if not inputs_trusted():
            check_tensor("theta", theta)
            self.check_num_samples(num_samples)
            check_generator(generator, theta.device)
        n = num_samples // 2 if self.antithetic else num_samples
        z = self.noise.sample((n, *theta.shape), generator=generator, device=theta.device, dtype=theta.dtype)
        return torch.cat([z, self.noise.mirror(z)]) if self.antithetic else z

    def sample(
        self, theta: torch.Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> PerturbedSample:
        """Draw ``num_samples`` perturbed copies of θ: a :class:`PerturbedSample` of shape ``(S, *θ.shape)``."""
        if self.epsilon == 0:  # a Dirac at theta: nothing is drawn
            if not inputs_trusted():
                check_tensor("theta", theta)
                self.check_num_samples(num_samples)
                check_generator(generator, theta.device)
            return PerturbedSample(eta=theta.unsqueeze(0).expand((num_samples, *theta.shape)), noise=None)
        z = self.draw_noise(theta, num_samples, generator)
        groups = None
        if self.antithetic:
            groups = torch.arange(num_samples // 2, device=theta.device).repeat(2)
        return PerturbedSample(eta=self.apply(theta, z), noise=z, groups=groups)

    def centered(self, values: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        r""":math:`v_s - b_s` for the score-function baseline: leave-one-out for independent samples, leave-group-out
        when the sample has ``groups`` (:func:`leave_group_out_centered`). ``values`` is ``(S, ...)``."""
        if sample.groups is not None:
            return leave_group_out_centered(values, sample.groups)
        if self.iid_samples is None:
            raise TypeError(
                f"{type(self).__name__} overrides sample()/draw_noise() without saying whether its samples are "
                "independent; the leave-one-out baseline is unbiased only for independent samples. Set the class "
                "attribute iid_samples = True, return PerturbedSample(..., groups=...) for dependent samples, "
                "override centered(), or use the rule without a baseline (baseline=False)"
            )
        return leave_one_out_centered(values)

    def apply(self, theta: torch.Tensor, noise: torch.Tensor, epsilon: float | None = None) -> torch.Tensor:
        """η as a function of θ and a given noise Z (broadcast over the leading sample dimension), at the
        perturbation's ε or at the given ``epsilon`` (a finite-difference rule's target temperature)."""
        raise NotImplementedError

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        r""":math:`\nabla_\theta \log p(\eta_s\mid\theta)` for each sample, shape ``(S, *theta.shape)``."""
        raise NotImplementedError

    @property
    def identity_jacobian(self) -> bool:
        r"""Whether :math:`\partial\eta/\partial\theta` is the identity at every noise (η = θ + εZ), so that
        :meth:`vjp_sum` is the sum of the cotangents over the samples (False by default; :class:`Additive` says
        True unless a subclass redefines :meth:`apply`).

        Example:
            >>> Additive(epsilon=0.5).identity_jacobian, Multiplicative(epsilon=0.5).identity_jacobian
            (True, False)
        """
        return False

    def vjp_sum(self, theta: torch.Tensor, noise: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor | None:
        r""":math:`\sum_s (\partial\eta_s/\partial\theta)^\top c_s` for η = :meth:`apply` (θ, Z) at the given noise,
        in closed form, shape θ's; ``None`` (the default) where there is none: the caller differentiates
        :meth:`apply` by autograd. ``cotangent`` ``c`` has the shape of η, ``(S, *theta.shape)``.

        Example:
            >>> import torch
            >>> pert, theta = Multiplicative(epsilon=0.5), torch.tensor([1.0, -2.0])
            >>> z, c = torch.randn(3, 2), torch.randn(3, 2)
            >>> t = theta.clone().requires_grad_()
            >>> (pert.apply(t, z) * c).sum().backward()
            >>> torch.allclose(pert.vjp_sum(theta, z, c), t.grad)
            True
        """
        return None

    def check_score(self) -> None:
        """Raise a ValueError naming ``epsilon`` or the noise when :meth:`score` does not exist."""
        if self.epsilon == 0:
            raise ValueError(
                "epsilon must be > 0 for the score-function rule (epsilon = 0 has no score); got 0.0"
            )
        if not self.noise.has_score:
            raise ValueError(
                f"perturbation must use a noise with a closed-form density for the score-function rule; got "
                f"{self.noise!r} (use Normal or Gumbel noise, or a finite-difference rule such as IMLE)"
            )

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        r"""The weighted mean of the scores, :math:`\frac1S\sum_s w_s\,\nabla_\theta\log p(\eta_s\mid\theta)`.

        ``weights`` has shape ``(S, *batch)`` (one weight per sample and instance, broadcast over θ's event
        dimensions). This is the score-function VJP once the weights :math:`\langle f(\eta_s) - b_s,
        \bar y\rangle` are known; subclasses compute it without forming the ``(S, *theta.shape)`` score.

        Returns:
            A tensor of θ's shape.

        Example:
            >>> import torch
            >>> pert = Additive(epsilon=0.5)
            >>> theta = torch.zeros(2, 3)
            >>> s = pert.sample(theta, 4, generator=torch.Generator().manual_seed(0))
            >>> w = torch.rand(4, 2, generator=torch.Generator().manual_seed(1))
            >>> torch.allclose(pert.score_mean(theta, s, w), (w[..., None] * pert.score(theta, s)).mean(0))
            True
        """
        score = self.score(theta, sample)
        return (weights.reshape(weights.shape + (1,) * (score.ndim - weights.ndim)) * score).mean(0)

    def _weighted_noise_score_sum(self, noise: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        r""":math:`-\sum_s w_s (\nabla_z\log\rho)(Z_s)`, shape ``noise.shape[1:]`` (for Normal noise
        :math:`\sum_s w_s Z_s`, without the elementwise pass)."""
        w = weights.reshape(weights.shape + (1,) * (noise.ndim - weights.ndim))
        if type(self.noise) is Normal:  # grad log rho(z) = -z
            return (w * noise).sum(0)
        return (w * self.noise.grad_log_density(noise)).sum(0).neg_()

    def __repr__(self) -> str:
        extra = ", antithetic=True" if self.antithetic else ""
        return f"{type(self).__name__}({self.noise!r}, epsilon={self.epsilon}{extra})"


class Additive(Perturbation):
    r"""Additive perturbation :math:`\eta = \theta + \varepsilon Z` (Berthet et al., NeurIPS 2020).

    Args:
        noise: the law of Z (default :class:`Normal`).
        epsilon: the noise scale ε ≥ 0 (0: no noise).
        antithetic: antithetic pairs (see :class:`Perturbation`).

    Example:
        >>> import torch
        >>> from colayers.perturb import Additive, Gumbel
        >>> pert = Additive(Gumbel(), epsilon=0.5)
        >>> s = pert.sample(torch.zeros(2, 3), num_samples=4, generator=torch.Generator().manual_seed(0))
        >>> s.eta.shape, torch.allclose(s.eta, 0.5 * s.noise)
        (torch.Size([4, 2, 3]), True)
    """

    def apply(self, theta: torch.Tensor, noise: torch.Tensor, epsilon: float | None = None) -> torch.Tensor:
        eps = self.epsilon if epsilon is None else epsilon
        return theta + noise if eps == 1.0 else theta + eps * noise

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        return -self.noise.grad_log_density(sample.noise) / self.epsilon

    @property
    def identity_jacobian(self) -> bool:  # noqa: D102 - see Perturbation.identity_jacobian
        return type(self).apply is Additive.apply  # a subclass with its own η: not known

    def vjp_sum(self, theta: torch.Tensor, noise: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor | None:
        if not self.identity_jacobian:  # a subclass with its own η: autograd differentiates it
            return super().vjp_sum(theta, noise, cotangent)
        return cotangent.sum(0)  # ∂(θ + εZ)/∂θ = I

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        if type(self).score is not Additive.score:  # a subclass with its own score: use it
            return super().score_mean(theta, sample, weights)
        noise = sample.noise
        return self._weighted_noise_score_sum(noise, weights).mul_(1.0 / (noise.shape[0] * self.epsilon))


class Multiplicative(Perturbation):
    r"""Multiplicative perturbation :math:`\eta = \theta \odot \exp(\varepsilon Z - \varepsilon^2/2)`.

    With Normal Z the factor is log-normal with mean one, so :math:`\mathbb E[\eta] = \theta`, and the sign
    of each η entry is that of θ (InferOpt's ``PerturbedMultiplicative``). Where :math:`\theta_i = 0` the law
    of :math:`\eta_i` is a point mass at 0 and carries no information about :math:`\theta_i`: the score is
    set to 0 there (rather than ±inf), so those coordinates get no score-function gradient.

    Args:
        noise: the law of Z (default :class:`Normal`; the mean-one property holds for Normal only).
        epsilon: the noise scale ε ≥ 0 (0: no noise).
        antithetic: antithetic pairs (see :class:`Perturbation`).

    Example:
        >>> import torch
        >>> from colayers.perturb import Multiplicative
        >>> pert = Multiplicative(epsilon=0.1)
        >>> s = pert.sample(torch.tensor([1.0, -2.0, 0.0]), 3, generator=torch.Generator().manual_seed(0))
        >>> bool((s.eta[:, 0] > 0).all() and (s.eta[:, 1] < 0).all() and (s.eta[:, 2] == 0).all())
        True
    """

    def apply(self, theta: torch.Tensor, noise: torch.Tensor, epsilon: float | None = None) -> torch.Tensor:
        eps = self.epsilon if epsilon is None else epsilon
        return theta * (eps * noise).sub_(eps * eps / 2).exp_()

    def vjp_sum(self, theta: torch.Tensor, noise: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor | None:
        if type(self).apply is not Multiplicative.apply:  # a subclass with its own η: autograd differentiates it
            return super().vjp_sum(theta, noise, cotangent)
        eps = self.epsilon
        return (cotangent * (eps * noise).sub_(eps * eps / 2).exp_()).sum(0)  # ∂η/∂θ = diag(exp(εZ - ε²/2))

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        g = -self.noise.grad_log_density(sample.noise) / self.epsilon
        safe = torch.where(theta == 0, torch.ones_like(theta), theta)
        return torch.where(theta == 0, torch.zeros_like(g), g / safe)

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        if type(self).score is not Multiplicative.score:  # a subclass with its own score: use it
            return super().score_mean(theta, sample, weights)
        noise = sample.noise
        g = self._weighted_noise_score_sum(noise, weights).mul_(1.0 / (noise.shape[0] * self.epsilon))
        zero = theta == 0
        return torch.where(zero, torch.zeros_like(g), g / torch.where(zero, torch.ones_like(theta), theta))
