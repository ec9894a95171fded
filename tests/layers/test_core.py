"""The core: an oracle, a Perturbation and a VJP rule compose every estimator; the finite-difference rule's
torch-imle options; antithetic sampling; one forward-mode switch; deterministic layers; eval(); validation."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import colayers
from colayers import (
    AIMLE,
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    IdentityRelaxation,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Pushforward,
    TopKSubset,
)
from colayers.layers import (
    FiniteDifferenceRule,
    FunctionOracle,
    IdentityRule,
    Perturbed,
    ScoreFunctionRule,
    oracle_layer,
)
from colayers.layers import functional as F
from colayers.perturb import Additive, Gumbel, Multiplicative, Normal, PerturbedSample, SumOfGamma

from .helpers import softmax_jacobian


def test_presets_are_compositions_of_the_pieces():
    o = TopKSubset(2)
    for layer, pert, rule in (
        (PerturbedAdditive(o, epsilon=0.3), Additive, ScoreFunctionRule),
        (PerturbedMultiplicative(o, epsilon=0.3), Multiplicative, ScoreFunctionRule),
        (IMLE(o, epsilon=0.3), Additive, FiniteDifferenceRule),
        (AIMLE(o, epsilon=0.3), Additive, FiniteDifferenceRule),
        (Blackbox(o), Additive, FiniteDifferenceRule),
        (IdentityRelaxation(o), Additive, IdentityRule),
    ):
        assert isinstance(layer, Perturbed)
        assert type(layer.perturbation) is pert and type(layer.rule) is rule
        assert layer.oracle is o
    assert Blackbox(o).perturbation.epsilon == 0 and IdentityRelaxation(o).perturbation.epsilon == 0
    assert isinstance(IMLE(o).perturbation.noise, SumOfGamma) and IMLE(o).perturbation.noise.k == 2


def test_imle_on_a_multiplicative_perturbation_composes_without_editing_the_package():
    # I-MLE's finite difference on eta = theta * exp(eps Z - eps^2/2), the same Z on both sides, checked against the
    # estimator written out by hand from the same generator: (1/lam)(1/S) sum_s [f(theta m_s) - f((theta - lam dy) m_s)]
    oracle, eps, lam, S = TopKSubset(2), 0.4, 3.0, 5
    layer = Perturbed(oracle, Multiplicative(Normal(), eps), rule=FiniteDifferenceRule(lambda_=lam), num_samples=S)
    g = torch.Generator().manual_seed(0)
    theta = (torch.rand(3, 6, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    dy = torch.randn(3, 6, generator=g, dtype=torch.float64)
    y = layer(theta, generator=torch.Generator().manual_seed(4))
    (y * dy).sum().backward()
    z = torch.randn((S, 3, 6), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    m = torch.exp(eps * z - eps**2 / 2)
    t = theta.detach()
    assert torch.equal(y.detach(), oracle(t * m).mean(0))
    expected = (oracle(t * m) - oracle((t - lam * dy) * m)).mean(0) / lam
    assert torch.allclose(theta.grad, expected, atol=1e-14)
    assert theta.grad.abs().sum() > 0


def test_target_alpha_and_no_division_by_lambda_against_a_hand_computed_target():
    # epsilon = 0: theta' = alpha theta - lam dy exactly, grad = (f(theta) - f(theta')) / lam (or without / lam)
    oracle, lam, alpha = ArgmaxOneHot(), 2.5, 0.0
    theta = torch.tensor([[3.0, 0.0, 1.0], [0.0, 1.0, 0.5]], requires_grad=True)
    dy = torch.tensor([[0.0, -1.0, 0.0], [0.3, 0.0, -0.2]])
    for divide in (True, False):
        rule = FiniteDifferenceRule(lambda_=lam, alpha=alpha, divide_by_lambda=divide)
        layer = Perturbed(oracle, Additive(epsilon=0.0), rule=rule, num_samples=1)
        theta.grad = None
        (layer(theta) * dy).sum().backward()
        target = oracle(alpha * theta.detach() - lam * dy)  # row 0: e_1, row 1: f(-0.75, 0, 0.5) = e_2
        expected = (oracle(theta.detach()) - target) / (lam if divide else 1.0)
        assert torch.equal(theta.grad, expected)
    # alpha = 1 (I-MLE/blackbox) gives another target on row 0 (f(3, 2.5, 1) = e_0): the setting matters
    assert not torch.equal(oracle(theta.detach() - lam * dy), target)


def test_target_temperature_and_target_samples_against_the_softmax_closed_form():
    # Gumbel noise on one-hot argmax: E f(t + tau Z) = softmax(t / tau). With output="mean" every sample gets the same
    # dy, so the rule's expectation is (softmax(theta/eps) - softmax(theta'/tau')) / lam with theta' = alpha theta -
    # lam dy. Each sample's difference lies in [-1, 1]/lam entrywise, so the MC std of the mean of S is <= 1/(lam
    # sqrt(S)); 5 of those is the tolerance. The same check with the temperature or alpha taken wrong fails.
    eps, tau, lam, alpha, S, M = 0.7, 1.5, 0.8, 0.6, 40_000, 3
    theta = torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([0.5, -1.0, 0.3], dtype=torch.float64)
    rule = FiniteDifferenceRule(lambda_=lam, alpha=alpha, target_temperature=tau, num_target_samples=M)
    layer = Perturbed(ArgmaxOneHot(), Additive(Gumbel(), eps), rule=rule, num_samples=S)
    (layer(theta, generator=torch.Generator().manual_seed(0)) * dy).sum().backward()
    t = theta.detach()

    def expected(a, temp):
        return (torch.softmax(t / eps, -1) - torch.softmax((a * t - lam * dy) / temp, -1)) / lam

    tol = 5 / (lam * math.sqrt(S))
    assert (theta.grad - expected(alpha, tau)).abs().max() < tol
    assert (theta.grad - expected(alpha, eps)).abs().max() > 2 * tol  # target temperature ignored
    assert (theta.grad - expected(1.0, tau)).abs().max() > 2 * tol  # alpha ignored


def test_target_samples_use_the_forward_noise_first_then_fresh_draws():
    # M = 3 target solutions per sample: the first with the forward's Z_s, the others with the next draws of the
    # same generator (made in the forward); checked exactly against the draws replayed by hand
    oracle, eps, tau, lam, S, M = TopKSubset(2), 0.5, 0.9, 2.0, 4, 3
    rule = FiniteDifferenceRule(lambda_=lam, target_temperature=tau, num_target_samples=M, two_sided=True)
    layer = Perturbed(oracle, Additive(Normal(), eps), rule=rule, num_samples=S)
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 5, generator=g, dtype=torch.float64)
    (layer(theta, generator=torch.Generator().manual_seed(2)) * dy).sum().backward()
    gen = torch.Generator().manual_seed(2)
    z = torch.randn((S, 2, 5), generator=gen, dtype=torch.float64)
    extra = torch.randn(((M - 1) * S, 2, 5), generator=gen, dtype=torch.float64)
    zs = torch.cat([z, extra]).reshape(M, S, 2, 5)
    t = theta.detach()
    up = oracle(t + 0.5 * lam * dy + tau * zs).mean(0)
    lo = oracle(t - 0.5 * lam * dy + tau * zs).mean(0)
    assert torch.allclose(theta.grad, (up - lo).mean(0) / lam, atol=1e-14)
    with pytest.raises(ValueError, match="num_target_samples"):
        Perturbed(oracle, Additive(epsilon=0.0), rule=FiniteDifferenceRule(num_target_samples=2), num_samples=1)


def test_imle_exposes_the_torch_imle_options():
    layer = IMLE(TopKSubset(2), alpha=0.0, lambda_=10.0, target_temperature=0.5, num_target_samples=2,
                 divide_by_lambda=False, num_samples=3, seed=0)
    assert (layer.rule.alpha, layer.rule.target_temperature, layer.rule.num_target_samples) == (0.0, 0.5, 2)
    y = layer(torch.randn(4, 6, requires_grad=True))
    assert y.shape == (4, 6)


def _antithetic_estimates(groups_declared: bool, R: int, S: int = 4):
    """R independent score-function estimates of J^T dy (Gumbel argmax, eps 1) with S antithetic samples each."""

    class Undeclared(Additive):  # antithetic pairs, wrongly declared independent: the plain leave-one-out baseline
        iid_samples = True

        def sample(self, theta, num_samples=1, generator=None):
            s = super().sample(theta, num_samples, generator)
            return PerturbedSample(s.eta, s.noise, groups=None)

    pert = Additive(Gumbel(), 1.0, antithetic=True) if groups_declared else Undeclared(Gumbel(), 1.0, antithetic=True)
    theta0 = torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)
    dy = torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    theta = theta0.expand(R, 3).clone().requires_grad_(True)  # R replicates as a batch: one oracle call
    layer = Perturbed(ArgmaxOneHot(), pert, num_samples=S)
    (layer(theta, generator=torch.Generator().manual_seed(0)) * dy).sum().backward()
    exact = softmax_jacobian(theta0, 1.0) @ dy
    return theta.grad, exact


def test_antithetic_sampling_is_unbiased_with_its_pair_level_baseline():
    # the mean of R = 40000 estimates must match the closed form within 5 standard errors (std estimated from the
    # replicates themselves); with the baseline computed over all other samples (the mirror partner included)
    # the same check fails: that baseline is correlated with the sample's score
    R = 40_000
    grads, exact = _antithetic_estimates(True, R)
    err = (grads.mean(0) - exact).abs()
    se = grads.std(0) / math.sqrt(R)
    assert (err < 5 * se).all(), (err, se)
    biased, _ = _antithetic_estimates(False, R)
    assert ((biased.mean(0) - exact).abs() > 5 * biased.std(0) / math.sqrt(R)).any()


def test_antithetic_option_pairs_mirror_draws():
    layer = PerturbedAdditive(TopKSubset(2), num_samples=6, antithetic=True, seed=0)
    sample, _ = layer.sample(torch.zeros(2, 5))
    assert torch.equal(sample.noise[:3], -sample.noise[3:]) and sample.groups.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="even"):
        PerturbedAdditive(TopKSubset(2), num_samples=5, antithetic=True)


def test_every_layer_has_a_distribution_whose_atoms_lie_in_y():
    oracle, theta = TopKSubset(2), torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    for layer in (
        PerturbedAdditive(oracle, num_samples=4, seed=0),
        PerturbedMultiplicative(oracle, num_samples=4, seed=0),
        IMLE(oracle, num_samples=4, seed=0),
        AIMLE(oracle, num_samples=4, seed=0),
        Blackbox(oracle),
        IdentityRelaxation(oracle),
    ):
        d = layer.distribution(theta)
        assert isinstance(d, colayers.SolutionDistribution) and d.event_ndim == 1
        assert (d.atoms.sum(-1) == 2).all() and ((d.atoms == 0) | (d.atoms == 1)).all()
        assert torch.allclose(d.weights.sum(0), torch.ones(3))
    for layer in (Blackbox(oracle), IdentityRelaxation(oracle)):  # deterministic: the Dirac at f(theta)
        d = layer.distribution(theta)
        assert d.num_atoms == 1 and torch.equal(d.atoms[0], oracle(theta))


def test_pushforward_accepts_any_layer_with_a_distribution():
    cost = torch.tensor([3.0, 1.0, 2.0, 0.5])
    phi = lambda y: (y * cost).sum(-1)  # noqa: E731
    theta = torch.zeros(4, requires_grad=True)
    # I-MLE with Normal noise has a score: the score function serves it
    Pushforward(IMLE(TopKSubset(2), noise=Normal(), num_samples=400, seed=0), phi)(theta).backward()
    assert int(theta.grad.argmin()) == 3  # the cheapest item is raised
    # a Dirac has no gradient to give: the value, and a clear error when a gradient is asked for
    assert float(Pushforward(Blackbox(TopKSubset(2)), phi)(torch.tensor([0.0, 1.0, 0.0, 2.0]))) == 1.5
    with pytest.raises(ValueError, match="does not depend differentiably"):
        Pushforward(Blackbox(TopKSubset(2)), phi)(theta)
    with pytest.raises(TypeError, match="distribution"):
        Pushforward(torch.nn.Identity(), phi)


def test_deterministic_layers_refuse_randomness_settings_naming_the_layer():
    o = ArgmaxOneHot()
    theta = torch.zeros(3)
    for cls in (Blackbox, IdentityRelaxation):
        for kw in ({"seed": 0}, {"epsilon": 0.5}, {"num_samples": 3}, {"output": "samples"}):
            with pytest.raises(TypeError, match=cls.__name__):
                cls(o, **kw)
        with pytest.raises(TypeError, match=f"{cls.__name__} draws no noise"):
            cls(o)(theta, generator=torch.Generator())
    with pytest.raises(TypeError, match="blackbox draws no noise"):
        F.blackbox(theta, o, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed"):
        Perturbed(o, Additive(epsilon=0.0), rule=IdentityRule(), num_samples=1, seed=0)
    with pytest.raises(TypeError, match=r"IMLE.__init__\(\) got an unexpected keyword argument 'lambda'"):
        IMLE(o, **{"lambda": 1.0})


def test_the_same_names_on_every_stochastic_layer():
    o = TopKSubset(2)
    for cls in (PerturbedAdditive, PerturbedMultiplicative, IMLE, AIMLE):
        params = inspect.signature(cls).parameters
        assert {"epsilon", "num_samples", "seed", "output", "validate_args"} <= set(params), cls.__name__
        assert "generator" in inspect.signature(cls(o, seed=0).forward).parameters


@pytest.mark.parametrize(
    "make",
    [
        lambda o: PerturbedAdditive(o, epsilon=0.5, num_samples=8, seed=0),
        lambda o: PerturbedMultiplicative(o, epsilon=0.5, num_samples=8, seed=0),
        lambda o: IMLE(o, epsilon=0.5, lambda_=4.0, num_samples=4, seed=0),
        lambda o: AIMLE(o, epsilon=0.5, num_samples=4, seed=0),
        lambda o: Blackbox(o, lambda_=4.0),
        lambda o: IdentityRelaxation(o),
        lambda o: Perturbed(o, Multiplicative(Normal(), 0.3), rule=FiniteDifferenceRule(4.0), num_samples=4, seed=0),
    ],
    ids=["additive", "multiplicative", "imle", "aimle", "blackbox", "identity", "imle-multiplicative"],
)
def test_one_training_loop_body_for_every_estimator(make):
    # the same loop, unchanged, trains a linear model through each estimator with plain SGD on a linear Hamming
    # loss; the Hamming distance of the decoded top-2 subsets to the targets must drop by a third
    oracle = TopKSubset(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 5, generator=g)
    w_true = torch.randn(5, 8, generator=g)
    y_target = oracle(x @ w_true + 3.0)  # positive scores (the multiplicative perturbation keeps signs)
    model = torch.nn.Linear(5, 8)
    torch.nn.init.normal_(model.weight, std=0.1, generator=torch.Generator().manual_seed(1))
    torch.nn.init.constant_(model.bias, 3.0)
    layer = make(oracle)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def hamming():
        with torch.no_grad():
            return float((oracle(model(x)) - y_target).abs().sum(-1).mean())

    before = hamming()
    for _ in range(60):
        y = layer(model(x))
        loss = (y * (1 - 2 * y_target)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert hamming() < 2 / 3 * before, (before, hamming())


def test_eval_mode_keeps_sampling_the_same_law():
    # documented choice: eval() does not change a layer's forward (the output estimates mu(theta), not f(theta));
    # for a deterministic prediction use layer.oracle(theta)
    theta = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    for make in (lambda: PerturbedAdditive(TopKSubset(2), num_samples=5), lambda: IMLE(TopKSubset(2), num_samples=5)):
        train, ev = make(), make().eval()
        a = train(theta, generator=torch.Generator().manual_seed(3))
        b = ev(theta, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        assert not torch.equal(b, ev.oracle(theta))  # still a mean of samples, not the oracle's output


def test_global_validation_switch():
    oracle = ArgmaxOneHot(validate_args=False)
    bad = torch.tensor([[float("nan"), 0.0, 1.0]])
    try:
        colayers.set_default_validate_args(False)
        assert colayers.get_default_validate_args() is False
        IdentityRelaxation(oracle)(bad)  # not checked: no error and no read-back
        with pytest.raises(ValueError, match="theta must be finite"):
            IdentityRelaxation(oracle, validate_args=True)(bad)  # a per-object setting wins
        with pytest.raises(ValueError, match="theta must have shape"):
            IdentityRelaxation(ArgmaxOneHot(n=3, validate_args=False))(torch.zeros(1, 4))  # shapes: always checked
    finally:
        colayers.set_default_validate_args(True)
    with pytest.raises(ValueError, match="theta must be finite"):
        IdentityRelaxation(oracle)(bad)
    with pytest.raises(TypeError, match="validate_args"):
        IdentityRelaxation(oracle, validate_args=1)
    with pytest.raises(TypeError, match="value must be a bool"):
        colayers.set_default_validate_args(1)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_infinite_or_nan_settings_are_refused_at_construction(bad):
    o = TopKSubset(2)
    for name, make in (
        ("epsilon", lambda: PerturbedAdditive(o, epsilon=bad)),
        ("epsilon", lambda: PerturbedMultiplicative(o, epsilon=bad)),
        ("epsilon", lambda: IMLE(o, epsilon=bad)),
        ("epsilon", lambda: AIMLE(o, epsilon=bad)),
        ("lambda_", lambda: IMLE(o, lambda_=bad)),
        ("lambda_", lambda: Blackbox(o, lambda_=bad)),
        ("beta", lambda: AIMLE(o, beta=bad)),
        ("target_temperature", lambda: IMLE(o, target_temperature=bad)),
        ("alpha", lambda: IMLE(o, alpha=bad)),
        ("temperature", lambda: SumOfGamma(2, temperature=bad)),
        ("step", lambda: AIMLE(o, step=bad)),
    ):
        with pytest.raises(ValueError, match=name):
            make()


# one valid alternative and one or two refused values per setting of the named layers (the settings space)
SETTING_VALUES = {
    "epsilon": (0.0, 0.5, -1.0, "x"),
    "num_samples": (1, 4, 0, 2.5),
    "noise": (Normal(), "gauss"),
    "baseline": (False, 1),
    "antithetic": (True,),
    "output": ("samples", "bad"),
    "lambda_": (3.0, 0.0),
    "two_sided": (True, "yes"),
    "alpha": (0.0, float("nan")),
    "target_temperature": (0.0, 1.5, -1.0),
    "num_target_samples": (3, 0),
    "divide_by_lambda": (False, 1),
    "k": (3, 0),
    "negative": (True, "no"),
    "beta": (0.5, -1.0),
    "target": (2.0,),
    "adapt": (False, "no"),
}


def _outcome(call):
    """The output of ``call()`` (forward and backward) or the type of the exception it raised."""
    try:
        theta = torch.tensor([[0.3, -1.2, 2.0, 0.7], [1.0, 0.0, -0.5, 0.25]], dtype=torch.float64, requires_grad=True)
        y = call(theta)
        (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        return y.detach(), theta.grad
    except (TypeError, ValueError) as err:
        return type(err)


TWINS = [
    (F.imle, IMLE),
    (F.blackbox, Blackbox),
    (F.perturbed_additive, PerturbedAdditive),
    (F.perturbed_multiplicative, PerturbedMultiplicative),
    (F.identity_relaxation, IdentityRelaxation),
]


@pytest.mark.parametrize("twin, cls", TWINS, ids=lambda x: getattr(x, "__name__", ""))
def test_functional_and_module_forms_accept_and_refuse_the_same_settings(twin, cls):
    # every single setting and every pair of settings of the layer's signature (epsilon = 0 with a target
    # temperature included), with and without randomness (the module's seed, the twin's generator with that seed):
    # the module and its twin both refuse (the same exception type) or both give the same output and gradient
    init = inspect.signature(cls).parameters
    settings = set(init) - {"oracle", "seed", "validate_args"}
    assert set(inspect.signature(twin).parameters) == {"theta", "oracle", "validate_args"} | settings | (
        {"generator"} if "seed" in init else set()
    )
    names = sorted(settings)
    missing = [n for n in names if n not in SETTING_VALUES]
    assert not missing, f"add values for the new setting(s) {missing} to SETTING_VALUES"
    choices = [{}] + [{n: v} for n in names for v in SETTING_VALUES[n]]
    choices += [{a: va, b: vb} for i, a in enumerate(names) for b in names[i + 1 :]
                for va in SETTING_VALUES[a][:2] for vb in SETTING_VALUES[b][:2]]
    oracle = TopKSubset(2)
    compared = refused = 0
    for kw in choices:
        for seed in (None, 3):
            module_kw = kw if seed is None else {**kw, "seed": seed}
            gen = None if seed is None else torch.Generator().manual_seed(seed)
            twin_kw = kw if seed is None else {**kw, "generator": gen}
            got_module = _outcome(lambda t, kw=module_kw: cls(oracle, **kw)(t))
            got_twin = _outcome(lambda t, kw=twin_kw: twin(t, oracle, **kw))
            if isinstance(got_module, type) or isinstance(got_twin, type):
                assert got_module == got_twin, (cls.__name__, module_kw, got_module, got_twin)
                refused += 1
            else:
                if seed is not None or cls(oracle, **kw).deterministic:  # else each draws from the global RNG
                    assert torch.equal(got_module[0], got_twin[0]), (cls.__name__, module_kw)
                    assert torch.equal(got_module[1], got_twin[1]), (cls.__name__, module_kw)
                compared += 1
    assert compared > 0 and refused > 0


def test_imle_with_a_target_temperature_alone_takes_a_seed_in_both_forms():
    # epsilon = 0 with a target temperature perturbs the target side: it draws noise, so both forms take randomness
    o, theta = TopKSubset(2), torch.randn(3, 5, dtype=torch.float64)
    layer = IMLE(o, epsilon=0.0, target_temperature=1.0, seed=0)
    assert not layer.deterministic
    assert torch.equal(layer(theta), F.imle(theta, o, epsilon=0.0, target_temperature=1.0,
                                            generator=torch.Generator().manual_seed(0)))
    for make in (lambda: IMLE(o, epsilon=0.0, seed=0),
                 lambda: F.imle(theta, o, epsilon=0.0, generator=torch.Generator())):
        with pytest.raises(TypeError, match="draws no noise"):
            make()


def test_oracle_layer_decorator_wraps_a_batched_function():
    def top2(theta):
        return torch.zeros_like(theta).scatter_(-1, theta.topk(2, -1).indices, 1.0)

    layer = oracle_layer(IMLE, epsilon=0.5, lambda_=3.0, num_samples=4, seed=0)(top2)
    ref = IMLE(TopKSubset(2), epsilon=0.5, lambda_=3.0, num_samples=4, noise=SumOfGamma(1), seed=0)
    theta = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    dy = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    (layer(theta) * dy).sum().backward()
    g1 = theta.grad.clone()
    theta.grad = None
    (ref(theta) * dy).sum().backward()
    assert torch.equal(g1, theta.grad)
    assert isinstance(layer.oracle, FunctionOracle) and layer.oracle.event_ndim == 1
    grid = oracle_layer(Blackbox, event_ndim=2, lambda_=2.0)(lambda t: (t > 0).to(t.dtype))
    assert grid(torch.randn(3, 4, 4)).shape == (3, 4, 4)


def test_a_new_estimator_is_one_class_outside_the_package():
    # An estimator written in user code (no file of the package edited): a subclass of Perturbed whose explicit
    # __init__ builds its pieces. It gets its functional twin, the seed/generator rule, the Fenchel-Young loss and
    # the distribution by existing. Checked against closed forms: Gumbel argmax has mean softmax(theta / eps), and
    # the FY gradient (reduction="sum") is softmax(theta / eps) - y; each entry of a mean of S one-hot samples has
    # standard error sqrt(p (1 - p) / S), asserted within 5 of them.
    class StraightThroughGumbel(Perturbed):
        """Gumbel-perturbed argmax samples forward, the identity backward (the straight-through Gumbel estimator)."""

        def __init__(self, oracle, *, epsilon=1.0, num_samples=1, seed=None, validate_args=None):
            super().__init__(oracle, Additive(Gumbel(), epsilon), rule=IdentityRule(), num_samples=num_samples,
                             output="samples", seed=seed, validate_args=validate_args)

    eps, S = 0.7, 20000
    oracle = ArgmaxOneHot()
    theta = torch.tensor([[0.3, -0.2, 1.0], [2.0, 0.0, 0.5]], dtype=torch.float64)
    p = torch.softmax(theta / eps, -1)
    layer = StraightThroughGumbel(oracle, epsilon=eps, num_samples=S, seed=0)
    samples = layer(theta)
    assert samples.shape == (S, 2, 3)
    assert ((samples.mean(0) - p).abs() <= 5 * (p * (1 - p) / S).sqrt()).all()
    twin = F.functional_twin(StraightThroughGumbel, "straight_through_gumbel")
    assert list(inspect.signature(twin).parameters) == ["theta", "oracle", "epsilon", "num_samples", "generator",
                                                        "validate_args"]
    assert torch.equal(twin(theta, oracle, epsilon=eps, num_samples=S, generator=torch.Generator().manual_seed(0)),
                       samples)
    t = theta.clone().requires_grad_(True)
    (layer(t) * 2.0).sum().backward()  # identity rule: each sample passes its gradient, 2 per entry
    assert torch.equal(t.grad, torch.full_like(theta, 2.0 * S))
    fy = colayers.FenchelYoungLoss(StraightThroughGumbel(oracle, epsilon=eps, num_samples=S, seed=1), reduction="sum")
    t = theta.clone().requires_grad_(True)
    y = torch.eye(3, dtype=torch.float64)[[2, 0]]
    fy(t, y).backward()
    assert ((t.grad - (p - y)).abs() <= 5 * (p * (1 - p) / S).sqrt()).all()
    assert layer.distribution(theta).atoms.shape == (S, 2, 3)
    with pytest.raises(TypeError, match="draws no noise"):
        StraightThroughGumbel(oracle, epsilon=0.0, seed=0)
