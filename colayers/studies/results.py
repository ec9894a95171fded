"""The results file of a study, ``results.jsonl``: one JSON row per (trial, epoch, attempt), read back exactly once.

Writing is an atomic append (one ``os.write`` with ``O_APPEND``, then ``fsync``); reading skips malformed or
torn lines with a ``file:line`` message and keeps, for each (trial, epoch), the rows of the first complete
attempt of its trial. The runner, the settings check of :mod:`colayers.studies.config` and the report all
read through this module.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_FILE", "append_jsonl", "scan_results", "read_results", "complete_trials"]

RESULTS_FILE = "results.jsonl"


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line, atomically: one ``os.write`` with ``O_APPEND``, then ``fsync``.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> append_jsonl(os.path.join(d, "r.jsonl"), {"a": 1})
        >>> read_results(os.path.join(d, "r.jsonl"))
        [{'a': 1}]
    """
    data = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare; e.g. a signal): finish the line
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_results_path(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory, where the study's results file should be; move it away")


def _row_problem(rec: Any) -> str | None:
    """Why ``rec`` is not a well-formed result row (``None`` if it is)."""
    if not isinstance(rec, dict):
        return f"not a JSON object ({type(rec).__name__})"
    for key in ("problem", "method"):
        if not isinstance(rec.get(key), str):
            return f"{key!r} must be a string; got {rec.get(key)!r}"
    for key in ("seed", "epoch", "epochs"):
        v = rec.get(key)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < (0 if key == "seed" else 1):
            return f"{key!r} must be an integer ≥ {0 if key == 'seed' else 1}; got {v!r}"
    if rec["epoch"] > rec["epochs"]:
        return f"epoch {rec['epoch']} exceeds epochs {rec['epochs']}"
    return None


def scan_results(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """Well-formed result rows of a results file, and one message ``file:line: reason`` per line skipped.

    A line is skipped when it is not JSON, not a row (``problem``, ``method``, integer ``seed``, ``epoch``,
    ``epochs``), or torn (the last line, without its newline: an interrupted write).
    """
    path = Path(path)
    _check_results_path(path)
    if not path.exists():
        return [], []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows, bad = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{i + 1}"
        if i == len(lines) - 1:
            bad.append(f"{where}: torn last line (an interrupted write) skipped")
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            bad.append(f"{where}: malformed line skipped (not JSON: {exc})")
            continue
        why = _row_problem(rec)
        if why is not None:
            bad.append(f"{where}: malformed line skipped ({why})")
            continue
        rows.append(rec)
    return rows, bad


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All JSON objects of a JSON-lines results file, in file order (a torn last line is ignored)."""
    path = Path(path)
    _check_results_path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip() or i == len(lines) - 1:
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _key(rec: dict[str, Any]) -> tuple:
    return (rec.get("problem"), rec.get("method"), rec.get("seed"), rec.get("settings"))


def _chosen_attempts(records: list[dict[str, Any]]) -> dict[tuple, tuple[Any, list[dict[str, Any]]]]:
    """For each trial with a complete attempt: (attempt id, its rows in epoch order); the first complete wins."""
    groups: dict[tuple, dict[Any, dict[int, dict[str, Any]]]] = {}
    for rec in records:
        if _row_problem(rec) is not None:
            continue
        by_attempt = groups.setdefault(_key(rec), {})
        by_attempt.setdefault(rec.get("attempt"), {}).setdefault(int(rec["epoch"]), rec)
    out = {}
    for key, attempts in groups.items():
        for attempt, by_epoch in attempts.items():  # in order of first appearance
            epochs = int(next(iter(by_epoch.values()))["epochs"])
            if set(by_epoch) == set(range(1, epochs + 1)):
                out[key] = (attempt, [by_epoch[e] for e in range(1, epochs + 1)])
                break
    return out


def complete_trials(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Complete trials, keyed by (problem, method label, seed, settings digest): one row per epoch.

    A trial is complete when one of its attempts has a row for each epoch ``1..epochs``; the first such
    attempt is kept (and, within it, the first row of an epoch), whatever else the records hold.
    """
    return {k: rows for k, (_a, rows) in _chosen_attempts(records).items()}
