r"""Regularized layers: :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
\langle\theta,\mu\rangle - \Omega(\mu)`.

* :class:`SoftArgmax` — entropy :math:`\Omega(\mu) = T\sum_i\mu_i\log\mu_i` on the simplex: softmax(θ/T);
* :class:`SparseArgmax` — :math:`\Omega(\mu) = \tfrac12\|\mu\|^2` on the simplex: sparsemax, with its
  closed-form Jacobian :math:`\mathrm{diag}(s) - ss^\top/|s|` (s the support indicator);
* :class:`RegularizedFrankWolfe` (alias :class:`SparseMAP`) — :math:`\Omega(\mu) = \tfrac12\|\mu\|^2` on
  :math:`\mathrm{conv}(\mathcal Y)` for ANY oracle: the Euclidean projection of θ onto the polytope, by
  Frank-Wolfe with away steps that uses the oracle as linear maximization oracle, then implicit
  differentiation on the active set (:func:`~colayers.layers.core.active_set_vjp`), not unrolling.

References: Martins & Astudillo, *From Softmax to Sparsemax*, ICML 2016; Niculae, Martins, Blondel, Cardie,
*SparseMAP: Differentiable Sparse Structured Inference*, ICML 2018; Lacoste-Julien & Jaggi, *On the
Global Linear Convergence of Frank-Wolfe Optimization Variants*, NeurIPS 2015; Blondel, Martins, Niculae,
*Learning with Fenchel-Young Losses*, JMLR 2020.
"""

from __future__ import annotations

import torch

from .._validation import check_int_at_least, check_positive, check_tensor
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from .core import OracleLayer, PositionalFunction, active_set_vjp, check_finite_fast

__all__ = [
    "SoftArgmax",
    "SparseArgmax",
    "RegularizedFrankWolfe",
    "SparseMAP",
    "Sparsemax",
    "ActiveSetProjection",
    "frank_wolfe_projection",
]


def _check_vector_theta(theta: torch.Tensor, validate: bool) -> None:
    check_tensor("theta", theta)
    if theta.ndim < 1:
        raise ValueError(f"theta must have at least 1 dimension (*batch, n); got shape {tuple(theta.shape)}")
    if validate:
        check_finite_fast("theta", theta)


class SoftArgmax(torch.nn.Module):
    r"""Entropy-regularized argmax over the simplex: :math:`\mu(\theta) = \mathrm{softmax}(\theta/T)`.

    :math:`\Omega(\mu) = T\sum_i \mu_i\log\mu_i` (negative Shannon entropy times T), so that
    :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\Delta}\langle\theta,\mu\rangle - \Omega(\mu)`;
    Jacobian :math:`(\mathrm{diag}(\mu) - \mu\mu^\top)/T`. Acts on the last dimension.

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
    """

    def __init__(self, temperature: float = 1.0, *, validate_args: bool = True) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_vector_theta(theta, self.validate_args)
        return torch.softmax(theta / self.temperature, dim=-1)

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu) = T\sum_i\mu_i\log\mu_i` (with 0 log 0 = 0), shape ``(*batch)``."""
        return self.temperature * torch.xlogy(mu, mu).sum(-1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class Sparsemax(PositionalFunction):
    r"""Sparsemax :math:`\mathrm{proj}_\Delta(\theta)` over the last dimension with the closed-form VJP
    :math:`s\odot(\bar y - \langle s,\bar y\rangle/|s|)` (s the support indicator)."""

    @staticmethod
    def forward(theta):
        z, _ = torch.sort(theta, dim=-1, descending=True)
        n = theta.shape[-1]
        k = torch.arange(1, n + 1, device=theta.device, dtype=theta.dtype)
        cumsum = z.cumsum(-1) - 1.0
        support = (k * z > cumsum).to(theta.dtype)
        k_max = support.sum(-1, keepdim=True)
        tau = torch.gather(cumsum, -1, k_max.long() - 1) / k_max
        return torch.clamp(theta - tau, min=0.0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (mu,) = ctx.saved_tensors
        s = (mu > 0).to(grad_output.dtype)
        mean = (grad_output * s).sum(-1, keepdim=True) / s.sum(-1, keepdim=True)
        return s * (grad_output - mean)


class SparseArgmax(torch.nn.Module):
    r"""Sparsemax: :math:`\mu(\theta) = \operatorname{argmax}_{\mu\in\Delta}\langle\theta,\mu\rangle -
    \tfrac12\|\mu\|^2`, the Euclidean projection onto the simplex (Martins & Astudillo, ICML 2016).

    Closed form :math:`\mu = (\theta - \tau)_+` with τ chosen so that μ sums to one; Jacobian
    :math:`\mathrm{diag}(s) - ss^\top/|s|` (s the support indicator), symmetric PSD. Acts on the last
    dimension; :math:`\Omega(\mu) = \tfrac12\|\mu\|^2`.

    Example:
        >>> import torch
        >>> SparseArgmax()(torch.tensor([0.0, 1.5, 1.0]))
        tensor([0.0000, 0.7500, 0.2500])
    """

    def __init__(self, *, validate_args: bool = True) -> None:
        super().__init__()
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_vector_theta(theta, self.validate_args)
        return Sparsemax.apply(theta)

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu) = \tfrac12\|\mu\|^2`, shape ``(*batch)``."""
        return 0.5 * (mu * mu).sum(-1)


@torch.no_grad()
def frank_wolfe_projection(
    theta: torch.Tensor, oracle: Oracle, max_iter: int = 100, tol: float = 1e-9, polish_every: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Project a flat batch θ ``(B, d)`` onto :math:`\mathrm{conv}(\mathcal Y)` by Frank-Wolfe with away steps.

    Maximizes :math:`F(\mu) = \langle\theta,\mu\rangle - \tfrac12\|\mu\|^2` over the convex hull of the
    oracle's solutions, all instances together: each iteration makes ONE batched oracle call
    :math:`v = f(\theta - \mu)` (the linear maximization oracle at the gradient :math:`\theta - \mu`), then
    takes either the Frank-Wolfe step toward v or the away step from the worst active atom, whichever has
    the larger gap, with exact line search. Every ``polish_every`` iterations (and at the end) the
    weights are polished by solving the projection onto the affine hull of the active atoms exactly
    (a ``(B, m, m)`` system); an instance stops once its polished weights are non-negative and its
    Frank-Wolfe gap :math:`\langle\theta-\mu, v-\mu\rangle` is at most ``tol`` (scaled by
    :math:`1 + \|\theta\|^2`).

    Returns:
        ``(atoms, weights)`` of shapes ``(B, m, d)`` and ``(B, m)``: the active atoms (padded with
        zero-weight atoms) and their convex weights, :math:`\mu = \sum_j w_j a_j`.
    """
    b, d = theta.shape
    v = oracle(theta).reshape(b, d)
    atoms = v.unsqueeze(1)
    weights = torch.ones(b, 1, dtype=theta.dtype, device=theta.device)
    done = torch.zeros(b, dtype=torch.bool, device=theta.device)
    scale = 1.0 + (theta * theta).sum(-1)
    tol_scaled = tol * scale
    rows = torch.arange(b, device=theta.device)
    for it in range(max_iter):
        mu = (weights.unsqueeze(-1) * atoms).sum(1)
        grad = theta - mu
        v = oracle(grad).reshape(b, d)
        fw_gap = (grad * (v - mu)).sum(-1)
        if (it + 1) % polish_every == 0:
            weights, done = _polish(theta, atoms, weights, fw_gap, tol_scaled, done)
            mu = (weights.unsqueeze(-1) * atoms).sum(1)
            grad = theta - mu
            v = oracle(grad).reshape(b, d)
            fw_gap = (grad * (v - mu)).sum(-1)
        done = done | (fw_gap <= tol_scaled)
        if bool(done.all()):
            break
        # away atom: the active atom with the smallest <grad, a>
        scores = (atoms * grad.unsqueeze(1)).sum(-1).masked_fill(weights <= 0, float("inf"))
        a_idx = scores.argmin(-1)
        a = atoms[rows, a_idx]
        w_a = weights.gather(1, a_idx.unsqueeze(1)).squeeze(1)
        away_gap = (grad * (mu - a)).sum(-1)
        use_fw = fw_gap >= away_gap
        direction = torch.where(use_fw.unsqueeze(-1), v - mu, mu - a)
        gmax = torch.where(use_fw, torch.ones_like(w_a), w_a / torch.clamp(1 - w_a, min=1e-30))
        dd = (direction * direction).sum(-1)
        gamma = torch.where(dd > 0, (grad * direction).sum(-1) / torch.where(dd > 0, dd, 1.0), 0.0)
        gamma = torch.minimum(torch.clamp(gamma, min=0.0), gmax)
        gamma = gamma.masked_fill(done, 0.0)
        # FW vertex: reuse an existing slot if v is already stored, else append a new slot
        # (torch's all/any over a last dimension are slow on the CPU: count instead, same result)
        match = (atoms == v.unsqueeze(1)).sum(-1) == d
        has = match.sum(-1) > 0
        atoms = torch.cat([atoms, v.unsqueeze(1)], 1)
        weights = torch.cat([weights, weights.new_zeros(b, 1)], 1)
        v_idx = torch.where(has, match.to(torch.int8).argmax(-1), atoms.shape[1] - 1)
        fw_w = (1 - gamma).unsqueeze(1) * weights
        fw_w = fw_w.scatter_add(1, v_idx.unsqueeze(1), gamma.unsqueeze(1))
        aw_w = (1 + gamma).unsqueeze(1) * weights
        aw_w = aw_w.scatter_add(1, a_idx.unsqueeze(1), -gamma.unsqueeze(1))
        drop = (~use_fw) & (gamma >= gmax)  # drop step: the away atom leaves the active set exactly
        aw_w = aw_w.masked_fill(
            drop.unsqueeze(1) & (torch.arange(weights.shape[1], device=theta.device) == a_idx.unsqueeze(1)), 0.0
        )
        weights = torch.where(use_fw.unsqueeze(1), fw_w, aw_w).clamp(min=0.0)
        weights = weights / weights.sum(-1, keepdim=True)
        # forget slots no instance uses any more
        keep = (weights > 0).sum(0) > 0
        if not bool(keep.all()):
            atoms, weights = atoms[:, keep], weights[:, keep]
    mu = (weights.unsqueeze(-1) * atoms).sum(1)
    fw_gap = ((theta - mu) * (oracle(theta - mu).reshape(b, d) - mu)).sum(-1)
    weights, _ = _polish(theta, atoms, weights, fw_gap, tol_scaled, torch.zeros_like(done))
    keep = (weights > 0).sum(0) > 0
    return atoms[:, keep], weights[:, keep]


def _polish(theta, atoms, weights, fw_gap, tol, done):
    """Project θ onto the affine hull of each instance's active atoms; keep the result where it is feasible."""
    ref = weights.argmax(-1)
    b, m, d = atoms.shape
    ar = atoms[torch.arange(b, device=theta.device), ref]  # (B, d)
    active = weights > 0
    diff = (atoms - ar.unsqueeze(1)) * active.unsqueeze(-1).to(atoms.dtype)
    gram = diff @ diff.transpose(-1, -2)
    rhs = diff @ (theta - ar).unsqueeze(-1)
    coef = (torch.linalg.pinv(gram, hermitian=True) @ rhs).squeeze(-1) * active.to(atoms.dtype)
    is_ref = torch.arange(m, device=theta.device) == ref.unsqueeze(1)
    coef = torch.where(is_ref, torch.zeros_like(coef), coef)
    new_w = torch.where(is_ref, (1 - coef.sum(-1, keepdim=True)).expand_as(coef), coef)
    tiny = 100 * torch.finfo(theta.dtype).eps
    ok = ((new_w >= -tiny).sum(-1) == m) & ~done
    new_w = torch.where(new_w <= tiny, torch.zeros_like(new_w), new_w)
    new_w = new_w / new_w.sum(-1, keepdim=True)
    weights = torch.where(ok.unsqueeze(-1), new_w, weights)
    # a polished instance is finished when no vertex improves on it (checked by the caller's next gap)
    return weights, done


class ActiveSetProjection(PositionalFunction):
    r"""``apply(theta, atoms, weights)`` returns :math:`\mu = \sum_j w_j a_j` reshaped like θ; the VJP is the
    implicit active-set rule :func:`~colayers.layers.core.active_set_vjp` (atoms ``(B, m, d)``, weights ``(B, m)``)."""

    @staticmethod
    def forward(theta, atoms, weights):
        return (weights.unsqueeze(-1) * atoms).sum(1).reshape(theta.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, atoms, weights = inputs
        ctx.save_for_backward(atoms, weights)

    @staticmethod
    def backward(ctx, grad_output):
        atoms, weights = ctx.saved_tensors
        flat = grad_output.reshape(atoms.shape[0], atoms.shape[-1])
        return active_set_vjp(atoms, weights, flat).reshape(grad_output.shape), None, None


class RegularizedFrankWolfe(OracleLayer):
    r"""Quadratically regularized layer over any polytope (SparseMAP; Niculae et al., ICML 2018).

    .. math::  \mu(\theta) = \operatorname*{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
               \langle\theta,\mu\rangle - \tfrac12\|\mu\|^2 = \mathrm{proj}_{\mathrm{conv}(\mathcal Y)}(\theta),

    computed by :func:`frank_wolfe_projection` (away-step Frank-Wolfe with the oracle as linear
    maximization oracle; all instances iterate together, one batched oracle call per iteration). The result
    is a sparse convex combination of solutions, exposed by :meth:`distribution`. Gradient: implicit
    differentiation on the active set, :math:`J = D^\top(DD^\top)^+D`, the projector onto the directions of
    the active face (exact when the active atoms span the face that contains μ, as on the simplex, where
    this layer equals :class:`SparseArgmax`). :math:`\Omega(\mu) = \tfrac12\|\mu\|^2`.

    Args:
        oracle: the maximization oracle (solutions of θ's event shape).
        max_iter: the most Frank-Wolfe iterations (oracle calls) per forward.
        tol: stopping tolerance on the Frank-Wolfe gap, relative to :math:`1 + \|\theta\|^2`.
        validate_args: check θ on every call.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> layer = RegularizedFrankWolfe(ArgmaxOneHot())
        >>> layer(torch.tensor([0.0, 1.5, 1.0], dtype=torch.float64))  # = sparsemax
        tensor([0.0000, 0.7500, 0.2500], dtype=torch.float64)
        >>> d = layer.distribution(torch.tensor([0.0, 1.5, 1.0], dtype=torch.float64))
        >>> sorted(round(w, 4) for w in d.weights.tolist() if w > 0)
        [0.25, 0.75]
    """

    def __init__(self, oracle: Oracle, max_iter: int = 100, tol: float = 1e-9, *, validate_args: bool = True) -> None:
        super().__init__(oracle, validate_args=validate_args)
        self.max_iter = check_int_at_least("max_iter", max_iter, 1)
        self.tol = check_positive("tol", tol)

    def _solve(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        batch = self.check_theta(theta)
        event = tuple(theta.shape[len(batch) :])
        flat = theta.detach().reshape(-1, *event)
        sol = self.oracle.solution_shape(event)
        if tuple(sol) != event:
            raise ValueError(f"oracle must return solutions of theta's event shape {event}; it returns {tuple(sol)}")
        n = flat.shape[0]
        atoms, weights = frank_wolfe_projection(
            flat.reshape(n, -1), _FlatOracle(self.oracle, event), self.max_iter, self.tol
        )
        return atoms, weights, batch

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        atoms, weights, _ = self._solve(theta)
        return ActiveSetProjection.apply(theta, atoms, weights)

    def distribution(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> SolutionDistribution:
        """The active atoms and their weights: atoms ``(m, *batch, *event)``, weights ``(m, *batch)``."""
        atoms, weights, batch = self._solve(theta)
        event = tuple(theta.shape[len(batch) :])
        m = atoms.shape[1]
        a = atoms.transpose(0, 1).reshape(m, *batch, *event)
        w = weights.transpose(0, 1).reshape(m, *batch)
        return SolutionDistribution(a, w, event_ndim=len(event))

    def omega(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu) = \tfrac12\|\mu\|^2` summed over the event, shape ``(*batch)``."""
        dims = tuple(range(-self.oracle.event_ndim, 0))
        return 0.5 * (mu * mu).sum(dim=dims)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_iter={self.max_iter}, tol={self.tol}"


SparseMAP = RegularizedFrankWolfe


class _FlatOracle:
    """Calls an oracle on flat ``(B, d)`` scores reshaped to its event shape."""

    def __init__(self, oracle: Oracle, event: tuple[int, ...]) -> None:
        self.oracle, self.event = oracle, event

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.oracle(theta.reshape(theta.shape[0], *self.event)).reshape(theta.shape[0], -1)
