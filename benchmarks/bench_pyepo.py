"""colayers against PyEPO on PyEPO's benchmarks: 5x5 shortest path or knapsack, linear model, Adam, batch 32.

Both libraries train the same nn.Linear(5, 40) (same initial weights) on the same data (PyEPO's generator:
colayers.studies.shortest_path_problem equals pyepo.data.shortestpath.genData) in the same batch order,
epoch by epoch side by side (colayers epoch, PyEPO epoch, ... so both see the same machine load). Methods:

  spo+        colayers SPOPlusLoss(oracle)                       PyEPO SPOPlus
  blackbox    colayers Blackbox(lambda_=10), loss <c, y>          PyEPO blackboxOpt(lambd=10), loss <c, w>
  fy          FenchelYoungLoss(PerturbedAdditive(Normal, eps=1, S=10))   PyEPO perturbedFenchelYoung(sigma=1, S=10)
  imle        IMLE(SumOfGamma(k=5), eps=1, lambda_=10, S=10, mean), loss <c, y>   PyEPO implicitMLE (same), loss <c, w>
  pert-mse    PerturbedAdditive(Normal, eps=1, S=10), MSE to y*  PyEPO perturbedOpt(sigma=1, S=10), MSE to w*
  pg          PerturbationGradientLoss(sigma=0.1), backward      PyEPO perturbationGradient(sigma=0.1, two_sides=False)
  cave        ConeAlignedCosineLoss(truncated, max_iter=3)       PyEPO coneAlignedCosine (defaults: max_iter=3, CaVE+)
  cave-200    ConeAlignedCosineLoss (exact projection)           PyEPO coneAlignedCosine(max_iter=200), converged
  ltr-list    ListwiseRankingLoss(SolutionPool(train y*, 1.0))   PyEPO listwiseLearningToRank(solve_ratio=1, dataset)
  ltr-pair    PairwiseRankingLoss (same pool)                    PyEPO pairwiseLearningToRank (same)
  ltr-point   PointwiseRankingLoss (same pool)                   PyEPO pointwiseLearningToRank (same)

Every new method runs at PyEPO's default hyper-parameters on both sides (colayers' defaults are PyEPO's, except
CaVE: PyEPO's default max_iter=3 truncates Clarabel's interior-point projection on purpose, CaVE+, which is
colayers' projection="truncated"; cave-200 is PyEPO's projection run to convergence against colayers' default
projection="exact"). The ranking
pools both start from the training set's optimal paths (PyEPO's ``optDataset``) and grow by the solution at every
predicted cost. CaVE needs the constraints binding at each target path: colayers reads them from
GridDAGShortestPath.linear_constraints; PyEPO's own builder (``optDatasetConstrs``) is Gurobi-only, so here they
are read, with PyEPO's rules, from its OR-Tools model (pyepo.model.ort): the same rows
(tests/peers/test_pyepo_cave.py checks it). CaVE calls no solver in training; it needs a linear program, so it
has no EnumeratedOracle column.

colayers runs with two oracles: GridDAGShortestPath (its default backend: the compiled dynamic program on the
CPU) and EnumeratedOracle over the 70 paths (one matrix product), with colayers' default checks on (the library's
default; ``--no-validate`` turns them off). PyEPO runs with its Gurobi model (pyepo.model.grb, gurobipy's size-limited
licence suffices for 40 variables) when gurobipy imports, else with its Pyomo model on HiGHS
(pyepo.model.omo, solver "appsi_highs"); ``--backend ort`` runs it on OR-Tools (pyepo.model.ort), much
faster per solve than Pyomo. "floor" is the same loop (model, Adam, batches) with an MSE loss
to the true costs and no oracle, re-measured beside each method. Printed: median process CPU seconds per epoch
(``time.process_time()``; the runs alternate epoch by epoch, so ratios are taken under the same load), the
floor's, the ratio to the floor, PyEPO / colayers, and the normalized regret on 1000 test instances after
training.

``--problem knapsack``: PyEPO's 0/1 knapsack benchmark (its experiments' settings: 2 resource constraints, 32
items, capacity 20 each, 5 features, ``deg``/``noise`` as given), ``nn.Linear(5, 32)``. Data: colayers'
knapsack_problem, checked here equal to ``pyepo.data.knapsack.genData(n + 1000, 5, 32, 2, deg, noise, seed)``
(weights, features, values). PyEPO side: ``knapsackModel(weights, [20, 20])`` of the chosen backend. colayers
side: the problem's oracle, PackingOracle (every one of the feasible packings, 9,366 for seed 0, scored in one
matrix product; exact). Sign conventions: PyEPO's knapsack MAXIMIZES the value <c, y> (modelSense = MAXIMIZE;
its losses read the sense from the model, and its regret is obj(y*(c)) - obj(y*(c_pred)) >= 0); colayers'
oracles maximize <theta, y>, so theta = +c here (theta = -c for the shortest path, whose costs are minimized):
``sign`` below is +1 or -1, and the reported regret is the true objective lost, >= 0, on both problems.
Methods on the knapsack: spo+, pg, ltr-list, ltr-pair, ltr-point (the default). CaVE is refused: its cone is
spanned by the constraints binding at the target solution of a linear program (colayers' ConeAlignedCosineLoss
needs an oracle with ``linear_constraints``), while the knapsack is an integer program whose 0/1 optimum is in
general not the optimum of its LP relaxation (fractional), so no LP cone is at hand (PyEPO's CaVE on the
knapsack takes the binding constraints of the integer program, through its Gurobi-only optDatasetConstrs).
The values are integers, so many instances have several optimal packings (29-34 % of the training set for seeds
0-2): colayers' training targets (PackingOracle's) and PyEPO's optDataset targets (OR-Tools') then differ at
the same value; SPO+ gets colayers' targets on both sides, but the ranking pools start from each library's own.

Usage:  python benchmarks/bench_pyepo.py [--problem shortest_path|knapsack] [--n 1000] [--epochs 3] [--seed 0]
        [--deg 4] [--noise 0.5] [--methods spo+,blackbox,fy,imle,pert-mse,pg,cave,ltr-list,ltr-pair,ltr-point]
        [--backend auto|grb|omo|ort]      (PyEPO optional: without it, only the colayers columns are printed)
        [--oracles grid,enumerated] [--no-validate]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from colayers import (
    IMLE,
    Blackbox,
    ConeAlignedCosineLoss,
    EnumeratedOracle,
    FenchelYoungLoss,
    GridDAGShortestPath,
    ListwiseRankingLoss,
    PairwiseRankingLoss,
    PerturbationGradientLoss,
    PerturbedAdditive,
    PointwiseRankingLoss,
    SolutionPool,
    SPOPlusLoss,
    grid_dag_paths,
)
from colayers.perturb import Normal, SumOfGamma
from colayers.studies.problems import knapsack_problem, shortest_path_problem

DEFAULT = {
    "shortest_path": "spo+,blackbox,fy,imle,pert-mse,pg,cave,ltr-list,ltr-pair,ltr-point",
    "knapsack": "spo+,pg,ltr-list,ltr-pair,ltr-point",
}
RANKING = {
    "ltr-list": ("listwiseLearningToRank", ListwiseRankingLoss),
    "ltr-pair": ("pairwiseLearningToRank", PairwiseRankingLoss),
    "ltr-point": ("pointwiseLearningToRank", PointwiseRankingLoss),
}


def colayers_step(method: str, oracle, w_train, sign: float = -1.0, validate: bool | None = None):
    """A function (cost_pred, c, w) -> loss for colayers, theta = sign * cost (None: the oracle cannot run it).

    sign = -1 for the shortest path (PyEPO's costs are minimized, colayers' oracles maximize), +1 for the knapsack
    (PyEPO's values are maximized, like colayers' theta). validate: None is colayers' default (checks on);
    False (``--no-validate``) skips the per-call checks that read tensor values.
    """
    if method == "spo+":
        loss = SPOPlusLoss(oracle, validate_args=validate)
        return lambda cp, c, w: loss(sign * cp, sign * c, w)
    if method == "blackbox":
        layer = Blackbox(oracle, lambda_=10.0, validate_args=validate)
        return lambda cp, c, w: -(layer(sign * cp) * sign * c).sum(1).mean()  # the true objective, minimized
    if method == "fy":
        layer = PerturbedAdditive(oracle, epsilon=1.0, noise=Normal(), num_samples=10, seed=135, validate_args=validate)
        loss = FenchelYoungLoss(layer, validate_args=validate)
        return lambda cp, c, w: loss(sign * cp, w)
    if method == "imle":
        layer = IMLE(
            oracle,
            noise=SumOfGamma(k=5),
            epsilon=1.0,
            lambda_=10.0,
            num_samples=10,
            output="mean",
            seed=135,
            validate_args=validate,
        )
        return lambda cp, c, w: -(layer(sign * cp) * sign * c).sum(1).mean()
    if method == "pert-mse":
        layer = PerturbedAdditive(oracle, epsilon=1.0, noise=Normal(), num_samples=10, seed=135, validate_args=validate)
        return lambda cp, c, w: ((layer(sign * cp) - w) ** 2).mean()
    if method == "pg":
        loss = PerturbationGradientLoss(oracle, sigma=0.1, two_sided=False, validate_args=validate)
        return lambda cp, c, w: loss(sign * cp, sign * c)
    if method in ("cave", "cave-200"):  # cave: PyEPO's default CaVE+; cave-200: the exact projection
        if getattr(oracle, "linear_constraints", None) is None:
            return None  # CaVE needs the constraints of a linear program
        projection = "exact" if method == "cave-200" else "truncated"
        loss = ConeAlignedCosineLoss(oracle, projection=projection, max_iter=3, validate_args=validate)
        return lambda cp, c, w: loss(sign * cp, w)
    if method in RANKING:
        pool = SolutionPool(oracle, w_train, solve_ratio=1.0, validate_args=validate)
        loss = RANKING[method][1](pool, validate_args=validate)
        return lambda cp, c, w: loss(sign * cp, sign * c, w)
    raise ValueError(method)


def pyepo_tight_rows(sol, tol: float = 1e-5):
    """PyEPO's binding normals at a path (its optDatasetConstrs rules), read from its OR-Tools 5x5 model."""
    import numpy as np
    from pyepo.model.ort import shortestPathModel

    model = shortestPathModel((5, 5))
    xs = list(model.x.values())
    rows = []
    for con in model._model.constraints():
        a = np.array([con.GetCoefficient(v) for v in xs])
        lhs = a @ sol
        if con.lb() == con.ub():
            rows += [a, -a] if abs(lhs - con.ub()) < tol else []
            continue
        if np.isfinite(con.ub()) and abs(lhs - con.ub()) < tol:
            rows.append(a)
        if np.isfinite(con.lb()) and abs(lhs - con.lb()) < tol:
            rows.append(-a)
    eye = np.eye(len(xs))
    return np.array(rows + [-eye[k] for k in np.where(sol <= tol)[0]] + [eye[k] for k in np.where(sol >= 1 - tol)[0]])


def pyepo_cave_lookup():
    """A function w -> PyEPO's padded tight constraints (batch, M, 40), precomputed for the 70 paths."""
    paths = grid_dag_paths(5, 5).float()
    blocks = [pyepo_tight_rows(p.double().numpy()) for p in paths]
    tight = torch.zeros(len(blocks), max(b.shape[0] for b in blocks), paths.shape[1])
    for i, b in enumerate(blocks):
        tight[i, : b.shape[0]] = torch.as_tensor(b, dtype=torch.float32)
    return lambda w: tight[(w @ paths.T).argmax(1)]  # a path shares all its edges with itself only


def pyepo_step(method: str, optmodel, data, sign: float = -1.0):
    """A function (cost_pred, c, w) -> loss for PyEPO (its losses read the model's sense; sign only for <c, w>)."""
    import pyepo.func as F

    if method == "spo+":
        loss = F.SPOPlus(optmodel, processes=1)
        return lambda cp, c, w: loss(cp, c, w, (c * w).sum(1, keepdim=True))
    if method == "blackbox":
        layer = F.blackboxOpt(optmodel, lambd=10, processes=1)
        return lambda cp, c, w: -(layer(cp) * sign * c).sum(1).mean()
    if method == "fy":
        loss = F.perturbedFenchelYoung(optmodel, n_samples=10, sigma=1.0, processes=1)
        return lambda cp, c, w: loss(cp, w)
    if method == "imle":
        layer = F.implicitMLE(optmodel, n_samples=10, sigma=1.0, lambd=10, processes=1)
        return lambda cp, c, w: -(layer(cp) * sign * c).sum(1).mean()
    if method == "pert-mse":
        layer = F.perturbedOpt(optmodel, n_samples=10, sigma=1.0, processes=1)
        return lambda cp, c, w: ((layer(cp) - w) ** 2).mean()
    if method == "pg":
        loss = F.perturbationGradient(optmodel, sigma=0.1, two_sides=False, processes=1)
        return lambda cp, c, w: loss(cp, c)
    if method in ("cave", "cave-200"):  # cave-200: PyEPO's projection converged (max_iter=200), colayers' exact one
        max_iter = 200 if method == "cave-200" else 3
        loss, tight = F.coneAlignedCosine(optmodel, max_iter=max_iter, processes=1), pyepo_cave_lookup()
        return lambda cp, c, w: loss(cp, tight(w))
    if method in RANKING:
        loss = getattr(F, RANKING[method][0])(optmodel, processes=1, solve_ratio=1.0, dataset=data())
        return lambda cp, c, w: loss(cp, c)
    raise ValueError(method)


def pyepo_model(backend: str, problem: str = "shortest_path", extras: dict | None = None):
    """PyEPO's model of the problem and the backend's name, or (None, reason).

    Shortest path: ``shortestPathModel((5, 5))``; knapsack: ``knapsackModel(weights, capacity)`` (maximizes).
    """
    try:
        import pyepo  # noqa: F401
    except ImportError:
        return None, "pyepo is not installed (pip install colayers[pyepo])"
    name = "shortestPathModel" if problem == "shortest_path" else "knapsackModel"
    args = ((5, 5),) if problem == "shortest_path" else (extras["weights"], extras["capacity"])
    if backend == "ort":
        import pyepo.model.ort as ort

        return getattr(ort, name)(*args), "PyEPO + OR-Tools (pyepo.model.ort)"
    if backend in ("auto", "grb"):
        try:
            import pyepo.model.grb as grb

            return getattr(grb, name)(*args), "PyEPO + Gurobi (pyepo.model.grb)"
        except Exception as exc:  # noqa: BLE001 - no gurobipy or no licence: fall back
            if backend == "grb":
                return None, f"Gurobi backend unavailable: {exc}"
    import pyepo.model.omo as omo

    return getattr(omo, name)(*args, solver="appsi_highs"), "PyEPO + Pyomo/HiGHS (pyepo.model.omo)"


def epoch(model, optimizer, step, x, c, w, order, batch: int) -> float:
    """One training epoch; returns its process CPU time (wall time is meaningless on a loaded machine)."""
    start = time.process_time()
    for i in range(0, x.shape[0], batch):
        idx = order[i : i + batch]
        cp = model(x[idx])
        loss = step(cp, c[idx], w[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.process_time() - start


def normalized_regret(model, oracle, x, c, sign: float = -1.0) -> float:
    """PyEPO's normalized regret: sum_i (true objective lost by y*(pred_i)) / sum_i |<c_i, y*(c_i)>| (sense by sign)."""
    with torch.no_grad():
        y_pred = oracle(sign * model(x))
        y_opt = oracle(sign * c)
    theta = sign * c
    return float(((theta * y_opt).sum(1) - (theta * y_pred).sum(1)).sum() / (c * y_opt).sum(1).abs().sum())


def shortest_path_setup(args) -> dict:
    """PyEPO's 5x5 shortest path: costs minimized, theta = -cost; two colayers oracles."""
    prob = shortest_path_problem(seed=args.seed, n=args.n, n_test=1000, deg=args.deg, noise=args.noise)
    validate = False if args.no_validate else None
    dag = GridDAGShortestPath(5, 5, validate_args=validate)
    return dict(
        prob=prob,
        sign=-1.0,
        dims=(5, 40),
        oracles={
            "colayers (grid DP)": dag,
            "colayers (enumerated)": EnumeratedOracle(grid_dag_paths(5, 5), validate_args=validate),
        },
        regret_oracle=dag,
        extras=None,
        title="5x5 shortest path",
    )


def knapsack_setup(args) -> dict:
    """PyEPO's knapsack (2 constraints, 32 items, capacity 20): values maximized, theta = value; checked equal to
    pyepo.data.knapsack.genData when PyEPO imports."""
    items, dim, cap = 32, 2, 20.0
    prob = knapsack_problem(
        seed=args.seed, n=args.n, n_test=1000, n_val=0, num_items=items, dim=dim, capacity=cap, deg=args.deg,
        noise=args.noise,
    )  # fmt: skip
    weights = prob.extras["weights"].double().numpy()
    try:
        from pyepo.data.knapsack import genData
    except ImportError:
        pass
    else:
        import numpy as np

        w_pyepo, x_pyepo, c_pyepo = genData(args.n + 1000, 5, items, dim, args.deg, args.noise, args.seed)
        x_all = torch.cat([prob.x_train, prob.x_test]).double().numpy()
        c_all = torch.cat([prob.theta_train, prob.theta_test]).double().numpy()
        same = (
            np.allclose(w_pyepo, weights) and np.allclose(x_pyepo, x_all, atol=1e-6) and np.array_equal(c_pyepo, c_all)
        )
        if not same:
            raise SystemExit("knapsack_problem's data differ from pyepo.data.knapsack.genData's")
    return dict(
        prob=prob,
        sign=1.0,
        dims=(5, items),
        oracles={"colayers (PackingOracle)": prob.oracle},
        regret_oracle=prob.oracle,
        extras=dict(weights=weights, capacity=[cap] * dim),
        title=f"knapsack ({dim} constraints, {items} items, capacity {cap:g})",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="shortest_path", choices=["shortest_path", "knapsack"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument(
        "--methods", default=None, help="default: " + "; ".join(f"{k}: {v}" for k, v in DEFAULT.items())
    )
    parser.add_argument("--backend", default="auto", choices=["auto", "grb", "omo", "ort"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the initial weights, the batch order")
    parser.add_argument("--deg", type=int, default=4)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument(
        "--no-validate", action="store_true", help="colayers without its per-call checks (default: checks on)"
    )
    parser.add_argument(
        "--oracles", default=None, help="comma-separated names of the colayers oracles to run (default: all)"
    )
    args = parser.parse_args()
    methods = (args.methods or DEFAULT[args.problem]).split(",")
    if args.problem == "knapsack" and any(m.startswith("cave") for m in methods):
        parser.error(
            "cave needs a linear program (the constraints binding at the target); the knapsack is an integer "
            "program: run it on --problem shortest_path"
        )
    torch.set_num_threads(1)
    setup = (shortest_path_setup if args.problem == "shortest_path" else knapsack_setup)(args)
    train(args, methods, setup)


def train(args, methods, setup) -> None:
    """Train every method side by side, epoch by epoch, and print the table."""
    prob, sign, oracles = setup["prob"], setup["sign"], setup["oracles"]
    if args.oracles:
        oracles = {name: o for name, o in oracles.items() if any(k in name for k in args.oracles.split(","))}
    validate = False if args.no_validate else None
    x, c = prob.x_train.float(), (sign * prob.theta_train).float()
    w = prob.y_train.float()
    x_test, c_test = prob.x_test.float(), (sign * prob.theta_test).float()
    optmodel, backend = pyepo_model(args.backend, args.problem, setup["extras"])
    print(
        f"{setup['title']}, n={args.n}, deg {args.deg}, noise {args.noise}, seed {args.seed}, batch {args.batch}, "
        f"Adam lr={args.lr}, {args.epochs} epochs, one thread, process CPU time; colayers checks "
        f"{'off' if args.no_validate else 'on (default)'}; PyEPO side: {backend}"
    )
    torch.manual_seed(args.seed)
    init = nn.Linear(*setup["dims"]).state_dict()
    orders = [
        torch.randperm(args.n, generator=torch.Generator().manual_seed(1000 * args.seed + e))
        for e in range(args.epochs)
    ]
    dataset = []

    def pyepo_data():  # PyEPO's training set (its solver finds the optimal solutions), built once, on first use
        if not dataset:
            from pyepo.data.dataset import optDataset

            dataset.append(optDataset(optmodel, x.double().numpy(), c.double().numpy()))
        return dataset[0]

    def run(make_step):
        model = nn.Linear(*setup["dims"])
        model.load_state_dict(init)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        return model, optimizer, make_step()

    def mse():
        return lambda cp, c_, w_: ((cp - c_) ** 2).mean()

    floor_model = run(mse)
    epoch(*run(mse), x, c, w, orders[0], args.batch)  # warm-up
    floor = statistics.median([epoch(*floor_model, x, c, w, o, args.batch) for o in orders])
    print(f"floor (model + Adam + batches, MSE to costs): {floor:.4f} s/epoch (re-measured beside each method)")
    print(
        f"{'method':9s} {'library':36s} {'s/epoch':>9s} {'floor':>9s} {'vs floor':>9s} {'PyEPO/this':>10s} "
        f"{'regret':>8s}"
    )
    for method in methods:
        runs = {"floor": run(mse)}  # re-measured alongside
        for name, o in oracles.items():
            if colayers_step(method, o, w, sign, validate) is not None:
                runs[name] = run(lambda o=o, m=method: colayers_step(m, o, w, sign, validate))
        if optmodel is not None:
            runs[backend] = run(lambda m=method: pyepo_step(m, optmodel, pyepo_data, sign))
        times = {name: [] for name in runs}
        for o in orders:  # side by side, epoch by epoch
            for name, (model, optimizer, step) in runs.items():
                times[name].append(epoch(model, optimizer, step, x, c, w, o, args.batch))
        ref = statistics.median(times[backend]) if optmodel is not None else None
        floor = statistics.median(times.pop("floor"))
        runs.pop("floor")
        for name, (model, _, _) in runs.items():
            med = statistics.median(times[name])
            ratio = f"{ref / med:10.1f}" if ref is not None else f"{'-':>10s}"
            regret = normalized_regret(model, setup["regret_oracle"], x_test, c_test, sign)
            print(f"{method:9s} {name:36s} {med:9.4f} {floor:9.4f} {med / floor:9.2f} {ratio} {regret:8.4f}")


if __name__ == "__main__":
    main()
