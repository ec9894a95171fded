"""Time per solve of LinearProgram's persistent HiGHS model against a fresh scipy.optimize.milp per instance.

Problems:
  * the 5x5 shortest-path LP of PyEPO (flow conservation on the 5x5 grid DAG: 40 edge variables in [0, 1],
    25 equality rows), costs drawn as in PyEPO (uniform), theta = -cost;
  * a 2-D 0/1 knapsack MILP (32 items, two weight rows, integer weights in [3, 8], capacities 25 % of the
    total weight), values uniform.

Rows (median time per instance over interleaved repetitions, one thread):
  scipy.milp        a new HiGHS model per instance through scipy (LinearProgram's former path);
  HighsProgram      the persistent model: only the objective changes, each solve from the same initial basis
                    (the solver alone; no warm start from the previous instance, so ties do not depend on history);
  LinearProgram     the oracle on a batch: torch -> numpy, the solver, per-instance checks, back to torch
                    (validate_args=False; and =True, which also certifies optimality by duality).
  Gurobi            PyEPO's own persistent Gurobi model (setObj + solve), when pyepo and gurobipy import.
For the shortest-path LP, the tensor-native GridDAGShortestPath and EnumeratedOracle(grid_dag_paths(5, 5))
on the same batch, per instance, for scale.

Usage:  python benchmarks/bench_highs.py [--instances 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

from colayers.oracles import EnumeratedOracle, GridDAGShortestPath, LinearProgram, grid_dag_paths
from colayers.oracles.highs import HighsProgram


def shortest_path_lp(h: int = 5, w: int = 5):
    edges = GridDAGShortestPath(h, w).edges
    a_eq = np.zeros((h * w, len(edges)))
    for k, (u, v) in enumerate(edges):
        a_eq[u, k] -= 1.0
        a_eq[v, k] += 1.0
    b_eq = np.zeros(h * w)
    b_eq[0], b_eq[-1] = -1.0, 1.0
    return {"A_eq": a_eq, "b_eq": b_eq, "bounds": (0.0, 1.0)}, len(edges)


def knapsack_2d(n: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.integers(3, 9, size=(2, n)).astype(float)
    return {"A_ub": weights, "b_ub": 0.25 * weights.sum(axis=1), "bounds": (0.0, 1.0), "integrality": True}, n


def scipy_solver(spec, n):
    cons = []
    if "A_eq" in spec:
        cons.append(LinearConstraint(spec["A_eq"], spec["b_eq"], spec["b_eq"]))
    if "A_ub" in spec:
        cons.append(LinearConstraint(spec["A_ub"], -np.inf, spec["b_ub"]))
    integ = np.ones(n) if spec.get("integrality") else None
    lo, hi = spec["bounds"]

    def solve(theta):
        return milp(-theta, constraints=cons, integrality=integ, bounds=Bounds(lo, hi)).x

    return solve


def gurobi_rows(spec, n):
    """PyEPO's own Gurobi model for the problem when pyepo and gurobipy import (size-limited licence suffices)."""
    try:
        from pyepo.model.grb import knapsackModel, shortestPathModel

        if "A_eq" in spec:
            model = shortestPathModel((5, 5))  # minimizes cost = -theta
            return lambda b: [(model.setObj(-t), model.solve()) for t in b.numpy()]
        model = knapsackModel(spec["A_ub"], spec["b_ub"])  # maximizes theta
        return lambda b: [(model.setObj(t), model.solve()) for t in b.numpy()]
    except Exception:  # noqa: BLE001 - no pyepo, no gurobipy or no licence: the row is left out
        return None


def per_instance(fn, batch) -> float:
    start = time.perf_counter()
    fn(batch)
    return (time.perf_counter() - start) / batch.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    for label, (spec, n) in (("5x5 shortest-path LP", shortest_path_lp()), ("2-D knapsack MILP", knapsack_2d())):
        if "A_eq" in spec:
            theta = -rng.uniform(0.0, 1.0, size=(args.instances, n))
        else:
            theta = rng.uniform(0.0, 1.0, size=(args.instances, n))
        batch = torch.from_numpy(theta)
        scipy_solve = scipy_solver(spec, n)
        lp_fast = LinearProgram(n, **spec, validate_args=False)
        lp_checked = LinearProgram(n, **spec, validate_args=True)
        program: HighsProgram = lp_fast.solver
        y_ref = np.stack([scipy_solve(t) for t in theta[:50]])
        y_new = lp_fast(batch[:50]).numpy()
        agree = np.isclose((theta[:50] * y_ref).sum(1), (theta[:50] * y_new).sum(1), atol=1e-9).all()
        rows = {
            "scipy.milp (new model per instance)": lambda b: [scipy_solve(t) for t in b.numpy()],
            "HighsProgram (persistent)": lambda b: [program(t) for t in b.numpy()],
            "LinearProgram oracle, validate_args=False": lp_fast,
            "LinearProgram oracle, validate_args=True": lp_checked,
        }
        grb = gurobi_rows(spec, n)
        if grb is not None:
            rows["Gurobi: PyEPO's persistent model (setObj+solve)"] = grb
        if "A_eq" in spec:
            dag, enum = GridDAGShortestPath(5, 5, validate_args=False), EnumeratedOracle(grid_dag_paths(5, 5))
            enum.validate_args = False
            rows["GridDAGShortestPath (tensor DP, batched)"] = dag
            rows["EnumeratedOracle (70 paths, batched)"] = enum
        times: dict[str, list[float]] = {name: [] for name in rows}
        for name, fn in rows.items():  # warm-up (the persistent model is built on first use)
            fn(batch[:20])
        for _ in range(args.repeats):  # interleaved: every row sees the same machine load
            for name, fn in rows.items():
                times[name].append(per_instance(fn, batch))
        print(f"\n{label}: {n} variables, {args.instances} instances x {args.repeats} repeats; "
              f"objectives agree with scipy: {bool(agree)}")
        base = statistics.median(times["scipy.milp (new model per instance)"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:45s} {med * 1e6:9.1f} us/solve   {base / med:7.1f}x vs scipy.milp")


if __name__ == "__main__":
    main()
