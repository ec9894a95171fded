r"""The compiled CPU kernel of :class:`~colayers.oracles.GridDAGShortestPath` (numba), imported on first use.

The kernel solves one instance after the other with the dynamic program of the tensor algorithm, in the same
floating-point operations, so that both give the same paths bit for bit, ties included: the value of a vertex is
``max(value[left] + theta[edge from the left], value[up] + theta[edge from above])`` in ``theta``'s dtype, the
vertex is entered from above only when that sum is strictly larger (ties and NaN enter from the left), the first
row is entered from the left and the first column from above. Edge indices follow PyEPO's order (see
:class:`~colayers.oracles.GridDAGShortestPath`): a row :math:`r < h - 1` holds :math:`2w - 1` edges, its
:math:`w - 1` right edges and then its :math:`w` down edges, so the edge entering :math:`(r, c)` from the left
is :math:`r(2w - 1) + c - 1` and the one entering it from above is :math:`(r - 1)(2w - 1) + w - 1 + c`.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = ["DTYPES", "solve"]

DTYPES = (torch.float32, torch.float64)  # the dtypes the kernel computes in (its float sums are theta's)


@numba.njit(cache=True, nogil=True)
def _grid_dag_paths(theta: np.ndarray, y: np.ndarray, height: int, width: int) -> None:  # pragma: no cover - jit
    """Write into ``y`` (N, E), zeros on entry, the longest path of each row of ``theta`` (N, E)."""
    stride = 2 * width - 1
    value = np.empty(height * width, dtype=theta.dtype)
    up = np.empty(height * width, dtype=np.bool_)
    for i in range(theta.shape[0]):
        t = theta[i]
        value[0] = 0.0
        for r in range(height):
            for c in range(width):
                v = r * width + c
                if r == 0:
                    if c > 0:
                        value[v] = value[v - 1] + t[c - 1]
                        up[v] = False
                    continue
                from_up = value[v - width] + t[(r - 1) * stride + width - 1 + c]
                if c == 0:
                    value[v] = from_up
                    up[v] = True
                    continue
                from_left = value[v - 1] + t[r * stride + c - 1]
                u = from_up > from_left  # ties (and NaN) enter from the left
                value[v] = from_up if u else from_left
                up[v] = u
        r, c = height - 1, width - 1
        path = y[i]
        while r + c > 0:
            if up[r * width + c]:
                r -= 1
                path[r * stride + width - 1 + c] = 1.0
            else:
                c -= 1
                path[r * stride + c] = 1.0


def solve(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The paths (N, E) for scores ``theta`` (N, E) on the CPU, in one of :data:`DTYPES`."""
    y = torch.zeros(theta.shape, dtype=theta.dtype)
    _grid_dag_paths(theta.detach().contiguous().numpy(), y.numpy(), height, width)
    return y
