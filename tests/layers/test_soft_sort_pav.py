"""The compiled linear-time PAV (CPU) against the batched PAV (any device), kept as the test reference.

Both solve the same decreasing isotonic regression with the same strict violation test; they differ in the order
of pooling and in the rounding of the block sums. So: values equal to rounding on every input; block partitions
(the exact Jacobian depends only on them) identical wherever adjacent levels are separated by more than rounding
in both solutions, which holds for random inputs and, on tied inputs, is checked wherever it applies.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

import colayers.layers.soft_sort  # noqa: F401  (the module, not the function re-exported under its name)
from colayers import soft_rank, soft_sort

from ..conftest import DEVICES

ss = sys.modules["colayers.layers.soft_sort"]
REGS = ["l2", "kl"]
# rounding of a block value relative to the magnitude of the data, per dtype: sums of up to n = 40 terms
RTOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def _min_gap(v: torch.Tensor, bid: torch.Tensor) -> float:
    """Smallest difference between adjacent levels of the solution (inf with a single block per row)."""
    step = bid[:, 1:] != bid[:, :-1]
    gaps = (v[:, :-1] - v[:, 1:])[step]
    return float(gaps.min()) if gaps.numel() else float("inf")


def _compare(s: torch.Tensor, w: torch.Tensor, kl: bool) -> None:
    v_new, bid_new = ss._pav_compiled(s, w, kl)
    v_old, bid_old = ss._pav_rounds(s, w, kl)
    assert v_new.dtype == s.dtype and bid_new.dtype == bid_old.dtype == torch.int64
    scale = 1.0 + float(torch.cat([s, w]).abs().max()) if s.numel() else 1.0
    tol = RTOL[s.dtype] * scale
    torch.testing.assert_close(v_new, v_old, rtol=0, atol=tol)
    assert bool((v_new[:, :-1] >= v_new[:, 1:]).all())  # isotonic, exactly (one value per block)
    if min(_min_gap(v_new, bid_new), _min_gap(v_old, bid_old)) > 4 * tol:
        assert torch.equal(bid_new, bid_old)


def _rows(draw, dtype, tied, b, n):
    if tied:
        values = st.integers(-3, 3).map(float)
    else:
        values = st.floats(-5, 5, allow_nan=False, allow_subnormal=False)
    s = torch.tensor(draw(st.lists(values, min_size=b * n, max_size=b * n)), dtype=dtype).reshape(b, n)
    return s


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from([torch.float32, torch.float64]), st.sampled_from(REGS), st.booleans(),
       st.sampled_from([0.01, 0.3, 1.0, 10.0]), st.sampled_from(["rho", "sorted", "zeros"]))
def test_compiled_pav_equals_the_batched_pav(data, dtype, reg, tied, strength, w_kind):
    """s = data / strength as in soft_rank / soft_sort; w the ranks (log-ranks for kl), sorted data, or zeros."""
    b, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    s = _rows(data.draw, dtype, tied, b, n) / strength
    if w_kind == "rho":
        w = torch.arange(n, 0, -1, dtype=dtype).expand_as(s)
        w = torch.log(w) if reg == "kl" else w
    elif w_kind == "sorted":
        w = torch.sort(_rows(data.draw, dtype, tied, b, n), -1, descending=True).values
    else:
        w = torch.zeros_like(s)
    _compare(s, w.contiguous(), reg == "kl")


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_pav_equals_the_batched_pav_on_long_rows(reg, dtype):
    """Long rows at several strengths: the batched solver needs many rounds here, the compiled one a single scan."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 2000, dtype=dtype, generator=gen)
    rho = torch.arange(2000, 0, -1, dtype=dtype).expand_as(theta)
    w = torch.log(rho) if reg == "kl" else rho
    for strength in (0.01, 0.1, 1.0, 100.0):
        s = torch.sort(theta / strength, -1, descending=True).values
        _compare(s, w.contiguous(), reg == "kl")


def test_integer_ties_give_identical_partitions_in_float64():
    """On integer data with many ties (L2 block means of integers), both solvers find the same blocks."""
    gen = torch.Generator().manual_seed(1)
    s = torch.randint(-3, 4, (200, 12), generator=gen).double()
    w = torch.zeros_like(s)
    v_new, bid_new = ss._pav_compiled(s, w, False)
    v_old, bid_old = ss._pav_rounds(s, w, False)
    assert torch.equal(bid_new, bid_old)
    torch.testing.assert_close(v_new, v_old, rtol=0, atol=1e-13)


@pytest.mark.parametrize("fn", [soft_sort, soft_rank], ids=["sort", "rank"])
@pytest.mark.parametrize("reg", REGS)
def test_layers_equal_the_batched_pav_in_value_and_gradient(monkeypatch, fn, reg):
    theta = torch.randn(8, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for pav in (ss._pav, ss._pav_rounds):
        monkeypatch.setattr(ss, "_pav", pav)
        t = theta.clone().requires_grad_(True)
        out = fn(t, strength=1.0, regularization=reg)
        out.square().sum().backward()
        grads.append((out.detach(), t.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-9)


def test_cpu_rows_use_the_compiled_pav(monkeypatch):
    def fail(*args):
        raise AssertionError("the batched rounds ran on CPU float rows")

    monkeypatch.setattr(ss, "_pav_rounds", fail)
    for dtype in (torch.float32, torch.float64):
        for reg in REGS:
            soft_rank(torch.randn(3, 50, dtype=dtype), strength=0.5, regularization=reg)


@pytest.mark.parametrize("fn", [soft_sort, soft_rank], ids=["sort", "rank"])
@pytest.mark.parametrize("reg", REGS)
def test_gradcheck_through_many_pooled_blocks(fn, reg):
    """Long rows with many merges at once: the block-wise VJP on the compiled partition is exact."""
    theta = (torch.randn(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2).requires_grad_()
    assert gradcheck(lambda t: fn(t, strength=0.7, regularization=reg), (theta,))


def test_empty_and_single_entries():
    for shape in [(0, 5), (3, 0), (2, 1)]:
        s = torch.randn(shape, dtype=torch.float64)
        v, bid = ss._pav_compiled(s, torch.zeros_like(s), True)
        assert v.shape == bid.shape == shape
        np.testing.assert_array_equal(bid.numpy(), np.zeros(shape, dtype=np.int64))
        torch.testing.assert_close(v, s)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reg", REGS)
def test_the_device_solver_matches_the_compiled_cpu_pav(device, reg):
    """On CUDA the batched rounds run on the device: same values and blocks as the compiled PAV on the CPU, and
    the same soft ranks and gradients (the gpu check runs this with every device-parametrized test)."""
    gen = torch.Generator().manual_seed(4)
    theta = torch.randn(8, 500, dtype=torch.float64, generator=gen)
    s = torch.sort(theta, -1, descending=True).values
    w = torch.log(torch.arange(500, 0, -1, dtype=torch.float64)).expand_as(s).contiguous()
    v_dev, bid_dev = ss._pav(s.to(device), w.to(device), reg == "kl")
    v_cpu, bid_cpu = ss._pav_compiled(s, w, reg == "kl")
    assert v_dev.device.type == bid_dev.device.type == torch.device(device).type
    assert torch.equal(bid_dev.cpu(), bid_cpu)
    torch.testing.assert_close(v_dev.cpu(), v_cpu, rtol=0, atol=1e-12)
    outs = []
    for t in (theta.to(device), theta):
        t = t.clone().requires_grad_(True)
        out = soft_rank(t, strength=1.0, regularization=reg)
        (g,) = torch.autograd.grad(out.square().sum(), t)
        outs.append((out.detach().cpu(), g.cpu()))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-9)
