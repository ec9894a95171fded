"""CPU time per instance of TravelingSalesman's two exact methods, and of the Portfolio oracle, against PyEPO's Gurobi.

TSP: PyEPO's data (``pyepo.data.tsp.genData``, p = 10, deg 4, noise 0.5), θ = -cost; for each city count the
dynamic program (one batched call) and the integer program (HiGHS with subtour cuts, serial) on the same batch,
interleaved over repeats. Portfolio: PyEPO's data (50 assets, p = 5, deg 4, noise_level 1), the cvxpy/Clarabel
oracle; and PyEPO's persistent Gurobi models (``tspDFJModel``, ``portfolioModel``) when pyepo and gurobipy import.
Times are process CPU time (``time.process_time``), one torch thread; medians over repeats.

Usage:  python benchmarks/bench_tsp_portfolio.py [--instances 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from colayers.oracles import Portfolio, TravelingSalesman


def cpu_ms_per_instance(fn, count: int) -> float:
    start = time.process_time()
    fn()
    return 1000 * (time.process_time() - start) / count


def tours(nodes: int, method: str, theta: torch.Tensor) -> None:
    TravelingSalesman(nodes, method=method)(theta)


def gurobi_loop(model, costs) -> None:
    for c in costs:
        model.setObj(c)
        model.solve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from pyepo.data import portfolio, tsp

    try:
        from pyepo.model.grb import portfolioModel, tspDFJModel
    except ImportError:  # no gurobipy
        portfolioModel = tspDFJModel = None
    n = args.instances
    print("| cities | dynamic program ms/inst | integer program ms/inst | Gurobi (PyEPO DFJ) ms/inst |")
    print("|---:|---:|---:|---:|")
    for nodes in (8, 10, 12, 13, 14, 20):
        _, c = tsp.genData(n, 10, nodes, deg=4, noise_width=0.5, seed=0)
        theta = -torch.as_tensor(c, dtype=torch.float64)
        runs: dict[str, list[float]] = {"dp": [], "ip": [], "grb": []}
        for _ in range(args.repeats):
            if nodes <= 14:
                runs["dp"].append(cpu_ms_per_instance(functools.partial(tours, nodes, "dynamic program", theta), n))
            runs["ip"].append(cpu_ms_per_instance(functools.partial(tours, nodes, "integer program", theta), n))
            if tspDFJModel is not None:
                runs["grb"].append(cpu_ms_per_instance(functools.partial(gurobi_loop, tspDFJModel(nodes), c), n))
        cells = [f"{statistics.median(v):.2f}" if v else "—" for v in runs.values()]
        print(f"| {nodes} | " + " | ".join(cells) + " |")
    cov, _, r = portfolio.genData(n, 5, 50, deg=4, noise_level=1, seed=0)
    oracle = Portfolio(cov)
    theta = torch.as_tensor(r, dtype=torch.float64)
    ours = [cpu_ms_per_instance(lambda: oracle(theta), n) for _ in range(args.repeats)]
    line = f"| portfolio, 50 assets | Portfolio (Clarabel) {statistics.median(ours):.2f} ms/inst"
    if portfolioModel is not None:
        model = portfolioModel(50, cov)
        grb = [cpu_ms_per_instance(lambda: gurobi_loop(model, r), n) for _ in range(args.repeats)]
        line += f" | Gurobi (PyEPO) {statistics.median(grb):.2f} ms/inst"
    print(line + " |")


if __name__ == "__main__":
    main()
