"""Reports of a study: a summary table (terminal, Markdown, CSV), paired comparisons, matplotlib figures.

The table has one row per (problem, method): the mean ± standard deviation over seeds of the *reported
epoch*'s test metrics (normalized regret, exact match in %, Hamming distance, cost ratio), the training
time, the total trial time and the training oracle calls/instances. The reported epoch is the last one, or,
for trials run with ``select = "best"``, the epoch of lowest validation normalized regret (the first on
ties): model selection on the validation split, numbers on the test split. Standard deviations use
``ddof = 1``; a row of a single seed shows its mean alone (no "± 0") and the table says ``n = 1``.

**Paired comparisons** (:func:`paired_comparisons`): with two seeds or more, every method is compared with a
reference method (the first of the problem's methods, or ``reference=``) on the seeds both ran — the same
data, since a seed fixes the data: the mean difference of the test normalized regret (method − reference),
its 95 % confidence interval (Student's t over the per-seed differences) and the two-sided p-value of the
paired t-test (``scipy.stats.ttest_rel``); ``*`` marks p < 0.05. The terminal report prints them under the
table; they are written to ``paired.csv``.

Figures, per problem: validation normalized regret (test when a trial has no validation split) against
epoch and against training time on a log scale (mean over seeds, shaded ± std), and ``final_<problem>.png``:
the reported normalized regret and the problem's own metric (:func:`problem_metric`: rank distance for
rankings, cost ratio for knapsack, exact match otherwise) as mean ± std per method on an axis fitted to the
values (not from 0), each labelled with its excess over the best method in %, and, with two seeds or more,
the paired differences to the reference with their 95 % intervals (``regret_epoch_<problem>.png``,
``regret_time_<problem>.png``, ``final_<problem>.png``).

:func:`build_report` rebuilds everything from ``results.jsonl`` alone (the ``colayers report DIR``
command). If a trial (problem, method label, seed) was run under several settings, the one written last
is reported.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from .results import RESULTS_FILE, complete_trials, read_results

__all__ = [
    "summarize",
    "format_table",
    "write_table",
    "plot_results",
    "build_report",
    "final_records",
    "selected_record",
    "paired_comparisons",
    "format_paired",
    "problem_metric",
    "PROBLEM_METRICS",
]

COLUMNS = [
    ("normalized_regret", "regret", 4, 1.0),
    ("exact_match", "exact %", 1, 100.0),
    ("hamming", "hamming", 4, 1.0),
    ("rank_distance", "rank dist", 4, 1.0),
    ("cost_ratio", "cost ratio", 4, 1.0),
    ("train_time_s", "train s", 1, 1.0),
    ("wall_time_s", "total s", 1, 1.0),
    ("oracle_calls", "oracle calls", 0, 1.0),
    ("oracle_instances", "instances", 0, 1.0),
]


#: The metric a problem's final figure shows beside the normalized regret: its own measure of a prediction
#: (a problem not listed: the rank distance when its records carry one, else exact match).
PROBLEM_METRICS = {"ranking": "rank_distance", "knapsack": "cost_ratio", "shortest_path": "exact_match",
                   "warcraft": "exact_match", "topk": "hamming", "matching": "exact_match",
                   "tsp": "cost_ratio", "portfolio": "cost_ratio"}  # (a continuous allocation is never exact)


def problem_metric(problem: str, records: list[dict[str, Any]] = ()) -> str:
    """The second metric of ``problem``'s final figure (:data:`PROBLEM_METRICS`).

    Example:
        >>> problem_metric("ranking"), problem_metric("knapsack"), problem_metric("mine", [{"rank_distance": 0.2}])
        ('rank_distance', 'cost_ratio', 'rank_distance')
    """
    if problem in PROBLEM_METRICS:
        return PROBLEM_METRICS[problem]
    if any(r.get("rank_distance") is not None for r in records):
        return "rank_distance"
    return "exact_match"


def _trials(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Complete trials, one per (problem, method, seed): the last written wins among settings."""
    complete = complete_trials(records)
    order = {}
    for i, rec in enumerate(records):
        order[(rec.get("problem"), rec.get("method"), rec.get("seed"), rec.get("settings"))] = i
    best: dict[tuple, tuple[int, list]] = {}
    for key, recs in complete.items():
        short = key[:3]
        if short not in best or order[key] > best[short][0]:
            best[short] = (order[key], recs)
    return {k: v[1] for k, v in best.items()}


def selected_record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The reported record of one trial's rows (epoch order): the last, or the best on validation when the
    trial ran with ``select = "best"`` (lowest ``val_normalized_regret``, the first on ties)."""
    if rows[-1].get("select") == "best" and all("val_normalized_regret" in r for r in rows):
        best = min(range(len(rows)), key=lambda i: (float(rows[i]["val_normalized_regret"]), i))
        return {**rows[best], "train_time_s": rows[-1]["train_time_s"], "wall_time_s": rows[-1]["wall_time_s"],
                "oracle_calls": rows[-1]["oracle_calls"], "oracle_instances": rows[-1]["oracle_instances"]}
    return rows[-1]


def final_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reported record of every complete trial (:func:`selected_record`; costs are the whole trial's)."""
    return [selected_record(recs) for recs in _trials(records).values()]


def paired_comparisons(
    records: list[dict[str, Any]], reference: str | None = None, metric: str = "normalized_regret"
) -> list[dict[str, Any]]:
    """Each method against a reference on the seeds both ran: mean difference, 95 % CI, paired t-test p-value.

    Args:
        records: the study's records.
        reference: the reference method label (default: each problem's first method).
        metric: the compared metric of the reported records.

    Returns:
        one dict per (problem, method other than the reference) with ``seeds`` (number of pairs), ``diff``
        (mean of method − reference), ``ci`` (low, high) and ``p`` (NaN with fewer than two pairs, or when
        every difference is equal).

    Example:
        >>> recs = [dict(problem="p", method=m, seed=s, settings="h", epoch=1, epochs=1, normalized_regret=r)
        ...         for m, rs in (("a", (0.10, 0.20, 0.30)), ("b", (0.12, 0.25, 0.33))) for s, r in enumerate(rs)]
        >>> row = paired_comparisons(recs)[0]
        >>> row["method"], row["reference"], row["seeds"], round(row["diff"], 4)
        ('b', 'a', 3, 0.0333)
    """
    from scipy import stats

    finals = final_records(records)
    by: dict[str, dict[str, dict[int, float]]] = {}
    for rec in finals:
        if rec.get(metric) is None:
            continue
        by.setdefault(rec["problem"], {}).setdefault(rec["method"], {})[rec["seed"]] = float(rec[metric])
    out = []
    for problem, methods in by.items():
        ref = reference if reference is not None else next(iter(methods))
        if ref not in methods:
            continue
        for method, vals in methods.items():
            if method == ref:
                continue
            seeds = sorted(set(vals) & set(methods[ref]))
            d = [vals[s] - methods[ref][s] for s in seeds]
            n = len(d)
            mean = sum(d) / n if n else float("nan")
            lo = hi = p = float("nan")
            if n >= 2:
                sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
                half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
                lo, hi = mean - half, mean + half
                if sd > 0:
                    p = float(stats.ttest_rel([vals[s] for s in seeds], [methods[ref][s] for s in seeds]).pvalue)
            out.append({"problem": problem, "method": method, "reference": ref, "metric": metric, "seeds": n,
                        "diff": mean, "ci": (lo, hi), "p": p})
    return out


def format_paired(rows: list[dict[str, Any]]) -> str:
    """Paired comparisons as text lines (empty when there is nothing to compare)."""
    rows = [r for r in rows if r["seeds"] >= 2]
    if not rows:
        return ""
    lines = [f"paired differences of test {rows[0]['metric'].replace('_', ' ')} (method - reference, "
             "over seeds; 95 % CI, paired t-test):"]
    for r in rows:
        lo, hi = r["ci"]
        p = "n/a" if math.isnan(r["p"]) else f"{r['p']:.3g}" + (" *" if r["p"] < 0.05 else "")
        lines.append(f"  {r['problem']}: {r['method']} - {r['reference']} = {r['diff']:+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}], p = {p} ({r['seeds']} seeds)")
    lines.append("  (* p < 0.05)")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, method) in first-appearance order: ``{metric: (mean, std)}`` plus ``seeds``.

    Example:
        >>> recs = [dict(problem="p", method="m", seed=s, settings="h", epoch=1, epochs=1, normalized_regret=r,
        ...              exact_match=0.5, hamming=0.1, cost_ratio=1.1, train_time_s=1.0, wall_time_s=2.0,
        ...              oracle_calls=10, oracle_instances=100) for s, r in [(0, 0.1), (1, 0.3)]]
        >>> row = summarize(recs)[0]
        >>> row["method"], row["seeds"], [round(v, 4) for v in row["normalized_regret"]]
        ('m', 2, [0.2, 0.1414])
    """
    finals = final_records(records)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in finals:
        groups.setdefault((rec["problem"], rec["method"]), []).append(rec)
    rows = []
    for (problem, method), recs in groups.items():
        row: dict[str, Any] = {"problem": problem, "method": method, "seeds": len(recs)}
        for key, *_ in COLUMNS:
            vals = [float(r[key]) for r in recs if r.get(key) is not None]
            row[key] = _mean_std(vals) if vals else (float("nan"), float("nan"))
        rows.append(row)
    return rows


_OPTIONAL = ("hamming", "rank_distance")  # shown when some row has them (0/1 solutions / rankings)


def _columns(rows: list[dict[str, Any]]) -> list[tuple]:
    return [c for c in COLUMNS if c[0] not in _OPTIONAL or any(not math.isnan(r[c[0]][0]) for r in rows)]


def _cell(mean: float, std: float, digits: int, scale: float, seeds: int = 2) -> str:
    if math.isnan(mean):  # a metric this row's problem does not have (rank distance of 0/1 solutions...)
        return "—"
    if seeds < 2:  # one seed: no spread to show
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


_ONE_SEED = "n = 1: rows of a single seed show the mean alone (no spread); run more seeds for a ± std"


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The summary rows as an aligned text table, or a Markdown table with ``markdown=True``.

    A cell is ``mean ± std`` over the row's seeds, or the mean alone for a single seed (a note under the
    table then says ``n = 1``).

    Example:
        >>> rec = dict(problem="p", method="m", seed=0, settings="h", epoch=1, epochs=1, normalized_regret=0.25)
        >>> print(format_table(summarize([rec])).splitlines()[2].split()[:4])
        ['p', 'm', '1', '0.2500']
    """
    cols = _columns(rows)
    header = ["problem", "method", "seeds"] + [c[1] for c in cols]
    body = [[r["problem"], r["method"], str(r["seeds"])] + [_cell(*r[k], d, s, r["seeds"]) for k, _, d, s in cols]
            for r in rows]
    note = ["", _ONE_SEED] if any(r["seeds"] < 2 for r in rows) else []
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(cols)) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines + note)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]
    return "\n".join(lines + note)


def write_table(rows: list[dict[str, Any]], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` (mean and std columns per metric) into ``out_dir``."""
    out = Path(out_dir)
    md = out / "summary.md"
    md.write_text(format_table(rows, markdown=True) + "\n")
    path = out / "summary.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        cols = _columns(rows)
        w.writerow(["problem", "method", "seeds"] + [f"{k}_{s}" for k, *_ in cols for s in ("mean", "std")])
        for r in rows:
            # one seed: no standard deviation (an empty cell, not 0)
            w.writerow([r["problem"], r["method"], r["seeds"]] + [f"{v:.6g}" if i == 0 or r["seeds"] > 1 else ""
                                                                  for k, *_ in cols for i, v in enumerate(r[k])])
    return md, path


def _curves(trials: dict[tuple, list[dict[str, Any]]], problem: str, x_key: str | None, y_key: str):
    by_method: dict[str, list[list[dict[str, Any]]]] = {}
    for (prob, method, _seed), recs in trials.items():
        if prob == problem:
            by_method.setdefault(method, []).append(recs)
    out = {}
    for method, runs in by_method.items():
        epochs = min(len(r) for r in runs)
        xs, means, stds = [], [], []
        for e in range(epochs):
            ys = [float(r[e][y_key]) for r in runs]
            m, s = _mean_std(ys)
            x = e + 1 if x_key is None else sum(float(r[e][x_key]) for r in runs) / len(runs)
            xs.append(x)
            means.append(m)
            stds.append(s)
        out[method] = (xs, means, stds)
    return out


_LABELS = {"normalized_regret": ("normalized regret", 1.0), "exact_match": ("exact match (%)", 100.0),
           "hamming": ("Hamming distance", 1.0), "rank_distance": ("rank distance", 1.0),
           "cost_ratio": ("cost ratio", 1.0)}
_HIGHER_IS_BETTER = {"exact_match"}


def _curve_figure(plt, trials, problem: str, x_key: str | None, xlabel: str, path: Path) -> None:
    """Regret against epoch (or training time) on a log scale, mean over seeds with a ± std band."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    key = "val_normalized_regret" if all(
        "val_normalized_regret" in r[0] for k, r in trials.items() if k[0] == problem
    ) else "normalized_regret"
    curves = _curves(trials, problem, x_key, key)
    floor = min((v for _x, m, _s in curves.values() for v in m if v > 0), default=1.0) / 2
    for method, (xs, m, s) in curves.items():
        ax.plot(xs, [max(v, floor) for v in m], marker="o", ms=3, label=method)
        ax.fill_between(xs, [max(a - b, floor) for a, b in zip(m, s)], [max(a + b, floor) for a, b in zip(m, s)],
                        alpha=0.15)
    ax.set_yscale("log")  # the curves fall by an order of magnitude; their ends differ by a few per cent
    ax.set_xlabel(xlabel)
    if x_key is None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    split = "validation" if key.startswith("val_") else "test"
    ax.set_ylabel(f"{split} normalized regret (log scale)")
    ax.set_title(f"{problem}: {split} regret vs {xlabel}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _metric_panel(ax, prow: list[dict[str, Any]], key: str) -> None:
    """Mean ± std per method on an axis fitted to the values, each point labelled by its excess over the best."""
    label, scale = _LABELS[key]
    means = [r[key][0] * scale for r in prow]
    stds = [r[key][1] * scale if r["seeds"] > 1 else 0.0 for r in prow]
    xs = range(len(prow))
    ax.errorbar(xs, means, yerr=stds, fmt="o", capsize=4)
    ax.margins(x=0.15, y=0.15)
    finite = [m for m in means if not math.isnan(m)]
    if finite:
        best = (max if key in _HIGHER_IS_BETTER else min)(finite)
        ax.axhline(best, color="grey", ls="--", lw=0.8)
        for x, m in zip(xs, means):
            if not math.isnan(m) and best != 0:
                ax.annotate(f"{100 * (m - best) / abs(best):+.1f} %", (x, m), textcoords="offset points",
                            xytext=(6, 0), fontsize=7, va="center")
    ax.set_xticks(list(xs), [r["method"] for r in prow], rotation=45, ha="right")
    n = sorted({r["seeds"] for r in prow})
    ax.set_ylabel(f"final test {label}")
    ax.set_title(f"{label}: mean ± std" if n[0] > 1 else f"{label} (n = 1 seed: means only)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def _paired_panel(ax, paired: list[dict[str, Any]]) -> None:
    """Paired differences to the reference (mean, 95 % CI); ``*`` where p < 0.05."""
    xs = range(len(paired))
    diffs = [r["diff"] for r in paired]
    lo = [r["diff"] - r["ci"][0] for r in paired]
    hi = [r["ci"][1] - r["diff"] for r in paired]
    ax.errorbar(xs, diffs, yerr=[lo, hi], fmt="o", capsize=4, color="C1")
    ax.axhline(0.0, color="grey", lw=0.8)
    for x, r in zip(xs, paired):
        if r["p"] < 0.05:
            ax.annotate("*", (x, r["ci"][1]), textcoords="offset points", xytext=(0, 2), ha="center")
    ax.set_xticks(list(xs), [r["method"] for r in paired], rotation=45, ha="right")
    ax.set_ylabel(f"{paired[0]['metric'].replace('_', ' ')} − {paired[0]['reference']}")
    ax.set_title(f"paired difference to {paired[0]['reference']} (95 % CI, * p < 0.05)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot_results(records: list[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Save the PNG figures of every problem into ``out_dir`` (matplotlib, Agg backend); return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    trials = _trials(records)
    rows = summarize(records)
    paired_all = paired_comparisons(records)
    paths: list[Path] = []
    problems = list(dict.fromkeys(k[0] for k in trials))
    for problem in problems:
        for x_key, xlabel, stem in ((None, "epoch", "regret_epoch"), ("train_time_s", "training time (s)",
                                                                      "regret_time")):
            paths.append(out / f"{stem}_{problem}.png")
            _curve_figure(plt, trials, problem, x_key, xlabel, paths[-1])
        prow = [r for r in rows if r["problem"] == problem]
        paired = [r for r in paired_all if r["problem"] == problem and r["seeds"] >= 2]
        second = problem_metric(problem, [r for k, v in trials.items() if k[0] == problem for r in v[-1:]])
        fig, axes = plt.subplots(1, 3 if paired else 2, figsize=(15 if paired else 10, 4.5))
        _metric_panel(axes[0], prow, "normalized_regret")
        _metric_panel(axes[1], prow, second)
        if paired:
            _paired_panel(axes[2], paired)
        seeds = sorted({r["seeds"] for r in prow})
        n = "/".join(map(str, seeds))
        fig.suptitle(f"{problem}: reported test metrics (n = {n} seed{'s' if seeds[-1] > 1 else ''}; "
                     "% from the best)")
        fig.tight_layout()
        p = out / f"final_{problem}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def build_report(
    out_dir: str | os.PathLike, records: list[dict[str, Any]] | None = None, *, figures: bool = True
) -> tuple[str, list[Path]]:
    """Rebuild the table (returned as text, and written as Markdown and CSV) and the figures of a study.

    Args:
        out_dir: the study directory holding ``results.jsonl``; outputs are written there.
        records: use these records instead of reading ``results.jsonl``.
        figures: also draw the PNG figures.

    Returns:
        the terminal table and the paths written.

    Raises:
        ValueError: no complete trial to report.
    """
    out = Path(out_dir)
    if records is None:
        path = out / RESULTS_FILE
        if not path.exists():
            raise ValueError(f"no results file {str(path)!r}: run a study with this output directory first")
        records = read_results(path)
    rows = summarize(records)
    if not rows:
        raise ValueError(f"no complete trial in {str(out)!r} to report")
    table = format_table(rows)
    paths = list(write_table(rows, out))
    paired = paired_comparisons(records)
    text = format_paired(paired)
    if text:
        table += "\n\n" + text
        path = out / "paired.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["problem", "method", "reference", "metric", "seeds", "diff", "ci_low", "ci_high", "p"])
            for r in paired:
                w.writerow([r["problem"], r["method"], r["reference"], r["metric"], r["seeds"],
                            f"{r['diff']:.6g}", f"{r['ci'][0]:.6g}", f"{r['ci'][1]:.6g}", f"{r['p']:.6g}"])
        paths.append(path)
    if figures:
        paths += plot_results(records, out)
    return table, paths
