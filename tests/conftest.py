"""Shared test configuration: device parametrization and the `slow` marker.

Tests marked ``slow`` are long statistical or training checks. CI runs their bounded forms (separate tests
without the marker); ``pytest --runslow`` runs the full forms too.
"""

import pytest
import torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[CUDA, pytest.mark.cuda])]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    keep, drop = [], []
    for item in items:
        (drop if "slow" in item.keywords else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
