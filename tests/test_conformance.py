"""Shared contracts of every public oracle, noise, perturbation, layer and loss, found from the package itself.

The pieces come from ``tests/conformance`` (:func:`~tests.conformance.discover`: the ``__all__`` of the four
subpackages and their public submodules, abstract bases excluded by one rule). A new public piece gets every test
below by existing; one that cannot be built fails :func:`test_every_public_piece_can_be_built` (and its own
cases) with a message saying to add it to the table of constructors.

Contracts:

* oracles: batch = loop; the output is in Y (``contains``), in θ's dtype and on its device, and maximizes the
  objective against the solutions of other random scores; θ is left unchanged (a batch of several instances, a
  batch of one, an unbatched θ); NaN θ and a wrong event shape are refused;
* noises: ``sample`` gives the shape, dtype and device asked for, replays with a seed, and matches its declared
  mean and variance within 5 standard errors;
* perturbations: ``sample`` gives ``(S, *θ.shape)`` in θ's dtype, replays with a seed, leaves θ unchanged;
* layers: the output follows θ's dtype and device; θ is unchanged by the forward and backward passes; seeded
  layers replay; NaN θ is refused; deterministic layers batch as a loop;
* losses: finite (and ≥ 0 where the loss is by definition) on a valid target; θ and the target unchanged;
  ``reduction="none"`` gives one value per instance; NaN θ is refused.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from colayers.oracles import Oracle
from tests.conformance import EVENT, Case, Piece, _auto_case, abstract_bases, cases, discover, is_abstract, small_oracle
from tests.conftest import DEVICES

PIECES = discover()
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
BATCHES = [pytest.param((3,), id="batch3"), pytest.param((1,), id="batch1"), pytest.param((), id="unbatched")]


def params(kind: str) -> list:
    return [pytest.param(piece, id=piece.name) for piece in PIECES[kind]]


def built(piece: Piece, **overrides):
    if piece.error is not None:
        pytest.fail(piece.error)
    return piece.build(**overrides)


def generator(device: str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def scores(case: Case, shape: tuple[int, ...], device: str, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Valid scores for the case, drawn on the CPU (the same values on every device) and moved to ``device``."""
    return case.scores(shape, torch.Generator().manual_seed(seed), dtype).to(device)


def tolerance(theta: torch.Tensor, event_ndim: int) -> torch.Tensor:
    """Objective comparisons hold up to sqrt(eps) of the dtype times the scores' size (solver tolerances)."""
    dims = tuple(range(-event_ndim, 0)) if event_ndim else ()
    return math.sqrt(torch.finfo(theta.dtype).eps) * (1.0 + theta.abs().sum(dim=dims))


# ---- discovery itself -------------------------------------------------------------------------------------
def test_every_kind_has_pieces_and_the_abstract_bases_are_excluded():
    counts = {kind: len(pieces) for kind, pieces in PIECES.items()}
    assert all(counts.values()), counts
    bases = abstract_bases()
    assert {"Oracle", "Noise", "Perturbation"} <= set(bases), bases
    found = {piece.name for pieces in PIECES.values() for piece in pieces}
    assert not found & set(bases)


def test_every_public_piece_can_be_built():
    errors = [piece.error for pieces in PIECES.values() for piece in pieces if piece.error is not None]
    assert not errors, "\n".join(errors)


def test_the_abstract_rule_and_the_build_rule_on_made_up_classes():
    class Stub(Oracle):
        def solve(self, theta):
            """A stub: a subclass must fill it."""
            raise NotImplementedError

    class NoForward(torch.nn.Module):
        pass

    class Concrete(Stub):
        def __init__(self, k, oracle=None):
            super().__init__()

        def solve(self, theta):
            raise NotImplementedError("an explanation: not a stub")

    assert is_abstract(Stub) and is_abstract(NoForward) and not is_abstract(Concrete)
    reason = _auto_case(Concrete)
    assert isinstance(reason, str) and "k" in reason
    assert isinstance(_auto_case(Oracle), Case)


def test_the_table_of_constructors_names_only_public_pieces():
    found = {piece.name for pieces in PIECES.values() for piece in pieces}
    stale = sorted(set(cases()) - found)
    assert not stale, f"table entries for classes that are not public concrete pieces any more: {stale}"


# ---- oracles ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("oracle"))
def test_oracle_batch_equals_a_loop(piece, device):
    oracle = built(piece)
    if not oracle.deterministic:
        pytest.skip(f"{piece.name} declares deterministic = False: equal inputs may give different solutions")
    theta = scores(piece.case, (3, *piece.event(oracle)), device)
    assert torch.equal(oracle(theta), torch.stack([oracle(t) for t in theta]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("oracle"))
def test_oracle_output_is_in_Y_follows_theta_and_maximizes_the_objective(piece, device, dtype):
    oracle = built(piece)
    event = piece.event(oracle)
    theta = scores(piece.case, (4, *event), device, dtype)
    y = oracle(theta)
    assert y.dtype == dtype and y.device == theta.device
    assert y.shape == (4, *oracle.solution_shape(event))
    member = oracle.contains(y)
    if member is not None:
        assert member.shape == (4,) and bool(member.all()), f"solutions outside Y: {y[~member]}"
    if not oracle.maximizes_objective:
        return
    rivals = oracle(scores(piece.case, (6, 4, *event), device, dtype, seed=1))  # f(θ') ∈ Y for other θ'
    best = oracle.objective(theta, y)
    others = oracle.objective(theta, rivals)
    slack = others - best - tolerance(theta, oracle.event_ndim)
    assert bool((slack <= 0).all()), f"a solution of other scores beats f(θ) by {slack.max().item():.3g}"


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("oracle"))
def test_oracle_leaves_theta_unchanged(piece, device, batch):
    oracle = built(piece)
    theta = scores(piece.case, (*batch, *piece.event(oracle)), device)
    before = theta.clone()
    oracle(theta)
    oracle(theta)  # a second call sees the same θ (the first did not flip it)
    assert torch.equal(theta, before), f"{piece.name} modified its input θ (batch shape {batch})"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("oracle"))
def test_oracle_refuses_nan_theta_and_a_wrong_event_shape(piece, device):
    oracle = built(piece)
    event = piece.event(oracle)
    theta = scores(piece.case, (2, *event), device)
    theta.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match="theta"):
        oracle(theta)
    wrong = (*event[:-1], event[-1] + 1) if oracle.event_shape is not None else event[1:]
    with pytest.raises(ValueError, match="theta"):
        oracle(scores(piece.case, (2, *wrong) if wrong else (), device))


# ---- noises -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("noise"))
def test_noise_sample_has_the_shape_dtype_and_device_asked_and_replays(piece, device, dtype):
    noise = built(piece)
    z = noise.sample((3, 4), generator=generator(device), device=device, dtype=dtype)
    assert z.shape == (3, 4) and z.dtype == dtype and z.device.type == device
    assert bool(torch.isfinite(z).all())
    assert torch.equal(z, noise.sample((3, 4), generator=generator(device), device=device, dtype=dtype))
    assert not torch.equal(z, noise.sample((3, 4), generator=generator(device, 1), device=device, dtype=dtype))


@pytest.mark.parametrize("piece", params("noise"))
def test_noise_moments_match_the_declared_mean_and_variance(piece):
    """n = 200,000 float64 draws; each moment within 5 standard errors: sqrt(σ²/n) for the mean and
    sqrt((m₄ - σ⁴)/n) for the variance (m₄ the sample's fourth central moment)."""
    noise = built(piece)
    if noise.mean is None and noise.variance is None:
        pytest.skip(f"{piece.name} declares no moments")
    n = 200_000
    z = noise.sample((n,), generator=generator("cpu", 5), dtype=torch.float64)
    mean, var = z.mean().item(), z.var().item()
    if noise.mean is not None:
        sigma2 = noise.variance if noise.variance is not None else var
        assert abs(mean - noise.mean) <= 5 * math.sqrt(sigma2 / n), (mean, noise.mean)
    if noise.variance is not None:
        m4 = ((z - mean) ** 4).mean().item()
        assert abs(var - noise.variance) <= 5 * math.sqrt((m4 - var**2) / n), (var, noise.variance)


# ---- perturbations ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("perturbation"))
def test_perturbation_sample_shapes_dtype_replay_and_theta_unchanged(piece, device, dtype, batch):
    perturbation = built(piece)
    theta = scores(piece.case, (*batch, *EVENT), device, dtype)
    before = theta.clone()
    sample = perturbation.sample(theta, 4, generator(device))
    assert sample.eta.shape == (4, *theta.shape) and sample.eta.dtype == dtype and sample.eta.device == theta.device
    if sample.noise is not None:
        assert sample.noise.shape == (4, *theta.shape) and sample.noise.dtype == dtype
    if perturbation.has_score:
        score = perturbation.score(theta, sample)
        assert score.shape == (4, *theta.shape) and score.dtype == dtype
    again = perturbation.sample(theta, 4, generator(device))
    assert torch.equal(sample.eta, again.eta)
    assert torch.equal(theta, before), f"{piece.name}.sample modified θ"


# ---- layers -----------------------------------------------------------------------------------------------
def layer_theta(piece: Piece, layer, batch, device, dtype=torch.float64, seed=0) -> torch.Tensor:
    return scores(piece.case, (*batch, *piece.event(layer)), device, dtype, seed)


def takes(callable_, name: str) -> bool:
    return name in inspect.signature(callable_).parameters


def is_deterministic(layer, theta: torch.Tensor) -> bool:
    """The layer's own ``deterministic`` flag where it has one; else whether two calls agree."""
    flag = getattr(layer, "deterministic", None)
    if isinstance(flag, bool):
        return flag
    return torch.equal(layer(theta), layer(theta))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("layer"))
def test_layer_output_follows_theta_dtype_and_device(piece, device, dtype):
    layer = built(piece)
    out = layer(layer_theta(piece, layer, (3,), device, dtype))
    assert out.dtype == dtype and out.device.type == device
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("layer"))
def test_layer_leaves_theta_unchanged_forward_and_backward(piece, device, batch):
    layer = built(piece)
    theta = layer_theta(piece, layer, batch, device)
    before = theta.clone()
    layer(theta)  # without autograd
    assert torch.equal(theta, before), f"{piece.name} modified θ in its forward (batch shape {batch})"
    theta.requires_grad_(True)
    out = layer(theta)
    if out.requires_grad:
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype).to(device))
    assert torch.equal(theta.detach(), before), f"{piece.name} modified θ (batch shape {batch})"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("layer"))
def test_layer_replays_with_a_seed(piece, device):
    layer = built(piece)
    theta = layer_theta(piece, layer, (3,), device)
    if takes(type(layer), "seed"):
        a, b = built(piece, seed=3), built(piece, seed=3)
        assert torch.equal(a(theta), b(theta)) and torch.equal(a(theta), b(theta))  # call after call
    elif is_deterministic(layer, theta):
        assert torch.equal(layer(theta), layer(theta))
    else:
        assert takes(layer.forward, "generator"), f"{piece.name} is random but takes neither seed nor generator"
        assert torch.equal(layer(theta, generator=generator(device)), layer(theta, generator=generator(device)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("layer"))
def test_layer_refuses_nan_theta(piece, device):
    layer = built(piece)
    theta = layer_theta(piece, layer, (2,), device)
    theta.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match="theta"):
        layer(theta)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("layer"))
def test_deterministic_layer_batch_equals_a_loop(piece, device):
    layer = built(piece)
    theta = layer_theta(piece, layer, (3,), device)
    if not is_deterministic(layer, theta):
        pytest.skip(f"{piece.name} is random: its batch and its loop draw different noise")
    torch.testing.assert_close(layer(theta), torch.stack([layer(t) for t in theta]), rtol=1e-9, atol=1e-12)


# ---- losses -----------------------------------------------------------------------------------------------
def loss_inputs(piece: Piece, loss, batch, device, dtype=torch.float64):
    """θ, the other inputs of ``loss(θ, ...)`` (a valid target, true scores) from its forward's signature."""
    theta = scores(piece.case, (*batch, *EVENT), device, dtype)
    theta_true = scores(piece.case, (*batch, *EVENT), device, dtype, seed=1)
    target = small_oracle()(theta_true)
    if piece.case.loss_args is not None:
        return theta, piece.case.loss_args(theta_true, target)
    args = []
    for parameter in list(inspect.signature(loss.forward).parameters.values())[1:]:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            if parameter.kind is parameter.VAR_POSITIONAL:
                pytest.fail(f"{piece.name}.forward takes *{parameter.name}: give its Case a loss_args")
            break
        if parameter.name.startswith("theta"):
            args.append(theta_true)
        elif "target" in parameter.name:
            args.append(target)
        elif parameter.default is parameter.empty:
            pytest.fail(f"{piece.name}.forward needs {parameter.name}: give its Case a loss_args")
        else:
            break
    return theta, tuple(args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("loss"))
def test_loss_is_finite_and_nonnegative_on_a_valid_target(piece, device):
    loss = built(piece)
    theta, args = loss_inputs(piece, loss, (3,), device)
    value = loss(theta, *args)
    assert value.shape == () and value.dtype == theta.dtype and value.device == theta.device
    assert bool(torch.isfinite(value))
    if piece.case.nonnegative:
        assert value.item() >= -1e-12, f"{piece.name} is negative on a valid target: {value.item()}"


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("loss"))
def test_loss_leaves_theta_and_target_unchanged(piece, device, batch):
    loss = built(piece)
    theta, args = loss_inputs(piece, loss, batch, device)
    before = [theta.clone(), *(a.clone() for a in args)]
    theta.requires_grad_(True)
    value = loss(theta, *args)
    if value.requires_grad:
        value.backward()
    after = [theta.detach(), *args]
    for i, (x, y) in enumerate(zip(before, after)):
        assert torch.equal(x, y), f"{piece.name} modified its input {i} (0 is θ; batch shape {batch})"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("loss"))
def test_loss_reduction_none_gives_one_value_per_instance(piece, device):
    loss = built(piece, reduction="none")
    theta, args = loss_inputs(piece, loss, (3,), device)
    value = loss(theta, *args)
    assert value.shape == (3,) and bool(torch.isfinite(value).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("piece", params("loss"))
def test_loss_refuses_nan_theta(piece, device):
    loss = built(piece)
    theta, args = loss_inputs(piece, loss, (2,), device)
    theta.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match="theta"):
        loss(theta, *args)
