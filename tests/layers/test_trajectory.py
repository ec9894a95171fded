"""Training SPO+ and blackbox on the default study's 5x5 shortest-path data follows, bit for bit, the trajectory
recorded before the estimators were rebuilt on one core (benchmarks/trajectory_main.json, written by
``python benchmarks/trajectory_check.py --epochs 2 --out benchmarks/trajectory_main.json`` on that code;
torch 2.13 CPU, one thread). The Hamming distance is compared exactly; the training loss and the regret,
float32 sums whose order depends on the CPU's vector kernels (AVX2 or AVX-512), to a relative 1e-6: on the
recording machine they are equal bit for bit, on others the loss differs in its last float32 bits, while any
change to an estimator moves them by orders of magnitude more."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not torch.__version__.startswith("2.13"), reason="recorded with torch 2.13 (CPU kernels)")
def test_spo_and_blackbox_trajectories_are_unchanged():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import trajectory_check
    finally:
        sys.path.pop(0)
    ref = json.loads((ROOT / "benchmarks" / "trajectory_main.json").read_text())
    threads = torch.get_num_threads()
    try:
        got = trajectory_check.run(["spo+", "blackbox"], epochs=1, n=1000)
    finally:
        torch.set_num_threads(threads)
    for method in ("spo+", "blackbox"):
        assert len(got[method]) == 1, method
        (row,), (want,) = got[method], ref[method][:1]
        assert row.keys() == want.keys(), method
        assert row["hamming"] == want["hamming"], method  # exact float hex strings
        for key in ("train_loss", "normalized_regret"):
            value, recorded = float.fromhex(row[key]), float.fromhex(want[key])
            assert value == pytest.approx(recorded, rel=1e-6, abs=0), (method, key, value, recorded)
