"""gradcheck in float64 for the deterministic differentiable layers; frozen-noise finite differences."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from colayers import IMLE, ArgmaxOneHot, Ranking, RegularizedFrankWolfe, SoftArgmax, SparseArgmax, TopKSubset
from colayers.layers.functional import regularized_frank_wolfe, sparse_argmax


def _theta(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def test_gradcheck_soft_argmax():
    assert gradcheck(SoftArgmax(temperature=0.7), (_theta(3, 5),))


def test_gradcheck_sparse_argmax():
    assert gradcheck(sparse_argmax, (_theta(3, 5),))


@pytest.mark.parametrize("oracle", [ArgmaxOneHot(), TopKSubset(2)], ids=["argmax", "topk"])
def test_gradcheck_regularized_frank_wolfe(oracle):
    theta = _theta(3, 5, seed=1)
    assert gradcheck(lambda t: regularized_frank_wolfe(t, oracle), (theta,))


def test_frank_wolfe_on_simplex_agrees_with_sparsemax():
    theta = _theta(6, 7, seed=2) * 2
    fw = RegularizedFrankWolfe(ArgmaxOneHot())
    assert torch.allclose(fw(theta), SparseArgmax()(theta), atol=1e-10)
    j_fw = torch.autograd.functional.jacobian(lambda t: fw(t).sum(0), theta)
    j_sp = torch.autograd.functional.jacobian(lambda t: sparse_argmax(t).sum(0), theta)
    assert torch.allclose(j_fw, j_sp, atol=1e-10)


def test_frank_wolfe_distribution_reconstructs_the_mean():
    theta = _theta(2, 3, 6, seed=3).detach()
    fw = RegularizedFrankWolfe(TopKSubset(3))
    d = fw.distribution(theta)
    assert d.atoms.shape[1:] == theta.shape and d.weights.shape[1:] == theta.shape[:-1]
    assert torch.allclose(d.weights.sum(0), torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(d.mean, fw(theta), atol=1e-12)
    assert ((d.atoms.sum(-1) == 3) | (d.weights == 0)).all()


@pytest.mark.parametrize("two_sided", [False, True])
def test_finite_difference_rule_with_frozen_noise(two_sided):
    # with the noise frozen (same generator state), the I-MLE VJP is exactly the finite difference of the
    # perturbed mean computed by hand: (mu(theta + a dy) - mu(theta - b dy)) / lambda
    oracle, lam, eps = TopKSubset(2), 2.0, 0.5
    theta = _theta(3, 6, seed=4)
    dy = torch.randn(3, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    layer = IMLE(oracle, epsilon=eps, lambda_=lam, num_samples=5, two_sided=two_sided, output="mean")
    (layer(theta, generator=torch.Generator().manual_seed(11)) * dy).sum().backward()
    z = layer.perturbation.noise.sample((5, 3, 6), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    base = theta.detach() + eps * z
    hi, lo = (0.5 * lam, 0.5 * lam) if two_sided else (0.0, lam)
    expected = (oracle(base + hi * dy).mean(0) - oracle(base - lo * dy).mean(0)) / lam
    assert torch.allclose(theta.grad, expected, atol=1e-14)
    assert theta.grad.abs().sum() > 0


def _centering(n):
    return torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)


def test_frank_wolfe_jacobian_at_zero_on_topk_is_the_centering_projector():
    # theta = 0, top-2 of 4: mu = 1/2 is the centre of the octahedron conv(Y), in the relative interior of the whole
    # polytope, so near 0 the projection is theta -> k/n + theta - mean(theta) and J = I - 11^T/n (rank 3). Frank-Wolfe
    # represents mu with two opposite vertices; their difference alone gives a rank-1 Jacobian.
    theta = torch.zeros(4, dtype=torch.float64)
    layer = RegularizedFrankWolfe(TopKSubset(2))
    jac = torch.autograd.functional.jacobian(layer, theta)
    assert torch.allclose(jac, _centering(4), atol=1e-10)
    assert layer.distribution(theta).num_atoms == 2  # the returned representation is still the minimal one
    bare = torch.autograd.functional.jacobian(RegularizedFrankWolfe(TopKSubset(2), face_completion=False), theta)
    assert int(torch.linalg.matrix_rank(bare)) < 3  # what the completion repairs
    # the projection is differentiable at 0: finite differences agree with the completed Jacobian
    assert gradcheck(layer, (theta.clone().requires_grad_(True),))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), data=st.data(), seed=st.integers(0, 2**31 - 1), ranking=st.booleans())
def test_frank_wolfe_jacobian_at_degenerate_points_is_the_face_projector(n, data, seed, ranking):
    # theta = c * 1 (any c) is projected to the centre of the top-k hypersimplex or of the permutahedron, whose affine
    # hull has directions {sum x = 0}: J = I - 11^T/n whatever the random probes (any seed)
    oracle = Ranking() if ranking else TopKSubset(data.draw(st.integers(1, n - 1)))
    c = data.draw(st.floats(-3.0, 3.0))
    layer = RegularizedFrankWolfe(oracle, seed=seed)
    jac = torch.autograd.functional.jacobian(layer, torch.full((n,), c, dtype=torch.float64))
    assert torch.allclose(jac, _centering(n), atol=1e-8)


def test_frank_wolfe_face_completion_changes_nothing_at_generic_points():
    theta = _theta(5, 6, seed=7)
    for oracle in (ArgmaxOneHot(), TopKSubset(2), Ranking()):
        full = torch.autograd.functional.jacobian(RegularizedFrankWolfe(oracle), theta)
        bare = torch.autograd.functional.jacobian(RegularizedFrankWolfe(oracle, face_completion=False), theta)
        assert torch.equal(full, bare)


def test_frank_wolfe_batch_with_degenerate_and_generic_rows_equals_a_loop():
    theta = torch.cat([torch.zeros(1, 5, dtype=torch.float64), _theta(3, 5, seed=8).detach()])
    layer = RegularizedFrankWolfe(TopKSubset(2))
    batched = torch.autograd.functional.jacobian(lambda t: layer(t).sum(0), theta)  # (5, 4, 5): rows independent
    for i in range(4):
        single = torch.autograd.functional.jacobian(layer, theta[i])
        assert torch.allclose(batched[:, i], single, atol=1e-10)
    assert torch.allclose(batched[:, 0], _centering(5), atol=1e-10)


@pytest.mark.parametrize(
    "theta",
    [[0.0, 2.0548, 0.5, 0.0, -1.8125], [1.0, 3.0548, 1.5, 1.0, -0.8125]],
    ids=["found-by-hypothesis", "shifted"],
)
def test_frank_wolfe_converges_on_a_degenerate_ranking_instance(theta):
    # a tie in theta puts the projection on a low-dimensional face of the permutahedron that Frank-Wolfe reaches
    # with 9 affinely dependent atoms (R^5, affine dimension 4): the affine re-projection alone then has negative
    # minimum-norm weights and was rejected every time, leaving an error of 1e-4 after 100 iterations (and 1e-7
    # after 1000). Wolfe's minor cycles shed the superfluous atoms: the gap must reach the stopping tolerance.
    from colayers.layers.frank_wolfe import _FlatOracle, frank_wolfe_projection

    th = torch.tensor([theta], dtype=torch.float64)
    oracle = _FlatOracle(Ranking(), (5,))
    atoms, weights = frank_wolfe_projection(th, oracle, max_iter=100, tol=1e-9)
    mu = (weights.unsqueeze(-1) * atoms).sum(1)
    gap = float(((th - mu) * (oracle(th - mu) - mu)).sum())
    assert gap <= 1e-9 * (1 + float((th * th).sum()))
    assert atoms.shape[1] <= 5  # at most affine dimension + 1 atoms with positive weight
    # 1 is normal to the permutahedron's affine hull (sum y constant): the projection ignores constant shifts
    shifted = RegularizedFrankWolfe(Ranking())(th + 1.0)
    assert torch.allclose(shifted, mu, atol=1e-9)


def test_frank_wolfe_in_float32_with_ill_conditioned_active_sets():
    # top-5 of 20 in float32: the Gram matrix of the active atoms made torch's float32 eigensolver (pinv with
    # hermitian=True) fail to converge (LinAlgError, after tens of seconds); the small systems are now solved in
    # float64: the float32 layer must give the float64 projection within float32 accuracy, quickly
    theta = torch.randn(32, 20, generator=torch.Generator().manual_seed(0))
    layer = RegularizedFrankWolfe(TopKSubset(5))
    t32 = theta.clone().requires_grad_(True)
    mu32 = layer(t32)
    mu64 = layer(theta.double())
    assert mu32.dtype == torch.float32
    assert (mu32.double() - mu64).abs().max() < 1e-4  # entries in [0, 1]; float32 eps 1.2e-7 times ~100 atoms
    mu32.pow(2).sum().backward()
    assert torch.isfinite(t32.grad).all()
