r"""The implicit differentiation of the regularized (Frank-Wolfe) layers on the active set.

At the solution :math:`\mu = \sum_j w_j a_j` of :math:`\max_{\mu\in\mathrm{conv}(\mathcal Y)}\langle\theta,\mu\rangle
- \Omega(\mu)`, with :math:`H = \nabla^2\Omega(\mu)` and :math:`D` the differences of the atoms spanning the
optimal face, the Jacobian of :math:`\theta\mapsto\mu` is

.. math::  J = D^\top (D H D^\top)^{+} D

wherever μ is in the relative interior of that face. :func:`active_set_vjp` is the Euclidean case
(:math:`H = I`), :class:`ActiveSetProjection` the autograd function the layers call, and :func:`complete_face`
adds the face vertices that a minimal active set leaves out. Used by
:class:`~colayers.layers.RegularizedFrankWolfe` (see :mod:`colayers.layers.frank_wolfe`).
"""

from __future__ import annotations

import torch

__all__ = ["active_set_vjp"]


def pinv_psd(gram: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a batch of small symmetric PSD matrices (Gram matrices of atoms), in gram's dtype.

    Computed in float64 whatever gram's dtype (the matrices are ``(B, m, m)`` with small m): in float32,
    torch's eigensolver spent tens of seconds failing to converge on the ill-conditioned Gram matrices of
    many nearly dependent atoms. The eigendecomposition-based ``torch.linalg.pinv(hermitian=True)`` is
    used, and the SVD-based one if the eigensolver still fails.

    Example:
        >>> pinv_psd(torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
        tensor([[[0.5000, 0.0000],
                 [0.0000, 0.0000]]])
    """
    work = gram if gram.dtype == torch.float64 else gram.to(torch.float64)
    try:
        inv = torch.linalg.pinv(work, hermitian=True)
    except torch.linalg.LinAlgError:
        inv = torch.linalg.pinv(work)
    return inv.to(gram.dtype)


def active_set_vjp(
    atoms: torch.Tensor, weights: torch.Tensor, grad_output: torch.Tensor, face: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Implicit-differentiation VJP of the Euclidean projection onto :math:`\mathrm{conv}(\mathcal Y)`.

    At :math:`\mu = \sum_j w_j a_j`, let :math:`F` be the atoms that span the face of the polytope on which
    the projection is locally an affine projection (by default the active atoms :math:`\{a_j : w_j > 0\}`;
    ``face`` can add zero-weight atoms of the same face, see
    :func:`complete_face`). The projection is locally the projection onto
    their affine hull, whose Jacobian is the orthogonal projector onto the span of the differences
    :math:`D = [a_j - a_r]_{j\in F}` (:math:`a_r` the heaviest atom):

    .. math::  J = D^\top (D D^\top)^{+} D, \qquad J^\top\bar y = D^\top (D D^\top)^{+} D\,\bar y,

    symmetric positive semi-definite. The small ``(B, m, m)`` system is solved with
    :func:`torch.linalg.pinv` (Hermitian), which also handles padded atoms outside F (zero rows) and
    affinely dependent or repeated atoms.

    Args:
        atoms: ``(B, m, d)`` flattened atoms; weights: ``(B, m)``; grad_output: ``(B, d)``.
        face: ``(B, m)`` boolean mask of the atoms spanning the face (``None``: ``weights > 0``); it must
            contain the heaviest atom of each instance.

    Returns:
        ``(B, d)``.

    Example:
        >>> atoms = torch.eye(3, dtype=torch.float64).unsqueeze(0)  # the simplex, all atoms active
        >>> w = torch.full((1, 3), 1 / 3, dtype=torch.float64)
        >>> active_set_vjp(atoms, w, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
        tensor([[ 0.6667, -0.3333, -0.3333]], dtype=torch.float64)
    """
    ref = weights.argmax(-1)  # (B,)
    a_ref = torch.gather(atoms, 1, ref.view(-1, 1, 1).expand(-1, 1, atoms.shape[-1]))  # (B, 1, d)
    active = ((weights > 0) if face is None else face).to(atoms.dtype).unsqueeze(-1)
    diff = (atoms - a_ref) * active  # (B, m, d); atoms outside the face become zero rows
    gram = diff @ diff.transpose(-1, -2)  # (B, m, m)
    rhs = diff @ grad_output.unsqueeze(-1)  # (B, m, 1)
    coef = pinv_psd(gram) @ rhs
    return (diff.transpose(-1, -2) @ coef).squeeze(-1)


def _face_coefficients(atoms, face, ref, sqrt_h, rhs):
    r"""Coefficients c ``(B, m)`` with :math:`D^\top c = D^\top(DHD^\top)^+D\,\mathrm{rhs}`, D the rows
    :math:`a_j - a_r` of the face atoms (zero elsewhere), computed on the rows of :math:`D H^{1/2}` scaled to
    unit norm (the same span, a better conditioned Gram matrix): with :math:`\tilde V = N^{-1} D H^{1/2}`,
    :math:`D^\top(DHD^\top)^+D = H^{-1/2}\tilde V^\top(\tilde V\tilde V^\top)^+\tilde V H^{-1/2}`."""
    b, m, d = atoms.shape
    a_ref = atoms[torch.arange(b, device=atoms.device), ref]
    diff = (atoms - a_ref.unsqueeze(1)) * face.to(atoms.dtype).unsqueeze(-1)
    rows = diff * sqrt_h.unsqueeze(1)
    norms = torch.linalg.vector_norm(rows, dim=-1)
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    rows = rows / norms.unsqueeze(-1)
    gram = rows @ rows.transpose(-1, -2)
    coef = (pinv_psd(gram) @ (rows @ (rhs / sqrt_h).unsqueeze(-1))).squeeze(-1)
    return coef / norms, diff


def _offset_frame(theta, g, atoms, weights, offset):
    """``(theta, g, shift, s0)`` for :func:`complete_face`: instances whose active atoms share one coordinate
    sum s0 keep the centered θ and g (``shift`` = their offset); the others get the true scores (shift 0)."""
    b, m, _ = atoms.shape
    active = weights > 0
    sums = atoms.sum(-1)  # (B, m)
    s0 = sums.gather(1, weights.argmax(-1, keepdim=True)).squeeze(1)
    same = ((sums == s0.unsqueeze(1)) | ~active).sum(-1) == m  # the offset cancels on these instances
    shift = theta.new_zeros(b) if offset is None else offset.to(theta.dtype)
    if offset is not None and not bool(same.all()):
        theta = torch.where(same.unsqueeze(-1), theta, theta + shift.unsqueeze(-1))
        g = torch.where(same.unsqueeze(-1), g, g + shift.unsqueeze(-1))
        shift = torch.where(same, shift, torch.zeros_like(shift))
    return theta, g, shift, s0


@torch.no_grad()
def complete_face(
    theta: torch.Tensor,
    atoms: torch.Tensor,
    weights: torch.Tensor,
    oracle,
    tol: float = 1e-9,
    generator: torch.Generator | None = None,
    max_rounds: int | None = None,
    ascent: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Add the vertices of the optimal face that Frank-Wolfe's minimal representation leaves out.

    (Written for the projection, Ω = ½‖·‖²; for another regularizer pass ``ascent`` =
    :math:`\theta - \nabla\Omega(\mu)`, which exposes the optimal face in the same way, in place of g.)

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

    A constant offset: pass θ centered (θ less a per-instance constant c, e.g. from
    :func:`~colayers.layers.frank_wolfe.center_scores`) and c as ``offset``. The oracle is then probed at the
    true scores :math:`g + c\mathbf 1`; where the active atoms share one coordinate sum, the face test is made
    with the centered g plus :math:`c(\langle\mathbf 1, v\rangle - \langle\mathbf 1, a\rangle)` (zero for
    a vertex of the same sum), and :math:`\mathrm{tol}_F` and τ use the centered θ: an offset that cannot
    change the face does not loosen the test. Elsewhere the true scores are used throughout.

    Args:
        theta: ``(B, d)`` flat scores; atoms ``(B, m, d)`` and weights ``(B, m)`` from
            :func:`frank_wolfe_projection`; oracle: a callable on flat ``(N, d)`` scores.
        tol: the projection's tolerance (see tol_F above).
        generator: the source of δ (on θ's device).
        max_rounds: the most rounds (``None``: d + 1, enough for any face; 0: no completion).
        ascent: :math:`\theta - \nabla\Omega(\mu)` ``(B, d)`` (``None``: :math:`\theta - \mu`).
        offset: ``(B,)`` the constant c removed from θ and ``ascent`` (``None``: 0).

    Returns:
        ``(atoms, face)``: the atoms with the new face vertices appended, ``(B, m', d)`` (their weight is 0:
        pad ``weights`` with zeros), and the ``(B, m')`` boolean mask of the atoms that span the face (the
        active atoms and the new vertices), for :func:`~colayers.layers.active_set.active_set_vjp`.

    Example:
        >>> from colayers import TopKSubset
        >>> from colayers.layers.frank_wolfe import frank_wolfe_projection
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
    g = theta - mu if ascent is None else ascent
    theta, g, shift, s0 = _offset_frame(theta, g, atoms, weights, offset)
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
        true_g = g[idx] + shift[idx].unsqueeze(-1)
        answers = oracle(torch.cat([true_g + step, true_g - step])).reshape(2, n, d)
        progress = torch.zeros(n, dtype=torch.bool, device=device)
        for v in answers:
            moved = shift[idx] * (v.sum(-1) - s0[idx])  # the offset's share of <g, v - mu>: 0 for the same sum
            on_face = ((g[idx] * v).sum(-1) + moved - value[idx]).abs() <= face_tol[idx]
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
    r"""``apply(theta, atoms, weights, face, sqrt_hessian=None, scale=1.0)`` returns :math:`\mu = \sum_j w_j
    a_j` reshaped like θ, with the implicit active-set VJP (atoms ``(B, m, d)``, weights ``(B, m)``, ``face``
    the ``(B, m)`` mask of the atoms spanning the face, or ``None`` for ``weights > 0``):

    * ``sqrt_hessian=None``: ``scale`` times :func:`~colayers.layers.active_set.active_set_vjp`, the projector
      :math:`D^\top(DD^\top)^+D` (Ω = s/2 ‖·‖² with ``scale = 1/s``);
    * else :math:`D^\top(DHD^\top)^+D\,\bar y` with :math:`H^{1/2}` = ``sqrt_hessian`` ``(B, d)`` (a separable Ω).
    """

    @staticmethod
    def forward(theta, atoms, weights, face, sqrt_hessian=None, scale=1.0):
        return (weights.unsqueeze(-1) * atoms).sum(1).reshape(theta.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, atoms, weights, face, sqrt_hessian, scale = inputs
        ctx.has_face, ctx.has_hessian, ctx.scale = face is not None, sqrt_hessian is not None, scale
        extra = (face,) if face is not None else ()
        extra += (sqrt_hessian,) if sqrt_hessian is not None else ()
        ctx.save_for_backward(atoms, weights, *extra)

    @staticmethod
    def backward(ctx, grad_output):
        atoms, weights, *extra = ctx.saved_tensors
        face = extra.pop(0) if ctx.has_face else None
        flat = grad_output.reshape(atoms.shape[0], atoms.shape[-1])
        if ctx.has_hessian:
            mask = (weights > 0) if face is None else face
            coef, diff = _face_coefficients(atoms, mask, weights.argmax(-1), extra[0], flat)
            grad = (diff.transpose(-1, -2) @ coef.unsqueeze(-1)).squeeze(-1)
        else:
            grad = active_set_vjp(atoms, weights, flat, face)
            if ctx.scale != 1.0:
                grad = grad * ctx.scale
        return grad.reshape(grad_output.shape), None, None, None, None, None
