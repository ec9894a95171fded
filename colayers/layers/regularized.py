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

from .._validation import check_finite, check_int_at_least, check_positive, check_tensor
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from .core import OracleLayer, active_set_vjp, pinv_psd

__all__ = [
    "SoftArgmax",
    "SparseArgmax",
    "RegularizedFrankWolfe",
    "SparseMAP",
    "Sparsemax",
    "ActiveSetProjection",
    "frank_wolfe_projection",
    "complete_face",
]


def _check_vector_theta(theta: torch.Tensor, validate: bool) -> None:
    check_tensor("theta", theta)
    if theta.ndim < 1:
        raise ValueError(f"theta must have at least 1 dimension (*batch, n); got shape {tuple(theta.shape)}")
    if validate:
        check_finite("theta", theta)


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

    def __init__(self, *, temperature: float = 1.0, validate_args: bool = True) -> None:
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


class Sparsemax(torch.autograd.Function):
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
    (a ``(B, m, m)`` system), with Wolfe's minor cycles where that point leaves the atoms' convex hull
    (step toward it until a weight reaches 0, drop that atom, repeat), which also sheds affinely dependent
    atoms; an instance stops once its polished weights are non-negative and its
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
    # a gap below the dtype's rounding of <theta - mu, v - mu> is unreachable: never ask for less than 100 eps
    tol_scaled = max(float(tol), 100 * torch.finfo(theta.dtype).eps) * scale
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


def _affine_weights(theta, atoms, weights):
    """Weights (summing to one, zero off the active set) of the projection of θ onto the affine hull of the
    active atoms (minimum-norm weights where the atoms are affinely dependent)."""
    ref = weights.argmax(-1)
    b, m, d = atoms.shape
    ar = atoms[torch.arange(b, device=theta.device), ref]  # (B, d)
    active = (weights > 0).to(atoms.dtype)
    diff = (atoms - ar.unsqueeze(1)) * active.unsqueeze(-1)
    gram = diff @ diff.transpose(-1, -2)
    rhs = diff @ (theta - ar).unsqueeze(-1)
    coef = (pinv_psd(gram) @ rhs).squeeze(-1) * active
    is_ref = torch.arange(m, device=theta.device) == ref.unsqueeze(1)
    coef = torch.where(is_ref, torch.zeros_like(coef), coef)
    return torch.where(is_ref, (1 - coef.sum(-1, keepdim=True)).expand_as(coef), coef)


def _polish(theta, atoms, weights, fw_gap, tol, done):
    """Project θ onto the affine hull of each instance's active atoms where that point is in their convex hull;
    elsewhere take Wolfe's minor-cycle steps (Wolfe 1976, the min-norm-point algorithm): move the weights toward
    the affine projection until one reaches 0, drop that atom, and retry on the smaller active set. Each step
    improves the objective (it is concave along the segment, maximal at its end) and removes an atom, so
    affinely dependent or superfluous atoms, which the affine projection alone cannot resolve, are shed."""
    b, m, d = atoms.shape
    tiny = 100 * torch.finfo(theta.dtype).eps
    pending = ~done
    for _ in range(m):
        new_w = _affine_weights(theta, atoms, weights)
        ok = ((new_w >= -tiny).sum(-1) == m) & pending
        feasible = torch.where(new_w <= tiny, torch.zeros_like(new_w), new_w)
        feasible = feasible / feasible.sum(-1, keepdim=True)
        weights = torch.where(ok.unsqueeze(-1), feasible, weights)
        pending = pending & ~ok
        if not bool(pending.any()):
            break
        # minor cycle: the largest step toward new_w that keeps every weight >= 0; the blocking atom leaves
        blocking = (new_w < -tiny) & (weights > 0)
        ratio = weights / torch.where(blocking, weights - new_w, torch.ones_like(weights))
        ratio = torch.where(blocking, ratio, torch.full_like(ratio, float("inf")))
        t, drop = ratio.min(-1)
        step = pending & torch.isfinite(t)
        if not bool(step.any()):
            break
        t = torch.where(step, t.clamp(0.0, 1.0), torch.zeros_like(t))
        moved = (weights + t.unsqueeze(-1) * (new_w - weights)).clamp(min=0.0)
        moved = moved.masked_fill(torch.nn.functional.one_hot(drop, m).bool() & step.unsqueeze(-1), 0.0)
        moved = moved / moved.sum(-1, keepdim=True)
        weights = torch.where(step.unsqueeze(-1), moved, weights)
        pending = pending & step
    # a polished instance is finished when no vertex improves on it (checked by the caller's next gap)
    return weights, done


@torch.no_grad()
def complete_face(
    theta: torch.Tensor,
    atoms: torch.Tensor,
    weights: torch.Tensor,
    oracle,
    tol: float = 1e-9,
    generator: torch.Generator | None = None,
    max_rounds: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Add the vertices of the optimal face that Frank-Wolfe's minimal representation leaves out.

    At the projection :math:`\mu` of θ, with :math:`g = \theta - \mu`, the face of
    :math:`\mathrm{conv}(\mathcal Y)` exposed by g is

    .. math::  F(g) = \operatorname{conv}\{v\in\mathcal Y : \langle g, v\rangle = \max_{y\in\mathcal Y}
               \langle g, y\rangle = \langle g, \mu\rangle\},

    and where μ lies in its relative interior the projection is locally the projection onto its affine
    hull. Frank-Wolfe returns a minimal set of atoms, whose affine hull can be a proper subspace of that of
    F(g) (e.g. top-2 of 4 at θ = 0: μ = ½·1 = ½(e₁+e₂) + ½(e₃+e₄), a segment, while F(g) is the whole
    octahedron). This function grows an orthonormal basis Q of the directions spanned so far (the active
    atoms' differences) and, in rounds, asks the oracle at :math:`g \pm \tau\delta` for a random unit δ
    orthogonal to Q (ONE batched oracle call of 2 scores per unfinished instance per round). A tiny τ only
    breaks the tie inside F(g): the answer maximizes ⟨δ, v⟩ over F(g). If F(g) has a vertex outside the
    current affine hull, its component w orthogonal to Q is non-zero, ⟨δ, w⟩ ≠ 0 almost surely, so one of
    ±δ returns a vertex outside the hull, which is added (zero weight; it enters the Jacobian only). An
    instance stops at the first round that adds nothing, or when Q spans the whole space: at a generic θ
    (the atoms already span F(g)) that is one round and nothing is added.

    Exactness: in exact arithmetic and with an exact oracle the result spans F(g) with probability one.
    In floating point, a vertex v counts as on the face when :math:`|\langle g, v - \mu\rangle| \le
    \mathrm{tol}_F = \max(\mathrm{tol}, \sqrt{\varepsilon_{\rm dtype}})\,(1 + \|\theta\|^2 + \|\mu\|^2)`,
    :math:`\tau = \mathrm{tol}_F / (4 s\sqrt d)` (s the largest atom entry, at least 1) so that no vertex
    more than :math:`\mathrm{tol}_F` below the face can win a probe, and a new direction needs a component
    above :math:`\sqrt{\varepsilon_{\rm dtype}}\,s` outside Q. The completion can therefore stop early when
    the oracle does not resolve score changes of size τ (an approximate, rounding or time-limited solver),
    and treats vertices within :math:`\mathrm{tol}_F` of the face as on it. A miss lowers the Jacobian's
    rank; a vertex it adds is always on the face up to :math:`\mathrm{tol}_F`.

    Args:
        theta: ``(B, d)`` flat scores; atoms ``(B, m, d)`` and weights ``(B, m)`` from
            :func:`frank_wolfe_projection`; oracle: a callable on flat ``(N, d)`` scores.
        tol: the projection's tolerance (see tol_F above).
        generator: the source of δ (on θ's device).
        max_rounds: the most rounds (``None``: d + 1, enough for any face; 0: no completion).

    Returns:
        ``(atoms, face)``: the atoms with the new face vertices appended, ``(B, m', d)`` (their weight is 0:
        pad ``weights`` with zeros), and the ``(B, m')`` boolean mask of the atoms that span the face (the
        active atoms and the new vertices), for :func:`~colayers.layers.core.active_set_vjp`.

    Example:
        >>> from colayers import TopKSubset
        >>> theta = torch.zeros(1, 4, dtype=torch.float64)
        >>> atoms, weights = frank_wolfe_projection(theta, TopKSubset(2))
        >>> atoms.shape[1]  # two opposite vertices of the octahedron
        2
        >>> full, face = complete_face(theta, atoms, weights, TopKSubset(2), generator=torch.Generator().manual_seed(0))
        >>> torch.linalg.matrix_rank(full[0][face[0]] - full[0, :1]).item()  # the octahedron has dimension 3
        3
    """
    active = weights > 0
    b, m, d = atoms.shape
    if max_rounds is None:
        max_rounds = d + 1
    if max_rounds == 0 or b == 0:
        return atoms, active
    dtype, device = theta.dtype, theta.device
    rows = torch.arange(b, device=device)
    mu = (weights.unsqueeze(-1) * atoms).sum(1)
    g = theta - mu
    value = (g * mu).sum(-1)  # (B,) = max_y <g, y> at the projection
    root_eps = torch.finfo(dtype).eps ** 0.5
    # <g, v - mu> sums products of theta-sized and atom-sized numbers: its rounding error scales with both
    face_tol = max(float(tol), root_eps) * (1.0 + (theta * theta).sum(-1) + (mu * mu).sum(-1))  # (B,)
    scale = atoms.abs().amax(dim=(1, 2)).clamp(min=1.0)  # (B,) the vertices' entry size
    tau = face_tol / (4.0 * scale * d**0.5)  # |<tau delta, v - v'>| <= tau 2 s sqrt(d) = tol_F / 2
    new_tol = root_eps * scale
    ref = atoms[rows, weights.argmax(-1)]  # (B, d): the heaviest atom
    basis = atoms.new_zeros(b, d, 0)  # (B, d, r): orthonormal columns, zero columns where rank < r
    rank = torch.zeros(b, dtype=torch.long, device=device)

    def add(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        nonlocal basis
        r = w
        for _ in range(2):  # Gram-Schmidt, twice for stability
            r = r - (basis @ (basis.transpose(1, 2) @ r.unsqueeze(-1))).squeeze(-1)
        norm = torch.linalg.vector_norm(r, dim=-1)
        ok = mask & (norm > new_tol) & (rank < d)
        if not bool(ok.any()):
            return ok
        if bool((ok & (rank == basis.shape[-1])).any()):
            basis = torch.cat([basis, basis.new_zeros(b, d, 1)], -1)
        basis[rows[ok], :, rank[ok]] = r[ok] / norm[ok].unsqueeze(-1)
        rank.add_(ok.long())
        return ok

    for j in range(m):
        add(atoms[:, j] - ref, active[:, j])
    found, masks = [], []
    todo = rank < d
    for _ in range(max_rounds):
        idx = todo.nonzero().squeeze(1)
        n = idx.numel()
        if n == 0:
            break
        q = basis[idx]
        z = torch.randn((n, d), generator=generator, device=device, dtype=dtype)
        delta = z - (q @ (q.transpose(1, 2) @ z.unsqueeze(-1))).squeeze(-1)
        delta = delta / torch.linalg.vector_norm(delta, dim=-1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)
        step = tau[idx].unsqueeze(-1) * delta
        answers = oracle(torch.cat([g[idx] + step, g[idx] - step])).reshape(2, n, d)
        progress = torch.zeros(n, dtype=torch.bool, device=device)
        for v in answers:
            on_face = ((g[idx] * v).sum(-1) - value[idx]).abs() <= face_tol[idx]
            vertex = atoms.new_zeros(b, d).index_copy_(0, idx, v)
            mask = torch.zeros(b, dtype=torch.bool, device=device).index_copy_(0, idx, on_face)
            ok = add(vertex - ref, mask)
            if bool(ok.any()):
                found.append(vertex)
                masks.append(ok)
            progress |= ok[idx]
        todo = torch.zeros(b, dtype=torch.bool, device=device).index_copy_(0, idx, progress) & (rank < d)
    if not found:
        return atoms, active
    return torch.cat([atoms, torch.stack(found, 1)], 1), torch.cat([active, torch.stack(masks, 1)], 1)


class ActiveSetProjection(torch.autograd.Function):
    r"""``apply(theta, atoms, weights, face)`` returns :math:`\mu = \sum_j w_j a_j` reshaped like θ; the VJP is
    the implicit active-set rule :func:`~colayers.layers.core.active_set_vjp` (atoms ``(B, m, d)``, weights
    ``(B, m)``, ``face`` the ``(B, m)`` mask of the atoms spanning the face, or ``None`` for ``weights > 0``)."""

    @staticmethod
    def forward(theta, atoms, weights, face):
        return (weights.unsqueeze(-1) * atoms).sum(1).reshape(theta.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, atoms, weights, face = inputs
        ctx.has_face = face is not None
        ctx.save_for_backward(atoms, weights, *((face,) if face is not None else ()))

    @staticmethod
    def backward(ctx, grad_output):
        atoms, weights, *face = ctx.saved_tensors
        flat = grad_output.reshape(atoms.shape[0], atoms.shape[-1])
        grad = active_set_vjp(atoms, weights, flat, face[0] if ctx.has_face else None)
        return grad.reshape(grad_output.shape), None, None, None


class RegularizedFrankWolfe(OracleLayer):
    r"""Quadratically regularized layer over any polytope (SparseMAP; Niculae et al., ICML 2018).

    .. math::  \mu(\theta) = \operatorname*{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
               \langle\theta,\mu\rangle - \tfrac12\|\mu\|^2 = \mathrm{proj}_{\mathrm{conv}(\mathcal Y)}(\theta),

    computed by :func:`frank_wolfe_projection` (away-step Frank-Wolfe with the oracle as linear
    maximization oracle; all instances iterate together, one batched oracle call per iteration). The result
    is a sparse convex combination of solutions, exposed by :meth:`distribution`. :math:`\Omega(\mu) =
    \tfrac12\|\mu\|^2`.

    Gradient: implicit differentiation, :math:`J = D^\top(DD^\top)^+D`, the orthogonal projector onto the
    directions of the face :math:`F(\theta - \mu)` of the polytope exposed by :math:`\theta - \mu`
    (:func:`~colayers.layers.core.active_set_vjp`). Frank-Wolfe's atoms are a minimal representation of μ
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

    Args:
        oracle: the maximization oracle (solutions of θ's event shape).
        max_iter: the most Frank-Wolfe iterations (oracle calls) per forward.
        tol: stopping tolerance on the Frank-Wolfe gap, relative to :math:`1 + \|\theta\|^2` (at least
            100 ε of θ's dtype, since a smaller gap cannot be resolved: float32 stops at about 1.2e-5).
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
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        max_iter: int = 100,
        tol: float = 1e-9,
        face_completion: bool = True,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(oracle, seed=seed, validate_args=validate_args)
        self.max_iter = check_int_at_least("max_iter", max_iter, 1)
        self.tol = check_positive("tol", tol)
        self.face_completion = bool(face_completion)

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
        atoms, weights, batch = self._solve(theta)
        if not (self.face_completion and torch.is_grad_enabled() and theta.requires_grad):
            return ActiveSetProjection.apply(theta, atoms, weights, None)  # no completion (or no Jacobian needed)
        flat = theta.detach().reshape(atoms.shape[0], atoms.shape[-1])
        gen = self.resolve_generator(generator, theta)
        if gen is None:
            gen = torch.Generator(device=theta.device).manual_seed(0)
        event = tuple(theta.shape[len(batch) :])
        full, face = complete_face(flat, atoms, weights, _FlatOracle(self.oracle, event), self.tol, gen)
        if full.shape[1] > atoms.shape[1]:
            weights = torch.cat([weights, weights.new_zeros(weights.shape[0], full.shape[1] - atoms.shape[1])], 1)
        return ActiveSetProjection.apply(theta, full, weights, face)

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
        extra = f"max_iter={self.max_iter}, tol={self.tol}, face_completion={self.face_completion}"
        return f"{super().extra_repr()}, {extra}"


SparseMAP = RegularizedFrankWolfe


class _FlatOracle:
    """Calls an oracle on flat ``(B, d)`` scores reshaped to its event shape."""

    def __init__(self, oracle: Oracle, event: tuple[int, ...]) -> None:
        self.oracle, self.event = oracle, event

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.oracle(theta.reshape(theta.shape[0], *self.event)).reshape(theta.shape[0], -1)
