"""The GPU check: CUDA tests, GPU benchmarks and one Markdown results file, in one bounded run.

Run on a machine with an NVIDIA GPU (no network needed), from anywhere::

    benchmarks/gpu_check.sh [--wheels DIR] OUT_DIR          # the real run (each step capped: 8 minutes at most)
    benchmarks/gpu_check.sh --dry-run OUT_DIR               # the same steps on the CPU, tiny sizes (< 1 min)

Steps, each bounded in time, each recorded in ``OUT_DIR/gpu-check.md`` as soon as it ends (a run cut short
still leaves the steps it finished):

1. **environment**: Python, torch, CUDA, cuDNN, the GPU's name and memory; the packages this machine lacks
   (cvxpy and its solvers, networkx...) are installed from the wheels in ``--wheels DIR`` with
   ``pip install --no-index --find-links DIR --no-deps --target SITE`` (nothing from the network, nothing
   already installed is replaced), and the project is imported from this checkout (``PYTHONPATH``).
2. **tests**: every test marked ``cuda`` and every test parametrized over ``device`` (its CPU variants too),
   in one pytest run; pass / fail / skip counts, the failures, and the outcome of the tests that assert CUDA
   results equal the CPU's bit for bit (:data:`BIT_FOR_BIT`).
3. **grid oracles**: instances per second of the 5×5 DAG, 12×12 and 30×30 Warcraft oracles at 3,200 / 32,000 /
   320,000 instances on the device, against one CPU thread (same oracle: for Warcraft its default CPU path, the
   compiled kernel, and its tensor algorithm, ``backend="tensor"``, the one the device runs) and against the
   scipy Dijkstra loop of ``bench_grid_oracles.py``; the CPU and scipy sides are timed on at most ``--cpu-max``
   / ``--scipy-max`` instances and their per-instance time extrapolated (the table says where). The device's
   answers are checked against the CPU's (bit for bit, both CPU paths) and scipy's (same optimal cost) on the
   instances those solved. The 5×5 DAG rows time its compiled kernel and its tensor algorithm on the CPU too.
4. **kernels**: per call, one CPU thread against the device: ``TopKSubset`` / ``ArgmaxOneHot`` by selection
   (B = 1 and 32, n = 10,000, integer scores with ties; bit-for-bit agreement), ``SoftRank`` KL forward +
   backward (B = 8, n = 10,000: the compiled pool-adjacent-violators, the batched rounds on the CPU, the rounds
   on the device) and ``SumOfGamma`` noise of shape (10, 32, 40) (one I-MLE step on the 5×5 benchmark).
5. **estimators**: ``bench_estimators.py --device cuda`` (forward + backward overhead over the oracle calls).
6. **Warcraft epoch**: one training epoch of the Warcraft preset (12×12; I-MLE, blackbox, perturbed FY) on the
   device and on the CPU, with the share of the epoch spent in oracle calls.

Filling the wheel directory (on a machine with network access). The GPU machine has torch, numpy, scipy,
pytest and hypothesis, so only :data:`WHEELS` are fetched, without their dependencies, for each Python version
it may have (about 46 MB for 3.10-3.14; cvxpy 1.9 and networkx 3.6 need Python >= 3.11, so 3.10 takes the
newest releases that support it)::

    for v in 3.11 3.12 3.13 3.14; do
        pip download --only-binary=:all: --no-deps --python-version $v --platform manylinux2014_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .gpu-wheels \
            $(python benchmarks/gpu_check.py --print-wheel-list)
    done
    pip download --only-binary=:all: --no-deps --python-version 3.10 --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .gpu-wheels \
        cvxpy clarabel qdldl highspy networkx pytest-timeout

``--print-wheel-list`` prints :data:`WHEELS` with their pins from ``constraints.txt``. ``.gpu-wheels/`` is
git-ignored; bring it along to the GPU machine with the checkout and pass ``--wheels .gpu-wheels``.

This module is also the pytest plugin of step 2 (``-p gpu_check`` with ``--gpu-check-report FILE``): it keeps
the device tests and writes their outcomes as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS_NAME = "gpu-check.md"

# Distributions the device tests need beyond torch/numpy/scipy/pytest/hypothesis: tests/oracles/test_solver_oracles.py
# (device-parametrized knapsack tests) imports cvxpy (which needs qdldl and one solver: clarabel) and networkx;
# highspy is the HiGHS MILP solver; pytest-timeout serves the ini's ``timeout``. Only the ones the machine
# lacks are installed. Lean on purpose (about 9 MB per Python version + 3 MB shared): scs (43 MB) and the
# other optional cvxpy solvers are left out.
WHEELS = ("cvxpy", "clarabel", "qdldl", "highspy", "networkx", "pytest-timeout")
IMPORT_CHECKS = ("torch", "numpy", "scipy", "numba", "pytest", "hypothesis", "cvxpy", "highspy", "networkx", "colayers")

# Tests asserting that a deterministic oracle's CUDA result equals the CPU's bit for bit (node id prefixes).
BIT_FOR_BIT = {
    "tests/oracles/test_simplex.py::test_dtype_and_device_preserved": "simplex oracles (argmax, top-k, ranking...) "
    "on CUDA equal the CPU, float32 and float64",
    "tests/oracles/test_grid_oracles.py::test_cuda_agrees_with_cpu_exactly": "5×5 DAG and 12×12 Warcraft "
    "shortest paths on 500 instances (ties included)",
    "tests/oracles/test_grid_oracles.py::test_cuda_agrees_with_cpu_on_absorbed_costs": "Warcraft paths where "
    "float rounding absorbs a cost (the re-solve path)",
    "tests/layers/test_unification.py::test_aimle_on_cuda_scores_with_state_left_on_the_cpu": "AIMLE gradients "
    "and state equal whether the module lives on the CPU or on CUDA",
}

# Step budgets in seconds (real run, dry run); each step also stops at the run's deadline (TOTAL seconds after
# the start), so that the real run ends within 8 minutes whatever happens.
# The dry-run caps are generous (a loaded CI machine); an idle one runs the whole dry run in well under a minute.
BUDGETS = {"install": (60, 60), "tests": (170, 110), "grid": (85, 60), "kernels": (30, 30), "estimators": (55, 60),
           "warcraft": (65, 80)}
STEPS = ("tests", "grid", "kernels", "estimators", "warcraft")
TOTAL = {False: 465, True: 400}


# ----------------------------------------------------------------------------------------------------------
# the pytest plugin (step 2)


def pytest_addoption(parser):
    parser.addoption("--gpu-check-report", default=None, help="keep the device tests; write outcomes as JSON")


def _is_device_test(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return item.get_closest_marker("cuda") is not None or (callspec is not None and "device" in callspec.params)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--gpu-check-report"):
        return
    keep = [i for i in items if _is_device_test(i)]
    drop = [i for i in items if not _is_device_test(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_finish(session):
    if session.config.getoption("--gpu-check-report"):  # the final selection (after -m, -k, deselections)
        session.config._gpu_check = {
            i.nodeid: {"cuda": i.get_closest_marker("cuda") is not None, "outcome": None} for i in session.items
        }


_PLUGIN: dict[str, Any] = {}


def pytest_configure(config):
    _PLUGIN["config"] = config


def pytest_runtest_logreport(report):
    records = getattr(_PLUGIN.get("config"), "_gpu_check", None)
    if records is None or report.nodeid not in records:
        return
    rec = records[report.nodeid]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            rec["outcome"] = "skipped"
            rec["reason"] = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        elif report.failed:
            rec["outcome"] = "failed" if report.when == "call" else "error"
            rec["detail"] = str(report.longreprtext)[-1500:]
        else:
            rec["outcome"] = "passed"
        rec["seconds"] = round(report.duration, 3)
    elif report.when == "teardown" and report.failed:
        rec["outcome"] = "error"
        rec["detail"] = str(report.longreprtext)[-1500:]


def pytest_collectreport(report):
    config = _PLUGIN.get("config")
    if config is None or not config.getoption("--gpu-check-report"):
        return
    if report.failed:
        _PLUGIN.setdefault("collection_errors", {})[report.nodeid] = str(report.longreprtext)[-1500:]
    elif report.skipped:  # a module skipped as a whole (importorskip of a package the machine lacks)
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _PLUGIN.setdefault("collection_skips", {})[report.nodeid] = str(reason)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--gpu-check-report")
    if path:
        records = getattr(session.config, "_gpu_check", {})
        errors = _PLUGIN.get("collection_errors", {})
        out = {"exitstatus": int(exitstatus), "tests": records, "collection_errors": errors,
               "collection_skips": _PLUGIN.get("collection_skips", {})}
        Path(path).write_text(json.dumps(out, indent=1))


# ----------------------------------------------------------------------------------------------------------
# helpers


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class Report:
    """The results file, rewritten after every step so that a run cut short keeps what it measured."""

    def __init__(self, path: Path, dry_run: bool) -> None:
        self.path = path
        self.dry_run = dry_run
        self.sections: list[tuple[str, str]] = []
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def add(self, title: str, body: str) -> None:
        self.sections.append((title, body.rstrip()))
        self.write()

    def write(self) -> None:
        mode = "dry run (CPU): tiny sizes, no GPU; not figures to quote" if self.dry_run else "GPU run"
        head = [
            "# colayers GPU check",
            "",
            f"Mode: **{mode}**. Started {self.started:%Y-%m-%d %H:%M:%S} UTC; written by `benchmarks/gpu_check.sh`.",
        ]
        parts = ["\n".join(head)] + [f"## {t}\n\n{b}" for t, b in self.sections]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n\n".join(parts) + "\n")
        tmp.replace(self.path)


def _run(cmd: list[str], *, env: dict[str, str], timeout: float, cwd: Path = ROOT) -> tuple[int, str, float]:
    """Run ``cmd``; return (exit code or 124 on timeout, combined output, seconds)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        return proc.returncode, proc.stdout, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n[timed out after {timeout:.0f} s]", time.perf_counter() - t0


def _dist_name(wheel: str) -> str:
    return re.sub(r"[-_.]+", "-", wheel.split("-")[0]).lower()


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _wheel_matches(wheel: str) -> bool:
    """Whether a wheel file can be unpacked for this interpreter (the fallback when pip is missing)."""
    parts = wheel[:-4].split("-")
    py, abi, plat = parts[-3], parts[-2], parts[-1]
    ver = "{}{}".format(*sys.version_info[:2])
    minor = sys.version_info[1]
    py_ok = any(
        p in (f"cp{ver}", "py3", f"py{ver}") or (abi == "abi3" and p.startswith("cp3") and int(p[3:]) <= minor)
        for p in py.split(".")
    )
    plat_ok = plat == "any" or (sys.platform.startswith("linux") and platform.machine() in plat)
    abi_ok = abi in ("none", "abi3", f"cp{ver}")
    return py_ok and plat_ok and abi_ok


def install_wheels(wheels: Path | None, site: Path, env: dict[str, str], timeout: float,
                   use_pip: bool = True) -> tuple[list[str], str]:
    """Install the distributions this interpreter lacks from ``wheels`` into ``site``; return (names, log).

    With pip: ``pip install --no-index --find-links wheels --no-deps --target site NAMES`` (pip picks the wheel
    matching this interpreter). Without pip (or if it fails): the matching wheels are unpacked into ``site``.
    """
    if wheels is None:
        return [], "no wheel directory given (`--wheels DIR`); nothing installed."
    if not wheels.is_dir():
        return [], f"wheel directory {wheels} does not exist; nothing installed."
    files = sorted(p.name for p in wheels.glob("*.whl"))
    missing = sorted({_dist_name(f) for f in files if not _installed(_dist_name(f))})
    if not missing:
        return [], f"{len(files)} wheels in {wheels}; every distribution is installed already."
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps",
           "--target", str(site), "--disable-pip-version-check", "--no-warn-script-location", *missing]
    has_pip = use_pip and _run([sys.executable, "-m", "pip", "--version"], env=env, timeout=30)[0] == 0
    if has_pip:
        rc, out, _ = _run(cmd, env=env, timeout=timeout)
        if rc == 0:
            return missing, "$ " + " ".join(cmd) + "\n" + out[-3000:]
        log = "$ " + " ".join(cmd) + f"\n[exit {rc}]\n" + out[-3000:] + "\nfalling back to unpacking wheels\n"
    else:
        log = "pip is not available: unpacking the matching wheels\n"
    done = []
    for f in files:
        name = _dist_name(f)
        if name in missing and name not in done and _wheel_matches(f):
            with zipfile.ZipFile(wheels / f) as z:
                z.extractall(site)
            done.append(name)
            log += f"unpacked {f}\n"
    return done, log


# ----------------------------------------------------------------------------------------------------------
# step 1: the environment


def environment_section(device: str, installed: list[str], install_log: str) -> str:
    import torch

    rows = [
        ["Python", platform.python_version() + f" ({sys.executable})"],
        ["platform", platform.platform()],
        ["torch", torch.__version__],
        ["CUDA (torch build)", torch.version.cuda or "none (CPU build)"],
        ["cuDNN", str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"],
        ["CUDA available", str(torch.cuda.is_available())],
        ["CPU cores", str(os.cpu_count())],
    ]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows += [
            ["GPU", f"{props.name} ({props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor})"],
            ["GPUs visible", str(torch.cuda.device_count())],
        ]
    else:
        rows.append(["GPU", "none"])
    rows.append(["benchmark device", device])
    for mod in IMPORT_CHECKS:
        try:
            m = importlib.import_module(mod)
            rows.append([f"import {mod}", getattr(m, "__version__", "ok")])
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            rows.append([f"import {mod}", f"FAILED: {type(exc).__name__}: {exc}"])
    smi = shutil.which("nvidia-smi")
    body = _md_table(["item", "value"], rows)
    body += "\n\nInstalled from wheels: " + (", ".join(installed) if installed else "nothing") + "."
    body += "\n\n<details><summary>install log</summary>\n\n```\n" + install_log.strip() + "\n```\n</details>"
    if smi:
        rc, out, _ = _run([smi, "-L"], env=dict(os.environ), timeout=20)
        body += "\n\n`nvidia-smi -L`:\n\n```\n" + out.strip() + "\n```"
    return body


# ----------------------------------------------------------------------------------------------------------
# step 2: the tests


def tests_section(out_dir: Path, env: dict[str, str], timeout: float, dry_run: bool) -> tuple[str, dict[str, int]]:
    report = out_dir / "gpu-check-tests.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "gpu_check", "--gpu-check-report", str(report), "-q",
           "-p", "no:cacheprovider", "--continue-on-collection-errors", "tests"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd += ["--timeout", "120"]
    if dry_run:
        cmd += ["-m", "cuda"]  # the CPU variants take longer than a dry run may; the cuda items are all skipped
    rc, out, secs = _run(cmd, env=env, timeout=timeout)
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0, "not run": 0}
    body = f"Command: `{' '.join(['python'] + cmd[1:])}` (exit {rc}, {secs:.0f} s).\n\n"
    if not report.exists():
        body += "No test report was written.\n\n```\n" + out[-4000:] + "\n```"
        counts["error"] += 1
        return body, counts
    full = json.loads(report.read_text())
    data, coll_errors = full["tests"], full.get("collection_errors", {})
    counts["collection errors"] = len(coll_errors)
    by_cat: dict[str, dict[str, int]] = {"marked cuda": {}, "device-parametrized, CPU variant": {}}
    for rec in data.values():
        outcome = rec["outcome"] or "not run"
        counts[outcome] = counts.get(outcome, 0) + 1
        cat = "marked cuda" if rec["cuda"] else "device-parametrized, CPU variant"
        by_cat[cat][outcome] = by_cat[cat].get(outcome, 0) + 1
    cols = ["passed", "failed", "error", "skipped", "not run"]
    rows = [[cat, sum(c.values())] + [c.get(k, 0) for k in cols] for cat, c in by_cat.items()]
    rows.append(["**all**", len(data)] + [counts.get(k, 0) for k in cols])
    body += _md_table(["tests", "items"] + cols, rows)
    reasons = sorted({rec.get("reason", "") for rec in data.values() if rec["outcome"] == "skipped"})
    if reasons:
        body += "\n\nSkip reasons: " + "; ".join(f"`{r}`" for r in reasons) + "."
    skipped_modules = full.get("collection_skips", {})
    if skipped_modules:
        body += "\n\nModules skipped at collection (their tests, device ones included, did not run): " + "; ".join(
            f"`{k}` ({v})" for k, v in skipped_modules.items()) + "."
    if coll_errors:
        body += "\n\n### Collection errors (these modules' tests did not run)\n"
        for nodeid, text in coll_errors.items():
            body += f"\n`{nodeid}`:\n\n```\n{text.strip()}\n```\n"
    bad = {k: v for k, v in data.items() if v["outcome"] in ("failed", "error")}
    if bad:
        body += "\n\n### Failures\n"
        for nodeid, rec in bad.items():
            body += f"\n`{nodeid}` ({rec['outcome']}):\n\n```\n{rec.get('detail', '').strip()}\n```\n"
    body += "\n\n### CUDA equals the CPU bit for bit (deterministic oracles)\n\n"
    bit_rows = []
    for prefix, what in BIT_FOR_BIT.items():
        hits = [v["outcome"] or "not run" for k, v in data.items() if k.startswith(prefix) and v["cuda"]]
        summary = ", ".join(f"{hits.count(o)} {o}" for o in sorted(set(hits))) if hits else "NOT COLLECTED"
        bit_rows.append([f"`{prefix.split('::')[-1]}` ({prefix.split('::')[0]})", what, summary])
    body += _md_table(["test", "what it asserts", "CUDA items"], bit_rows)
    body += "\n\n<details><summary>pytest output (tail)</summary>\n\n```\n" + out[-3000:].strip() + "\n```\n</details>"
    return body, counts


# ----------------------------------------------------------------------------------------------------------
# step 3: the grid oracles


def _bench_module():
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("bench_grid_oracles")
    finally:
        sys.path.remove(str(BENCH))


def _best_time(fn, repeats: int, device) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def grid_section(device: str, sizes: list[int], cpu_max: int, scipy_max: int, repeats: int,
                 grids: list[int]) -> str:
    import numpy as np
    import torch

    from colayers.oracles import GridDAGShortestPath, GridVertexShortestPath

    bench = _bench_module()
    dag = GridDAGShortestPath(5, 5)
    problems = [("5×5 grid DAG (edges)", dag, bench.ScipyDAG(dag))]
    problems += [(f"{k}×{k} Warcraft (tiles)", GridVertexShortestPath(k, k), bench.ScipyVertex(k, k)) for k in grids]
    threads = torch.get_num_threads()
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for name, oracle, reference in problems:
        for n in sizes:
            cost = torch.rand((n, *oracle.event_shape), generator=gen, device=device) * 9.0 + 1.0  # in [1, 10)
            oracle.shortest_path(cost[:64])  # warm-up: index tables on the device, kernels
            t_dev, y = _best_time(lambda c=cost, o=oracle: o.shortest_path(c), repeats, device)
            k_cpu, k_sp = min(n, cpu_max), min(n, scipy_max)
            cost_cpu = cost[:k_cpu].cpu()
            # the CPU's default path (the compiled kernel) and the tensor algorithm the device runs
            cpu_sides = [oracle, type(oracle)(oracle.height, oracle.width, backend="tensor")]
            torch.set_num_threads(1)
            try:
                timed = []
                for side in cpu_sides:
                    side.shortest_path(cost_cpu[:64])
                    timed.append(_best_time(lambda c=cost_cpu, o=side: o.shortest_path(c), repeats, "cpu"))
            finally:
                torch.set_num_threads(threads)
            identical = all(bool(torch.equal(y[:k_cpu].cpu(), y_cpu)) for _, y_cpu in timed)
            cost_np = cost[:k_sp].double().cpu().numpy()
            t_sp, y_sp = bench.time_scipy(reference, cost_np, max(1, min(repeats, 2)))
            ours = (y[:k_sp].double().cpu().numpy() * cost_np).reshape(k_sp, -1).sum(1)
            theirs = (y_sp * cost_np).reshape(k_sp, -1).sum(1)
            same_cost = bool(np.allclose(ours, theirs, rtol=1e-5))
            r_dev, r_cpu, r_sp = n / t_dev, k_cpu / timed[0][0], k_sp / t_sp
            r_tensor = f"{k_cpu / timed[1][0]:,.0f}"
            note = ", ".join(f"{side} timed on {k:,}" for side, k in (("CPU", k_cpu), ("scipy", k_sp)) if k < n)
            rows.append([name, f"{n:,}", f"{r_dev:,.0f}", f"{r_cpu:,.0f}", r_tensor, f"{r_sp:,.0f}",
                         f"{r_dev / r_cpu:.1f}×", f"{r_dev / r_sp:.1f}×", "yes" if identical else "**NO**",
                         "yes" if same_cost else "**NO**", note])
            del cost, y
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
    header = ["problem", "instances", f"{device} inst/s", "1 CPU thread inst/s", "1 CPU thread, tensor algorithm "
              "inst/s", "scipy loop inst/s", f"{device} / CPU", f"{device} / scipy", "= CPU bit for bit",
              "= scipy cost", "note"]
    body = (
        f"Positive float32 costs in [1, 10), one batched call per timing, best of {repeats} "
        f"(scipy: best of {max(1, min(repeats, 2))}); CPU side: the same oracle with `torch.set_num_threads(1)`: "
        "its default CPU path (the compiled kernel; the device runs the tensor algorithm) and the tensor "
        "algorithm on the CPU (`backend=\"tensor\"`); '= CPU bit for bit' covers both. "
        "Where a side was timed on fewer instances than the batch (note), its per-instance time is extrapolated. "
        "Targets (issue): 12×12 at 32,000 instances ≥ 20× one CPU thread.\n\n"
    )
    return body + _md_table(header, rows)


# ----------------------------------------------------------------------------------------------------------
# step 4: the compiled CPU kernels and selections against the device


def _per_call(fn, device, calls: int, repeats: int) -> tuple[float, Any]:
    """Best over ``repeats`` of the mean time of ``calls`` back-to-back calls (seconds per call), and an output."""
    out = fn()  # warm-up: kernels compiled or loaded, device tables built
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best, out


@contextlib.contextmanager
def _pav_rounds_on_the_cpu():
    """Route CPU rows of SoftSort/SoftRank to the batched rounds (the algorithm CUDA runs) instead of the kernel."""
    soft_sort = importlib.import_module("colayers.layers.soft_sort")  # the module (the package exports a function)
    saved = soft_sort.on_compiled_cpu
    soft_sort.on_compiled_cpu = lambda *tensors: False
    try:
        yield
    finally:
        soft_sort.on_compiled_cpu = saved


def _soft_rank_kl(theta):
    """Soft ranks (KL) of ``theta`` and the gradient of their sum: what a training step pays."""
    from colayers.layers import soft_rank

    theta = theta.detach().requires_grad_()
    ranks = soft_rank(theta, strength=1.0, regularization="kl")
    ranks.sum().backward()
    return ranks.detach(), theta.grad


def kernels_section(device: str, dry_run: bool) -> str:
    """Per call: the CPU kernels and selections of colayers (one thread) against the same call on ``device``."""
    import torch

    from colayers.oracles import ArgmaxOneHot, TopKSubset
    from colayers.perturb import SumOfGamma

    calls, repeats = (2, 1) if dry_run else (20, 3)
    n_rank = 1_000 if dry_run else 10_000
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    rows = []

    def row(name, shape, cpu_fn, dev_fn, agree, tensor_fn=None, calls_=calls):
        try:  # one failing row (recorded with its error) does not lose the others
            torch.set_num_threads(1)
            try:
                t_cpu, out_cpu = _per_call(cpu_fn, "cpu", calls_, repeats)
                t_tensor = _per_call(tensor_fn, "cpu", 1, 1)[0] if tensor_fn is not None else None
            finally:
                torch.set_num_threads(threads)
            t_dev, out_dev = _per_call(dev_fn, device, calls_, repeats)
        except Exception as exc:  # noqa: BLE001 - recorded in the table
            rows.append([name, shape, "–", "–", "–", "–", f"**FAILED**: {type(exc).__name__}: {exc}"[:300]])
            return
        rows.append([name, shape, f"{1e6 * t_cpu:,.0f}", "–" if t_tensor is None else f"{1e6 * t_tensor:,.0f}",
                     f"{1e6 * t_dev:,.0f}", f"{t_cpu / t_dev:.1f}×", agree(out_cpu, out_dev)])

    def equal(a, b):
        return "yes" if bool(torch.equal(a, b.cpu())) else "**NO**"

    for name, oracle in (("TopKSubset(k=100)", TopKSubset(100)), ("ArgmaxOneHot", ArgmaxOneHot())):
        for b in (1, 32):
            # integer scores in [0, 50): many ties, broken by the lowest index on both sides
            theta = torch.randint(0, 50, (b, 10_000), generator=gen).float()
            theta_dev = theta.to(device)
            row(name, f"B = {b}, n = 10,000", lambda o=oracle, t=theta: o(t), lambda o=oracle, t=theta_dev: o(t), equal)

    theta = torch.randn(8, n_rank, generator=gen)
    theta_dev = theta.to(device)

    def close(a, b):
        (ra, ga), (rb, gb) = a, (b[0].cpu(), b[1].cpu())
        err = max(float((ra - rb).abs().max() / ra.abs().max()), float((ga - gb).abs().max() / ga.abs().max()))
        return f"{'yes' if err <= 1e-4 else '**NO**'} (relative max difference {err:.1e})"

    def rounds():
        with _pav_rounds_on_the_cpu():
            return _soft_rank_kl(theta)

    row("SoftRank KL, forward + backward", f"B = 8, n = {n_rank:,}", lambda: _soft_rank_kl(theta),
        lambda: _soft_rank_kl(theta_dev), close, tensor_fn=rounds, calls_=max(1, calls // 4))

    noise, shape = SumOfGamma(k=2), (10, 32, 40)
    se = (noise.variance / math.prod(shape)) ** 0.5

    def law(a, b):
        ok = all(abs(float(z.double().mean()) - noise.mean) <= 5 * se for z in (a, b))
        return f"{'yes' if ok else '**NO**'} (both means within 5 s.e. = {5 * se:.3f} of {noise.mean:.3f})"

    gen_dev = torch.Generator(device=device).manual_seed(1)
    row("SumOfGamma(k=2) sample", "(10, 32, 40)", lambda: noise.sample(shape, generator=gen),
        lambda: noise.sample(shape, generator=gen_dev, device=device), law)
    # the fused passes of a perturbed step: the CPU's compiled pass against the device's tensor operations, on the
    # same η, solutions, targets and noise (no generator involved)
    from colayers.layers.rules import score_function_vjp
    from colayers.losses.fenchel_young import _statistics
    from colayers.oracles import GridDAGShortestPath
    from colayers.perturb import Additive, PerturbedSample

    dag = GridDAGShortestPath(5, 5)
    z, base = torch.randn(10, 32, 40, generator=gen), torch.randn(32, 40, generator=gen)
    eta, cot = base + z, torch.randn(32, 40, generator=gen)
    atoms, target = dag(eta), dag(torch.randn(32, 40, generator=gen))
    z_d, base_d, eta_d, cot_d, atoms_d, target_d = (t.to(device) for t in (z, base, eta, cot, atoms, target))

    def fused_close(a, b):
        err = max(float((x - y.cpu()).abs().max() / (x.abs().max() + 1e-30)) for x, y in zip(a, b))
        return f"{'yes' if err <= 1e-5 else '**NO**'} (relative max difference {err:.1e})"

    row("Fenchel-Young statistics (value, gradient)", "(10, 32, 40)",
        lambda: _statistics(dag, eta, atoms, target, 1)[:2],
        lambda: _statistics(dag, eta_d, atoms_d, target_d, 1)[:2], fused_close)
    pert = Additive(epsilon=1.0)
    row("score-function VJP (Additive, Normal)", "(10, 32, 40)",
        lambda: (score_function_vjp(base, atoms, PerturbedSample(eta=eta, noise=z), pert, cot, 1),),
        lambda: (score_function_vjp(base_d, atoms_d, PerturbedSample(eta=eta_d, noise=z_d), pert, cot_d, 1),),
        fused_close)
    header = ["operation", "size", "1 CPU thread µs/call", "1 CPU thread, tensor algorithm µs/call",
              f"{device} µs/call", f"CPU / {device} time", f"{device} agrees with the CPU"]
    body = (
        f"Float32, best of {repeats} timings of back-to-back calls (µs per call); CPU side: "
        "`torch.set_num_threads(1)`, the default CPU path (the compiled pool-adjacent-violators for SoftRank, "
        "selection for top-k and argmax); 'tensor algorithm': SoftRank's batched rounds (the algorithm the device "
        "runs) on the CPU, one call. Top-k and argmax on integer scores with ties: the device's answer equals the "
        "CPU's bit for bit. SoftRank: ranks and the gradient of their sum. SumOfGamma: different streams on the "
        "two sides, so the check is the law's mean. The fused passes of a perturbed step (the Fenchel-Young "
        "statistics, the score-function VJP): the CPU's compiled pass against the device's tensor operations on the "
        "same inputs. The grid oracles' kernels are in the grid section.\n\n"
    )
    return body + _md_table(header, rows)


# ----------------------------------------------------------------------------------------------------------
# step 5: the estimators


def estimators_section(device: str, env: dict[str, str], timeout: float, dry_run: bool) -> str:
    args = ["--device", device, "--threads", "1"]
    tiny = ["--batch", "4", "--samples", "2", "--n", "10", "--k", "3", "--m", "3", "--reps", "2", "--scipy-reps", "1"]
    args += tiny if dry_run else ["--batch", "32", "--samples", "10", "--reps", "30", "--scipy-reps", "5"]
    cmd = [sys.executable, str(BENCH / "bench_estimators.py"), *args]
    rc, out, secs = _run(cmd, env=env, timeout=timeout)
    shown = "python benchmarks/bench_estimators.py " + " ".join(args)
    return f"Command: `{shown}` (exit {rc}, {secs:.0f} s).\n\n```\n{out.strip()[-6000:]}\n```"


# ----------------------------------------------------------------------------------------------------------
# step 6: one Warcraft epoch


@contextlib.contextmanager
def _timed_calls(cls, device):
    """Time every call of oracle class ``cls`` (whatever wraps it), synchronizing the device around each."""
    original = cls.__call__
    tally = {"seconds": 0.0, "calls": 0, "depth": 0}

    def timed(self, theta):
        if tally["depth"]:
            return original(self, theta)
        tally["depth"] += 1
        _sync(device)
        t0 = time.perf_counter()
        try:
            return original(self, theta)
        finally:
            _sync(device)
            tally["seconds"] += time.perf_counter() - t0
            tally["calls"] += 1
            tally["depth"] -= 1

    own = "__call__" in cls.__dict__
    cls.__call__ = timed
    try:
        yield tally
    finally:
        if own:
            cls.__call__ = original
        else:
            del cls.__call__


def _one_epoch(problem, objective, model, optimizer, batch_size: int, device, max_batches: int | None):
    """Train one epoch (or its first ``max_batches`` batches); return (seconds, batches run, batches per epoch)."""
    import torch

    n = problem.x_train.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)
    starts = list(range(0, n, batch_size))
    run = starts if max_batches is None else starts[:max_batches]
    _sync(device)
    t0 = time.perf_counter()
    for i in run:
        idx = perm[i : i + batch_size]
        theta = model(problem.x_train[idx])
        loss = objective.loss(theta, problem.theta_train[idx], problem.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - t0, len(run), len(starts)


def warcraft_section(devices: list[str], n_train: int, methods: list[str], *, batch: int | None = None,
                     cpu_batches: int | None = None) -> str:
    """One epoch of the Warcraft preset per method and device; the CPU side may run only ``cpu_batches``."""
    import torch

    from colayers.studies.config import preset as study_preset
    from colayers.studies.methods import make_method
    from colayers.studies.problems import make_problem

    config = study_preset("warcraft")
    spec = config.problems[0]
    # every method at its effective hyper-parameters on the Warcraft problem (tuned for the pair, or generic)
    specs = {m.label: dict(config.effective_method(spec, m).params) for m in config.methods}
    size = config.effective_problem_params(spec)["size"]
    batch = batch or config.batch_size
    from colayers.oracles import GridVertexShortestPath
    from colayers.studies.trial import trial_oracles

    results: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    notes = []
    base = make_problem("warcraft", seed=0, device="cpu", size=size, n=n_train, n_test=8)
    for device in devices:
        moved = {k: getattr(base, k).to(device) for k in ("x_train", "theta_train", "y_train", "x_test", "theta_test",
                                                          "y_test")}
        problem = dataclasses.replace(base, **moved)
        limit = cpu_batches if device == "cpu" else None
        for name in methods:
            params = specs[name]
            params = dict(params)
            lr = float(params.pop("lr", config.lr))
            oracle, training_oracle = trial_oracles(problem)  # as a study trial: both counted on one counter
            with torch.random.fork_rng(devices=[torch.device(device).index or 0] if device != "cpu" else []):
                torch.manual_seed(0)
                objective = make_method(name, oracle, problem.event_ndim, seed=0, training_oracle=training_oracle,
                                        problem=problem, **params).to(device)
                model = objective.wrap_model(problem.make_model(), problem).to(device)
            optimizer = torch.optim.Adam(list(model.parameters()), lr=lr)
            # warm-up: one batch (CUDA context, cuDNN autotuning, allocator) before the timed epochs
            theta = model(problem.x_train[:batch])
            objective.loss(theta, problem.theta_train[:batch], problem.y_train[:batch]).backward()
            optimizer.zero_grad(set_to_none=True)
            plain, done, total = _one_epoch(problem, objective, model, optimizer, batch, device, limit)
            calls0 = oracle.calls
            with _timed_calls(GridVertexShortestPath, device) as tally:
                timed, _, _ = _one_epoch(problem, objective, model, optimizer, batch, device, limit)
            if tally["calls"] != oracle.calls - calls0:
                raise RuntimeError(f"{name}: {tally['calls']} timed oracle calls, {oracle.calls - calls0} counted")
            results[(device, name)] = (plain * total / done, timed, tally["seconds"], tally["calls"])
            if done < total and not any(n.startswith(device) for n in notes):
                notes.append(f"{device}: timed on the first {done} of the epoch's {total} batches, the epoch time "
                             "extrapolated from the time per batch")
    header = ["method"]
    for d in devices:
        header += [f"{d} epoch s", f"{d} oracle share"]
    if len(devices) == 2:
        header.append(f"{devices[0]} / {devices[1]} epoch time")
    rows = []
    for name in methods:
        row = [name]
        for d in devices:
            plain, timed, secs, calls = results[(d, name)]
            row += [f"{plain:.2f}", f"{100 * secs / timed:.2f} % ({calls} calls)"]
        if len(devices) == 2:
            row.append(f"{results[(devices[0], name)][0] / results[(devices[1], name)][0]:.1f}×")
        rows.append(row)
    body = (
        f"Warcraft preset ({size}×{size} maps, {n_train} training maps, batch {batch}, the preset's method settings "
        f"and learning rates, `WarcraftCNN`), seed 0, after one warm-up batch. 'epoch s': one epoch's wall time; "
        "'oracle share': a second epoch (same batches) with the device synchronized around every oracle call: "
        f"oracle seconds / that epoch's seconds. CPU side: {torch.get_num_threads()} torch threads. "
        "Target (issue): oracle ≤ 10 % of a training step on the GPU.\n\n"
    )
    body += _md_table(header, rows)
    if notes:
        body += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return body


# ----------------------------------------------------------------------------------------------------------
# the driver


def _pinned(names) -> list[str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver.strip()
    return [f"{n}=={pins[n]}" if n in pins else n for n in names]


def _child(step: str, args: argparse.Namespace) -> str:
    """Run one in-process benchmark step (in a child process of the driver, so that it can be timed out)."""
    device = "cpu" if args.dry_run else "cuda"
    if step == "grid":
        if args.dry_run:
            return grid_section(device, [16, 64], 64, 16, 1, [12, 30])  # tiny: the pipeline only
        return grid_section(device, [3_200, 32_000, 320_000], args.cpu_max, args.scipy_max, 3, [12, 30])
    if step == "warcraft":
        if args.dry_run:
            return warcraft_section(["cpu"], 16, ["imle", "blackbox", "fy"], batch=8, cpu_batches=1)
        return warcraft_section(["cpu", device], 1000, ["imle", "blackbox", "fy"], cpu_batches=8)
    if step == "kernels":
        return kernels_section(device, args.dry_run)
    raise ValueError(f"no child step {step!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("out_dir", nargs="?", help="directory for gpu-check.md (created)")
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny sizes (< 1 minute)")
    parser.add_argument("--wheels", type=Path, default=None, help="directory of wheels for missing packages")
    parser.add_argument("--site", type=Path, default=None, help="where to install them (default: a temp dir)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--cpu-max", type=int, default=32_000, help="most instances the 1-thread CPU side solves")
    parser.add_argument("--scipy-max", type=int, default=1_000, help="most instances the scipy loop solves")
    parser.add_argument("--print-wheel-list", action="store_true", help="print the pinned wheel requirements")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.print_wheel_list:
        print(" ".join(_pinned(WHEELS)))
        return 0
    if not args.out_dir:
        parser.error("out_dir is required")
    out_dir = Path(args.out_dir)
    if args.child:
        if args.dry_run:
            import torch

            torch.set_num_threads(1)
        (out_dir / f".gpu-check-{args.child}.md").write_text(_child(args.child, args))
        return 0
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"--steps: unknown step(s) {unknown}; choose from {list(STEPS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / RESULTS_NAME, args.dry_run)
    deadline = time.monotonic() + TOTAL[args.dry_run]

    class Budget(dict):
        def __getitem__(self, key):  # a step's cap, never past the run's deadline
            left = deadline - time.monotonic()
            if left < 10:
                raise RuntimeError(f"the run's {TOTAL[args.dry_run]} s are spent; step skipped")
            return min(super().__getitem__(key), left)

    budget = Budget({k: v[1 if args.dry_run else 0] for k, v in BUDGETS.items()})

    site = args.site or Path(tempfile.mkdtemp(prefix="colayers-gpu-site-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.dry_run:  # one thread: small CPU ops on a shared machine run faster, and the run stays light
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = [str(ROOT), str(BENCH), str(site)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    installed, log = install_wheels(args.wheels, site, env, budget["install"])
    for p in (str(site), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)
    importlib.invalidate_caches()

    import torch

    if args.dry_run:
        torch.set_num_threads(1)
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        report.add("Environment", environment_section("none", installed, log))
        report.add("Summary", "**No CUDA device**: `torch.cuda.is_available()` is False. Nothing was measured.")
        print(f"[gpu_check] no CUDA device; wrote {report.path}", file=sys.stderr)
        return 2
    report.add("Environment", environment_section(device, installed, log))

    failures = 0

    def step(title: str, fn) -> Any:
        nonlocal failures
        t0 = time.perf_counter()
        print(f"[gpu_check] {title} ...", file=sys.stderr, flush=True)
        try:
            result = fn()
        except Exception:  # noqa: BLE001 - recorded, the next steps still run
            failures += 1
            report.add(title, "**Step failed:**\n\n```\n" + traceback.format_exc()[-4000:] + "\n```")
            return None
        body = result[0] if isinstance(result, tuple) else result
        report.add(title, body + f"\n\n_(step time {time.perf_counter() - t0:.0f} s)_")
        return result

    def child(name: str) -> str:
        fragment = out_dir / f".gpu-check-{name}.md"
        fragment.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), str(out_dir), "--child", name,
               "--cpu-max", str(args.cpu_max), "--scipy-max", str(args.scipy_max)]
        cmd += ["--dry-run"] if args.dry_run else []
        rc, out, _ = _run(cmd, env=env, timeout=budget[name])
        if rc != 0 or not fragment.exists():
            raise RuntimeError(f"step {name!r} exited {rc}:\n{out[-4000:]}")
        body = fragment.read_text()
        fragment.unlink()
        return body

    counts = None
    if "tests" in steps:
        res = step("Tests: marked cuda and device-parametrized",
                   lambda: tests_section(out_dir, env, budget["tests"], args.dry_run))
        counts = res[1] if res else None
    if "grid" in steps:
        step("Grid shortest-path oracles", lambda: child("grid"))
    if "kernels" in steps:
        step("Selections, soft ranks and noise: CPU against the device", lambda: child("kernels"))
    if "estimators" in steps:
        step("Estimators: forward + backward overhead",
             lambda: estimators_section(device, env, budget["estimators"], args.dry_run))
    if "warcraft" in steps:
        step("Warcraft preset: one training epoch", lambda: child("warcraft"))

    summary = f"Steps failed: {failures}."
    if counts is not None:
        summary += " Tests: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "."
    summary += f" Total time {(datetime.datetime.now(datetime.timezone.utc) - report.started).total_seconds():.0f} s."
    report.add("Summary", summary)
    print(f"[gpu_check] wrote {report.path}", file=sys.stderr)
    bad_tests = counts is not None and any(counts.get(k, 0) for k in ("failed", "error", "collection errors"))
    return 1 if failures or bad_tests else 0


if __name__ == "__main__":
    sys.exit(main())
