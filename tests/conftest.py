"""Shared test configuration: device parametrization, the `slow` marker, and the `cuda` marker rule.

Tests marked ``slow`` are long statistical or training checks. CI runs their bounded forms (separate tests
without the marker); ``pytest --runslow`` runs the full forms too.

Every test that skips without CUDA (a ``skip``/``skipif`` marker whose reason mentions CUDA) must carry the
``cuda`` marker, so that ``pytest -m cuda`` (and ``benchmarks/gpu_check.sh``) runs them all on a GPU machine;
collection stops with a usage error naming any test that lacks it. Use ``DEVICES`` below, or both
``@pytest.mark.cuda`` and ``@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")``.
"""

import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[CUDA, pytest.mark.cuda])]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def unmarked_cuda_items(items) -> list[str]:
    """Node ids of the items that skip for want of CUDA (per their skip markers) but lack the ``cuda`` marker."""
    bad = []
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            continue
        for mark in list(item.iter_markers("skipif")) + list(item.iter_markers("skip")):
            texts = [str(mark.kwargs.get("reason", ""))] + [a for a in mark.args if isinstance(a, str)]
            if any("cuda" in t.lower() for t in texts):
                bad.append(item.nodeid)
                break
    return bad


def pytest_collection_modifyitems(config, items):
    bad = unmarked_cuda_items(items)
    if bad:
        raise pytest.UsageError(
            "tests that skip without CUDA must carry the `cuda` marker (@pytest.mark.cuda); missing on: "
            + ", ".join(bad)
        )
    if config.getoption("--runslow"):
        return
    keep, drop = [], []
    for item in items:
        (drop if "slow" in item.keywords else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
