"""Structured SVM and imitation losses: brute-force values, Hamming trick, equivalences, gradcheck, bad input."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import (
    ArgmaxOneHot,
    FenchelYoungLoss,
    GridDAGShortestPath,
    ImitationLoss,
    SoftArgmax,
    SparseArgmax,
    StructuredSVMLoss,
    TopKSubset,
)


def all_subsets(n, k):
    rows = []
    for idx in itertools.combinations(range(n), k):
        y = torch.zeros(n, dtype=torch.float64)
        y[list(idx)] = 1.0
        rows.append(y)
    return torch.stack(rows)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 5), w=st.floats(0.1, 5.0))
def test_hamming_ssvm_equals_brute_force_max(seed, k, w):
    g = torch.Generator().manual_seed(seed)
    theta = 2 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    ys = all_subsets(6, k)
    y_bar = ys[torch.randint(len(ys), (4,), generator=g)]
    # max over every y ∈ Y of  w·|y − ȳ|₁ + ⟨θ, y − ȳ⟩
    hamming = (ys.unsqueeze(0) - y_bar.unsqueeze(1)).abs().sum(-1)  # (4, |Y|)
    scores = w * hamming + theta @ ys.T - (theta * y_bar).sum(-1, keepdim=True)
    expected = scores.max(-1).values
    got = StructuredSVMLoss(TopKSubset(k), margin_weight=w, reduction="none")(theta, y_bar)
    torch.testing.assert_close(got, expected)
    assert bool((got >= 0).all())


def test_ssvm_gradient_is_augmented_solution_minus_target_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    oracle = GridDAGShortestPath(4, 4)
    theta = torch.randn(5, oracle.num_edges, generator=g, dtype=torch.float64, requires_grad=True)
    y_bar = oracle(torch.randn(5, oracle.num_edges, generator=g, dtype=torch.float64))
    loss = StructuredSVMLoss(oracle, margin_weight=0.5, reduction="sum")
    loss(theta, y_bar).backward()
    y_hat = oracle(theta.detach() + 0.5 * (1 - 2 * y_bar))
    torch.testing.assert_close(theta.grad, y_hat - y_bar)
    assert torch.autograd.gradcheck(lambda t: loss(t, y_bar), (theta.detach().requires_grad_(),))


def test_custom_margin_with_its_loss_augmented_oracle():
    # margin δ(y, ȳ) = 2·[y ≠ ȳ] on one-hot vectors; loss-augmented argmax by enumeration of the n vertices
    def margin(y, y_bar):
        return 2.0 * (y != y_bar).any(-1).to(y.dtype)

    def augmented(theta, y_bar):
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype)
        scores = theta @ eye.T + 2.0 * (1 - y_bar @ eye.T)  # (B, n) objective of each vertex
        return eye[scores.argmax(-1)]

    loss = StructuredSVMLoss(ArgmaxOneHot(), margin=margin, loss_augmented_oracle=augmented, reduction="none")
    theta = torch.tensor([[3.0, 0.0, 0.5], [0.0, 1.0, 0.0]], dtype=torch.float64)
    y_bar = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    # row 1: max(0, 2 + 0 − 3, 2 + 0.5 − 3) = 0;  row 2: max(0, 2 + 1 − 0, 2 + 0 − 0) = 3
    torch.testing.assert_close(loss(theta, y_bar), torch.tensor([0.0, 3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="must be given together"):
        StructuredSVMLoss(ArgmaxOneHot(), margin=margin)


def test_ssvm_bad_input():
    oracle, g = TopKSubset(2), torch.Generator().manual_seed(0)
    theta = torch.randn(3, 5, generator=g)
    y = TopKSubset(2)(torch.randn(3, 5, generator=g))
    with pytest.raises(ValueError, match="y_target must have the shape of theta"):
        StructuredSVMLoss(oracle)(theta, y[:, :4])
    with pytest.raises(ValueError, match="reduction must be one of"):
        StructuredSVMLoss(oracle, reduction="Mean")
    with pytest.raises(ValueError, match="margin_weight must be > 0"):
        StructuredSVMLoss(oracle, margin_weight=0.0)
    soft = y * 0.5
    with pytest.raises(ValueError, match="y_target must have 0/1 entries.*allow_relaxed_targets"):
        StructuredSVMLoss(oracle)(theta, soft)
    three = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]]).expand(3, 5)
    with pytest.raises(ValueError, match="y_target must be a solution in Y of TopKSubset"):
        StructuredSVMLoss(oracle)(theta, three)
    # relaxed targets in [0, 1]: the margin Σ y + ȳ − 2yȳ is still |y − ȳ|₁ for 0/1 y
    relaxed = StructuredSVMLoss(oracle, allow_relaxed_targets=True, reduction="none")(theta, soft)
    ys = all_subsets(5, 2).float()
    expected = ((ys.unsqueeze(0) - soft.unsqueeze(1)).abs().sum(-1) + theta @ ys.T).max(-1).values - (
        theta * soft
    ).sum(-1)
    torch.testing.assert_close(relaxed, expected)


def test_imitation_presets_match_closed_forms():
    theta = torch.tensor([[2.0, 1.5, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    svm = ImitationLoss.structured_svm(ArgmaxOneHot(), alpha=2.0)
    # max_y |y − ȳ|₁ + 2⟨θ, y − ȳ⟩ over the 3 vertices: (0, 2 + 2(1.5 − 2), 2 + 2(0 − 2)) = (0, 1, −2)
    assert svm(theta, y).item() == 1.0
    fy = ImitationLoss.fenchel_young(SoftArgmax(), alpha=2.0)
    # FY of softmax at 2θ: logsumexp(2θ) − ⟨2θ, ȳ⟩
    torch.testing.assert_close(fy(theta, y), torch.logsumexp(2 * theta, -1).sum() - 4.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ImitationLoss.structured_svm(ArgmaxOneHot(), alpha=0.0)
    with pytest.raises(TypeError, match="regularized layer"):
        ImitationLoss.fenchel_young(torch.nn.Identity())


def test_imitation_gradcheck():
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = TopKSubset(2)(torch.randn(4, 6, generator=g, dtype=torch.float64))
    y1 = ArgmaxOneHot()(torch.randn(4, 6, generator=g, dtype=torch.float64))
    svm = ImitationLoss.structured_svm(TopKSubset(2), alpha=1.5)
    assert torch.autograd.gradcheck(lambda t: svm(t, y), (theta,))
    for layer in (SoftArgmax(temperature=0.7), SparseArgmax()):
        fy = ImitationLoss.fenchel_young(layer, alpha=0.8)
        assert torch.autograd.gradcheck(lambda t, fy=fy: fy(t, y1), (theta,))


def _train_pair(loss_a, loss_b, targets, steps=15, seed=0):
    """Train two identical linear models, one per loss; return the two loss trajectories."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model_a = torch.nn.Linear(4, targets.shape[-1]).double()
    model_b = torch.nn.Linear(4, targets.shape[-1]).double()
    model_b.load_state_dict(model_a.state_dict())
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.5)
    values_a, values_b = [], []
    for _ in range(steps):
        for model, opt, loss, values in ((model_a, opt_a, loss_a, values_a), (model_b, opt_b, loss_b, values_b)):
            value = loss(model(x), targets)
            opt.zero_grad()
            value.backward()
            opt.step()
            values.append(value.item())
    return torch.tensor(values_a), torch.tensor(values_b)


@pytest.mark.parametrize("layer", [SoftArgmax(), SparseArgmax()], ids=["softargmax", "sparseargmax"])
def test_imitation_without_margin_equals_fenchel_young_along_training(layer):
    targets = ArgmaxOneHot()(torch.randn(32, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    a, b = _train_pair(ImitationLoss.fenchel_young(layer), FenchelYoungLoss(layer), targets)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert a[-1] < a[0]  # the run does train


def test_imitation_without_regularizer_equals_ssvm_along_training():
    oracle = TopKSubset(2)
    targets = oracle(torch.randn(32, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    a, b = _train_pair(ImitationLoss.structured_svm(oracle, margin_weight=0.7),
                       StructuredSVMLoss(oracle, margin_weight=0.7), targets)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert a[-1] < a[0]
