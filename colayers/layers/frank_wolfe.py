r"""Frank-Wolfe over :math:`\mathrm{conv}(\mathcal Y)` with the oracle as linear maximization oracle.

Solves, for every instance of a batch at once (one batched oracle call per iteration),

.. math::  \mu(\theta) = \operatorname*{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
           \langle\theta,\mu\rangle - \Omega(\mu)

for a pluggable convex :class:`Regularizer` Ω: :class:`SquaredNorm` (:math:`\tfrac s2\|\mu\|^2`, the
Euclidean projection of θ/s onto the polytope: SparseMAP) or :class:`NegativeEntropy`
(:math:`s\sum_i\mu_i\log\mu_i`, Ω on the mean μ as in InferOpt.jl's ``RegularizedFrankWolfe``), or any
user subclass. The solution is a sparse convex combination of oracle solutions (the *active set*), and
:class:`~colayers.layers.active_set.ActiveSetProjection` differentiates it
implicitly on that set (not by unrolling): with
:math:`H = \nabla^2\Omega(\mu)` and :math:`D` the differences of the atoms spanning the optimal face,

.. math::  J = D^\top (D H D^\top)^{+} D,

the Jacobian of :math:`\theta\mapsto\mu` wherever μ is in the relative interior of the face of the
polytope exposed by :math:`\theta - \nabla\Omega(\mu)` (:math:`J = \frac1s` times the orthogonal
projector onto the face's directions for :class:`SquaredNorm`). :func:`~colayers.layers.active_set.complete_face`
adds the face vertices that a minimal active set leaves out.

References: M. Frank, P. Wolfe, 1956; S. Lacoste-Julien, M. Jaggi, *On the Global Linear Convergence of
Frank-Wolfe Optimization Variants*, NeurIPS 2015; V. Niculae, A. Martins, M. Blondel, C. Cardie,
*SparseMAP: Differentiable Sparse Structured Inference*, ICML 2018; G. Dalle, L. Baty, L. Bouvier,
A. Parmentier, *Learning with Combinatorial Optimization Layers: a Probabilistic Approach*, 2022
(InferOpt.jl); P. Wolfe, *Finding the nearest point in a polytope*, 1976.
"""

from __future__ import annotations

import math
import warnings

import torch

from .._validation import check_positive
from ..oracles.base import Oracle
from .active_set import _face_coefficients, pinv_psd

__all__ = ["Regularizer", "SquaredNorm", "NegativeEntropy"]


class Regularizer:
    r"""A separable convex regularizer :math:`\Omega` for :func:`frank_wolfe` and
    :class:`~colayers.layers.RegularizedFrankWolfe`, on flat means ``(B, d)``.

    A subclass provides :meth:`value`, :meth:`gradient` and :meth:`hessian_diag` (the solver's Newton
    polish and the implicit Jacobian use the diagonal of :math:`\nabla^2\Omega`: Ω must be separable,
    :math:`\Omega(\mu) = \sum_i\omega(\mu_i)`, and strictly convex on the polytope); it may override
    :meth:`line_search` (default: bisection on the derivative, to the dtype's resolution) and :meth:`solve`
    (default: :func:`frank_wolfe`), and :meth:`check_atoms` (the domain; default: any atoms).

    Example:
        >>> class Quartic(Regularizer):  # Omega(mu) = sum mu^4 / 4
        ...     def value(self, mu): return (mu ** 4).sum(-1) / 4
        ...     def gradient(self, mu): return mu ** 3
        ...     def hessian_diag(self, mu): return 3 * mu ** 2 + 1e-12
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
        >>> frank_wolfe(theta, ArgmaxOneHot(), Quartic())[1].sort().values  # weights of e1, e2
        tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """

    strength: float = 1.0

    def value(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega(\mu)`, ``(B, d) -> (B,)``."""
        raise NotImplementedError

    def gradient(self, mu: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla\Omega(\mu)`, ``(B, d)``; finite (clamped) where Ω's derivative is infinite."""
        raise NotImplementedError

    def hessian_diag(self, mu: torch.Tensor) -> torch.Tensor:
        r"""The diagonal of :math:`\nabla^2\Omega(\mu)`, ``(B, d)``, positive and finite (clamped)."""
        raise NotImplementedError

    def check_atoms(self, atoms: torch.Tensor) -> None:
        """Raise if oracle solutions ``(B, m, d)`` leave Ω's domain."""

    def line_search(
        self, theta: torch.Tensor, mu: torch.Tensor, direction: torch.Tensor, gmax: torch.Tensor
    ) -> torch.Tensor:
        r"""The step :math:`\gamma\in[0, \gamma_{\max}]` maximizing :math:`\langle\theta, \mu + \gamma d\rangle
        - \Omega(\mu + \gamma d)`, ``(B,)``: bisection on the derivative
        :math:`\langle\theta - \nabla\Omega(\mu+\gamma d), d\rangle`, decreasing in γ by convexity."""

        def slope(gamma):
            return ((theta - self.gradient(mu + gamma.unsqueeze(-1) * direction)) * direction).sum(-1)

        lo, hi = torch.zeros_like(gmax), gmax.clone()
        top = slope(hi) >= 0  # still ascending at the end of the segment: take all of it
        for _ in range(int(-math.log2(torch.finfo(theta.dtype).eps)) + 2):
            mid = 0.5 * (lo + hi)
            up = slope(mid) > 0
            lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
        gamma = torch.where(top, gmax, lo)
        return torch.where(slope(torch.zeros_like(gmax)) > 0, gamma, torch.zeros_like(gamma))

    def solve(
        self, theta: torch.Tensor, oracle, max_iter: int, tol: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(atoms, weights)`` of the solution for flat θ ``(B, d)`` (default: :func:`frank_wolfe`)."""
        return frank_wolfe(theta, oracle, self, max_iter=max_iter, tol=tol)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength})"


class SquaredNorm(Regularizer):
    r""":math:`\Omega(\mu) = \tfrac s2\|\mu\|^2`: the regularized argmax is the Euclidean projection of
    :math:`\theta/s` onto :math:`\mathrm{conv}(\mathcal Y)` (SparseMAP; Niculae et al., ICML 2018), solved by
    :func:`frank_wolfe_projection` (exact line search, affine-hull polish), Jacobian :math:`\frac1s` times
    the projector onto the optimal face's directions.

    Args:
        strength: s > 0.

    Example:
        >>> SquaredNorm(2.0).value(torch.tensor([[1.0, 1.0]]))
        tensor([2.])
    """

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = _check_strength(strength)

    def value(self, mu):
        return 0.5 * self.strength * (mu * mu).sum(-1)

    def gradient(self, mu):
        return self.strength * mu

    def hessian_diag(self, mu):
        return torch.full_like(mu, self.strength)

    def line_search(self, theta, mu, direction, gmax):
        grad = theta - self.gradient(mu)
        dd = self.strength * (direction * direction).sum(-1)
        gamma = torch.where(dd > 0, (grad * direction).sum(-1) / torch.where(dd > 0, dd, 1.0), 0.0)
        return torch.minimum(torch.clamp(gamma, min=0.0), gmax)

    def solve(self, theta, oracle, max_iter, tol):
        theta_c, offset = center_scores(theta)  # centered before the division: (theta - c) / s keeps its digits
        s = self.strength
        return frank_wolfe_projection(theta / s, oracle, max_iter, tol, centered=(theta_c / s, offset / s))


class NegativeEntropy(Regularizer):
    r""":math:`\Omega(\mu) = s\sum_i \mu_i\log\mu_i` (0 log 0 = 0) on the mean μ, for polytopes in the
    non-negative orthant (0/1 solutions: one-hot, top-k, paths, matchings; permutations of 1..n).

    On the simplex (:class:`~colayers.oracles.ArgmaxOneHot`) the regularized argmax is softmax(θ/s)
    (:class:`~colayers.layers.SoftArgmax`); on :class:`~colayers.oracles.Ranking` it is the KL soft rank
    (:func:`~colayers.layers.soft_rank`). :math:`\nabla\Omega = s(1 + \log\mu)`,
    :math:`\nabla^2\Omega = \mathrm{diag}(s/\mu)`; at :math:`\mu_i = 0` both are infinite and are clamped at
    the dtype's smallest normal number (the solver only needs their sign there: every vertex covering
    coordinate i is an ascent direction). Oracle solutions with a negative entry are refused.

    The solver converges quickly when s is comparable to the spread of θ; when s is much smaller than the
    score gaps, optimal coordinates of size exp(−Δθ/s) sit near the entropy's non-smooth boundary and
    Frank-Wolfe slows down (raise ``max_iter`` or use the closed forms :class:`~colayers.layers.SoftArgmax`
    and :func:`~colayers.layers.soft_rank` where they apply).

    **On rankings, use** :class:`~colayers.layers.SoftRank` ``(strength=s, regularization="kl")``: it computes
    the same μ exactly (a sort and one linear-time isotonic regression, :math:`O(n\log n)`), 57-1200× faster
    than Frank-Wolfe here (B = 32, n = 5-50, s = 0.3-3, forward + backward; ``benchmarks/README.md``). That
    gap is not an implementation detail Frank-Wolfe can shed: the entropic optimum lies in the relative
    interior of a face of the permutahedron (the whole of it when s is large against the score gaps), and
    Frank-Wolfe writes μ as a convex combination of vertices, so it needs at least dim(face) + 1 atoms, one
    oracle call each (9-126 calls at n = 5-50), and every iteration also pays a line search and an
    active-set Newton polish; at n = 50, s = 3 the default 100 iterations end 0.2 away from the solution.

    Args:
        strength: s > 0.

    Example:
        >>> NegativeEntropy(2.0).value(torch.tensor([[0.5, 0.5]]))  # 2 log(1/2)
        tensor([-1.3863])
    """

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = _check_strength(strength)

    def value(self, mu):
        return self.strength * torch.xlogy(mu, mu).sum(-1)

    def gradient(self, mu):
        return self.strength * (1.0 + torch.log(mu.clamp(min=torch.finfo(mu.dtype).tiny)))

    def hessian_diag(self, mu):
        return self.strength / mu.clamp(min=torch.finfo(mu.dtype).tiny)

    def check_atoms(self, atoms):
        if bool((atoms < 0).any()):
            raise ValueError(
                "NegativeEntropy needs oracle solutions with non-negative entries (its domain is mu >= 0); "
                f"the oracle returned a solution with minimum entry {float(atoms.min())}"
            )


def _check_strength(strength: float) -> float:
    strength = check_positive("strength", strength)
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number > 0; got {strength!r}")
    return strength


def center_scores(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Split flat scores ``(B, d)`` as :math:`\theta = \theta_c + c\,\mathbf 1`: ``(theta_c, c)`` with c
    ``(B,)`` the mean of each row (0 for an empty event) and :math:`\theta_c` computed as ``theta - c``
    (exact for the entries within a factor 2 of c, so an offset shared by all entries is removed exactly).

    Example:
        >>> center_scores(torch.tensor([[1e4 + 1.0, 1e4 - 1.0]], dtype=torch.float64))
        (tensor([[ 1., -1.]], dtype=torch.float64), tensor([10000.], dtype=torch.float64))
    """
    if theta.shape[-1] == 0:
        return theta, theta.new_zeros(theta.shape[:-1])
    offset = theta.mean(-1)
    return theta - offset.unsqueeze(-1), offset


def _common_sum(atoms: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(same, s0)``: whether each instance's active atoms ``(B, m, d)`` share one coordinate sum (compared
    exactly), and that sum (the heaviest-slot's, meaningful where ``same``)."""
    sums = atoms.sum(-1)  # (B, m)
    first = sums.gather(1, active.to(torch.int8).argmax(-1, keepdim=True))  # an active atom's sum
    same = ((sums == first) | ~active).sum(-1) == atoms.shape[1]
    return same, first.squeeze(1)


def _away_step_loop(
    theta, centered, offset, oracle, ascent, line_search, polish, check_atoms, max_iter, tol, polish_every
):
    r"""The away-step Frank-Wolfe loop shared by every regularizer; ``ascent(th, mu)`` is
    :math:`th - \nabla\Omega(\mu)`, ``line_search(th, mu, direction, gmax)`` the step, ``polish(th, atoms,
    weights, fw_gap, tol, done)`` re-optimizes the weights on the active set.

    Shift invariance: the scores are :math:`\theta = \theta_c + c\mathbf 1` (``centered``, ``offset``). Every
    quantity the loop computes (gaps, steps, polish) is an inner product of the scores with a direction
    between atoms; while an instance's atoms (the active ones and the oracle's answer) share one coordinate
    sum, those directions d have :math:`\langle\mathbf 1, d\rangle = 0` exactly, so :math:`\theta_c` gives
    the same values as θ, without the rounding of a large offset; the instance uses θ itself from the first
    atom with another sum on. The oracle always sees the true scores :math:`g + c\mathbf 1` (it may not be
    shift-invariant, and it is what reveals a vertex with another sum), and the tolerance is relative to
    :math:`1 + \|\theta_w\|^2` for the scores :math:`\theta_w` in use: it does not grow with an offset that
    cannot change the solution."""
    b, d = theta.shape
    v = oracle(theta).reshape(b, d)
    check_atoms(v.unsqueeze(1))
    atoms = v.unsqueeze(1)
    weights = torch.ones(b, 1, dtype=theta.dtype, device=theta.device)
    done = torch.zeros(b, dtype=torch.bool, device=theta.device)
    same, s0 = _common_sum(atoms, weights > 0)
    floor = max(float(tol), 100 * torch.finfo(theta.dtype).eps)  # a gap below ~100 eps is not resolved

    def frame(same):  # the scores each instance computes with, and the shift back to the true scores
        th = torch.where(same.unsqueeze(-1), centered, theta)
        return th, torch.where(same, offset, torch.zeros_like(offset)).unsqueeze(-1), floor * (1.0 + (th * th).sum(-1))

    def step_answer(mu, same):  # the oracle's answer at the true gradient, the frame, the gap
        th, shift, tol_scaled = frame(same)
        v = oracle(ascent(th, mu) + shift).reshape(b, d)
        same = same & (v.sum(-1) == s0)
        th, _, tol_scaled = frame(same)
        grad = ascent(th, mu)
        return v, same, th, grad, (grad * (v - mu)).sum(-1), tol_scaled

    rows = torch.arange(b, device=theta.device)
    max_iter_reached = True  # until every instance is done
    for it in range(max_iter):
        mu = (weights.unsqueeze(-1) * atoms).sum(1)
        v, same, th, grad, fw_gap, tol_scaled = step_answer(mu, same)
        if (it + 1) % polish_every == 0:
            weights, done = polish(th, atoms, weights, fw_gap, tol_scaled, done)
            mu = (weights.unsqueeze(-1) * atoms).sum(1)
            v, same, th, grad, fw_gap, tol_scaled = step_answer(mu, same)
        done = done | (fw_gap <= tol_scaled)
        if bool(done.all()):
            max_iter_reached = False
            break
        check_atoms(v.unsqueeze(1))
        # away atom: the active atom with the smallest <grad, a>
        scores = (atoms * grad.unsqueeze(1)).sum(-1).masked_fill(weights <= 0, float("inf"))
        a_idx = scores.argmin(-1)
        a = atoms[rows, a_idx]
        w_a = weights.gather(1, a_idx.unsqueeze(1)).squeeze(1)
        away_gap = (grad * (mu - a)).sum(-1)
        use_fw = fw_gap >= away_gap
        direction = torch.where(use_fw.unsqueeze(-1), v - mu, mu - a)
        gmax = torch.where(use_fw, torch.ones_like(w_a), w_a / torch.clamp(1 - w_a, min=1e-30))
        gamma = line_search(th, mu, direction, gmax)
        gamma = gamma.masked_fill(done, 0.0)
        atoms, weights = _take_step(atoms, weights, v, gamma, use_fw, a_idx, gmax)
    mu = (weights.unsqueeze(-1) * atoms).sum(1)
    _, same, th, _, fw_gap, tol_scaled = step_answer(mu, same)
    weights, _ = polish(th, atoms, weights, fw_gap, tol_scaled, torch.zeros_like(done))
    if max_iter_reached:  # say so when the budget ran out before the tolerance (one more oracle call)
        mu = (weights.unsqueeze(-1) * atoms).sum(1)
        _, _, _, _, fw_gap, tol_scaled = step_answer(mu, same)
        _warn_unconverged(fw_gap, tol_scaled, max_iter)
    keep = (weights > 0).sum(0) > 0
    return atoms[:, keep], weights[:, keep]


def _warn_unconverged(fw_gap: torch.Tensor, tol_scaled: torch.Tensor, max_iter: int) -> None:
    """A :class:`RuntimeWarning` naming the instances whose Frank-Wolfe gap is still above the tolerance."""
    bad = fw_gap > tol_scaled
    if bool(bad.any()):
        worst = int((fw_gap / tol_scaled).argmax())
        warnings.warn(
            f"Frank-Wolfe stopped at max_iter={max_iter} before reaching its tolerance on {int(bad.sum())} of "
            f"{bad.numel()} instances (largest Frank-Wolfe gap {float(fw_gap[worst]):.3g} against a tolerance of "
            f"{float(tol_scaled[worst]):.3g}, instance {worst}): the result is not the regularized argmax to that "
            f"tolerance; raise max_iter (or use a closed-form layer: SoftRank/SoftSort for rankings, SoftArgmax "
            f"and SparseArgmax for the simplex)",
            RuntimeWarning,
            stacklevel=2,
        )


def _take_step(atoms, weights, v, gamma, use_fw, a_idx, gmax):
    """The weights after a Frank-Wolfe step of size γ toward v (``use_fw``) or an away step from atom
    ``a_idx``; v is stored in an existing slot if present, else in a new one; unused slots are dropped."""
    b, d = v.shape
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
        drop.unsqueeze(1) & (torch.arange(weights.shape[1], device=v.device) == a_idx.unsqueeze(1)), 0.0
    )
    weights = torch.where(use_fw.unsqueeze(1), fw_w, aw_w).clamp(min=0.0)
    weights = weights / weights.sum(-1, keepdim=True)
    # forget slots no instance uses any more
    keep = (weights > 0).sum(0) > 0
    if not bool(keep.all()):
        atoms, weights = atoms[:, keep], weights[:, keep]
    return atoms, weights


@torch.no_grad()
def frank_wolfe_projection(
    theta: torch.Tensor,
    oracle: Oracle,
    max_iter: int = 100,
    tol: float = 1e-9,
    polish_every: int = 5,
    *,
    centered: tuple[torch.Tensor, torch.Tensor] | None = None,
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
    :math:`1 + \|\theta_c\|^2`, :math:`\theta_c` θ less its mean, while the instance's atoms share one
    coordinate sum, else :math:`1 + \|\theta\|^2`).

    Where every solution has the same coordinate sum (one-hot, top-k, permutations, perfect matchings), a
    constant added to θ does not change the projection, and the solver does not see it either: it computes
    with :math:`\theta_c` (see :func:`center_scores`) as long as the atoms it has found share one sum, and
    the oracle, always called at the true scores, reveals a vertex with another sum if one would be chosen.
    The remaining effect of an offset c is the oracle's resolution: it sees scores of size |c|, so vertices
    within about :math:`\varepsilon_{\rm dtype}|c|` of the best are ties to it.

    Args:
        theta: ``(B, d)`` flat scores; oracle: a callable on flat ``(N, d)`` scores.
        max_iter, tol, polish_every: the iteration budget and stopping rule.
        centered: ``(theta_c, c)`` with :math:`\theta = \theta_c + c\mathbf 1` (default
            :func:`center_scores`\ ``(theta)``), for a caller that computes :math:`\theta_c` more accurately
            than from θ (:class:`SquaredNorm` passes :math:`((\theta - c)/s, c/s)` for θ/s).

    Returns:
        ``(atoms, weights)`` of shapes ``(B, m, d)`` and ``(B, m)``: the active atoms (padded with
        zero-weight atoms) and their convex weights, :math:`\mu = \sum_j w_j a_j`.

    Example:
        >>> from colayers import TopKSubset
        >>> atoms, weights = frank_wolfe_projection(torch.tensor([[2.0, 0.5, 0.5]]), TopKSubset(2))
        >>> (weights.unsqueeze(-1) * atoms).sum(1)  # mu_1 clipped at 1, the rest shared
        tensor([[1.0000, 0.5000, 0.5000]])
    """

    theta_c, offset = center_scores(theta) if centered is None else centered

    def ascent(th, mu):
        return th - mu

    def line_search(th, mu, direction, gmax):
        grad = th - mu
        dd = (direction * direction).sum(-1)
        gamma = torch.where(dd > 0, (grad * direction).sum(-1) / torch.where(dd > 0, dd, 1.0), 0.0)
        return torch.minimum(torch.clamp(gamma, min=0.0), gmax)

    return _away_step_loop(
        theta, theta_c, offset, oracle, ascent, line_search, _polish, lambda atoms: None, max_iter, tol, polish_every
    )


@torch.no_grad()
def frank_wolfe(
    theta: torch.Tensor,
    oracle,
    regularizer: Regularizer,
    *,
    max_iter: int = 100,
    tol: float = 1e-9,
    polish_every: int = 5,
    newton_steps: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Away-step Frank-Wolfe for :math:`\operatorname{argmax}_{\mu\in\mathrm{conv}(\mathcal Y)}
    \langle\theta,\mu\rangle - \Omega(\mu)` on a flat batch θ ``(B, d)``, any :class:`Regularizer`.

    Each iteration makes one batched oracle call at the ascent direction :math:`g = \theta -
    \nabla\Omega(\mu)`, takes the Frank-Wolfe or the away step (the larger gap) with
    :meth:`Regularizer.line_search`, and every ``polish_every`` iterations (and at the end) re-optimizes the
    weights on the active set by up to ``newton_steps`` Newton steps on its affine hull,

    .. math::  \Delta\mu = D^\top (D H D^\top)^{+} D\, g,\qquad H = \nabla^2\Omega(\mu),

    each followed by a line search over the longest step that keeps the weights non-negative (an atom whose
    weight reaches 0 leaves: Wolfe's minor cycle). An instance stops when its Frank-Wolfe gap
    :math:`\langle g, v - \mu\rangle` is at most ``tol`` times :math:`1 + \|\theta_c\|^2` (θ less its mean,
    while its atoms share one coordinate sum; else :math:`1 + \|\theta\|^2`): a constant added to θ, which
    does not change the solution where all solutions have the same coordinate sum, does not change the
    computation either (see :func:`frank_wolfe_projection`). For
    :class:`SquaredNorm` this is :func:`frank_wolfe_projection` of θ/s, whose Newton polish is exact in one step.

    Args:
        theta: ``(B, d)`` flat scores; oracle: a callable on flat ``(N, d)`` scores.
        regularizer: Ω.
        max_iter, tol, polish_every, newton_steps: the iteration budget and stopping rule.

    Returns:
        ``(atoms, weights)``, ``(B, m, d)`` and ``(B, m)``, :math:`\mu = \sum_j w_j a_j`.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
        >>> atoms, w = frank_wolfe(theta, ArgmaxOneHot(), NegativeEntropy(0.5))
        >>> (w.unsqueeze(-1) * atoms).sum(1)  # softmax(theta / 0.5)
        tensor([[0.0159, 0.1173, 0.8668]], dtype=torch.float64)
    """
    reg = regularizer
    theta_c, offset = center_scores(theta)

    def ascent(th, mu):
        return th - reg.gradient(mu)

    def line_search(th, mu, direction, gmax):
        return reg.line_search(th, mu, direction, gmax)

    def polish(th, atoms, weights, fw_gap, tol_scaled, done):
        return _newton_polish(th, atoms, weights, reg, newton_steps), done

    return _away_step_loop(
        theta, theta_c, offset, oracle, ascent, line_search, polish, reg.check_atoms, max_iter, tol, polish_every
    )


def _newton_polish(theta, atoms, weights, reg, steps):
    """Newton steps on the affine hull of each instance's active atoms, each with a line search capped where a
    weight reaches 0 (that atom leaves)."""
    b, m, d = atoms.shape
    rows = torch.arange(b, device=theta.device)
    for _ in range(steps):
        active = weights > 0
        mu = (weights.unsqueeze(-1) * atoms).sum(1)
        g = theta - reg.gradient(mu)
        ref = weights.argmax(-1)
        coef, _ = _face_coefficients(atoms, active, ref, reg.hessian_diag(mu).sqrt(), g)
        coef = coef * active.to(coef.dtype)
        coef[rows, ref] = 0.0
        delta_w = coef.clone()
        delta_w[rows, ref] = -coef.sum(-1)
        direction = (delta_w.unsqueeze(-1) * atoms).sum(1)
        shrinking = (delta_w < 0) & active
        ratio = torch.where(shrinking, weights / torch.where(shrinking, -delta_w, torch.ones_like(delta_w)), math.inf)
        t_block, blocker = ratio.min(-1)
        gmax = torch.clamp(t_block, max=1.0)
        t = reg.line_search(theta, mu, direction, gmax)
        new_w = (weights + t.unsqueeze(-1) * delta_w).clamp(min=0.0)
        blocked = (t >= t_block) & torch.isfinite(t_block)
        new_w = new_w.masked_fill(torch.nn.functional.one_hot(blocker, m).bool() & blocked.unsqueeze(-1), 0.0)
        weights = new_w / new_w.sum(-1, keepdim=True)
    return weights


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




class _FlatOracle:
    """Calls an oracle on flat ``(B, d)`` scores reshaped to its event shape."""

    def __init__(self, oracle: Oracle, event: tuple[int, ...]) -> None:
        self.oracle, self.event = oracle, event

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.oracle(theta.reshape(theta.shape[0], *self.event)).reshape(theta.shape[0], -1)

