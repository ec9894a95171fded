r"""Regularized layers: :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
\langle\theta,\mu\rangle - \Omega(\mu)`.

* :class:`SoftArgmax` — entropy :math:`\Omega(\mu) = T\sum_i\mu_i\log\mu_i` on the simplex: softmax(θ/T);
* :class:`SparseArgmax` — :math:`\Omega(\mu) = \tfrac12\|\mu\|^2` on the simplex: sparsemax, with its
  closed-form Jacobian :math:`\mathrm{diag}(s) - ss^\top/|s|` (s the support indicator);
* :class:`RegularizedFrankWolfe` — any :class:`~colayers.layers.frank_wolfe.Regularizer` on
  :math:`\mathrm{conv}(\mathcal Y)` for ANY oracle, by Frank-Wolfe with away steps that uses the oracle as
  linear maximization oracle, then implicit differentiation on the active set, not unrolling. With the
  default ½‖·‖² it is SparseMAP, the Euclidean projection of θ onto the polytope.

They share one protocol, :class:`RegularizedLayer`: ``layer(theta)`` is μ(θ), ``layer.omega(mu)`` is Ω
(what :class:`~colayers.losses.FenchelYoungLoss` dispatches on) and ``layer.distribution(theta)`` is a
:class:`~colayers.SolutionDistribution` over solutions in Y whose mean is μ(θ): the one-hot vertices of the
simplex with weights softmax / sparsemax, or Frank-Wolfe's active set with its convex weights.

References: Martins & Astudillo, *From Softmax to Sparsemax*, ICML 2016; Niculae, Martins, Blondel, Cardie,
*SparseMAP: Differentiable Sparse Structured Inference*, ICML 2018; Lacoste-Julien & Jaggi, *On the
Global Linear Convergence of Frank-Wolfe Optimization Variants*, NeurIPS 2015; Blondel, Martins, Niculae,
*Learning with Fenchel-Young Losses*, JMLR 2020.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

from .._validation import ValidateArgs, check_int_at_least, check_positive, check_theta
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from .active_set import ActiveSetProjection, complete_face
from .core import OracleLayer
from .frank_wolfe import (
    Regularizer,
    SquaredNorm,
    _FlatOracle,
    center_scores,
)

__all__ = ["RegularizedLayer", "SoftArgmax", "SparseArgmax", "RegularizedFrankWolfe"]


@runtime_checkable
class RegularizedLayer(Protocol):
    r"""What a regularized layer provides: :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in
    \mathrm{conv}(\mathcal Y)}\langle\theta,\mu\rangle - \Omega(\mu)` by calling it, Ω by ``omega`` (summed
    over the event, shape ``(*batch)``), and a distribution over Y whose mean is μ(θ).

    A user's layer with these three methods works with every loss that needs ``omega``.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> all(isinstance(layer, RegularizedLayer) for layer in
        ...     (SoftArgmax(), SparseArgmax(), RegularizedFrankWolfe(ArgmaxOneHot())))
        True
    """

    def __call__(self, theta: torch.Tensor) -> torch.Tensor: ...

    def omega(self, mu: torch.Tensor) -> torch.Tensor: ...

    def distribution(
        self, theta: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> SolutionDistribution: ...


def _check_vector_theta(theta: torch.Tensor, validate: bool) -> None:
    check_theta(theta, None, 1, validate)


def _no_generator(layer: torch.nn.Module, generator: torch.Generator | None) -> None:
    """A deterministic layer refuses a generator (``None`` is accepted, so generic callers can pass it)."""
    if generator is not None:
        raise TypeError(f"{type(layer).__name__} is deterministic and takes no generator; got {generator!r}")


def _simplex_distribution(mu: torch.Tensor) -> SolutionDistribution:
    """The n one-hot vertices ``(n, *batch, n)`` weighted by μ ``(*batch, n)`` (moved to ``(n, *batch)``)."""
    n = mu.shape[-1]
    eye = torch.eye(n, dtype=mu.dtype, device=mu.device)
    atoms = eye.reshape(n, *([1] * (mu.ndim - 1)), n).expand(n, *mu.shape)
    return SolutionDistribution(atoms, mu.movedim(-1, 0), event_ndim=1)


class SoftArgmax(torch.nn.Module):
    r"""Entropy-regularized argmax over the simplex: :math:`\mu(\theta) = \mathrm{softmax}(\theta/T)`.

    :math:`\Omega(\mu) = T\sum_i \mu_i\log\mu_i` (negative Shannon entropy times T), so that
    :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\Delta}\langle\theta,\mu\rangle - \Omega(\mu)`;
    Jacobian :math:`(\mathrm{diag}(\mu) - \mu\mu^\top)/T`. Acts on the last dimension.
    :meth:`distribution` puts weight :math:`\mu_i` on the one-hot vertex :math:`e_i`. Deterministic: a
    ``generator`` is a TypeError.

    Args:
        temperature: T > 0.
        validate_args: check θ on every call.

    Example:
        >>> import torch
        >>> layer = SoftArgmax(temperature=2.0)
        >>> layer(torch.tensor([0.0, 2.0]))
        tensor([0.2689, 0.7311])
        >>> float(layer.omega(torch.tensor([0.5, 0.5])))  # 2 * log(1/2)
        -1.3862943649291992
        >>> layer.distribution(torch.tensor([0.0, 2.0])).atoms  # e_1, e_2
        tensor([[1., 0.],
                [0., 1.]])
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(self, *, temperature: float = 1.0, validate_args: bool | None = None) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        if self.temperature == float("inf"):
            raise ValueError("temperature must be a finite number > 0; got inf")
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor, *, generator: None = None) -> torch.Tensor:
        _no_generator(self, generator)
        _check_vector_theta(theta, self.validate_args)
        return torch.softmax(theta / self.temperature, dim=-1)

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu) = T\sum_i\mu_i\log\mu_i` (with 0 log 0 = 0), shape ``(*batch)``."""
        return self.temperature * torch.xlogy(mu, mu).sum(-1)

    def distribution(self, theta: torch.Tensor, *, generator: torch.Generator | None = None) -> SolutionDistribution:
        """Atoms ``(n, *batch, n)``: the one-hot vertices, weights ``(n, *batch)``: softmax(θ/T) (``generator``
        is refused, as in the forward: the distribution is exact)."""
        _no_generator(self, generator)
        return _simplex_distribution(self(theta))  # weights differentiable in theta (Pushforward uses them)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class Sparsemax(torch.autograd.Function):
    r"""Sparsemax :math:`\mathrm{proj}_\Delta(\theta)` over the last dimension with the closed-form VJP
    :math:`s\odot(\bar y - \langle s,\bar y\rangle/|s|)` (s the support indicator).

    θ is shifted by its maximum first (sparsemax is invariant to adding a constant): the largest entry is
    then 0, always in the support, so the support is never empty at any finite magnitude (without the
    shift, float32 lost the 1 of :math:`1 + k z_k > \sum_{j\le k} z_j` once max|θ| reached about 1.7e7)."""

    @staticmethod
    def forward(theta):
        n = theta.shape[-1]
        if n == 0 or theta.numel() == 0:
            return theta.clone()
        shifted = theta - theta.amax(-1, keepdim=True)
        z, _ = torch.sort(shifted, dim=-1, descending=True)
        k = torch.arange(1, n + 1, device=theta.device, dtype=theta.dtype)
        cumsum = z.cumsum(-1) - 1.0
        support = (k * z > cumsum).to(theta.dtype)
        k_max = support.sum(-1, keepdim=True).clamp(min=1.0)
        tau = torch.gather(cumsum, -1, k_max.long() - 1) / k_max
        return torch.clamp(shifted - tau, min=0.0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (mu,) = ctx.saved_tensors
        s = (mu > 0).to(grad_output.dtype)
        mean = (grad_output * s).sum(-1, keepdim=True) / s.sum(-1, keepdim=True).clamp(min=1.0)
        return s * (grad_output - mean)


class SparseArgmax(torch.nn.Module):
    r"""Sparsemax: :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\Delta}\langle\theta,\mu\rangle -
    \tfrac12\|\mu\|^2`, the Euclidean projection onto the simplex (Martins & Astudillo, ICML 2016).

    Closed form :math:`\mu = (\theta - \tau)_+` with τ chosen so that μ sums to one; Jacobian
    :math:`\mathrm{diag}(s) - ss^\top/|s|` (s the support indicator), symmetric PSD. Acts on the last
    dimension; :math:`\Omega(\mu) = \tfrac12\|\mu\|^2`. :meth:`distribution` puts weight :math:`\mu_i` on the
    one-hot vertex :math:`e_i` (sparse: zero outside the support). Deterministic: a ``generator`` is a
    TypeError.

    Example:
        >>> import torch
        >>> SparseArgmax()(torch.tensor([0.0, 1.5, 1.0]))
        tensor([0.0000, 0.7500, 0.2500])
        >>> SparseArgmax().distribution(torch.tensor([0.0, 1.5, 1.0])).weights
        tensor([0.0000, 0.7500, 0.2500])
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(self, *, validate_args: bool | None = None) -> None:
        super().__init__()
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor, *, generator: None = None) -> torch.Tensor:
        _no_generator(self, generator)
        _check_vector_theta(theta, self.validate_args)
        return Sparsemax.apply(theta)

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu) = \tfrac12\|\mu\|^2`, shape ``(*batch)``."""
        return 0.5 * (mu * mu).sum(-1)

    def distribution(self, theta: torch.Tensor, *, generator: torch.Generator | None = None) -> SolutionDistribution:
        """Atoms ``(n, *batch, n)``: the one-hot vertices, weights ``(n, *batch)``: sparsemax(θ) (``generator``
        is refused, as in the forward)."""
        _no_generator(self, generator)
        return _simplex_distribution(self(theta))  # weights differentiable in theta (Pushforward uses them)


class RegularizedFrankWolfe(OracleLayer):
    r"""Regularized argmax over any polytope, with a pluggable regularizer (InferOpt.jl's RegularizedFrankWolfe).

    .. math::  \mu(\theta) = \operatorname*{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
               \langle\theta,\mu\rangle - \Omega(\mu),

    computed by away-step Frank-Wolfe with the oracle as linear maximization oracle (all instances iterate
    together, one batched oracle call per iteration; :mod:`colayers.layers.frank_wolfe`). The result is a
    sparse convex combination of solutions, exposed by :meth:`distribution`; ``omega`` is Ω.

    * ``regularizer=SquaredNorm(s)`` (the default, s = 1) is **SparseMAP** (Niculae et al., ICML 2018):
      :math:`\Omega = \tfrac s2\|\mu\|^2`, :math:`\mu = \mathrm{proj}_{\mathrm{conv}(\mathcal Y)}(\theta/s)`,
      solved by :func:`~colayers.layers.frank_wolfe.frank_wolfe_projection`. SparseMAP is this class with
      its default regularizer, not a separate name;
    * ``regularizer=NegativeEntropy(s)``: :math:`\Omega = s\sum_i\mu_i\log\mu_i` on the mean (softmax(θ/s)
      on the simplex, the KL soft ranks on :class:`~colayers.oracles.Ranking`), solved by
      :func:`~colayers.layers.frank_wolfe.frank_wolfe` (line search by bisection, Newton polish on the
      active set);
    * any :class:`~colayers.layers.frank_wolfe.Regularizer` subclass (separable, strictly convex).

    Gradient: implicit differentiation, :math:`J = D^\top(DHD^\top)^+D` with :math:`H = \nabla^2\Omega(\mu)`
    (:class:`~colayers.layers.frank_wolfe.ActiveSetProjection`); for ½‖·‖² it is the orthogonal projector onto
    the directions of the face :math:`F(\theta - \mu)` of the polytope exposed by :math:`\theta - \mu`
    (for another Ω, the face exposed by :math:`\theta - \nabla\Omega(\mu)`; the statements below are
    written for ½‖·‖² and hold with that substitution)
    (:func:`~colayers.layers.active_set.active_set_vjp`). Frank-Wolfe's atoms are a minimal representation of μ
    and may span only part of that face (always at θ = 0 on top-k, where F is the whole polytope), so the
    forward completes them with :func:`complete_face`: rounds of one batched oracle call on two slightly
    perturbed copies of :math:`\theta - \mu` per unfinished instance, the perturbations drawn orthogonal to
    the directions already spanned (one round at a generic θ, at most d + 1); the new vertices enter D only
    (their weight is 0; :meth:`distribution` is unchanged). It runs only when θ requires a gradient. What is
    exact, and when:

    * where μ is in the relative interior of :math:`F(\theta - \mu)` (every θ except a measure-zero set)
      the projection is differentiable and J is its Jacobian once the atoms span that face. At a generic θ
      the active atoms already span it and nothing is added; at degenerate points (θ = c·1 on top-k or
      ranking, θ inside the polytope, ties) the completion finds the missing directions with probability
      one for an exact oracle in exact arithmetic. In floating point it can stop early when the oracle does
      not resolve score changes of the perturbation's size (≈ tol_F below divided by 4·max|a|·√d: a
      rounding, approximate or time-limited solver); a miss lowers J's rank, it never adds a wrong direction;
    * on the simplex (:class:`~colayers.oracles.ArgmaxOneHot`) the active atoms always span the face and
      the layer equals :class:`SparseArgmax` in value and Jacobian;
    * where the projection is not differentiable (μ on the relative boundary of the exposed face) J is the
      projector for the exposed face, the limit of the Jacobians at nearby θ whose μ moves into that face
      (an element of the B-subdifferential);
    * vertices count as on the face within :math:`\mathrm{tol}_F = \max(\mathrm{tol},
      \sqrt{\varepsilon_{\rm dtype}})(1 + \|\theta\|^2 + \|\mu\|^2)` in :math:`\langle\theta - \mu, v -
      \mu\rangle`, so θ that close to a degenerate point gets that point's J.

    The perturbations come from the ``generator`` argument if given, else from the layer-owned generator
    when the layer has a ``seed``, else from a fixed local generator (seed 0 on θ's device), so that the
    layer is deterministic. ``face_completion=False`` restores the Jacobian on the active atoms alone.

    **A constant offset.** Where every solution has the same coordinate sum (one-hot, top-k, rankings,
    perfect matchings), :math:`\mu(\theta + c\mathbf 1) = \mu(\theta)` and so is the Jacobian; the layer
    computes with θ less its mean while the atoms it finds share one sum, calls the oracle at the true
    scores (which reveals a vertex of another sum, where the polytope has one and c favours it), and scales
    its tolerances with the centered θ. Where the sums differ, c changes μ and the layer follows it (it never
    assumes the invariance). What remains of an offset c is the oracle's resolution: it sees scores of size
    |c| and cannot tell apart vertices within about ε·|c| of each other (float32, c = 1e4: about 1e-3).

    Args:
        oracle: the maximization oracle (solutions of θ's event shape).
        regularizer: Ω (default :class:`~colayers.layers.frank_wolfe.SquaredNorm`\ ``(1.0)``).
        max_iter: the most Frank-Wolfe iterations (oracle calls) per forward; an instance whose Frank-Wolfe gap
            is still above the tolerance then gets a :class:`RuntimeWarning` (the number of such instances, the
            largest gap, the tolerance), never a silent approximation.
        tol: stopping tolerance on the Frank-Wolfe gap, relative to :math:`1 + \|\theta_c\|^2` with
            :math:`\theta_c` θ less its mean where all solutions found share one coordinate sum, else
            :math:`1 + \|\theta\|^2` (at least 100 ε of θ's dtype, since a smaller gap cannot be resolved:
            float32 stops at about 1.2e-5).
        face_completion: complete the face for the Jacobian (``False``: J on the active atoms only, the
            minimal representation; cheaper, and exact only where those atoms span the face).
        seed, validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> layer = RegularizedFrankWolfe(ArgmaxOneHot())
        >>> layer(torch.tensor([0.0, 1.5, 1.0], dtype=torch.float64))  # = sparsemax
        tensor([0.0000, 0.7500, 0.2500], dtype=torch.float64)
        >>> d = layer.distribution(torch.tensor([0.0, 1.5, 1.0], dtype=torch.float64))
        >>> sorted(round(w, 4) for w in d.weights.tolist() if w > 0)
        [0.25, 0.75]
        >>> from colayers.layers import NegativeEntropy
        >>> entropic = RegularizedFrankWolfe(ArgmaxOneHot(), regularizer=NegativeEntropy(0.5))
        >>> entropic(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))  # = softmax(theta / 0.5)
        tensor([0.0159, 0.1173, 0.8668], dtype=torch.float64)
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        regularizer: Regularizer | None = None,
        max_iter: int = 100,
        tol: float = 1e-9,
        face_completion: bool = True,
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(oracle, seed=seed, validate_args=validate_args)
        if regularizer is None:
            regularizer = SquaredNorm()
        if not isinstance(regularizer, Regularizer):
            raise TypeError(
                "regularizer must be a colayers.layers.frank_wolfe.Regularizer (SquaredNorm, NegativeEntropy or "
                f"a subclass); got {type(regularizer).__name__}"
            )
        self.regularizer = regularizer
        self.max_iter = check_int_at_least("max_iter", max_iter, 1)
        self.tol = check_positive("tol", tol)
        if self.tol == float("inf"):
            raise ValueError("tol must be a finite number > 0; got inf")
        self.face_completion = bool(face_completion)

    def _solve(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        batch = self.check_theta(theta)
        event = tuple(theta.shape[len(batch) :])
        flat = theta.detach().reshape(-1, *event)
        sol = self.oracle.solution_shape(event)
        if tuple(sol) != event:
            raise ValueError(f"oracle must return solutions of theta's event shape {event}; it returns {tuple(sol)}")
        n, d = flat.shape[0], flat[0].numel() if flat.shape[0] else int(torch.Size(event).numel())
        if n == 0:  # an empty batch: no instance, no atom
            empty = flat.new_zeros(0, 0, d)
            return empty, flat.new_zeros(0, 0), batch
        oracle = _FlatOracle(self.oracle, event)
        atoms, weights = self.regularizer.solve(flat.reshape(n, -1), oracle, self.max_iter, self.tol)
        return atoms, weights, batch

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        atoms, weights, batch = self._solve(theta)
        if atoms.shape[0] == 0:
            return theta * 0.0  # an empty batch: empty output, still connected to theta
        reg = self.regularizer
        quadratic = isinstance(reg, SquaredNorm)
        flat = theta.detach().reshape(atoms.shape[0], atoms.shape[-1])
        mu = (weights.unsqueeze(-1) * atoms).sum(1)
        sqrt_h = None if quadratic else reg.hessian_diag(mu).sqrt()
        scale = 1.0 / reg.strength if quadratic else 1.0
        if not (self.face_completion and torch.is_grad_enabled() and theta.requires_grad):
            # no completion (or no Jacobian needed)
            return ActiveSetProjection.apply(theta, atoms, weights, None, sqrt_h, scale)
        gen = self.resolve_generator(generator, theta)
        if gen is None:
            gen = torch.Generator(device=theta.device).manual_seed(0)
        event = tuple(theta.shape[len(batch) :])
        oracle = _FlatOracle(self.oracle, event)
        centered, offset = center_scores(flat)  # a constant offset that cannot change the face is left out
        if quadratic:  # the projection of theta / s
            s = reg.strength
            full, face = complete_face(centered / s, atoms, weights, oracle, self.tol, gen, offset=offset / s)
        else:
            ascent = centered - reg.gradient(mu)
            full, face = complete_face(centered, atoms, weights, oracle, self.tol, gen, ascent=ascent, offset=offset)
        if full.shape[1] > atoms.shape[1]:
            weights = torch.cat([weights, weights.new_zeros(weights.shape[0], full.shape[1] - atoms.shape[1])], 1)
        return ActiveSetProjection.apply(theta, full, weights, face, sqrt_h, scale)

    def distribution(self, theta: torch.Tensor, *, generator: torch.Generator | None = None) -> SolutionDistribution:
        """The active atoms and their weights: atoms ``(m, *batch, *event)``, weights ``(m, *batch)``
        (``generator`` is accepted for the protocol and unused: Frank-Wolfe is deterministic)."""
        atoms, weights, batch = self._solve(theta)
        event = tuple(theta.shape[len(batch) :])
        m = atoms.shape[1]
        a = atoms.transpose(0, 1).reshape(m, *batch, *event)
        w = weights.transpose(0, 1).reshape(m, *batch)
        return SolutionDistribution(a, w, event_ndim=len(event))

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu)` (the regularizer's value) summed over the event, shape ``(*batch)``."""
        nd = self.oracle.event_ndim
        batch = mu.shape[: mu.ndim - nd]
        size = math.prod(mu.shape[mu.ndim - nd :])  # not -1: a batch may be empty
        return self.regularizer.value(mu.reshape(*batch, size) if nd else mu.unsqueeze(-1))

    def extra_repr(self) -> str:
        extra = f"max_iter={self.max_iter}, tol={self.tol}, face_completion={self.face_completion}"
        return f"{super().extra_repr()}, regularizer={self.regularizer!r}, {extra}"
