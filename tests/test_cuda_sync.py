"""No device-to-host synchronization in a layer call on the default path, with validation switched off.

On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` raises on every operation that waits for the device
(``.item()``, ``bool(tensor)``, ``nonzero``, boolean-mask indexing, copies to the host). The CUDA test runs a
forward + backward of PerturbedAdditive, IMLE and Blackbox under it. The CPU test checks the same calls on
the CPU by recording, with a ``TorchDispatchMode``, the operators that synchronize when they run on CUDA, so
the property is checked on every machine (the CUDA test confirms it on a GPU).

With validation on (the default), each call reads θ's finiteness back to the host (one scalar: the sum
of θ, with the full check only when it is not finite), which is a synchronization on CUDA; switch it off per
object (``validate_args=False``) once a pipeline is known to be sound.

Not covered: the exact Sum-of-Gamma sampler with ``k ≥ 2`` (I-MLE's default noise on a k-subset) redraws its
rejected entries until none is left, a data-dependent loop whose length is read on the host, so I-MLE on
``TopKSubset`` is checked here with Gumbel noise and its default noise only where ``k = 1`` (one-hot argmax).
"""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from colayers import IMLE, ArgmaxOneHot, Blackbox, PerturbedAdditive, TopKSubset
from colayers.perturb import Gumbel

# Operators that wait for the device when their input is on CUDA.
SYNCING = {
    "aten._local_scalar_dense.default",  # .item(), bool(t), float(t), int(t)
    "aten.is_nonzero.default",
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten._unique2.default",
    "aten.unique_consecutive.default",
    "aten.unique_dim.default",
    "aten.repeat_interleave.Tensor",
}


class HostReads(TorchDispatchMode):
    """Records the operators (and the colayers line calling them) that would synchronize a CUDA device."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        syncs = name in SYNCING
        if name.startswith(("aten.index.Tensor", "aten.index_put")):  # boolean-mask indexing calls nonzero
            syncs = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []) if i is not None)
        if syncs:
            frames = [f for f in traceback.extract_stack() if "/colayers/" in f.filename]
            where = f"{frames[-1].filename.split('/colayers/')[-1]}:{frames[-1].lineno}" if frames else "outside colayers"
            self.hits.append((name, where))
        return func(*args, **kwargs)


def _oracles():
    return {"ArgmaxOneHot": ArgmaxOneHot(validate_args=False), "TopKSubset(3)": TopKSubset(3, validate_args=False)}


def _layer(name: str, oracle_name: str):
    oracle = _oracles()[oracle_name]
    if name == "PerturbedAdditive":
        return PerturbedAdditive(oracle, epsilon=0.7, num_samples=4, seed=0, validate_args=False)
    if name == "IMLE":  # default noise (Sum-of-Gamma) where k = 1; Gumbel on the k-subset (see the docstring)
        noise = {} if oracle_name == "ArgmaxOneHot" else {"noise": Gumbel()}
        return IMLE(oracle, epsilon=0.7, num_samples=4, seed=0, validate_args=False, **noise)
    return Blackbox(oracle, lambda_=3.0, validate_args=False)


CASES = [(layer, oracle) for layer in ("PerturbedAdditive", "IMLE", "Blackbox") for oracle in _oracles()]


def _forward_backward(layer, theta: torch.Tensor) -> torch.Tensor:
    out = layer(theta)
    out.backward(torch.linspace(-1.0, 2.0, out.numel(), device=theta.device).reshape(out.shape))
    return out


def test_host_read_probe_sees_an_item_call():
    probe = HostReads()
    with probe:
        torch.ones(3).sum().item()
    assert [name for name, _ in probe.hits] == ["aten._local_scalar_dense.default"]


@pytest.mark.parametrize(("layer_name", "oracle_name"), CASES)
def test_no_host_read_in_a_layer_call_cpu_proxy(layer_name, oracle_name):
    layer = _layer(layer_name, oracle_name)
    theta = torch.randn(8, 10, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    _forward_backward(layer, theta)  # first call: the layer's generator for this device is created
    theta.grad = None
    probe = HostReads()
    with probe:
        _forward_backward(layer, theta)
    assert probe.hits == [], f"{layer_name} on {oracle_name} reads the device back: {probe.hits}"
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


@pytest.mark.parametrize(("layer_name", "oracle_name"), CASES)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_device_to_host_sync_in_a_layer_call_on_cuda(layer_name, oracle_name):
    layer = _layer(layer_name, oracle_name)
    theta = torch.randn(8, 10, generator=torch.Generator().manual_seed(1)).cuda().requires_grad_(True)
    _forward_backward(layer, theta)  # first call: the layer's generator for this device is created
    theta.grad = None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = _forward_backward(layer, theta)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and theta.grad.device.type == "cuda"
    assert torch.isfinite(theta.grad).all()
