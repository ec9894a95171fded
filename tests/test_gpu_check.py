"""The GPU check script (benchmarks/gpu_check.sh, benchmarks/gpu_check.py) tested on the CPU.

The dry run (the same steps on the CPU, tiny sizes) is marked ``slow``: CI runs it on its own line after
the suite (``pytest --runslow tests/test_gpu_check.py`` in .ci/run). The other tests here are fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]), PYTHON=sys.executable)


def _fake_wheel(directory: Path, dist: str, version: str, tag: str = "py3-none-any") -> Path:
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    path = directory / f"{module}-{version}-{tag}.whl"
    files = {
        f"{module}/__init__.py": f"VALUE = {len(dist)}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def test_wheel_list_carries_the_constraints_pins(gpu_check):
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    listed = gpu_check._pinned(gpu_check.WHEELS)
    assert len(listed) == len(gpu_check.WHEELS) and "cvxpy==" + pins["cvxpy"] in listed
    for req in listed:
        name, _, version = req.partition("==")
        assert version == pins[name], f"{name} is not pinned in constraints.txt"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--print-wheel-list"],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0 and out.stdout.split() == listed


def test_wheel_tags_for_this_interpreter(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check.sys, "version_info", (3, 12, 1))
    monkeypatch.setattr(gpu_check.sys, "platform", "linux")
    monkeypatch.setattr(gpu_check.platform, "machine", lambda: "x86_64")
    assert gpu_check._wheel_matches("cvxpy-1.9.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not gpu_check._wheel_matches("cvxpy-1.9.3-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not gpu_check._wheel_matches("cvxpy-1.9.3-cp312-cp312-manylinux_2_17_aarch64.whl")
    assert gpu_check._wheel_matches("clarabel-0.11.1-cp39-abi3-manylinux_2_17_x86_64.whl")
    assert not gpu_check._wheel_matches("clarabel-0.11.1-cp313-abi3-manylinux_2_17_x86_64.whl")
    assert gpu_check._wheel_matches("networkx-3.6.1-py3-none-any.whl")


@pytest.mark.parametrize("use_pip", [True, False], ids=["pip", "unpack"])
def test_missing_distributions_are_installed_from_the_wheel_directory(gpu_check, tmp_path, use_pip):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "colayers-probe-dist", "0.3")
    _fake_wheel(wheels, "pytest", "0.0.1")  # installed already: must not be installed over the real one
    site = tmp_path / "site"
    installed, log = gpu_check.install_wheels(wheels, site, _env(), 120, use_pip=use_pip)
    assert installed == ["colayers-probe-dist"], log
    assert (site / "colayers_probe_dist" / "__init__.py").read_text() == "VALUE = 19\n"
    assert not (site / "pytest").exists()
    assert ("--no-index" in log) == use_pip


def test_nothing_to_install_without_a_wheel_directory(gpu_check, tmp_path):
    installed, log = gpu_check.install_wheels(None, tmp_path / "site", _env(), 10)
    assert installed == [] and "nothing installed" in log
    assert not (tmp_path / "site").exists()


def test_plugin_keeps_the_cuda_and_device_parametrized_tests(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=[pytest.mark.cuda, "
        "pytest.mark.skip(reason='needs CUDA')])])\n"
        "def test_on(device): pass\n"
        "@pytest.mark.cuda\n"
        "def test_cuda_only(): assert False\n"
        "def test_plain(): pass\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_other_param(n): pass\n"
    )
    (tmp_path / "test_broken.py").write_text("import colayers_no_such_module\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "gpu_check", "--gpu-check-report",
           str(report), "--rootdir", str(tmp_path), "--continue-on-collection-errors", str(tmp_path)]
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env())
    data = json.loads(report.read_text())
    assert list(data["collection_errors"]) == ["test_broken.py"]
    assert "colayers_no_such_module" in data["collection_errors"]["test_broken.py"]
    tests = data["tests"]
    assert {k.split("::")[-1]: (v["cuda"], v["outcome"]) for k, v in tests.items()} == {
        "test_on[cpu]": (False, "passed"),
        "test_on[cuda]": (True, "skipped"),
        "test_cuda_only": (True, "failed"),
    }


def _table(text: str, section: str) -> list[list[str]]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]


@pytest.mark.slow
def test_dry_run_writes_one_results_file_with_every_section(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True, timeout=600,
                          env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["gpu-check-tests.json",
                                                                                   "gpu-check.md"]
    text = (out / "gpu-check.md").read_text()
    assert "dry run (CPU)" in text
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections == ["Environment", "Tests: marked cuda and device-parametrized", "Grid shortest-path oracles",
                        "Selections, soft ranks and noise: CPU against the device",
                        "Estimators: forward + backward overhead", "Warcraft preset: one training epoch", "Summary"]
    env = dict(row[:2] for row in _table(text, "Environment"))
    assert env["torch"] and env["import colayers"] == "0.1.0" and env["benchmark device"] == "cpu"
    # the test counts agree with the plugin's JSON: every cuda-marked item collected, none failed
    records = json.loads((out / "gpu-check-tests.json").read_text())["tests"]
    n_cuda = sum(r["cuda"] for r in records.values())
    counts = {row[0]: row[1:] for row in _table(text, "Tests: marked cuda and device-parametrized")[:2]}
    assert n_cuda >= 40 and counts["marked cuda"][0] == str(n_cuda)
    assert counts["marked cuda"][2:4] == ["0", "0"]  # failed, error
    bit = [r for r in _table(text, "Tests: marked cuda and device-parametrized") if r[0].startswith("`test_")]
    assert len(bit) == 4 and all(re.fullmatch(r"\d+ (passed|skipped)", r[-1]) for r in bit), bit
    grid = _table(text, "Grid shortest-path oracles")
    assert len(grid) == 6 and all(r[8] == "yes" and r[9] == "yes" for r in grid)  # = CPU (both paths), = scipy
    # every row (DAG and Warcraft) times both CPU paths: the compiled kernel (default) and the tensor algorithm the
    # device runs
    assert all(re.fullmatch(r"[\d,]+", r[3]) and re.fullmatch(r"[\d,]+", r[4]) for r in grid), grid
    kernels = _table(text, "Selections, soft ranks and noise: CPU against the device")
    assert [(r[0], r[1]) for r in kernels] == [
        ("TopKSubset(k=100)", "B = 1, n = 10,000"), ("TopKSubset(k=100)", "B = 32, n = 10,000"),
        ("ArgmaxOneHot", "B = 1, n = 10,000"), ("ArgmaxOneHot", "B = 32, n = 10,000"),
        ("SoftRank KL, forward + backward", "B = 8, n = 1,000"), ("SumOfGamma(k=2) sample", "(10, 32, 40)"),
        ("Fenchel-Young statistics (value, gradient)", "(10, 32, 40)"),
        ("score-function VJP (Additive, Normal)", "(10, 32, 40)"),
    ]
    assert all(re.fullmatch(r"[\d,]+", r[2]) and re.fullmatch(r"[\d,]+", r[4]) for r in kernels), kernels
    assert [r[3] != "–" for r in kernels] == [False] * 4 + [True, False, False, False]  # SoftRank's rounds: CPU too
    assert all(r[6].startswith("yes") for r in kernels), kernels  # equal outputs; SumOfGamma: the law's mean
    est = text.split("## Estimators", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"^(ArgmaxOneHot|TopKSubset|scipy assignment)", est, flags=re.M)) == 30
    warcraft = _table(text, "Warcraft preset: one training epoch")
    assert [r[0] for r in warcraft] == ["imle", "blackbox", "fy"]
    assert all(re.fullmatch(r"\d+\.\d+ % \(\d+ calls\)", r[2]) for r in warcraft)
    assert "Steps failed: 0." in text
