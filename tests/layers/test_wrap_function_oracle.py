"""FunctionOracle / oracle_layer: the function's output is checked for NaN/inf while validating, the function works on
a copy of θ (an in-place function cannot change the caller's tensor, and no output shares memory with θ), the output
has the input's shape (as documented), and the flags are checked."""

import pytest
import torch

from colayers import IMLE, Blackbox, IdentityRelaxation, set_default_validate_args
from colayers.layers.wrap import FunctionOracle, oracle_layer
from colayers.oracles import OracleError


def one_hot_argmax(t):
    return torch.nn.functional.one_hot(t.argmax(-1), t.shape[-1]).to(t.dtype)


def nan_in_row_one(t):
    y = one_hot_argmax(t)
    y[1, 0] = float("nan")
    return y


def test_a_nan_or_inf_solution_is_refused_naming_the_instance():
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(OracleError, match=r"fn nan_in_row_one returned 1 NaN and 0 inf entries \(first in instance 1 "
                                          r"of 3\); a solution must be finite"):
        FunctionOracle(nan_in_row_one)(theta)
    with pytest.raises(OracleError, match="returned 0 NaN and 4 inf entries"):
        FunctionOracle(lambda t: t.new_full(t.shape, float("inf")))(theta[:1])
    # off, the function's answer is returned as it is (the check reads a value back to the host: it follows the switch)
    assert torch.isnan(FunctionOracle(nan_in_row_one, validate_args=False)(theta)).sum() == 1
    set_default_validate_args(False)
    try:
        assert torch.isnan(FunctionOracle(nan_in_row_one)(theta)).sum() == 1
    finally:
        set_default_validate_args(True)


def test_a_nan_solution_does_not_reach_an_imle_output_or_gradient():
    @oracle_layer(IMLE, epsilon=0.5, lambda_=2.0, num_samples=4, seed=0)
    def layer(theta):
        return nan_in_row_one(theta) if theta.shape[0] > 1 else one_hot_argmax(theta)

    theta = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    with pytest.raises(OracleError, match="returned 1 NaN"):
        layer(theta).sum().backward()


def negate_in_place(t):
    t.neg_()  # a careless solver that works on its input
    return one_hot_argmax(t)


def test_an_in_place_function_does_not_change_the_callers_theta():
    theta = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    before = theta.clone()
    y = FunctionOracle(negate_in_place)(theta)
    assert torch.equal(theta, before)
    assert y.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # the argmax of -theta, as the function computes it
    single = theta[0]  # one instance (its flat batch is a view of theta for n = 1)
    FunctionOracle(negate_in_place)(single)
    assert torch.equal(theta, before)


@pytest.mark.parametrize("layer_cls, settings", [
    (IdentityRelaxation, {}),
    (Blackbox, {"lambda_": 2.0}),
    (IMLE, {"epsilon": 0.0, "lambda_": 2.0, "num_samples": 1}),
])
def test_layers_built_by_oracle_layer_leave_theta_alone(layer_cls, settings):
    layer = oracle_layer(layer_cls, **settings)(negate_in_place)
    theta = torch.tensor([[1.0, 3.0, 2.0]], requires_grad=True)
    before = theta.detach().clone()
    layer(theta).sum().backward()
    assert torch.equal(theta.detach(), before)


def test_no_solution_shares_memory_with_theta():
    theta = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = FunctionOracle(lambda t: t)(theta)  # a function that returns its input (a valid answer: y = θ here)
    assert torch.equal(y, theta)
    assert y.untyped_storage().data_ptr() != theta.untyped_storage().data_ptr()
    y.zero_()
    assert theta.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_the_solution_has_the_shape_of_theta():
    # documented: fn maps (N, *event) to (N, *event) (a layer pairs y with theta); another shape is refused
    oracle = FunctionOracle(lambda t: t[:, :2].clone())
    with pytest.raises(OracleError, match=r"returned shape \(2, 2\); expected \(2, 3\)"):
        oracle(torch.ones(2, 3))
    assert "(N, *event)" in FunctionOracle.__doc__ and "*solution" not in FunctionOracle.__doc__


@pytest.mark.parametrize("kwargs, match", [
    ({"deterministic": "no"}, "deterministic must be a bool; got str 'no'"),
    ({"deterministic": 0}, "deterministic must be a bool; got int 0"),
    ({"event_ndim": -1}, "event_ndim must be an integer ≥ 0; got -1"),
    ({"event_shape": (-1,)}, r"event_shape must be a sequence of integers ≥ 0 \(a shape\); got \(-1,\)"),
    ({"event_ndim": 2, "event_shape": (3,)}, "event_shape must have event_ndim = 2 entries"),
])
def test_flags_and_shapes_are_refused_by_name(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        FunctionOracle(one_hot_argmax, **kwargs)


def test_deterministic_is_kept_as_given():
    assert FunctionOracle(one_hot_argmax, deterministic=False).deterministic is False
    assert FunctionOracle(one_hot_argmax).deterministic is True
