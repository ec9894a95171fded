"""The batched tensor sweeps of :class:`~colayers.oracles.GridVertexShortestPath` (its CUDA path and the reference
of its CPU kernel): Gauss-Seidel rounds of Bellman-Ford relaxations on shifted, batch-last tensors."""

from __future__ import annotations

import torch


def relax(before: torch.Tensor, cost: torch.Tensor, target: torch.Tensor) -> None:
    """target <- min(target, min of the 3 adjacent entries of the padded line ``before`` + cost), in place."""
    best = torch.minimum(before[:-2], before[1:-1])
    torch.minimum(best, before[2:], out=best)
    best += cost
    torch.minimum(target, best, out=target)


def relax_recording(
    before: torch.Tensor,
    cost: torch.Tensor,
    target: torch.Tensor,
    pred: torch.Tensor,
    offsets: tuple[int, int, int],
) -> None:
    """:func:`relax` that also records, where ``target`` strictly decreases, the offset (padded flat index
    of the predecessor minus that of the tile) of the entry of ``before`` it came from, in ``pred``."""
    a, b, c = before[:-2], before[1:-1], before[2:]
    take_b = b < a
    best = torch.where(take_b, b, a)
    offset = torch.where(take_b, offsets[1], offsets[0])
    take_c = c < best
    best = torch.where(take_c, c, best)
    offset = torch.where(take_c, offsets[2], offset)
    best += cost
    better = best < target
    target.copy_(torch.where(better, best, target))
    pred.copy_(torch.where(better, offset, pred))


def sweeps(dist: torch.Tensor, cost: torch.Tensor, pred: torch.Tensor | None = None) -> None:
    """One Gauss-Seidel round, in place: four directional sweeps (down, right, up, left).

    A sweep relaxes a whole row (column) of every instance from the 3 adjacent tiles of the row (column)
    before it, which it has just updated, so a straight run of any length is settled in one sweep. With
    ``pred`` (padded, batch-last, int64) the predecessor offsets are recorded on strict improvements.
    """
    h, w = cost.shape[:2]
    if pred is None:
        for r in range(1, h):  # down: grid row r from grid row r - 1
            relax(dist[r], cost[r], dist[r + 1, 1 : w + 1])
        for c in range(1, w):  # right: grid column c from grid column c - 1
            relax(dist[:, c], cost[:, c], dist[1 : h + 1, c + 1])
        for r in range(h - 2, -1, -1):  # up: grid row r from grid row r + 1
            relax(dist[r + 2], cost[r], dist[r + 1, 1 : w + 1])
        for c in range(w - 2, -1, -1):  # left: grid column c from grid column c + 1
            relax(dist[:, c + 2], cost[:, c], dist[1 : h + 1, c + 1])
        return
    s = w + 2  # padded row stride
    down, right = (-s - 1, -s, -s + 1), (-s - 1, -1, s - 1)
    up, left = (s - 1, s, s + 1), (-s + 1, 1, s + 1)
    rec = relax_recording
    for r in range(1, h):
        rec(dist[r], cost[r], dist[r + 1, 1 : w + 1], pred[r + 1, 1 : w + 1], down)
    for c in range(1, w):
        rec(dist[:, c], cost[:, c], dist[1 : h + 1, c + 1], pred[1 : h + 1, c + 1], right)
    for r in range(h - 2, -1, -1):
        rec(dist[r + 2], cost[r], dist[r + 1, 1 : w + 1], pred[r + 1, 1 : w + 1], up)
    for c in range(w - 2, -1, -1):
        rec(dist[:, c + 2], cost[:, c], dist[1 : h + 1, c + 1], pred[1 : h + 1, c + 1], left)
