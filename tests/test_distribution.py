"""SolutionDistribution: mean, expectation and sampling by weight."""

import math

import pytest
import torch

from colayers import SolutionDistribution
from tests.conftest import DEVICES


def test_uniform_mean_and_expectation():
    atoms = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    d = SolutionDistribution(atoms)
    assert d.num_atoms == 5 and d.batch_shape == (3,) and d.event_shape == (4,)
    assert torch.allclose(d.mean, atoms.mean(0))
    assert torch.allclose(d.weights, torch.full((5, 3), 0.2))
    assert torch.allclose(d.expectation(lambda y: y.sum(-1)), atoms.sum(-1).mean(0))


def test_weighted_mean_with_padding_atoms():
    # instance 0 has two atoms, instance 1 has one atom and a zero-weight pad
    atoms = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [9.0, 9.0]]])  # (S=2, B=2, 2)
    weights = torch.tensor([[0.25, 1.0], [0.75, 0.0]])
    d = SolutionDistribution(atoms, weights)
    assert torch.allclose(d.mean, torch.tensor([[0.25, 0.75], [0.0, 1.0]]))
    assert torch.allclose(d.expectation(lambda y: y[..., 1:] * 2), torch.tensor([[1.5], [2.0]]))


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_frequencies_follow_weights(device):
    atoms = torch.eye(3, device=device).unsqueeze(1).expand(3, 2, 3).contiguous()  # atom s = e_s, B=2
    weights = torch.tensor([[0.5, 0.1], [0.3, 0.1], [0.2, 0.8]], device=device)
    n = 40_000
    draws = SolutionDistribution(atoms, weights).sample(n, torch.Generator(device=device).manual_seed(0))
    assert draws.shape == (n, 2, 3) and draws.device.type == device
    freq = draws.mean(0).T  # (3 atoms, B) frequencies
    # binomial standard error sqrt(p(1-p)/n); allow 5 of them
    se = torch.sqrt(weights * (1 - weights) / n)
    assert ((freq - weights).abs() <= 5 * se + 1e-9).all()


def test_sampling_is_reproducible():
    d = SolutionDistribution(torch.randn(4, 2, 3), torch.softmax(torch.randn(4, 2), 0))
    a = d.sample(10, torch.Generator().manual_seed(3))
    b = d.sample(10, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_event_ndim_two():
    atoms = torch.rand(3, 2, 4, 4)
    d = SolutionDistribution(atoms, event_ndim=2)
    assert d.batch_shape == (2,) and d.event_shape == (4, 4)
    assert torch.allclose(d.expectation(lambda y: y.sum((-1, -2))), atoms.sum((-1, -2)).mean(0))
    assert d.sample(5).shape == (5, 2, 4, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"weights must have shape \(S, \*batch\) = \(3, 2\); got \(3,\)"):
        SolutionDistribution(torch.zeros(3, 2, 4), torch.ones(3) / 3)
    with pytest.raises(ValueError, match="atoms must have shape"):
        SolutionDistribution(torch.zeros(4), event_ndim=1)
    with pytest.raises(ValueError, match="fn must map atoms"):
        SolutionDistribution(torch.zeros(3, 2, 4)).expectation(lambda y: y.sum())
    with pytest.raises(ValueError, match="num_samples must be an integer ≥ 1"):
        SolutionDistribution(torch.zeros(3, 2, 4)).sample(0)
    assert math.isclose(SolutionDistribution(torch.ones(3, 4)).mean.sum().item(), 4.0)
