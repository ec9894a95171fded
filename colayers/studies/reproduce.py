r"""Reproduction configs: a grid of study cells with the published numbers of a paper beside ours.

A *reproduction* is a JSON file (the built-in ones live in ``colayers/studies/configs/``, named by their stem:
``pyepo_shortest_path``, ``pyepo_knapsack``, ``pyepo_tsp``, ``warcraft_12x12``) with

* ``title``, ``notes`` (Markdown), ``metric`` (the compared test metric: ``"normalized_regret"``, or
  ``"exact_match"``, the share of predicted solutions of optimal cost, shown and published in %);
* ``requires_data`` (optional): where the published data set the study reads is found; such a reproduction
  runs only with the data set's directory (``data=DIR``, ``colayers reproduce NAME --data DIR``), which is
  set as ``data_dir`` of every problem that reads one, and refuses without it before any training;
* ``study``: an ordinary study configuration (:func:`~colayers.studies.config.config_from_dict` keys: the
  problem, the methods with their labels, seeds, epochs, optimizer...), its ``output`` the parent directory;
* ``grid``: problem parameters and their values (``{"n": [100, 1000], "deg": [1, 2, 4, 6], ...}``); every
  combination is a *cell*, run as its own study in ``<output>/<cell>`` (``n1000-deg4-noise0.5``), so each
  cell resumes and reports on its own, with the crash-safety of any study;
* ``published``: ``[{"cell": {...}, "method": label, "value": 0.077, "source": "..."}]`` (a method may have
  several published numbers, from several sources: one row each).

:func:`run_reproduction` runs the cells (all, or only the published ones), :func:`reproduction_rows` reads
their results back, and :func:`reproduction_page` writes the Markdown page: per cell and method, ours as mean ±
std over the seeds beside the published number and its source, and whether they differ by more than the seed
noise (the published value lies outside our mean's 95 % Student-t interval).

Example:
    >>> from colayers.studies.reproduce import load_reproduction, cells
    >>> rep = load_reproduction("pyepo_shortest_path")
    >>> len(cells(rep)), len(cells(rep, published_only=True))
    (16, 2)
    >>> cells(rep, published_only=True)[0][0]
    'n1000-deg4-noise0.5'
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import StudyConfig, config_from_dict

__all__ = ["Reproduction", "CONFIG_DIR", "METRICS", "builtin_reproductions", "load_reproduction", "check_data",
           "cells", "run_reproduction", "reproduction_rows", "reproduction_page"]

#: Where the built-in reproduction configs live.
CONFIG_DIR = Path(__file__).with_name("configs")
_KEYS = {"title", "notes", "metric", "study", "grid", "published", "requires_data"}
#: The metrics a reproduction may compare: (name on the page, scale of ours to the published unit, decimals).
METRICS = {"normalized_regret": ("normalized regret", 1.0, 3),
           "exact_match": ("share of optimal-cost solutions (%)", 100.0, 1)}


@dataclass
class Reproduction:
    """A parsed reproduction config (see the module docstring)."""

    title: str
    study: dict[str, Any]
    grid: dict[str, list[Any]]
    published: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "normalized_regret"
    notes: str = ""
    path: str = ""
    requires_data: str = ""


def builtin_reproductions() -> list[str]:
    """The names of the built-in reproduction configs (stems of ``configs/*.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_reproduction(name_or_path: str | os.PathLike) -> Reproduction:
    """Read a reproduction config: a built-in name (:func:`builtin_reproductions`) or a ``.json`` path.

    Raises:
        ValueError: the file is missing or malformed; the message names the key.
    """
    text = str(name_or_path)
    path = CONFIG_DIR / f"{text}.json" if text in builtin_reproductions() else Path(text)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"reproduction {text!r} is neither a built-in one {builtin_reproductions()} nor a readable "
                         f"file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"reproduction file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) - _KEYS or not {"study", "grid"} <= set(data):
        got = sorted(data) if isinstance(data, dict) else data
        raise ValueError(f"reproduction file {str(path)!r} must hold 'study' and 'grid' (and optionally "
                         f"{sorted(_KEYS - {'study', 'grid'})}); got {got}")
    grid = data["grid"]
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{str(path)!r}: grid must map parameter names to non-empty lists; got {grid!r}")
    rep = Reproduction(data.get("title", path.stem), data["study"], grid, list(data.get("published") or []),
                       data.get("metric", "normalized_regret"), data.get("notes", ""), str(path),
                       data.get("requires_data", ""))
    if rep.metric not in METRICS:
        raise ValueError(f"{str(path)!r}: metric must be one of {sorted(METRICS)}; got {rep.metric!r}")
    labels = {(m if isinstance(m, str) else m.get("label") or m["name"]) for m in rep.study.get("methods", [])}
    for i, pub in enumerate(rep.published):
        if not isinstance(pub, dict) or not {"cell", "method", "value", "source"} <= set(pub):
            raise ValueError(f"{str(path)!r}: published[{i}] must have cell, method, value and source; got {pub!r}")
        if pub["method"] not in labels:
            raise ValueError(f"{str(path)!r}: published[{i}].method {pub['method']!r} is none of the study's "
                             f"method labels {sorted(labels)}")
        if _cell_name(pub["cell"]) not in {c for c, _ in _combos(rep)}:
            raise ValueError(f"{str(path)!r}: published[{i}].cell {pub['cell']!r} is not a cell of the grid")
    return rep


def _cell_name(params: dict[str, Any]) -> str:
    return "-".join(f"{k}{v}" for k, v in params.items())


def _combos(rep: Reproduction) -> list[tuple[str, dict[str, Any]]]:
    keys = list(rep.grid)
    out = []
    for values in itertools.product(*(rep.grid[k] for k in keys)):
        params = dict(zip(keys, values))
        out.append((_cell_name(params), params))
    return out


def check_data(rep: Reproduction, data: str | os.PathLike | None) -> None:
    """Refuse to run a reproduction that reads a published data set (``requires_data``) without its directory.

    Raises:
        ValueError: ``data`` is ``None`` and the reproduction needs it; the message names ``--data`` and where
            the data set is published.
    """
    if rep.requires_data and data is None:
        raise ValueError(f"reproduction {Path(rep.path).stem!r} reads a published data set: give its directory "
                         f"with --data DIR (data=DIR); {rep.requires_data}")


def _data_readers(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import inspect

    from . import problems as _  # noqa: F401  (registers the built-in problems)
    from .registry import PROBLEMS

    return [p for p in problems
            if p["name"] in PROBLEMS and "data_dir" in inspect.signature(PROBLEMS[p["name"]]).parameters]


def cells(
    rep: Reproduction, *, published_only: bool = False, data: str | os.PathLike | None = None, **overrides: Any
) -> list[tuple[str, StudyConfig]]:
    """Every cell of the grid as ``(name, StudyConfig)`` (output ``<study output>/<name>``); ``published_only``:
    only the cells with a published number; ``data``: the published data set's directory, set as ``data_dir`` of
    the problems that read one. ``overrides`` replace study keys (``seeds``, ``epochs``, ``output``,
    ``problem_params`` for generator parameters such as a smaller ``n_test``).

    Raises:
        ValueError: ``data`` is given and no problem of the study reads a data set."""
    published = {_cell_name(p["cell"]) for p in rep.published}
    problem_params = overrides.pop("problem_params", {})
    out = []
    for name, params in _combos(rep):
        if published_only and name not in published:
            continue
        data_ = copy.deepcopy(rep.study)
        data_.update(overrides)
        base = data_.get("output", "colayers-reproduce")
        for prob in data_["problems"]:
            prob.setdefault("params", {}).update({**params, **problem_params})
        if data is not None:
            readers = _data_readers(data_["problems"])
            if not readers:
                raise ValueError(f"data names a published data set's directory; none of the study's problems "
                                 f"{[p['name'] for p in data_['problems']]} reads one")
            for prob in readers:
                prob["params"]["data_dir"] = str(data)
        data_["output"] = str(Path(base) / name)
        data_["name"] = f"{data_.get('name', 'reproduction')} {name}"
        out.append((name, config_from_dict(data_)))
    return out


def run_reproduction(
    rep: Reproduction,
    *,
    published_only: bool = False,
    data: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """Run (or resume) the cells; return each cell's process CPU seconds of this call (this process and its
    children), so that the page can say what the reproduction cost.

    Raises:
        ValueError: the reproduction reads a published data set and ``data`` is ``None`` (:func:`check_data`),
            before any training."""
    from .runner import run_study

    check_data(rep, data)
    times = {}
    for name, cfg in cells(rep, published_only=published_only, data=data, **overrides):
        t0 = _cpu()
        run_study(cfg, progress=False, log=log)
        times[name] = _cpu() - t0
    return times


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def reproduction_rows(rep: Reproduction, output: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per (cell run, method) and per published number: ours (mean, std, seeds) and the published value.

    Ours is in the published unit (``exact_match`` in %, :data:`METRICS`); a method with several published
    numbers has one row per number. A published number whose cell was not run has ``seeds = 0``; ``differs`` is
    ``True`` when the published value lies outside our mean's 95 % Student-t interval (two seeds or more),
    ``None`` when it cannot be said.
    """
    from scipy import stats

    from .report import summarize
    from .results import RESULTS_FILE, read_results

    base = Path(output if output is not None else rep.study.get("output", "colayers-reproduce"))
    scale = METRICS[rep.metric][1]
    pub: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in rep.published:
        pub.setdefault((_cell_name(p["cell"]), p["method"]), []).append(p)
    labels = [m if isinstance(m, str) else m.get("label") or m["name"] for m in rep.study["methods"]]
    rows = []
    for name, _params in _combos(rep):
        path = base / name / RESULTS_FILE
        ours = {r["method"]: r for r in summarize(read_results(path))} if path.is_file() else {}
        for label in labels:
            mine, entries = ours.get(label), pub.get((name, label), [])
            if mine is None and not entries:
                continue
            mean, std = (scale * v for v in mine[rep.metric]) if mine else (float("nan"), float("nan"))
            n = mine["seeds"] if mine else 0
            for p in entries or [None]:
                differs = None
                if p is not None and n >= 2 and std == std:
                    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
                    differs = abs(mean - float(p["value"])) > half
                rows.append({"cell": name, "method": label, "mean": mean, "std": std, "seeds": n,
                             "published": None if p is None else float(p["value"]),
                             "source": None if p is None else p["source"], "differs": differs})
    return rows


def _ours(r: dict[str, Any], digits: int = 3, missing: str = "not run") -> str:
    if r["seeds"] == 0:
        return missing
    if r["seeds"] == 1:
        return f"{r['mean']:.{digits}f} (n = 1)"
    return f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"


def reproduction_page(
    rep: Reproduction, output: str | os.PathLike | None = None, *, command: str = "", timing: str = ""
) -> str:
    """The Markdown page of a reproduction: settings, the table (ours beside the published numbers, each with its
    source; differences beyond the seed noise flagged) and the notes."""
    rows = reproduction_rows(rep, output)
    metric, _scale, digits = METRICS[rep.metric]
    missing = "not run yet: needs the data" if rep.requires_data else "not run"
    study = config_from_dict(copy.deepcopy(rep.study))
    methods = ", ".join(f"`{m.label}` ({m.name})" for m in study.methods)
    decay = f" ×{study.lr_decay} after epochs {study.lr_milestones}" if study.lr_milestones else ""
    lines = [
        f"## {rep.title}", "",
        f"Config `{Path(rep.path).name}`; grid {', '.join(f'{k} ∈ {v}' for k, v in rep.grid.items())}; methods "
        f"{methods}; seeds {study.seeds}; {study.epochs} epochs of {study.optimizer} (lr {study.lr}{decay}, batch "
        f"{study.batch_size}). Test {metric}: ours as mean ± std over the seeds, beside the published number.", "",
    ]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += ["| cell | method | ours | published | differs? | source |", "|---|---|---:|---:|---|---|"]
    notes = {True: "**yes**", False: "no", None: ""}
    for r in rows:
        pubv = "" if r["published"] is None else f"{r['published']:.{digits}f}"
        lines.append(f"| {r['cell']} | {r['method']} | {_ours(r, digits, missing)} | {pubv} | {notes[r['differs']]} | "
                     f"{r['source'] or ''} |")
    lines += ["", "\"differs?\": **yes** when the published value lies outside the 95 % Student-t interval of our "
              "mean over the seeds (the seed noise); blank where nothing was published or the cell was not run."]
    differ = [f"{r['cell']} {r['method']} ({_ours(r, digits)} vs {r['published']:.{digits}f})"
              for r in rows if r["differs"]]
    checked = [r for r in rows if r["differs"] is not None]
    if differ:
        lines += ["", f"**Beyond the seed noise:** {'; '.join(differ)} (see the notes below for why, where known)."]
    elif checked:
        lines += ["", f"Every published number compared here ({len(checked)}) lies within the seed noise of ours."]
    if timing:
        lines += ["", timing]
    if rep.notes:
        lines += ["", rep.notes]
    lines.append(f"\n_Generated {time.strftime('%Y-%m-%d')} by `colayers.studies.reproduce.reproduction_page`._")
    return "\n".join(lines) + "\n"
