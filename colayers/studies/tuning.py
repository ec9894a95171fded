r"""Fair tuning of a study's methods: the same number of Optuna trials for every method, on the validation split.

With ``tune = N`` (``colayers study --tune N``), before any trial of the study runs, every (problem, method)
pair is tuned by Optuna's TPE sampler (``TPESampler(seed=first study seed)``, so the search is deterministic)
with exactly ``N`` tuning trials. A tuning trial trains the method on the first seed's training split, like a
study trial (``tune_epochs`` epochs, default the study's), and scores it by the **validation** normalized
regret of its reported epoch (the last one, or the best with ``select = "best"``); the test split is never
looked at. The search covers the method's learning rate (:data:`LR_SPACE`) and the ranges it declared at its
registration (``register_method(..., search_space=...)``); a hyper-parameter that the study sets in the
method's ``params`` is fixed and not searched.

The chosen values are written into ``config.json`` (key ``tuned``, an atomic replace after each pair, before
any trial starts) with the budget, the search space and the best validation regret; they become part of the
trials' settings. A later run on the same output directory reads them back and does not tune again (unless
the budget or the search space changed); a run killed while tuning resumes with the pairs not yet recorded.

Optuna is an optional dependency: ``pip install 'colayers[tune]'``.

Example:
    >>> from colayers.studies.tuning import search_space
    >>> from colayers.studies.config import MethodSpec
    >>> sorted(search_space(MethodSpec("imle")))
    ['epsilon', 'lambda_', 'lr']
    >>> sorted(search_space(MethodSpec("imle", {"lr": 0.01})))  # a value the study sets is not searched
    ['epsilon', 'lambda_']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import MethodSpec, ProblemSpec, StudyConfig
from .registry import METHODS

__all__ = ["LR_SPACE", "search_space", "tune_study", "tune_pair"]

#: The learning-rate range searched for every method (log-uniform).
LR_SPACE = ("log", 1e-3, 1e-1)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError(
            "tune > 0 needs Optuna, which is not installed; install the 'tune' extra: pip install 'colayers[tune]' "
            "(or set tune = 0 and give the hyper-parameters yourself)"
        ) from None
    return optuna


def search_space(method: MethodSpec) -> dict[str, tuple[Any, ...]]:
    """The ranges searched for ``method``: its learning rate and its declared ``search_space``, less the keys its
    ``params`` set."""
    space = {"lr": LR_SPACE, **METHODS[method.name].search_space}
    return {k: v for k, v in space.items() if k not in method.params}


def _suggest(trial: Any, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    out = {}
    for key, (kind, *args) in space.items():
        if kind == "choice":
            out[key] = trial.suggest_categorical(key, list(args[0]))
        elif kind == "int":
            out[key] = trial.suggest_int(key, int(args[0]), int(args[1]))
        else:
            out[key] = trial.suggest_float(key, float(args[0]), float(args[1]), log=kind == "log")
    return out


def _validation_score(config: StudyConfig, problem: ProblemSpec, method: MethodSpec) -> float:
    """Train ``method`` on the first seed's data as a study trial would; its reported validation regret."""
    from .trial import TrialSpec, iter_trial

    spec = TrialSpec(
        problem=problem, method=config.effective_method(problem, method), seed=int(config.seeds[0]),
        epochs=config.tune_epochs or config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, lr_milestones=[m for m in config.lr_milestones
                                                          if m < (config.tune_epochs or config.epochs)],
        lr_decay=config.lr_decay, device=config.device, threads=config.threads, study=config.name,
        settings="tuning", optimizer=config.optimizer, optimizer_params=dict(config.optimizer_params),
        scheduler=config.scheduler, scheduler_params=dict(config.scheduler_params), select=config.select,
    )  # fmt: skip
    values = [float(rec["val_normalized_regret"]) for rec in iter_trial(spec)]
    value = min(values) if config.select == "best" else values[-1]
    return value if math.isfinite(value) else float("inf")


def tune_pair(config: StudyConfig, problem: ProblemSpec, method: MethodSpec) -> dict[str, Any]:
    """Tune one (problem, method) pair with ``config.tune`` Optuna trials; return its ``tuned`` entry."""
    optuna = _optuna()
    space = search_space(method)
    seed = int(config.seeds[0])

    def objective(trial: Any) -> float:
        params = {**method.params, **_suggest(trial, space)}
        return _validation_score(config, problem, MethodSpec(method.name, params, method.label))

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Optuna's per-trial lines would flood stderr
    try:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=config.tune)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {"params": dict(study.best_params), "val_normalized_regret": float(study.best_value),
            "trials": config.tune, "space": _jsonable(space), "seed": seed,
            "epochs": config.tune_epochs or config.epochs}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _recorded(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    tuned = data.get("tuned") if isinstance(data, dict) else None
    return tuned if isinstance(tuned, dict) else {}


def _write_tuned(path: Path, entries: dict[str, Any]) -> None:
    """Merge ``entries`` into ``config.json``'s ``tuned`` table: a temporary file swapped in by ``os.replace``."""
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data["tuned"] = {**(data.get("tuned") if isinstance(data.get("tuned"), dict) else {}), **entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".config.json.tuned.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tune_study(config: StudyConfig, *, log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Fill ``config.tuned`` for every (problem, method) pair of the study (``config.tune`` trials each).

    A pair already in ``config.tuned`` is kept; one recorded in ``<output>/config.json`` under the same budget
    and search space is read back; the others are tuned (:func:`tune_pair`) and recorded there at once. Call
    it with the output directory's lock held (:func:`~colayers.studies.runner.run_study` does).

    Returns:
        ``config.tuned``.

    Raises:
        ValueError: Optuna is missing, or a problem has no validation split (``n_val = 0``).
    """
    if config.tune <= 0:
        return config.tuned
    path = Path(config.output) / "config.json"
    recorded = _recorded(path)
    for problem in config.problems:
        checked = False
        for method in config.methods:
            key = f"{problem.name} / {method.label}"
            if key in config.tuned:
                continue
            space = _jsonable(search_space(method))
            old = recorded.get(key)
            if isinstance(old, dict) and old.get("trials") == config.tune and old.get("space") == space and \
                    isinstance(old.get("params"), dict):  # fmt: skip
                config.tuned[key] = old
                continue
            if not checked:
                _check_validation_split(config, problem)
                checked = True
            log(f"colayers: tuning {key} ({config.tune} Optuna trials on the validation split)")
            entry = tune_pair(config, problem, method)
            config.tuned[key] = entry
            _write_tuned(path, {key: entry})
            log(f"colayers: tuned {key}: {entry['params']} (validation regret {entry['val_normalized_regret']:.4f})")
    return config.tuned


def _check_validation_split(config: StudyConfig, problem: ProblemSpec) -> None:
    from .trial import _get_problem

    built = _get_problem(problem, int(config.seeds[0]), config.device)
    if getattr(built, "x_val", None) is None:
        raise ValueError(f"tune > 0 needs a validation split; problem {problem.name!r} has none (n_val = 0)")
