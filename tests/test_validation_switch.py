"""One validation switch: every object built with the default ``validate_args=None`` follows
``colayers.set_default_validate_args``, and the scores a layer derives from a checked θ are not checked again."""

import pytest
import torch

import colayers as cl
import colayers.oracles.base as oracle_base
from colayers._validation import ValidateArgs, trusted_inputs

BUILDERS = {
    "ArgmaxOneHot": lambda: cl.ArgmaxOneHot(),
    "TopKSubset": lambda: cl.TopKSubset(2),
    "GridDAGShortestPath": lambda: cl.GridDAGShortestPath(3, 3),
    "LinearProgram": lambda: cl.LinearProgram(3, A_ub=[[1.0, 1.0, 1.0]], b_ub=[1.0], bounds=(0, 1)),
    "PerturbedAdditive": lambda: cl.PerturbedAdditive(cl.TopKSubset(2), epsilon=0.5, num_samples=3),
    "IMLE": lambda: cl.IMLE(cl.TopKSubset(2), epsilon=0.5, num_samples=3),
    "Blackbox": lambda: cl.Blackbox(cl.TopKSubset(2), lambda_=3.0),
    "SoftArgmax": lambda: cl.SoftArgmax(temperature=0.5),
    "SparseArgmax": lambda: cl.SparseArgmax(),
    "RegularizedFrankWolfe": lambda: cl.RegularizedFrankWolfe(cl.TopKSubset(2)),
    "FenchelYoungLoss": lambda: cl.FenchelYoungLoss(cl.SoftArgmax()),
    "SPOPlusLoss": lambda: cl.SPOPlusLoss(cl.TopKSubset(2)),
    "StructuredSVMLoss": lambda: cl.StructuredSVMLoss(cl.TopKSubset(2)),
}


@pytest.fixture
def restore_default():
    yield
    cl.set_default_validate_args(True)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_default_objects_follow_the_global_switch(name, restore_default):
    obj = BUILDERS[name]()
    assert obj.validate_args is True
    cl.set_default_validate_args(False)
    assert obj.validate_args is False  # read at each use, not frozen at construction
    cl.set_default_validate_args(True)
    assert obj.validate_args is True


def test_an_explicit_setting_wins_over_the_switch(restore_default):
    cl.set_default_validate_args(False)
    assert cl.ArgmaxOneHot(validate_args=True).validate_args is True
    with pytest.raises(ValueError, match="theta must be finite"):
        cl.ArgmaxOneHot(validate_args=True)(torch.tensor([float("nan"), 0.0]))
    cl.ArgmaxOneHot()(torch.tensor([float("nan"), 0.0]))  # follows the switch: not checked
    with pytest.raises(TypeError, match="validate_args must be a bool or None; got str"):
        cl.ArgmaxOneHot(validate_args="yes")


def test_the_descriptor_reads_the_switch_at_each_access(restore_default):
    class Thing:
        validate_args = ValidateArgs()

        def __init__(self):
            self.validate_args = None

    thing = Thing()
    assert isinstance(Thing.validate_args, ValidateArgs)
    cl.set_default_validate_args(False)
    assert thing.validate_args is False


@pytest.mark.parametrize(
    "make",
    [
        lambda o: cl.PerturbedAdditive(o, epsilon=0.5, num_samples=4, seed=0),
        lambda o: cl.PerturbedMultiplicative(o, epsilon=0.5, num_samples=4, seed=0),
        lambda o: cl.IMLE(o, epsilon=0.5, lambda_=2.0, num_samples=4, seed=0),
        lambda o: cl.IMLE(o, epsilon=0.5, lambda_=2.0, num_samples=4, two_sided=True, seed=0),
        lambda o: cl.AIMLE(o, epsilon=0.5, num_samples=2, seed=0),
        lambda o: cl.Blackbox(o, lambda_=2.0),
    ],
)
def test_derived_scores_reach_the_oracle_unchecked(make, monkeypatch):
    # The layer checks theta once; the perturbed scores eta and the finite-difference targets it derives are
    # passed to a validating oracle without a second finiteness check (one host read-back each on CUDA).
    calls = []
    real = oracle_base.check_finite
    monkeypatch.setattr(oracle_base, "check_finite", lambda name, t: calls.append(tuple(t.shape)) or real(name, t))
    oracle = cl.TopKSubset(2)
    assert oracle.validate_args is True
    layer = make(oracle)
    theta = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    layer(theta).sum().backward()
    assert calls == []
    assert theta.grad is not None and theta.grad.shape == theta.shape
    oracle(theta.detach())  # called directly, the oracle still checks its input
    assert calls == [(3, 5)]
    with pytest.raises(ValueError, match="theta must be finite"):
        layer(torch.tensor([[float("nan"), 0.0, 1.0, 2.0, 3.0]]))  # and the layer checks theta


def test_trusted_inputs_is_scoped():
    oracle = cl.ArgmaxOneHot()
    with trusted_inputs():
        oracle(torch.tensor([float("inf"), 0.0]))
    with pytest.raises(ValueError, match="theta must be finite"):
        oracle(torch.tensor([float("inf"), 0.0]))


def _count_checks(monkeypatch, theta):
    """Wrap every colayers module's binding of the tensor checks; return {check: calls on ``theta``} (filled later)."""
    import sys

    from colayers import _validation as v
    from colayers.perturb.perturbation import Perturbation

    counts = {"check_tensor": 0, "check_event_shape": 0, "check_finite": 0, "check_num_samples": 0}
    for name in ("check_tensor", "check_event_shape", "check_finite"):
        real = getattr(v, name)

        def counted(label, value, *args, _real=real, _name=name, **kwargs):
            counts[_name] += value is theta or (isinstance(value, torch.Tensor) and value.data_ptr() == theta.data_ptr()
                                                and value.shape == theta.shape)
            return _real(label, value, *args, **kwargs)

        for mod in [m for k, m in sys.modules.items() if k.startswith("colayers") and m is not None]:
            if getattr(mod, name, None) is real:
                monkeypatch.setattr(mod, name, counted)
    real_num = Perturbation.check_num_samples

    def num(self, s):
        counts["check_num_samples"] += 1
        return real_num(self, s)

    monkeypatch.setattr(Perturbation, "check_num_samples", num)
    return counts


@pytest.mark.parametrize(
    "make",
    [
        lambda o: cl.IMLE(o, epsilon=0.5, lambda_=2.0, num_samples=4, seed=0),
        lambda o: cl.IMLE(o, epsilon=0.0, target_temperature=1.0, num_target_samples=2, seed=0),
        lambda o: cl.PerturbedAdditive(o, epsilon=0.5, num_samples=4, seed=0),
        lambda o: cl.Blackbox(o, lambda_=2.0),
    ],
)
def test_one_layer_call_checks_theta_once(make, monkeypatch):
    # each tensor is checked once per public call: the type, the event shape and (validating) the finiteness of
    # theta exactly once, and the settings (num_samples) not at all after construction -- before, one IMLE forward
    # ran check_tensor four times, the event-shape and num_samples checks twice each
    layer = make(cl.TopKSubset(2, validate_args=True))
    theta = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    counts = _count_checks(monkeypatch, theta)
    layer(theta).sum().backward()
    assert counts == {"check_tensor": 1, "check_event_shape": 1, "check_finite": 1, "check_num_samples": 0}
