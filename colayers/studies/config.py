"""Study configuration: problems × methods × seeds × training settings, presets, and file loading.

A configuration is a :class:`StudyConfig`; it can be read from a JSON or TOML file (TOML through
:mod:`tomllib` on Python ≥ 3.11; on 3.10 only JSON), built from a preset, and validated before any
training starts — every error names the offending field (``methods[2].name``, ``epochs``, ``output``...).

File format (TOML shown; JSON has the same keys)::

    preset = "default"          # optional: start from a preset, then override
    epochs = 20
    batch_size = 32
    lr = 0.01
    lr_milestones = []          # optional: epochs after which lr *= lr_decay (0.1)
    seeds = [0, 1, 2]
    device = "cpu"
    workers = 1                 # > 1: trials run on a process pool
    output = "runs/default"

    [[problems]]
    name = "shortest_path"
    params = { n = 1000, deg = 4, noise = 0.5 }

    [[methods]]
    name = "fy"
    params = { epsilon = 1.0, num_samples = 10 }

``problems`` and ``methods`` entries may also be plain names. A method entry may carry a ``label`` (to
compare one method under two settings) and its own ``lr`` in ``params``.

Example:
    >>> from colayers.studies.config import preset
    >>> cfg = preset("default")
    >>> [m.label for m in cfg.methods]
    ['spo+', 'fy', 'imle', 'aimle', 'blackbox', 'identity', 'two-stage']
"""

from __future__ import annotations

import copy
import hashlib
import json
import numbers
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .methods import METHODS, check_method_params

__all__ = ["ProblemSpec", "MethodSpec", "StudyConfig", "PRESETS", "preset", "load_config", "config_from_dict"]


@dataclass
class ProblemSpec:
    """A problem of the study: a name from ``colayers.studies.problems.PROBLEMS`` and generator parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodSpec:
    """A method of the study: a name from :data:`~colayers.studies.methods.METHODS`, its hyper-parameters, a label."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name


@dataclass
class StudyConfig:
    """Everything a study needs.

    Args:
        problems, methods: what to compare.
        seeds: one trial per (problem, method, seed); the seed fixes the data, the model initialisation and
            every random draw of the trial, whatever the parallelism.
        epochs, batch_size, lr, weight_decay: Adam training settings (a method may override ``lr``).
        lr_milestones, lr_decay: multiply the learning rate by ``lr_decay`` after each epoch listed in
            ``lr_milestones`` (a step schedule; none by default).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        workers: number of trials run at once (a process pool when > 1, or pass any executor to the runner).
        threads: torch intra-op threads inside each trial.
        output: the study directory (results.jsonl, tables, figures).
        name: a label for the study.
    """

    problems: list[ProblemSpec]
    methods: list[MethodSpec]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_decay: float = 0.1
    device: str = "cpu"
    workers: int = 1
    threads: int = 1
    output: str = "colayers-study"
    name: str = "study"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> StudyConfig:
        """Check every field; raise ValueError/TypeError naming the field. Returns ``self``."""
        from .problems import PROBLEMS  # the problems module is imported lazily (heavy generators)

        if not self.problems:
            raise ValueError("problems must list at least one problem; got []")
        for i, p in enumerate(self.problems):
            if p.name not in PROBLEMS:
                raise ValueError(f"problems[{i}].name must be one of {sorted(PROBLEMS)}; got {p.name!r}")
            if not isinstance(p.params, dict):
                raise TypeError(f"problems[{i}].params must be a table/dict; got {type(p.params).__name__}")
        if not self.methods:
            raise ValueError("methods must list at least one method; got []")
        labels = set()
        for i, m in enumerate(self.methods):
            if m.name not in METHODS:
                raise ValueError(f"methods[{i}].name must be one of {sorted(METHODS)}; got {m.name!r}")
            if not isinstance(m.params, dict):
                raise TypeError(f"methods[{i}].params must be a table/dict; got {type(m.params).__name__}")
            check_method_params(m.name, m.params, where=f"methods[{i}]")
            if m.label in labels:
                raise ValueError(f"methods[{i}].label must be unique; {m.label!r} is used twice (set a label)")
            labels.add(m.label)
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty list of integers; got {self.seeds!r}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
                raise ValueError(f"seeds must hold integers ≥ 0; got {s!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat; got {self.seeds!r}")
        for key in ("epochs", "batch_size", "workers", "threads"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{key} must be an integer ≥ 1; got {v!r}")
        for key, allow_zero in (("lr", False), ("weight_decay", True)):
            v = getattr(self, key)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
            if not ok or v != v or v == float("inf"):
                raise ValueError(f"{key} must be a finite number {'≥' if allow_zero else '>'} 0; got {v!r}")
        if not isinstance(self.lr_milestones, (list, tuple)) or any(
            isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 1 <= m < self.epochs
            for m in self.lr_milestones
        ):
            raise ValueError(
                f"lr_milestones must list epochs in [1, epochs) = [1, {self.epochs}); got {self.lr_milestones!r}"
            )
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real) or not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be a number in (0, 1]; got {self.lr_decay!r}")
        dev = str(self.device)
        if not (dev == "cpu" or dev == "cuda" or dev.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")
        if dev.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device {self.device!r} was asked for but torch.cuda.is_available() is False")
        _check_writable(self.output)
        return self

    def trial_settings(self, problem: ProblemSpec, method: MethodSpec) -> dict[str, Any]:
        """The settings that define a trial's results (not its placement: device, workers and output excluded)."""
        return {
            "problem": problem.name,
            "problem_params": problem.params,
            "method": method.name,
            "method_params": method.params,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            **({"lr_milestones": list(self.lr_milestones), "lr_decay": self.lr_decay} if self.lr_milestones else {}),
        }

    def settings_hash(self, problem: ProblemSpec, method: MethodSpec) -> str:
        text = json.dumps(self.trial_settings(problem, method), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_writable(output: str) -> None:
    if not isinstance(output, (str, os.PathLike)) or not str(output):
        raise ValueError(f"output must be a directory path; got {output!r}")
    path = Path(output)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".colayers-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"output directory {str(output)!r} is not writable: {exc.strerror or exc}") from exc


_SP = {"n": 1000, "deg": 4, "noise": 0.5}

PRESETS: dict[str, dict[str, Any]] = {
    # The default study: PyEPO's 5x5 shortest path, n = 1000, deg 4, noise half-width 0.5, a linear model.
    "default": {
        "name": "default",
        "problems": [{"name": "shortest_path", "params": dict(_SP)}],
        # Hyper-parameters chosen on tuning seeds 100-102 (other data sets), never on the reported seeds 0-2.
        "methods": [
            {"name": "spo+"},
            {"name": "fy", "params": {"epsilon": 1.0, "num_samples": 10}},
            {"name": "imle", "params": {"epsilon": 0.5, "lambda_": 50.0, "task_loss": "regret"}},
            {"name": "aimle", "params": {"epsilon": 0.5, "task_loss": "regret"}},
            {"name": "blackbox", "params": {"lambda_": 20.0, "task_loss": "regret"}},
            {"name": "identity", "params": {"task_loss": "regret"}},
            {"name": "two-stage"},
        ],
        "seeds": [0, 1, 2],
        "epochs": 20,
        "batch_size": 32,
        "lr": 0.01,
        "output": "colayers-study",
    },
    # A seconds-long smoke test of the whole pipeline.
    "tiny": {
        "name": "tiny",
        "problems": [{"name": "shortest_path", "params": {"n": 100, "deg": 4, "noise": 0.5}}],
        "methods": ["spo+", "two-stage"],
        "seeds": [0],
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.01,
        "output": "colayers-study-tiny",
    },
    # Warcraft-like 12x12 maps: a CNN learns tile costs from pixels; paths only for I-MLE / blackbox / FY.
    "warcraft": {
        "name": "warcraft",
        "problems": [{"name": "warcraft", "params": {"size": 12}}],
        "methods": [
            # from paths only, Hamming loss summed over tiles and averaged over the batch (as in Vlastelica et
            # al.'s code), λ = 20; blackbox with the paper's learning rate 5e-4; I-MLE with small noise ε = 0.05
            {"name": "imle", "params": {"task_loss": "hamming", "lambda_": 20.0, "epsilon": 0.05}},
            {"name": "blackbox", "params": {"task_loss": "hamming", "lambda_": 20.0, "lr": 0.0005}},
            # additive noise; the training oracle raises tile costs below 1e-3 to 1e-3 (min_cost, see methods.py)
            {"name": "fy", "params": {"epsilon": 0.02, "num_samples": 5}},
            {"name": "two-stage"},
            {"name": "direct"},
        ],
        "seeds": [0],
        "epochs": 30,
        "batch_size": 32,
        "lr": 0.001,
        "lr_milestones": [18, 24],  # ×0.1 at 60 % and 80 % of training, as the papers' 50-epoch schedule (30, 40)
        "lr_decay": 0.1,
        "workers": 2,  # two trials at a time: the CNN trials are compute-bound, one core each
        "output": "colayers-study-warcraft",
    },
}


def _as_problem(entry: Any, i: int) -> ProblemSpec:
    if isinstance(entry, str):
        return ProblemSpec(entry)
    if isinstance(entry, ProblemSpec):
        return copy.deepcopy(entry)
    if isinstance(entry, dict):
        unknown = set(entry) - {"name", "params"}
        if unknown or "name" not in entry:
            raise ValueError(f"problems[{i}] must have keys 'name' and optional 'params'; got {sorted(entry)}")
        return ProblemSpec(entry["name"], dict(entry.get("params") or {}))
    raise TypeError(f"problems[{i}] must be a name or a table with 'name'; got {type(entry).__name__}")


def _as_method(entry: Any, i: int) -> MethodSpec:
    if isinstance(entry, str):
        return MethodSpec(entry)
    if isinstance(entry, MethodSpec):
        return copy.deepcopy(entry)
    if isinstance(entry, dict):
        unknown = set(entry) - {"name", "params", "label"}
        if unknown or "name" not in entry:
            raise ValueError(
                f"methods[{i}] must have keys 'name' and optional 'params', 'label'; got {sorted(entry)}"
            )
        return MethodSpec(entry["name"], dict(entry.get("params") or {}), entry.get("label") or "")
    raise TypeError(f"methods[{i}] must be a name or a table with 'name'; got {type(entry).__name__}")


_FIELDS = {"problems", "methods", "seeds", "epochs", "batch_size", "lr", "weight_decay", "lr_milestones", "lr_decay",
           "device", "workers", "threads", "output", "name"}


def config_from_dict(data: dict[str, Any]) -> StudyConfig:
    """Build a :class:`StudyConfig` from a mapping (optionally starting from ``data["preset"]``); not validated.

    Example:
        >>> cfg = config_from_dict({"preset": "tiny", "epochs": 3, "methods": ["fy"]})
        >>> cfg.epochs, [m.name for m in cfg.methods]
        (3, ['fy'])
    """
    if not isinstance(data, dict):
        raise TypeError(f"a study configuration must be a mapping; got {type(data).__name__}")
    data = dict(data)
    base: dict[str, Any] = {}
    if "preset" in data:
        name = data.pop("preset")
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
        base = copy.deepcopy(PRESETS[name])
    unknown = set(data) - _FIELDS
    if unknown:
        raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; accepted: {sorted(_FIELDS | {'preset'})}")
    base.update(data)
    for key in ("problems", "methods"):
        if key not in base:
            raise ValueError(f"{key} is missing from the configuration (or give a preset)")
        if not isinstance(base[key], (list, tuple)):
            raise TypeError(f"{key} must be a list; got {type(base[key]).__name__}")
    base["problems"] = [_as_problem(e, i) for i, e in enumerate(base["problems"])]
    base["methods"] = [_as_method(e, i) for i, e in enumerate(base["methods"])]
    if "seeds" in base and isinstance(base["seeds"], tuple):
        base["seeds"] = list(base["seeds"])
    return StudyConfig(**base)


def preset(name: str, **overrides: Any) -> StudyConfig:
    """The configuration of preset ``name`` (``default``, ``tiny``, ``warcraft``) with ``overrides`` applied."""
    return config_from_dict({"preset": name, **overrides})


def load_config(path: str | os.PathLike) -> StudyConfig:
    """Read a study configuration from a ``.json`` or ``.toml`` file (not validated yet).

    TOML needs Python ≥ 3.11 (:mod:`tomllib`) or the ``tomli`` package; JSON always works.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise ValueError(
                    f"config file {str(path)!r} is TOML, which needs Python ≥ 3.11 or the 'tomli' package; "
                    "use a .json file instead"
                ) from exc
        try:
            data = tomllib.loads(text.decode())
        except Exception as exc:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {exc}") from exc
    return config_from_dict(data)
