"""Small oracles and utilities shared by the layer tests."""

from __future__ import annotations

import torch

from colayers.oracles import ArgmaxOneHot, Oracle


class SignOracle(Oracle):
    """argmax over y in {-1, +1} of theta * y for one coordinate: sign(theta) (ties to +1)."""

    event_ndim = 1
    event_shape = (1,)

    def solve(self, theta):
        return torch.where(theta >= 0, torch.ones_like(theta), -torch.ones_like(theta))


class CountingOracle(Oracle):
    """Wraps an oracle and counts its calls and the instances it solved."""

    def __init__(self, inner: Oracle | None = None) -> None:
        super().__init__()
        self.inner = ArgmaxOneHot() if inner is None else inner
        self.event_ndim = self.inner.event_ndim
        self.event_shape = self.inner.event_shape
        self.calls = 0
        self.instances = 0

    def solve(self, theta):
        self.calls += 1
        self.instances += theta.shape[0]
        return self.inner.solve(theta)


class WrongShapeOracle(Oracle):
    """A broken oracle that drops the last coordinate."""

    event_ndim = 1

    def solve(self, theta):
        return theta[:, :-1].clone()


def softmax_jacobian(theta: torch.Tensor, eps: float) -> torch.Tensor:
    """Jacobian of softmax(theta / eps) for a vector theta: (diag(p) - p p^T) / eps."""
    p = torch.softmax(theta / eps, -1)
    return (torch.diag(p) - torch.outer(p, p)) / eps


def jacobian(fn, theta: torch.Tensor) -> torch.Tensor:
    """Jacobian of a vector function by one forward and n VJPs (the forward's samples are reused)."""
    theta = theta.detach().clone().requires_grad_(True)
    out = fn(theta)
    rows = []
    for i in range(out.numel()):
        (g,) = torch.autograd.grad(out.reshape(-1)[i], theta, retain_graph=True)
        rows.append(g.reshape(-1))
    return torch.stack(rows)
