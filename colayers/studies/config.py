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
    workers = 1                 # > 1: trials run in that many worker processes
    trial_timeout = 3600        # seconds a trial may take; past it, it is recorded as failed (see below)
    output = "runs/default"
    plugins = []                # modules (or .py files) registering problems and methods
    optimizer = "Adam"          # any torch.optim class, with optimizer_params = {...}
    scheduler = "MultiStepLR"   # any torch.optim.lr_scheduler class, with scheduler_params = {...}
    select = "last"             # the epoch reported: "last", or "best" on the validation split
    tensorboard = false         # true (into output/tensorboard) or a directory: per-epoch curves for TensorBoard
    tune = 0                    # > 0: tune each method with this many Optuna trials on the validation split
    tune_epochs = 0             # epochs of a tuning trial (0: epochs)

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
    ['two-stage', 'spo+', 'fy', 'imle', 'aimle', 'blackbox', 'identity']
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

from . import registry
from .methods import METHODS, check_method_params
from .registry import PROBLEMS

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
        epochs, batch_size, lr, weight_decay: training settings (a method may override ``lr``).
        lr_milestones, lr_decay: multiply the learning rate by ``lr_decay`` after each epoch listed in
            ``lr_milestones`` (a step schedule; none by default).
        optimizer, optimizer_params: the ``torch.optim`` class (by name, default ``"Adam"``) and its extra
            keyword arguments (``lr`` and ``weight_decay`` come from the fields above).
        scheduler, scheduler_params: the ``torch.optim.lr_scheduler`` class, stepped once per epoch; the
            default ``"MultiStepLR"`` with no ``scheduler_params`` is the step schedule of ``lr_milestones``.
        select: the epoch whose test metrics a report shows: ``"last"`` or ``"best"`` (the epoch of lowest
            validation normalized regret, first one on ties).
        plugins: modules (dotted names or ``.py`` paths) that register problems or methods, imported in
            this process and in every worker.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        workers: number of trials run at once (a process pool when > 1, or pass any executor to the runner).
        trial_timeout: seconds a trial may take (default 3600, far above any built-in preset's trial; ``inf``:
            no limit). Past it, the trial is stopped (its worker process killed and replaced), recorded as failed
            with the reason in ``failures.jsonl``, and the other trials go on; a rerun retries it. A worker's
            set-up (importing the plugins) gets as long. Not part of a trial's settings (like ``workers``).
        threads: torch intra-op threads inside each trial.
        output: the study directory (results.jsonl, tables, figures).
        tensorboard: also write the per-epoch curves for TensorBoard (:mod:`colayers.studies.tensorboard`; the
            ``tensorboard`` extra): ``True`` into ``<output>/tensorboard``, a path into that directory, ``False``
            (default) not. Not part of a trial's settings.
        name: a label for the study.
        tune: when > 0, every (problem, method) pair is tuned before the trials with this same number of Optuna
            trials, on the validation split of the first seed's data (:mod:`colayers.studies.tuning`; the
            ``tune`` extra); the chosen values go to ``tuned`` and ``config.json``, and later runs on the same
            output directory reuse them instead of tuning again.
        tune_epochs: epochs of each tuning trial (0: ``epochs``).
        tuned: chosen hyper-parameters by ``"<problem> / <method label>"``: ``{"params": {...}, ...}``; they
            replace the method's defaults for the keys its ``params`` do not set. Filled by ``tune``, or given.
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
    trial_timeout: float = 3600.0
    threads: int = 1
    output: str = "colayers-study"
    name: str = "study"
    plugins: list[str] = field(default_factory=list)
    optimizer: str = "Adam"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "MultiStepLR"
    scheduler_params: dict[str, Any] = field(default_factory=dict)
    select: str = "last"
    tensorboard: bool | str = False
    tune: int = 0
    tune_epochs: int = 0
    tuned: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> StudyConfig:
        """Check every field; raise ValueError/TypeError naming the field. Returns ``self``."""
        self._validate_entries()
        self._validate_training()
        self._validate_torch()
        if self.select not in ("last", "best"):
            raise ValueError(f"select must be 'last' or 'best'; got {self.select!r}")
        _check_writable(self.output)
        if not isinstance(self.tensorboard, (bool, str)) or self.tensorboard == "":
            raise ValueError(f"tensorboard must be true, false or a directory path; got {self.tensorboard!r}")
        return self

    def tensorboard_dir(self) -> Path | None:
        """Where the TensorBoard curves go (``None``: not written)."""
        if self.tensorboard is False:
            return None
        return Path(self.output) / "tensorboard" if self.tensorboard is True else Path(self.tensorboard)

    def _validate_entries(self) -> None:
        """The plugins (imported here), the problems and the methods: registered names, dict params, labels."""
        from . import problems as _  # noqa: F401  (registers the built-in problems)

        if not isinstance(self.plugins, (list, tuple)) or not all(isinstance(p, str) for p in self.plugins):
            raise ValueError(f"plugins must be a list of module names or .py paths; got {self.plugins!r}")
        registry.load_plugins(self.plugins)
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
            for p in self.problems:
                check_method_params(m.name, m.params, where=f"methods[{i}]", problem=p.name)
            if m.label in labels:
                raise ValueError(f"methods[{i}].label must be unique; {m.label!r} is used twice (set a label)")
            labels.add(m.label)

    def _validate_training(self) -> None:
        """The seeds and the training numbers: epochs, batch size, workers, threads, lr, decay, milestones."""
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty list of integers; got {self.seeds!r}")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
                raise ValueError(f"seeds must hold integers ≥ 0; got {s!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat; got {self.seeds!r}")
        for key in ("tune", "tune_epochs"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{key} must be an integer ≥ 0; got {v!r}")
        self._validate_tuned()
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
        t = self.trial_timeout
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not t > 0:  # NaN fails `t > 0` too
            raise ValueError(f"trial_timeout must be a number of seconds > 0 (inf: no limit); got {t!r}")
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real) or not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be a number in (0, 1]; got {self.lr_decay!r}")

    def _validate_tuned(self) -> None:
        """``tuned``: a table of ``"<problem> / <label>"`` entries whose ``params`` are valid for their method."""
        if not isinstance(self.tuned, dict):
            raise ValueError(f"tuned must be a table/dict; got {self.tuned!r}")
        methods = {m.label: m for m in self.methods}
        for key, entry in self.tuned.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
                raise ValueError(f"tuned[{key!r}] must be a table with a 'params' table; got {entry!r}")
            problem, _, label = str(key).partition(" / ")
            if label in methods:
                check_method_params(methods[label].name, entry["params"], where=f"tuned[{key!r}]", problem=problem)

    def _validate_torch(self) -> None:
        """The device, the optimizer and the scheduler, built once on a dummy parameter."""
        import torch

        dev = str(self.device)
        if not (dev == "cpu" or dev == "cuda" or dev.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for but torch.cuda.is_available() is False")
        opt = getattr(torch.optim, str(self.optimizer), None)
        if not (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
            raise ValueError(f"optimizer must name a torch.optim optimizer class (Adam, SGD, AdamW...); got "
                             f"{self.optimizer!r}")
        sch = getattr(torch.optim.lr_scheduler, str(self.scheduler), None)
        if not (isinstance(sch, type) and hasattr(sch, "step")):
            raise ValueError(f"scheduler must name a torch.optim.lr_scheduler class (MultiStepLR, CosineAnnealingLR"
                             f"...); got {self.scheduler!r}")
        for key in ("optimizer_params", "scheduler_params"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a table/dict; got {getattr(self, key)!r}")
        try:  # build both once on a dummy parameter: a bad keyword is named now, not in a worker
            dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
            opt([torch.zeros(1, requires_grad=True)], lr=self.lr, weight_decay=self.weight_decay,
                **self.optimizer_params)
            if self.scheduler != "MultiStepLR" or self.scheduler_params:
                sch(dummy, **self.scheduler_params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"optimizer/scheduler settings are invalid: {exc}") from None

    def effective_problem_params(self, problem: ProblemSpec) -> dict[str, Any]:
        """Every generator parameter of ``problem``: the builder's defaults updated by ``problem.params``."""
        import inspect

        sig = inspect.signature(PROBLEMS[problem.name])
        out = {k: p.default for k, p in sig.parameters.items()
               if k not in ("seed", "device") and p.default is not inspect.Parameter.empty}
        out.update(problem.params)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def effective_method(self, problem: ProblemSpec, method: MethodSpec) -> MethodSpec:
        """``method`` with every hyper-parameter at its effective value on ``problem`` (generic default,
        tuned value for the pair, or the study's own)."""
        tuned = (self.tuned.get(f"{problem.name} / {method.label}") or {}).get("params") or {}
        given = {**{k: v for k, v in tuned.items() if k not in method.params}, **method.params}
        params = check_method_params(method.name, given, where="method", problem=problem.name)
        return MethodSpec(method.name, params, method.label)

    def trial_settings(self, problem: ProblemSpec, method: MethodSpec) -> dict[str, Any]:
        """The settings that define a trial's results (not its placement: device, workers and output excluded)."""
        eff = self.effective_method(problem, method).params
        eff.setdefault("lr", self.lr)
        out = {
            "problem": problem.name,
            "problem_params": self.effective_problem_params(problem),
            "method": method.name,
            "method_params": eff,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            **({"lr_milestones": list(self.lr_milestones), "lr_decay": self.lr_decay} if self.lr_milestones else {}),
        }
        if self.optimizer != "Adam" or self.optimizer_params:
            out.update(optimizer=self.optimizer, optimizer_params=self.optimizer_params)
        if self.scheduler != "MultiStepLR" or self.scheduler_params:
            out.update(scheduler=self.scheduler, scheduler_params=self.scheduler_params)
        return out

    def settings_hash(self, problem: ProblemSpec, method: MethodSpec) -> str:
        text = json.dumps(self.trial_settings(problem, method), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def effective(self) -> dict[str, Any]:
        """The configuration with every effective value: each (problem, method label) pair's full settings
        (``trials``: problem and method parameters, training settings) and their digest."""
        data = self.to_dict()
        data["problems"] = [{"name": p.name, "params": self.effective_problem_params(p)} for p in self.problems]
        data["trials"] = {
            f"{p.name} / {m.label}": {"settings": self.trial_settings(p, m), "digest": self.settings_hash(p, m)}
            for p in self.problems
            for m in self.methods
        }
        return json.loads(json.dumps(data, default=str))

    def write_effective(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` (:meth:`effective`) into ``directory``, merging the trials of earlier runs.

        Raises:
            ValueError: the directory holds results of the same (problem, method label) under other settings;
                the message lists what changed. (Use another output directory, or another method label to keep
                both.)
        """
        from .results import RESULTS_FILE, scan_results

        path = Path(directory) / "config.json"
        new = self.effective()
        old_trials: dict[str, Any] = {}
        old_tuned: dict[str, Any] = {}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
                old_trials, old_tuned = dict(old.get("trials") or {}), dict(old.get("tuned") or {})
            except (OSError, ValueError, AttributeError, TypeError):
                old_trials, old_tuned = {}, {}
        if old_trials:
            rows, _bad = scan_results(Path(directory) / RESULTS_FILE)
            have = {(r["problem"] + " / " + r["method"], r.get("settings")) for r in rows}
            for name, entry in new["trials"].items():
                old = old_trials.get(name)
                if not isinstance(old, dict) or old.get("digest") == entry["digest"]:
                    continue
                if (name, old.get("digest")) not in have:
                    continue  # no results were written under the old settings
                changes = _diff(old.get("settings") or {}, entry["settings"])
                raise ValueError(
                    f"output directory {str(directory)!r} holds results of {name!r} under other settings "
                    f"({'; '.join(changes) or 'digest ' + str(old.get('digest'))}); use another output directory, "
                    "or give the method another label to keep both"
                )
        merged = {**old_trials, **new["trials"]}
        new["trials"] = merged
        new["tuned"] = {**old_tuned, **new["tuned"]}  # the choices of earlier runs stay recorded
        tmp = path.with_name(".config.json.tmp")
        tmp.write_text(json.dumps(new, indent=2) + "\n")
        os.replace(tmp, path)
        return path


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two settings trees (``key: old -> new``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k, "<unset>"), new.get(k, "<unset>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


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


_SP = {"n": 1000, "deg": 6, "noise": 0.5}

PRESETS: dict[str, dict[str, Any]] = {
    # The default study: PyEPO's 5x5 shortest path, n = 1000, deg 6, noise half-width 0.5, a linear model, five
    # seeds: at deg 6 the linear model is misspecified enough that the decision-focused methods beat two-stage by
    # more than the seed noise (paired t-test p < 0.05 for all but straight-through; docs/studies.md), in about
    # 45 s of CPU. Two-stage comes first: it is the reference of the paired comparisons.
    "default": {
        "name": "default",
        "problems": [{"name": "shortest_path", "params": dict(_SP)}],
        # Hyper-parameters tuned for the shortest path live in methods.TUNED (chosen on tuning seeds 100-102,
        # other data sets, never on the reported seeds); other problems start from the generic defaults.
        "methods": ["two-stage", "spo+", "fy", "imle", "aimle", "blackbox", "identity"],
        "seeds": [0, 1, 2, 3, 4],
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
        # I-MLE / blackbox / FY from paths only; their tuned hyper-parameters are in methods.TUNED
        "methods": ["imle", "blackbox", "fy", "two-stage", "direct"],
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
           "device", "workers", "trial_timeout", "threads", "output", "name", "plugins", "optimizer",
           "optimizer_params", "scheduler", "scheduler_params", "select", "tensorboard", "tune", "tune_epochs",
           "tuned"}


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
