"""The shared argument checks name the argument, the expected and the received value."""

import pytest
import torch

from colayers import _validation as v


def test_finite_reports_counts_and_first_index():
    t = torch.zeros(3, 4)
    t[1, 2] = float("nan")
    t[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"must be finite; found 1 NaN and 1 inf entries \(first at index \(1, 2\)\)"):
        v.check_finite("theta", t)
    assert v.check_finite("theta", torch.ones(2)) is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_by_the_sum_is_exact(dtype):
    # the sum passes finite tensors at once; finite entries whose sum overflows pass too (the exact test finds
    # nothing), and NaN, +-inf, or +inf and -inf whose sum is NaN, are refused
    big = torch.finfo(dtype).max
    assert v.check_finite("theta", torch.tensor([big, big, -1.0], dtype=dtype)) is not None
    assert v.check_finite("theta", torch.zeros(0, 3, dtype=dtype)) is not None
    for bad in ([1.0, float("nan")], [float("inf"), float("-inf")], [-big, float("-inf")]):
        with pytest.raises(ValueError, match="theta must be finite"):
            v.check_finite("theta", torch.tensor(bad, dtype=dtype))


@pytest.mark.parametrize("value", [0, -0.5])
def test_positive_rejects(value):
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        v.check_positive("epsilon", value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("allow_zero", [False, True])
def test_positive_rejects_nan_and_infinities(value, allow_zero):
    bound = "≥ 0" if allow_zero else "> 0"
    with pytest.raises(ValueError, match=f"epsilon must be a finite number {bound}; got"):
        v.check_positive("epsilon", value, allow_zero=allow_zero)


def test_positive_types_and_zero():
    assert v.check_positive("lambda_", 0.0, allow_zero=True) == 0.0
    with pytest.raises(TypeError, match="lambda_ must be a real number; got str"):
        v.check_positive("lambda_", "1")
    with pytest.raises(TypeError, match="got bool"):
        v.check_positive("epsilon", True)


def test_integers():
    assert v.check_int_at_least("num_samples", 3, 1) == 3
    with pytest.raises(ValueError, match="num_samples must be an integer ≥ 1; got 0"):
        v.check_int_at_least("num_samples", 0, 1)
    with pytest.raises(TypeError, match="num_samples must be an integer; got float"):
        v.check_int_at_least("num_samples", 2.0, 1)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]; got 6"):
        v.check_int_in_range("k", 6, 1, 5)


def test_shapes():
    assert v.check_event_shape("theta", torch.zeros(2, 3, 5), (5,), 1) == (2, 3)
    assert v.check_event_shape("theta", torch.zeros(2, 3, 5), None, 2) == (2,)
    with pytest.raises(ValueError, match=r"theta must have shape \(\*batch, 4, 4\); got shape \(2, 4, 5\)"):
        v.check_event_shape("theta", torch.zeros(2, 4, 5), (4, 4), 2)
    with pytest.raises(ValueError, match=r"target must have the shape of theta, \(2, 3\); got \(3, 2\)"):
        v.check_same_shape("target", torch.zeros(3, 2), "theta", torch.zeros(2, 3))


def test_reduction_and_tensor():
    assert v.check_reduction("sum") == "sum"
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\); got 'avg'"):
        v.check_reduction("avg")
    with pytest.raises(TypeError, match="theta must be a torch.Tensor; got list"):
        v.check_tensor("theta", [1.0])


def _classes_with_constraints():
    import inspect
    import sys

    import colayers  # noqa: F401 - loads every submodule

    seen = {}
    for name, mod in sorted(sys.modules.items()):
        if not name.startswith("colayers") or mod is None:
            continue
        for obj in vars(mod).values():
            if inspect.isclass(obj) and obj.__module__.startswith("colayers") and "arg_constraints" in vars(obj):
                seen[obj.__qualname__] = obj
    return [seen[k] for k in sorted(seen)]


@pytest.mark.parametrize("cls", _classes_with_constraints(), ids=lambda c: c.__qualname__)
def test_every_declared_constraint_refuses_a_bad_value_by_name(cls):
    # the one mechanism for constructor arguments: each declared argument is a parameter of the constructor, and a
    # value its constraint refuses raises an error that names that argument
    import inspect

    from colayers import SolutionPool, TopKSubset

    params = inspect.signature(cls.__init__).parameters
    required = {"oracle": TopKSubset(2), "k": 2, "fn": abs, "solver": abs, "event_shape": (3,)}  # fn, solver: callables
    required |= {"num_nodes": 4, "covariance": [[1.0, 0.0], [0.0, 1.0]], "height": 2, "width": 3}
    required["pool"] = SolutionPool(TopKSubset(2))
    required.update(height=3, width=3)  # grid oracles
    base = {n: required[n] for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for arg, constraint in cls.arg_constraints.items():
        assert arg in params, f"{cls.__qualname__}.arg_constraints declares {arg!r}, not a constructor parameter"
        with pytest.raises((TypeError, ValueError), match=arg):
            cls(**{**base, arg: constraint.invalid})
