r"""The compiled CPU kernel of :class:`~colayers.oracles.GridVertexShortestPath` (numba).

One call solves a whole batch in compiled code, one instance after the other: the same distances as the tensor
algorithm (Gauss-Seidel sweeps down, right, up, left, until four sweeps in a row change nothing, all in ``theta``'s
dtype; the column sweeps on a transposed copy, so that each sweep is branch-free work on contiguous lines),
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
def _relax_line(before, line, cost, n):  # pragma: no cover - compiled (its results are tested)
    """``line[j] <- min(line[j], min(before[j-1 : j+2]) + cost[j-1])`` for j = 1..n, on padded lines (+inf at both
    ends); whether an entry decreased. Branch-free on distinct arrays, so that it vectorizes."""
    changed = False
    for j in range(n):
        a, b, c = before[j], before[j + 1], before[j + 2]
        least = a if a < b else b
        least = least if least < c else c
        best = least + cost[j]
        old = line[j + 1]
        less = best < old
        changed |= less
        line[j + 1] = best if less else old
    return changed


@njit(cache=True, nogil=True)
def _transpose(source, target, h, w):  # pragma: no cover - compiled (its results are tested)
    """The inner h x w block of the padded ``source`` into that of ``target``, transposed."""
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            target[c, r] = source[r, c]


@njit(cache=True, nogil=True)
def _instance_distances(theta, dist, dist_t, cost, cost_t):  # pragma: no cover - compiled (its results are tested)
    """Distances of one instance of scores ``theta`` (h, w) into ``dist`` (h+2, w+2), +inf on the border; returns
    :data:`OK` or :data:`UNSUPPORTED`. ``dist_t`` (w+2, h+2), ``cost`` (h, w) and ``cost_t`` (w, h) are scratch:
    the column sweeps run on transposed copies, so that every sweep reads and writes contiguous lines."""
    h, w = theta.shape
    for r in range(h):
        for c in range(w):
            if not theta[r, c] <= 0:  # a negative or NaN cost
                return UNSUPPORTED
            cost[r, c] = -theta[r, c]  # exact: fl(D + c) = fl(D - theta)
            cost_t[c, r] = cost[r, c]
    dist[:] = np.inf
    dist_t[:] = np.inf
    dist[1, 1] = cost[0, 0]
    quiet = 0  # consecutive sweeps that changed nothing: 4 (one of each direction) mean the fixed point
    for sweep in range(4 * (h * w + 1)):  # a round of 4 sweeps does at least a Jacobi round: h*w rounds suffice
        direction = sweep % 4
        changed = False
        if direction == 0:  # down: grid row r from grid row r - 1
            for r in range(1, h):
                changed |= _relax_line(dist[r], dist[r + 1], cost[r], w)
        elif direction == 2:  # up: grid row r from grid row r + 1
            for r in range(h - 2, -1, -1):
                changed |= _relax_line(dist[r + 2], dist[r + 1], cost[r], w)
        else:
            _transpose(dist, dist_t, h, w)
            if direction == 1:  # right: grid column c from grid column c - 1
                for c in range(1, w):
                    changed |= _relax_line(dist_t[c], dist_t[c + 1], cost_t[c], h)
            else:  # left: grid column c from grid column c + 1
                for c in range(w - 2, -1, -1):
                    changed |= _relax_line(dist_t[c + 2], dist_t[c + 1], cost_t[c], h)
            _transpose(dist_t, dist, w, h)
        quiet = 0 if changed else quiet + 1
        if quiet == 4:
            return OK
    return UNSUPPORTED  # unreachable with costs >= 0


@njit(cache=True, nogil=True)
def _paths(theta, y, status):  # pragma: no cover - compiled (its results are tested)
    n, h, w = theta.shape
    s = w + 2
    flat = np.empty((h + 2) * s, theta.dtype)
    dist = flat.reshape((h + 2, s))  # a view: the traceback reads the flat padded index
    dist_t = np.empty((w + 2, h + 2), theta.dtype)
    cost, cost_t = np.empty((h, w), theta.dtype), np.empty((w, h), theta.dtype)
    # the 8 neighbour offsets in the padded layout, in the order of grid._OFFSETS (ties to the first)
    offsets = np.array((-s - 1, -s, -1, -s + 1, s - 1, 1, s, s + 1))
    start, target = s + 1, h * s + w
    for i in range(n):
        status[i] = _instance_distances(theta[i], dist, dist_t, cost, cost_t)
        if status[i] != OK:
            continue
        current = target
        y[i, h - 1, w - 1] = 1
        while current != start:
            best, k = flat[current + offsets[0]], 0
            for t in range(1, 8):
                if flat[current + offsets[t]] < best:
                    best, k = flat[current + offsets[t]], t
            if not best < flat[current]:  # rounding absorbed a cost: the recording variant takes over
                status[i] = STUCK
                break
            current += offsets[k]
            r = current // s
            y[i, r - 1, current - r * s - 1] = 1


@njit(cache=True, nogil=True)
def _distances(theta, out, status):  # pragma: no cover - compiled (its results are tested)
    n, h, w = theta.shape
    dist, dist_t = np.empty((h + 2, w + 2), theta.dtype), np.empty((w + 2, h + 2), theta.dtype)
    cost, cost_t = np.empty((h, w), theta.dtype), np.empty((w, h), theta.dtype)
    for i in range(n):
        status[i] = _instance_distances(theta[i], dist, dist_t, cost, cost_t)
        if status[i] == OK:
            out[i] = dist[1 : h + 1, 1 : w + 1]


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
