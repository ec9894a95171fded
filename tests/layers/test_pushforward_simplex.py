"""Pushforward on the simplex layers: E_{p(.|theta)}[cost(y)] over the one-hot vertices weighted by softmax(theta/T)
or sparsemax(theta), whose gradient has a closed form (checked at T != 1)."""

import pytest
import torch

import colayers as cl

DT = torch.float64


@pytest.mark.parametrize("temperature", [0.7, 2.5])
def test_pushforward_of_soft_argmax_has_the_softmax_jacobian(temperature):
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(5, 4, generator=gen, dtype=DT, requires_grad=True)
    c = torch.randn(4, generator=gen, dtype=DT)
    value = cl.Pushforward(cl.SoftArgmax(temperature=temperature), lambda y: (y * c).sum(-1))(theta)
    p = torch.softmax(theta.detach() / temperature, -1)
    torch.testing.assert_close(value.detach(), (p * c).sum(-1))
    value.sum().backward()
    # d/dtheta <softmax(theta/T), c> = (diag p - p p^T) c / T
    torch.testing.assert_close(theta.grad, p * (c - (p * c).sum(-1, keepdim=True)) / temperature)


def test_pushforward_of_sparse_argmax_has_the_sparsemax_jacobian():
    theta = torch.tensor([[0.9, 0.1, 0.5, -2.0], [3.0, -1.0, 0.0, 0.0]], dtype=DT, requires_grad=True)
    c = torch.tensor([1.0, -2.0, 0.5, 4.0], dtype=DT)
    value = cl.Pushforward(cl.SparseArgmax(), lambda y: (y * c).sum(-1))(theta)
    value.sum().backward()
    mu = cl.SparseArgmax()(theta.detach())
    s = (mu > 0).to(DT)
    # J = diag(s) - s s^T / |s|
    expected = s * c - s * (s * c).sum(-1, keepdim=True) / s.sum(-1, keepdim=True)
    torch.testing.assert_close(theta.grad, expected)
    dist = cl.SparseArgmax().distribution(theta.detach())
    assert bool((cl.ArgmaxOneHot().contains(dist.atoms)).all())
