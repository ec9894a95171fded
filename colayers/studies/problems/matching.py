r"""Maximum-weight perfect bipartite matching with feature-dependent edge weights."""

from __future__ import annotations

import torch

from ..._validation import check_int_at_least
from ...oracles.base import Oracle
from ..models import LinearModel
from ..registry import register_problem
from .base import Problem, _check_poly, _check_seed, _check_sizes, _f32, _feature_values, _solve_and_split

__all__ = ["matching_problem"]


def _matching_oracle(size: int) -> Oracle:
    from ...oracles import BipartiteMatching

    return BipartiteMatching(size)


@register_problem("matching")
def matching_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
    p: int = 5,
    size: int = 6,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""Maximum-weight perfect bipartite matching of ``size + size`` nodes; edge weights from features.

    The ``size²`` edge weights follow Elmachtoub & Grigas' generator (as in :func:`topk_problem` with
    ``d = size²``, reshaped row-major to ``(size, size)``): :math:`w_{i,(a,b)} = [(\tfrac{1}{\sqrt p}(B x_i)_{ab}
    + 3)^{\deg} + 1] / 3.5^{\deg}\,\varepsilon_{i,ab}`.

    Sign convention: ``sense="max"``, ``theta = w > 0`` of shape ``(size, size)``, ``y`` the permutation matrix
    of the perfect matching maximizing :math:`\langle w, y\rangle` (the assignment problem, solved exactly
    by :class:`~colayers.oracles.BipartiteMatching`).
    Default model: :class:`~colayers.studies.LinearModel` ``p -> (size, size)`` with bias.

    Args:
        seed, device: see :func:`make_problem`.
        n, n_test, n_val: training, test and validation sizes.
        p: feature dimension.
        size: nodes per side.
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = matching_problem(seed=0, n=3, n_test=2, size=4)
        >>> prob.y_train.sum(dim=1).tolist()[0], prob.y_train.sum(dim=2).tolist()[0]
        ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    seed = _check_seed(seed)
    _check_sizes(n, n_test, p, n_val)
    size = check_int_at_least("size", size, 2)
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, w, val = _feature_values(seed, n + n_test, p, size * size, deg, noise, n_val)
    return _solve_and_split(
        "matching", _matching_oracle(size), _f32(x, device), _f32(w.reshape(-1, size, size), device), n,
        make_model=lambda: LinearModel(p, (size, size)).to(device),
        event_ndim=2,
        sense="max",
        description=f"max-weight perfect bipartite matching {size}x{size}, degree-{deg} polynomial weights",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, size=size, deg=deg, noise=noise),
        val=None if val is None else (_f32(val[0], device), _f32(val[1].reshape(-1, size, size), device)),
    )  # fmt: skip
