"""Reports of a study: a summary table (terminal, Markdown, CSV), paired comparisons, matplotlib figures.

The table has one row per (problem, method): the mean ± standard deviation over seeds of the *reported
epoch*'s test metrics (normalized regret, exact match in %, Hamming distance, cost ratio), the training
time, the total trial time and the training oracle calls/instances. The reported epoch is the last one, or,
for trials run with ``select = "best"``, the epoch of lowest validation normalized regret (the first on
ties): model selection on the validation split, numbers on the test split. Standard deviations use
``ddof = 1`` (0 for a single seed).

**Paired comparisons** (:func:`paired_comparisons`): with two seeds or more, every method is compared with a
reference method (the first of the problem's methods, or ``reference=``) on the seeds both ran — the same
data, since a seed fixes the data: the mean difference of the test normalized regret (method − reference),
its 95 % confidence interval (Student's t over the per-seed differences) and the two-sided p-value of the
paired t-test (``scipy.stats.ttest_rel``). The terminal report prints them under the table; they are written
to ``paired.csv``.

Figures, per problem: validation normalized regret (test when a trial has no validation split) against
epoch and against training time (mean over seeds, shaded ± std), and the reported metrics as bars with
error bars (``regret_epoch_<problem>.png``, ``regret_time_<problem>.png``, ``final_<problem>.png``).

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
        p = "n/a" if math.isnan(r["p"]) else f"{r['p']:.3g}"
        lines.append(f"  {r['problem']}: {r['method']} - {r['reference']} = {r['diff']:+.4f} "
                     f"[{lo:+.4f}, {hi:+.4f}], p = {p} ({r['seeds']} seeds)")
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


def _cell(mean: float, std: float, digits: int, scale: float) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The summary rows as an aligned text table, or a Markdown table with ``markdown=True``."""
    cols = _columns(rows)
    header = ["problem", "method", "seeds"] + [c[1] for c in cols]
    body = [[r["problem"], r["method"], str(r["seeds"])] + [_cell(*r[k], d, s) for k, _, d, s in cols] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(cols)) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(b) for b in body]
    return "\n".join(lines)


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
            w.writerow([r["problem"], r["method"], r["seeds"]] + [f"{v:.6g}" for k, *_ in cols for v in r[k]])
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


def plot_results(records: list[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Save the PNG figures of every problem into ``out_dir`` (matplotlib, Agg backend); return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(out_dir)
    trials = _trials(records)
    rows = summarize(records)
    paths: list[Path] = []
    problems = list(dict.fromkeys(k[0] for k in trials))
    for problem in problems:
        views = ((None, "epoch", "regret_epoch"), ("train_time_s", "training time (s)", "regret_time"))
        for x_key, xlabel, stem in views:
            fig, ax = plt.subplots(figsize=(6, 4))
            key = "val_normalized_regret" if all(
                "val_normalized_regret" in r[0] for k, r in trials.items() if k[0] == problem
            ) else "normalized_regret"
            for method, (xs, m, s) in _curves(trials, problem, x_key, key).items():
                ax.plot(xs, m, marker="o", ms=3, label=method)
                ax.fill_between(xs, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.15)
            ax.set_xlabel(xlabel)
            if x_key is None:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            split = "validation" if key.startswith("val_") else "test"
            ax.set_ylabel(f"{split} normalized regret")
            ax.set_title(f"{problem}: {split} regret vs {xlabel}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            p = out / f"{stem}_{problem}.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            paths.append(p)
        prow = [r for r in rows if r["problem"] == problem]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        names = [r["method"] for r in prow]
        for ax, (key, label, scale) in zip(axes, (("normalized_regret", "normalized regret", 1.0),
                                                   ("exact_match", "exact match (%)", 100.0))):
            ax.bar(names, [r[key][0] * scale for r in prow], yerr=[r[key][1] * scale for r in prow], capsize=4)
            ax.set_ylabel(f"final test {label}")
            ax.tick_params(axis="x", rotation=45)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"{problem}: final metrics (mean ± std over seeds)")
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
