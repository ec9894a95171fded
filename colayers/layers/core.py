r"""The shared core of every estimator: a distribution over solutions plus a vector-Jacobian-product rule.

Every layer in :mod:`colayers.layers` replaces the piecewise-constant oracle
:math:`f(\theta) = \operatorname{argmax}_{y\in\mathcal Y}\langle\theta, y\rangle` by the mean
:math:`\mu(\theta) = \mathbb E_{y\sim p(\cdot\mid\theta)}[y]` of a distribution over solutions and
back-propagates with one of a few VJP rules. The rules are small functions of plain tensors, so each named
estimator is a thin preset:

* :func:`score_function_vjp` — :math:`\frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\,
  \nabla_\theta\log p(\eta_s\mid\theta)` (perturbed layers, :class:`~colayers.layers.Pushforward`);
* :func:`finite_difference_vjp` — :math:`\frac1\lambda\frac1S\sum_s [f(\theta+\varepsilon Z_s) -
  f(\theta - \lambda\bar y + \varepsilon Z_s)]` (I-MLE, AIMLE, and Blackbox as the case ε = 0);
* :func:`identity_vjp` — :math:`\pm\bar y` (straight-through);
* :func:`active_set_vjp` — implicit differentiation of a Euclidean projection onto the affine hull of an
  active set of atoms (Frank-Wolfe / SparseMAP).

:class:`OracleLayer` is the base :class:`torch.nn.Module`: it owns the oracle, validates θ, and turns a
``seed`` into one generator per device, so that a seeded layer replays the same sequence of outputs.
"""

from __future__ import annotations

import math

import torch

from .._validation import (
    check_event_shape,
    check_finite,
    check_generator,
    check_positive,
    check_tensor,
)
from ..oracles.base import Oracle

__all__ = [
    "OracleLayer",
    "PositionalFunction",
    "score_function_vjp",
    "finite_difference_vjp",
    "identity_vjp",
    "active_set_vjp",
    "leave_one_out_centered",
]


def _detect_fast_apply():
    """Return torch's dead-wrapper unwrapping helper if :class:`PositionalFunction`'s fast path works with the
    installed torch, else ``None`` (then every call goes through the public ``Function.apply``).

    The fast path reproduces what the stock ``Function.apply`` does after binding the arguments: it needs the
    private ``torch._functorch.utils.unwrap_dead_wrappers(args)`` (one positional argument, returns the
    tuple), ``torch._C._are_functorch_transforms_active()``, and the C++ ``apply`` of ``torch._C._FunctionBase``
    right behind ``Function`` in the MRO. All are checked once, here, and a probe Function is run through
    both paths (value and gradient must agree); any missing piece, changed signature or mismatch turns the
    fast path off for the session.
    """
    import inspect

    try:
        from torch._functorch import utils as functorch_utils

        unwrap = functorch_utils.unwrap_dead_wrappers
        transforms_active = torch._C._are_functorch_transforms_active
        base = torch._C._FunctionBase
    except (ImportError, AttributeError):
        return None
    try:
        params = list(inspect.signature(unwrap).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) != 1 or params[0].kind not in positional or not callable(transforms_active):
        return None
    mro = torch.autograd.Function.__mro__
    following = [c for c in mro[mro.index(torch.autograd.Function) + 1 :] if "apply" in vars(c)]
    if not following or following[0] is not base:
        return None

    class _Probe(torch.autograd.Function):
        @staticmethod
        def forward(x, scale):
            return x * scale

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.scale = inputs[1]

        @staticmethod
        def backward(ctx, grad):
            return grad * ctx.scale, None

    try:
        with torch.enable_grad():
            x = torch.tensor([1.0, -2.0], requires_grad=True)
            args = unwrap((x, 3.0))
            if not isinstance(args, tuple) or len(args) != 2 or args[0] is not x or args[1] != 3.0:
                return None
            fast = super(torch.autograd.Function, _Probe).apply(*args)
            (grad_fast,) = torch.autograd.grad(fast.sum(), x)
            stock = _Probe.apply(x, 3.0)
            (grad_stock,) = torch.autograd.grad(stock.sum(), x)
            if bool(transforms_active()):
                return None
    except Exception:  # any failure of the private path: keep the public one
        return None
    if not (torch.equal(fast, stock) and torch.equal(grad_fast, grad_stock)):
        return None
    return unwrap


# the private helper the fast path needs, detected once at import (None: use the public Function.apply)
_unwrap_dead_wrappers = _detect_fast_apply()


class PositionalFunction(torch.autograd.Function):
    """A :class:`torch.autograd.Function` (``forward`` + ``setup_context`` style) whose ``apply`` takes
    positional arguments only.

    The stock ``Function.apply`` binds the arguments to ``forward``'s signature with :mod:`inspect` on every
    call (to fill in defaults), about 15 µs, a visible share of a layer call on small batches. The
    layers' forwards have no defaults and are always called with every argument, so this ``apply`` goes
    straight to the C++ ``apply`` (after the same dead-wrapper unwrapping), and falls back to the stock
    path under functorch transforms (``torch.func``) or when keyword arguments are given. The private torch
    pieces this needs are feature-detected once at import (:func:`_detect_fast_apply`); where they are
    missing or changed (other torch versions) every call uses the public ``Function.apply``, with the
    same results.

    Example:
        >>> class Double(PositionalFunction):
        ...     @staticmethod
        ...     def forward(x):
        ...         return 2 * x
        ...     @staticmethod
        ...     def setup_context(ctx, inputs, output):
        ...         pass
        ...     @staticmethod
        ...     def backward(ctx, grad):
        ...         return 2 * grad
        >>> x = torch.ones(2, requires_grad=True)
        >>> Double.apply(x).sum().backward(); x.grad
        tensor([2., 2.])
    """

    @classmethod
    def apply(cls, *args, **kwargs):
        unwrap = _unwrap_dead_wrappers
        if kwargs or unwrap is None or torch._C._are_functorch_transforms_active():
            return super().apply(*args, **kwargs)
        return super(torch.autograd.Function, cls).apply(*unwrap(args))


def _event_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0)) if ndim > 0 else ()


def _unsqueeze_to(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append singleton dimensions to ``x`` until it has ``ndim`` dimensions."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def check_finite_fast(name: str, value: torch.Tensor) -> torch.Tensor:
    """:func:`~colayers._validation.check_finite` with one reduction in the common case.

    A sum is finite only if every entry is (a NaN or an infinity makes it NaN or infinite), so a finite sum
    settles the check with one reduction and one read-back; otherwise (a bad entry, or finite entries whose
    sum overflows) the full check runs and raises, or passes, exactly as :func:`check_finite` does.

    Example:
        >>> check_finite_fast("theta", torch.tensor([1.0, float("nan")]))
        Traceback (most recent call last):
        ...
        ValueError: theta must be finite; found 1 NaN and 0 inf entries (first at index (1,)) in a tensor of shape (2,)
    """
    if value.numel() and not math.isfinite(float(value.detach().sum())):
        check_finite(name, value)
    return value


def leave_one_out_centered(values: torch.Tensor) -> torch.Tensor:
    r"""Return :math:`v_s - b_s` with :math:`b_s = \frac{1}{S-1}\sum_{t\ne s} v_t` along dim 0.

    Since :math:`v_s - b_s = \frac{S}{S-1}(v_s - \bar v)`, it costs one mean. With ``S == 1`` there is no
    other sample and the values are returned unchanged (no baseline).

    Example:
        >>> leave_one_out_centered(torch.tensor([1.0, 2.0, 6.0]))
        tensor([-3.0000, -1.5000,  4.5000])
    """
    s = values.shape[0]
    if s < 2:
        return values
    return (values - values.mean(0, keepdim=True)) * (s / (s - 1))


def score_function_vjp(
    values: torch.Tensor,
    score: torch.Tensor,
    grad_output: torch.Tensor,
    value_ndim: int,
    baseline: bool = True,
) -> torch.Tensor:
    r"""Score-function (REINFORCE) VJP of :math:`\theta\mapsto\mathbb E_{\eta\sim p(\cdot\mid\theta)}[v(\eta)]`.

    .. math::
        \nabla_\theta \langle \mathbb E[v], \bar y\rangle \approx
        \frac1S\sum_{s=1}^S \langle v_s - b_s, \bar y\rangle \, \nabla_\theta \log p(\eta_s\mid\theta)

    with :math:`b_s` the leave-one-out mean of the other samples' values (``baseline=True``) or 0.
    The sum is divided by S, so the estimate does not grow with the number of samples.

    Args:
        values: :math:`v_s`, shape ``(S, *batch, *value_event)`` (oracle outputs, or costs with
            ``value_ndim = 0``).
        score: :math:`\nabla_\theta\log p(\eta_s\mid\theta)`, shape ``(S, *batch, *theta_event)``.
        grad_output: :math:`\bar y`, shape ``(*batch, *value_event)``.
        value_ndim: the number of event dimensions of ``values``.
        baseline: subtract the leave-one-out baseline (needs S ≥ 2; ignored for S = 1).

    Returns:
        The gradient with respect to θ, shape ``(*batch, *theta_event)``.

    Example:
        >>> values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # S=2 one-hot atoms
        >>> score = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
        >>> score_function_vjp(values, score, torch.tensor([1.0, 0.0]), value_ndim=1)
        tensor([ 0.5000, -0.5000])
    """
    inner = (
        (values * grad_output.unsqueeze(0)).sum(dim=_event_dims(value_ndim))
        if value_ndim
        else (values * grad_output.unsqueeze(0))
    )
    if baseline:
        inner = leave_one_out_centered(inner)
    return (_unsqueeze_to(inner, score.ndim) * score).mean(0)


def finite_difference_vjp(
    atoms: torch.Tensor, target_atoms: torch.Tensor, lambda_: float | torch.Tensor
) -> torch.Tensor:
    r"""Finite-difference VJP of I-MLE and Blackbox: :math:`\frac1\lambda\frac1S\sum_s (y_s - y'_s)`.

    ``atoms`` are :math:`y_s = f(\theta + \varepsilon Z_s)` and ``target_atoms`` are
    :math:`y'_s = f(\theta - \lambda\bar y_s + \varepsilon Z_s)` with the *same* noise; ``lambda_`` is a
    float or a tensor broadcastable to ``(S, *batch)`` (one λ per sample and instance, as in AIMLE).

    Returns:
        The gradient with respect to θ, shape ``atoms.shape[1:]``.

    Example:
        >>> finite_difference_vjp(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 2.0)
        tensor([ 0.5000, -0.5000])
    """
    diff = atoms - target_atoms
    if isinstance(lambda_, torch.Tensor):
        diff = diff / _unsqueeze_to(lambda_, diff.ndim)
    else:
        diff.div_(lambda_)
    return diff[0] if diff.shape[0] == 1 else diff.mean(0)  # the mean of one sample is that sample


def identity_vjp(grad_output: torch.Tensor, negative: bool = False) -> torch.Tensor:
    r"""Straight-through VJP: :math:`\bar y` (or :math:`-\bar y` with ``negative=True``).

    Example:
        >>> identity_vjp(torch.tensor([1.0, -2.0]), negative=True)
        tensor([-1.,  2.])
    """
    return -grad_output if negative else grad_output


def pinv_psd(gram: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a batch of small symmetric PSD matrices (Gram matrices of atoms), in gram's dtype.

    Computed in float64 whatever gram's dtype (the matrices are ``(B, m, m)`` with small m): in float32,
    torch's eigensolver spent tens of seconds failing to converge on the ill-conditioned Gram matrices of
    many nearly dependent atoms. The eigendecomposition-based ``torch.linalg.pinv(hermitian=True)`` is
    used, and the SVD-based one if the eigensolver still fails.

    Example:
        >>> pinv_psd(torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
        tensor([[[0.5000, 0.0000],
                 [0.0000, 0.0000]]])
    """
    work = gram if gram.dtype == torch.float64 else gram.to(torch.float64)
    try:
        inv = torch.linalg.pinv(work, hermitian=True)
    except torch.linalg.LinAlgError:
        inv = torch.linalg.pinv(work)
    return inv.to(gram.dtype)


def active_set_vjp(
    atoms: torch.Tensor, weights: torch.Tensor, grad_output: torch.Tensor, face: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Implicit-differentiation VJP of the Euclidean projection onto :math:`\mathrm{conv}(\mathcal Y)`.

    At :math:`\mu = \sum_j w_j a_j`, let :math:`F` be the atoms that span the face of the polytope on which
    the projection is locally an affine projection (by default the active atoms :math:`\{a_j : w_j > 0\}`;
    ``face`` can add zero-weight atoms of the same face, see
    :func:`~colayers.layers.regularized.complete_face`). The projection is locally the projection onto
    their affine hull, whose Jacobian is the orthogonal projector onto the span of the differences
    :math:`D = [a_j - a_r]_{j\in F}` (:math:`a_r` the heaviest atom):

    .. math::  J = D^\top (D D^\top)^{+} D, \qquad J^\top\bar y = D^\top (D D^\top)^{+} D\,\bar y,

    symmetric positive semi-definite. The small ``(B, m, m)`` system is solved with
    :func:`torch.linalg.pinv` (Hermitian), which also handles padded atoms outside F (zero rows) and
    affinely dependent or repeated atoms.

    Args:
        atoms: ``(B, m, d)`` flattened atoms; weights: ``(B, m)``; grad_output: ``(B, d)``.
        face: ``(B, m)`` boolean mask of the atoms spanning the face (``None``: ``weights > 0``); it must
            contain the heaviest atom of each instance.

    Returns:
        ``(B, d)``.

    Example:
        >>> atoms = torch.eye(3, dtype=torch.float64).unsqueeze(0)  # the simplex, all atoms active
        >>> w = torch.full((1, 3), 1 / 3, dtype=torch.float64)
        >>> active_set_vjp(atoms, w, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
        tensor([[ 0.6667, -0.3333, -0.3333]], dtype=torch.float64)
    """
    ref = weights.argmax(-1)  # (B,)
    a_ref = torch.gather(atoms, 1, ref.view(-1, 1, 1).expand(-1, 1, atoms.shape[-1]))  # (B, 1, d)
    active = ((weights > 0) if face is None else face).to(atoms.dtype).unsqueeze(-1)
    diff = (atoms - a_ref) * active  # (B, m, d); atoms outside the face become zero rows
    gram = diff @ diff.transpose(-1, -2)  # (B, m, m)
    rhs = diff @ grad_output.unsqueeze(-1)  # (B, m, 1)
    coef = pinv_psd(gram) @ rhs
    return (diff.transpose(-1, -2) @ coef).squeeze(-1)


class OracleLayer(torch.nn.Module):
    """Base module of the estimators: owns an oracle, validates θ, and manages seeded generators.

    Args:
        oracle: a :class:`~colayers.oracles.Oracle` (maximization convention).
        seed: if given, every stochastic call without an explicit ``generator`` draws from a layer-owned
            generator (one per device, created from ``seed`` on first use), so a freshly built layer with
            the same seed replays the same outputs call after call.
        validate_args: check θ (floating point, finite, event shape) on every call.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> layer = OracleLayer(ArgmaxOneHot(), seed=0)
        >>> g1 = layer.generator_for(torch.device("cpu"))
        >>> g1 is layer.generator_for(torch.device("cpu"))
        True
    """

    def __init__(self, oracle: Oracle, *, seed: int | None = None, validate_args: bool = True) -> None:
        super().__init__()
        if not isinstance(oracle, Oracle):
            raise TypeError(f"oracle must be a colayers.oracles.Oracle; got {type(oracle).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None; got {type(seed).__name__} {seed!r}")
        self.oracle = oracle
        self.seed = seed
        self.validate_args = bool(validate_args)
        self._generators: dict[str | torch.device, torch.Generator] = {}

    @property
    def event_ndim(self) -> int:
        return self.oracle.event_ndim

    def generator_for(self, device: torch.device) -> torch.Generator | None:
        """The layer-owned generator for ``device`` (``None`` without a seed)."""
        if self.seed is None:
            return None
        gen = self._generators.get(device)  # fast path: keyed by the device object a tensor reports
        if gen is not None:
            return gen
        key_device = device
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        gen = self._generators[key]
        if isinstance(key_device, torch.device) and key_device == device:
            self._generators[key_device] = gen  # alias under the device object; str and device keys never collide
        return gen

    def resolve_generator(self, generator: torch.Generator | None, theta: torch.Tensor) -> torch.Generator | None:
        """``generator`` if given (checked against θ's device), else the layer-owned one, else ``None``."""
        if generator is not None:
            check_generator(generator, theta.device)
            return generator
        return self.generator_for(theta.device)

    def check_theta(self, theta: torch.Tensor) -> tuple[int, ...]:
        """Validate θ against the oracle's event shape; return the batch shape."""
        check_tensor("theta", theta)
        batch = check_event_shape("theta", theta, self.oracle.event_shape, self.oracle.event_ndim)
        if self.validate_args:
            check_finite_fast("theta", theta)
        return batch

    def extra_repr(self) -> str:
        return f"oracle={self.oracle!r}" + ("" if self.seed is None else f", seed={self.seed}")


def check_lambda(lambda_: float) -> float:
    """λ > 0 for finite-difference rules."""
    return check_positive("lambda_", lambda_)
