r"""Cone-aligned vector estimation (CaVE) of Tang & Khalil (CPAIOR 2024), for linear programs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import Constraint, check_args, check_positive, integer_at_least, nonnegative, one_of
from ..oracles.base import Oracle
from .base import StructuredLoss

__all__ = ["ConeAlignedCosineLoss", "cone_aligned_cosine_loss", "binding_normals", "project_on_cone"]


def _check_unit(name: str, value: object) -> float:
    value = check_positive(name, value, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return value


_unit_interval = Constraint(_check_unit, "a number in [0, 1]", 1.5)


def _constraints_of(oracle: object, where: str):
    constraints = getattr(oracle, "linear_constraints", None)
    if constraints is None:
        raise TypeError(
            f"{where} needs an oracle with linear constraints (a `linear_constraints` attribute with A_ub, b_ub, "
            f"A_eq, b_eq and bounds, as LinearProgram has) to build the cone of the constraints binding at the "
            f"target; got {type(oracle).__name__}, which has none"
        )
    return constraints


def binding_normals(oracle: object, y: torch.Tensor, atol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The outward normals of the constraints of a linear program and which of them bind at ``y``.

    The rows, in the ``≤`` orientation :math:`a^\top y \le b` (so that the normal cone of a vertex is the cone
    they span): the rows of :math:`A_{ub}`, the rows of :math:`A_{eq}` and their negatives, :math:`-e_j` for each
    finite lower bound and :math:`+e_j` for each finite upper bound. A row binds where
    :math:`|a^\top y - b| \le \mathrm{atol}\,(1 + |b| + |a|^\top|y|)` (every equality row binds at a feasible ``y``).

    Args:
        oracle: an oracle with ``linear_constraints`` (:class:`~colayers.oracles.LinearProgram`).
        y: points ``(*batch, n)``.
        atol: the relative tolerance of a binding constraint.

    Returns:
        ``(normals, binding)``: the rows ``(M, n)`` (float64, on ``y``'s device) and the mask ``(*batch, M)``.

    Example:
        >>> import torch
        >>> from colayers.oracles import LinearProgram
        >>> lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[3.0], bounds=(0, 2))
        >>> normals, binding = binding_normals(lp, torch.tensor([2.0, 1.0]))
        >>> normals[binding]
        tensor([[1., 1.],
                [1., 0.]], dtype=torch.float64)
    """
    c = _constraints_of(oracle, "binding_normals")
    n = c.lower.shape[0]
    eye = np.eye(n)
    lo, hi = np.isfinite(c.lower), np.isfinite(c.upper)
    rows = np.concatenate([c.A_ub, c.A_eq, -c.A_eq, -eye[lo], eye[hi]])
    rhs = np.concatenate([c.b_ub, c.b_eq, -c.b_eq, -c.lower[lo], c.upper[hi]])
    normals = torch.as_tensor(rows, dtype=torch.float64, device=y.device)
    b = torch.as_tensor(rhs, dtype=torch.float64, device=y.device)
    x = y.detach().to(torch.float64)
    scale = 1.0 + b.abs() + x.abs() @ normals.abs().T
    return normals, (x @ normals.T - b).abs() <= atol * scale


def project_on_cone(theta: torch.Tensor, normals: torch.Tensor, binding: torch.Tensor) -> torch.Tensor:
    r"""The Euclidean projection of each θ on the cone spanned by its binding normals (exact, by NNLS).

    :math:`p = N_B^\top\lambda^\star` with :math:`\lambda^\star = \operatorname{argmin}_{\lambda\ge 0}
    \|N_B^\top\lambda - \theta\|_2` (Lawson-Hanson, ``scipy.optimize.nnls``, per instance in float64 on the host,
    as the HiGHS solves of :class:`~colayers.oracles.LinearProgram` are); the result is on θ's device and dtype.

    Args:
        theta: ``(*batch, n)``. normals: ``(M, n)``. binding: ``(*batch, M)`` mask.

    Example:
        >>> import torch
        >>> normals = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> project_on_cone(torch.tensor([1.0, 3.0]), normals, torch.tensor([True, True]))
        tensor([2., 2.])
    """
    from scipy.optimize import nnls

    def solve(i: int, basis: np.ndarray, th: np.ndarray) -> np.ndarray:
        try:
            lam, _ = nnls(basis.T, th, maxiter=50 * (basis.shape[0] + th.shape[0]))
        except RuntimeError as err:
            raise RuntimeError(f"project_on_cone: NNLS did not converge on instance {i} of the batch ({err})") from err
        return lam

    return _per_instance_on_host(theta, normals, binding, solve)


def _per_instance_on_host(theta, normals, binding, solve, drop_zero_rows: bool = False) -> torch.Tensor:
    """:math:`N_i^\top\\lambda_i` per instance, with ``lambda_i = solve(i, N_i, theta_i)`` on the host in float64 and
    :math:`N_i` the binding rows of instance i (0 where none binds: the cone is {0}); on θ's device and dtype."""
    n = theta.shape[-1]
    th = theta.detach().reshape(-1, n).to(torch.float64).cpu().numpy()
    mask = binding.reshape(-1, binding.shape[-1]).cpu().numpy()
    rows = normals.cpu().numpy()
    out = np.zeros_like(th)
    for i in range(th.shape[0]):
        basis = rows[mask[i]]
        if drop_zero_rows:
            basis = basis[np.abs(basis).sum(axis=1) > 1e-7]
        if basis.shape[0]:
            out[i] = solve(i, basis, th[i]) @ basis
    return torch.as_tensor(out, device=theta.device).to(theta.dtype).reshape(theta.shape)


def _truncated_projection(theta: torch.Tensor, normals: torch.Tensor, binding: torch.Tensor, max_iter: int):
    r"""Clarabel's iterate after ``max_iter`` interior-point iterations on the projection QP (PyEPO's CaVE+).

    Per instance, with :math:`N` the nonzero binding rows (``(m, n)``, float64 on the host): Clarabel minimizes
    :math:`\tfrac12\lambda^\top P\lambda + q^\top\lambda` s.t. :math:`-\lambda + s = 0`, :math:`s \ge 0`, with
    :math:`P = 2NN^\top` (upper triangle, CSC), :math:`q = -2N\theta`, settings ``max_iter``, ``verbose=False``,
    ``max_threads=1``, ``presolve_enable=False``, ``equilibrate_enable=False``, no warm start; it returns
    :math:`N^\top\lambda` whatever Clarabel's status (reaching ``max_iter`` is the point). A cone with no
    nonzero row is {0}: the result is 0, as in :func:`project_on_cone`.
    """
    import clarabel
    from scipy import sparse

    settings = clarabel.DefaultSettings()
    settings.max_iter, settings.verbose, settings.max_threads = int(max_iter), False, 1
    settings.presolve_enable, settings.equilibrate_enable = False, False
    def solve(i: int, basis: np.ndarray, th: np.ndarray) -> np.ndarray:
        m = basis.shape[0]
        P = sparse.triu(sparse.csc_matrix(2.0 * (basis @ basis.T))).tocsc()
        A = (-sparse.eye(m, format="csc")).tocsc()
        cone = [clarabel.NonnegativeConeT(m)]
        solver = clarabel.DefaultSolver(P, -2.0 * (basis @ th), A, np.zeros(m), cone, settings)
        return np.asarray(solver.solve().x)

    return _per_instance_on_host(theta, normals, binding, solve, drop_zero_rows=True)


class ConeAlignedCosineLoss(StructuredLoss):
    r"""Cone-aligned vector estimation (CaVE): the cosine distance from θ to the normal cone of the target.

    For a linear program :math:`\max_y \langle\theta, y\rangle` s.t. :math:`A_{ub}y\le b_{ub}`, :math:`A_{eq}y=b_{eq}`,
    :math:`l\le y\le u` (:class:`~colayers.oracles.LinearProgram`), a vertex :math:`\bar y` is optimal for θ
    exactly when θ lies in its normal cone :math:`K(\bar y) = \operatorname{cone}\{a_i : i \in B(\bar y)\}`,
    spanned by the outward normals of the constraints binding at :math:`\bar y` (:func:`binding_normals`).
    CaVE trains θ toward that cone, with no oracle call in training:

    .. math::

        \ell(\theta; \bar y) = 1 - \cos(\theta, p), \qquad p = \Pi_{K(\bar y)}(\theta), \qquad
        \nabla_\theta \ell = -\frac{p}{\|\theta\|\,\|p\|} + \cos(\theta, p)\,\frac{\theta}{\|\theta\|^2},

    with :math:`p` held constant in the gradient (as in the paper). Three choices of :math:`p`:

    * ``projection="exact"``: the Euclidean projection :math:`\Pi_K(\theta) = N_B^\top\lambda^\star`,
      :math:`\lambda^\star = \operatorname{argmin}_{\lambda\ge0}\|N_B^\top\lambda-\theta\|^2`
      (:func:`project_on_cone`), so :math:`\ell = 0` iff θ is in the cone, i.e. :math:`\bar y` is optimal for θ.
    * ``projection="truncated"`` (PyEPO's default, the paper's CaVE+): the same QP, written for Clarabel as
      :math:`\min_\lambda \tfrac12\lambda^\top(2N_BN_B^\top)\lambda - 2(N_B\theta)^\top\lambda` s.t.
      :math:`\lambda \ge 0`, stopped after ``max_iter`` interior-point iterations (default 3; settings
      ``verbose=False``, ``max_threads=1``, no presolve, no equilibration, no warm start), and
      :math:`p = N_B^\top\lambda_{\text{max\_iter}}`. A truncated interior-point iterate is *not* the projection:
      :math:`\lambda` stays strictly positive, so :math:`p` lies inside the cone, pulled toward its interior (every
      binding normal keeps some weight), and :math:`\ell > 0` even for θ inside the cone. The loss then keeps
      pushing θ toward the cone's middle, a margin the exact projection lacks; on PyEPO's shortest-path benchmark
      it trains to lower regret (``benchmarks/README.md``). :math:`p` depends on Clarabel's path, hence on its
      version (pinned in ``constraints.txt``); a large ``max_iter`` converges to the exact projection.
    * ``projection="average"``: the paper's cheap heuristic (CaVE-H's second branch):
      :math:`p = (1-r)\,\theta/\|\theta\| + r\,\bar a` with :math:`\bar a` the mean of the unit binding
      normals and :math:`r` = ``inner_ratio``.

    The cosine is torch's (norms clamped at :math:`10^{-8}`): a θ whose projection is 0 (θ in the polar cone, or a
    cone with no binding row) has loss 1 and gradient 0.

    PyEPO (``pyepo.func.coneAlignedCosine``) minimizes costs :math:`c`; with :math:`\theta = -\hat c` its
    ``-pred_cost`` is θ and its ``tight_ctrs`` are the binding normals here, so the values are equal and the
    gradients in θ are the negated gradients in :math:`\hat c`: its default ``max_iter=3`` is
    ``projection="truncated"`` (PyEPO rounds :math:`p` to float32, a relative difference ≤ 1e-7), a converged
    ``max_iter`` is ``"exact"``, ``solve_ratio=0`` is ``"average"``, and its random mix of the two branches
    (``solve_ratio < 1``) is two losses of this class mixed by the caller's own generator. Unlike PyEPO, the
    program need not be binary: any vertex target works (PyEPO's QP branch takes :math:`p = \theta`, loss 0, where
    no row binds, which no vertex target has).

    Works with: an oracle that has ``linear_constraints`` (:class:`~colayers.oracles.LinearProgram`, or a
    wrapper forwarding it); others are refused at construction.

    Args:
        oracle: the linear program.
        projection: ``"exact"`` | ``"truncated"`` | ``"average"``.
        inner_ratio: the weight r of the mean binding normal in ``"average"``, in [0, 1].
        atol: the relative tolerance of a binding constraint (see :func:`binding_normals`).
        max_iter: Clarabel's iteration limit in ``"truncated"`` (an integer ≥ 1; PyEPO's default 3).
        reduction, allow_relaxed_targets, validate_args: see :class:`~colayers.losses.StructuredLoss`.

    Call: ``loss(theta, y_target)`` with ``theta`` ``(*batch, n)`` and ``y_target`` an optimal vertex for the
    true scores, of the same shape.

    Reference: B. Tang, E. B. Khalil, "CaVE: A Cone-Aligned Approach for Fast Predict-then-optimize with Binary
    Linear Programs", CPAIOR 2024.

    Example:
        >>> import torch
        >>> from colayers.oracles import LinearProgram
        >>> lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[3.0], bounds=(0, 2))  # vertex (2, 1): cone x1 ≥ x2 ≥ 0
        >>> theta = torch.tensor([[1.0, 3.0], [3.0, 1.0]], requires_grad=True)
        >>> loss = ConeAlignedCosineLoss(lp, reduction="none")
        >>> value = loss(theta, torch.tensor([[2.0, 1.0], [2.0, 1.0]]))
        >>> value.detach().round(decimals=4)  # 1 - 2/sqrt(5), then 0 inside the cone
        tensor([0.1056, 0.0000])
        >>> plus = ConeAlignedCosineLoss(lp, projection="truncated", max_iter=3, reduction="none")
        >>> bool((plus(theta, torch.tensor([[2.0, 1.0], [2.0, 1.0]])) > 0).all())  # > 0 inside the cone too
        True
    """

    arg_constraints = {
        "projection": one_of("exact", "truncated", "average"),
        "max_iter": integer_at_least(1),
        "inner_ratio": _unit_interval,
        "atol": nonnegative,
    }

    def __init__(
        self,
        oracle: Oracle,
        projection: str = "exact",
        inner_ratio: float = 0.2,
        atol: float = 1e-6,
        reduction: str = "mean",
        *,
        max_iter: int = 3,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, allow_relaxed_targets=allow_relaxed_targets, validate_args=validate_args)
        vars(self).update(
            check_args(self, projection=projection, max_iter=max_iter, inner_ratio=inner_ratio, atol=atol)
        )
        _constraints_of(oracle, type(self).__name__)
        self.oracle = oracle

    def forward(self, theta: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        return self.evaluate(theta, y_target)

    def per_instance(self, theta, y_target):  # noqa: D102
        with torch.no_grad():
            normals, binding = binding_normals(self.oracle, y_target, self.atol)
            if self.projection == "exact":
                p = project_on_cone(theta, normals, binding)
            elif self.projection == "truncated":
                p = _truncated_projection(theta, normals, binding, self.max_iter)
            else:
                unit = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-8)
                w = binding.to(torch.float64)
                mean = (w @ unit) / w.sum(-1, keepdim=True).clamp(min=1.0)
                direction = theta / theta.norm(dim=-1, keepdim=True).clamp(min=1e-8)
                p = (1 - self.inner_ratio) * direction + self.inner_ratio * mean.to(theta.dtype)
        return 1.0 - F.cosine_similarity(theta, p, dim=-1), None, None

    def extra_repr(self) -> str:
        mode = f", max_iter={self.max_iter}" if self.projection == "truncated" else ""
        return f"oracle={self.oracle!r}, projection={self.projection!r}{mode}, reduction={self.reduction!r}"


def cone_aligned_cosine_loss(
    theta: torch.Tensor,
    y_target: torch.Tensor,
    oracle: Oracle,
    *,
    projection: str = "exact",
    inner_ratio: float = 0.2,
    atol: float = 1e-6,
    reduction: str = "mean",
    max_iter: int = 3,
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""Functional form of :class:`ConeAlignedCosineLoss` (same arguments, oracle passed explicitly).

    Example:
        >>> import torch
        >>> from colayers.oracles import LinearProgram
        >>> lp = LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[2.0], bounds=(0, 1))  # cone: x3 ≤ min(x1, x2)
        >>> cone_aligned_cosine_loss(torch.tensor([3.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]), lp)
        tensor(0.0253)
    """
    loss = ConeAlignedCosineLoss(
        oracle, projection, inner_ratio, atol, reduction, max_iter=max_iter, validate_args=validate_args
    )
    return loss(theta, y_target)
