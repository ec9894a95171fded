r"""Per-epoch curves of a study in TensorBoard's format (the optional ``tensorboard`` extra).

With ``tensorboard = true`` in a study's configuration (or ``colayers study --tensorboard [DIR]``), each
epoch's record of each trial (:func:`colayers.studies.trial.iter_trial`) is also written, beside
``results.jsonl``, as scalars of :class:`torch.utils.tensorboard.SummaryWriter` — one run directory per
trial, ``DIR/<problem>/<method label>/seed_<seed>`` (``DIR`` defaults to ``<output>/tensorboard``), the epoch
as the step:

==========================  =========================================================================
tag                         record column
==========================  =========================================================================
``train/loss``              ``train_loss`` (the epoch's mean training loss)
``val/<metric>``            ``val_<metric>``: normalized regret, exact match, cost ratio, Hamming or
                            rank distance on the validation split
``test/<metric>``           the same metrics on the test split
``time/train_s``            ``train_time_s`` (cumulative), and ``time/wall_s`` (``wall_time_s``)
``oracle/calls``            ``oracle_calls``, and ``oracle/instances`` (``oracle_instances``)
==========================  =========================================================================

``tensorboard --logdir DIR`` then shows them, one curve per trial. Only the study's parent process writes
(it receives the records of the worker processes, see :mod:`colayers.studies.runner`), with one writer per
trial, flushed after every epoch and closed when the trial completes, fails or the study stops, so a killed
worker leaves no writer behind. A trial that restarts (an incomplete trial of an earlier run, resumed) first
removes the event files of its earlier attempt from its run directory, so the curves are those of the attempt
that ``results.jsonl`` keeps. A TensorBoard directory therefore belongs to one study, as its output directory.
"""

from __future__ import annotations

import numbers
import re
from pathlib import Path
from typing import Any

__all__ = ["TensorBoardLog", "scalars_of", "open_curves"]

_TEST = ("normalized_regret", "exact_match", "cost_ratio", "hamming", "rank_distance")
_OTHER = {"train_loss": "train/loss", "train_time_s": "time/train_s", "wall_time_s": "time/wall_s",
          "oracle_calls": "oracle/calls", "oracle_instances": "oracle/instances"}


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard tags and values of one epoch's record (the table in the module docstring).

    Example:
        >>> scalars_of({"epoch": 2, "train_loss": 0.5, "val_exact_match": 0.25, "normalized_regret": 0.1})
        {'train/loss': 0.5, 'val/exact_match': 0.25, 'test/normalized_regret': 0.1}
    """
    out = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if key in _OTHER:
            out[_OTHER[key]] = float(value)
        elif key.startswith("val_") and key[4:] in _TEST:
            out[f"val/{key[4:]}"] = float(value)
        elif key in _TEST:
            out[f"test/{key}"] = float(value)
    return out


def _safe(part: Any) -> str:
    """A path component from a name or label: path separators and unusual characters replaced by ``_``."""
    text = re.sub(r"[^\w.+=-]+", "_", str(part)).strip("._")
    return text or "_"


class TensorBoardLog:
    """One :class:`~torch.utils.tensorboard.SummaryWriter` per trial under ``directory`` (see the module
    docstring); :meth:`write` takes each epoch's record, :meth:`close` ends a trial, :meth:`close_all` all.

    Raises:
        ValueError: the ``tensorboard`` package is not installed (``pip install 'colayers[tensorboard]'``).
    """

    def __init__(self, directory: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError("tensorboard logging needs the 'tensorboard' package, which is not installed: "
                             f"pip install 'colayers[tensorboard]' ({exc})") from None
        self._writer_class = SummaryWriter
        self.directory = Path(directory)
        self._open: dict[tuple, tuple[Any, Any]] = {}  # trial key -> (attempt, writer)

    def run_dir(self, record: dict[str, Any]) -> Path:
        """The run directory of a record's trial: ``<directory>/<problem>/<method label>/seed_<seed>``."""
        return self.directory / _safe(record["problem"]) / _safe(record["method"]) / f"seed_{record['seed']}"

    def write(self, record: dict[str, Any]) -> None:
        """Add one epoch's scalars (step: the epoch) to its trial's writer, opened on the attempt's first record."""
        key = (record.get("problem"), record.get("method"), record.get("seed"), record.get("settings"))
        attempt, writer = self._open.get(key, (None, None))
        if writer is None or attempt != record.get("attempt"):
            if writer is not None:
                writer.close()
            run = self.run_dir(record)
            for old in run.glob("events.out.tfevents.*"):  # an earlier attempt's curves (results.jsonl dropped it)
                old.unlink()
            writer = self._writer_class(log_dir=str(run))
            self._open[key] = (record.get("attempt"), writer)
        step = int(record["epoch"])
        for tag, value in scalars_of(record).items():
            writer.add_scalar(tag, value, step)
        writer.flush()

    def close(self, key: tuple) -> None:
        """Close the writer of the trial ``key`` = (problem, method label, seed, settings digest), if open."""
        _, writer = self._open.pop(key, (None, None))
        if writer is not None:
            writer.close()

    def close_all(self) -> None:
        """Close every open writer."""
        for key in list(self._open):
            self.close(key)

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_all()


class _NoCurves:
    """What :func:`open_curves` returns when no curves are asked for: every method does nothing."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self, key: tuple) -> None:
        pass

    def close_all(self) -> None:
        pass

    def __enter__(self) -> _NoCurves:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def open_curves(directory: str | Path | None) -> TensorBoardLog | _NoCurves:
    """A :class:`TensorBoardLog` into ``directory``, or, for ``None``, an object with the same methods that
    writes nothing. Used as a context manager, it closes its writers however the block ends."""
    return _NoCurves() if directory is None else TensorBoardLog(directory)
