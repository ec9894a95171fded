r"""The compiled CPU kernel of :class:`~colayers.oracles.GridVertexShortestPath` (numba).

One call solves a whole batch in compiled code, one instance after the other: the same distances as the tensor
algorithm (Gauss-Seidel sweeps down, right, up, left, until a round changes nothing, all in ``theta``'s dtype),
then the same traceback (from the target to the neighbour of least distance, ties to the first in ``_OFFSETS``,
only to strictly smaller distances). Any order of relaxations reaches the same fixed point, the least path cost
over all walks with the sums rounded in the dtype (float addition is monotone and ``fl(a + c) >= a`` for
``c >= 0``), so the distances, hence the paths, equal the tensor algorithm's bit for bit.

Each instance gets a status: :data:`OK`, :data:`STUCK` (rounding absorbed a cost and the traceback met no
strictly smaller neighbour: the caller solves it again with the recording variant, as the tensor path does), or
:data:`UNSUPPORTED` (a negative or NaN cost, i.e. ``theta > 0`` or NaN, which only unvalidated input carries: the
caller hands it to the tensor path, which answers or raises as it always did). Compiled once per dtype and
cached on disk (``cache=True``); nothing is printed.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["OK", "STUCK", "UNSUPPORTED", "distances", "shortest_paths"]

OK, STUCK, UNSUPPORTED = 0, 1, 2


@njit(cache=True, nogil=True)
def _instance_distances(theta, dist):  # pragma: no cover - compiled (its results are tested)
    """Padded distances (h+2)*(w+2), +inf on the border, of one instance of scores ``theta`` (h, w) into
    ``dist``; returns :data:`OK` or :data:`UNSUPPORTED`. A relaxation subtracts the score: fl(a - t) = fl(a + c)."""
    h, w = theta.shape
    s = w + 2
    for r in range(h):
        for c in range(w):
            if not theta[r, c] <= 0:  # a negative or NaN cost
                return UNSUPPORTED
    dist[:] = np.inf
    dist[s + 1] = -theta[0, 0]
    for _ in range(h * w + 1):  # each round does at least one Jacobi round's work: h*w rounds suffice
        changed = False
        for r in range(1, h):  # down: grid row r from grid row r - 1
            for c in range(w):
                p = (r + 1) * s + c + 1
                best = min(dist[p - s - 1], dist[p - s], dist[p - s + 1]) - theta[r, c]
                if best < dist[p]:
                    dist[p] = best
                    changed = True
        for c in range(1, w):  # right: grid column c from grid column c - 1
            for r in range(h):
                p = (r + 1) * s + c + 1
                best = min(dist[p - s - 1], dist[p - 1], dist[p + s - 1]) - theta[r, c]
                if best < dist[p]:
                    dist[p] = best
                    changed = True
        for r in range(h - 2, -1, -1):  # up: grid row r from grid row r + 1
            for c in range(w):
                p = (r + 1) * s + c + 1
                best = min(dist[p + s - 1], dist[p + s], dist[p + s + 1]) - theta[r, c]
                if best < dist[p]:
                    dist[p] = best
                    changed = True
        for c in range(w - 2, -1, -1):  # left: grid column c from grid column c + 1
            for r in range(h):
                p = (r + 1) * s + c + 1
                best = min(dist[p - s + 1], dist[p + 1], dist[p + s + 1]) - theta[r, c]
                if best < dist[p]:
                    dist[p] = best
                    changed = True
        if not changed:
            return OK
    return UNSUPPORTED  # unreachable with costs >= 0


@njit(cache=True, nogil=True)
def _paths(theta, y, status):  # pragma: no cover - compiled (its results are tested)
    n, h, w = theta.shape
    s = w + 2
    dist = np.empty((h + 2) * s, theta.dtype)
    # the 8 neighbour offsets in the padded layout, in the order of grid._OFFSETS (ties to the first)
    offsets = np.array((-s - 1, -s, -1, -s + 1, s - 1, 1, s, s + 1))
    start, target = s + 1, h * s + w
    for i in range(n):
        status[i] = _instance_distances(theta[i], dist)
        if status[i] != OK:
            continue
        current = target
        y[i, h - 1, w - 1] = 1
        while current != start:
            best, k = dist[current + offsets[0]], 0
            for t in range(1, 8):
                if dist[current + offsets[t]] < best:
                    best, k = dist[current + offsets[t]], t
            if not best < dist[current]:  # rounding absorbed a cost: the recording variant takes over
                status[i] = STUCK
                break
            current += offsets[k]
            r = current // s
            y[i, r - 1, current - r * s - 1] = 1


@njit(cache=True, nogil=True)
def _distances(theta, out, status):  # pragma: no cover - compiled (its results are tested)
    n, h, w = theta.shape
    s = w + 2
    dist = np.empty((h + 2) * s, theta.dtype)
    for i in range(n):
        status[i] = _instance_distances(theta[i], dist)
        if status[i] == OK:
            for r in range(h):
                for c in range(w):
                    out[i, r, c] = dist[(r + 1) * s + c + 1]


def _scores(theta: torch.Tensor) -> np.ndarray:
    """A C-contiguous array of ``theta`` (N, h, w), float32 or float64, on the CPU: a view when it can be. Read only."""
    return theta.detach().resolve_neg().contiguous().numpy()


def shortest_paths(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paths ``y`` (N, h, w) in ``theta``'s dtype and the status (N,) uint8 of each instance; ``y`` is only meaningful
    where the status is :data:`OK`."""
    scores = _scores(theta)
    y = np.zeros(scores.shape, scores.dtype)
    status = np.zeros(scores.shape[0], np.uint8)
    _paths(scores, y, status)
    return torch.from_numpy(y), torch.from_numpy(status)


def distances(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least path costs ``D`` (N, h, w) for the costs ``-theta``, in its dtype, and the status of each instance."""
    scores = _scores(theta)
    out = np.zeros(scores.shape, scores.dtype)
    status = np.zeros(scores.shape[0], np.uint8)
    _distances(scores, out, status)
    return torch.from_numpy(out), torch.from_numpy(status)
