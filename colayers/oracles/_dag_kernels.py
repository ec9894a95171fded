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

__all__ = ["DTYPES", "contains", "solve"]

DTYPES = (torch.float32, torch.float64)  # the dtypes the kernel computes in (its float sums are theta's)


@numba.njit(cache=True, nogil=True)
def _grid_dag_paths(theta: np.ndarray, height: int, width: int) -> np.ndarray:  # pragma: no cover - jit
    """The longest path (N, E) of each row of ``theta`` (N, E), as 0/1 entries in ``theta``'s dtype."""
    y = np.zeros(theta.shape, dtype=theta.dtype)
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
    return y


def solve(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The paths (N, E) for scores ``theta`` (N, E) on the CPU, in one of :data:`DTYPES`."""
    return torch.from_numpy(_grid_dag_paths(theta.detach().contiguous().numpy(), height, width))


@numba.njit(cache=True, nogil=True)
def _grid_dag_contains(y: np.ndarray, height: int, width: int) -> np.ndarray:  # pragma: no cover - jit
    """Whether each row ``i`` of ``y`` (N, E) is a path: 0/1 entries, one edge out of every vertex met from
    vertex 0 until the last one, and no other edge (h + w - 2 ones in all)."""
    out = np.empty(y.shape[0], dtype=np.bool_)
    stride = 2 * width - 1
    for i in range(y.shape[0]):
        row = y[i]
        ok = True
        ones = 0
        for e in range(row.shape[0]):
            if row[e] == 1.0:
                ones += 1
            elif row[e] != 0.0:  # NaN included
                ok = False
                break
        r, c = 0, 0
        while ok and r + c < height + width - 2:
            right = c < width - 1 and row[r * stride + c] == 1.0
            down = r < height - 1 and row[r * stride + width - 1 + c] == 1.0
            if right == down:  # none, or two edges out of a vertex of the path
                ok = False
            elif right:
                c += 1
            else:
                r += 1
        out[i] = ok and ones == height + width - 2
    return out


def contains(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Whether each row of ``y`` (N, E), on the CPU in one of :data:`DTYPES`, is a path (a bool tensor (N,))."""
    return torch.from_numpy(_grid_dag_contains(y.detach().contiguous().numpy(), height, width))
