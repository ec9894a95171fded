"""Comparative studies: benchmark problems, the study runner and reports; registries for your own ones."""

from .config import PRESETS, MethodSpec, ProblemSpec, StudyConfig, load_config, preset
from .methods import METHODS, MethodContext, TrainingObjective, make_method, method_defaults
from .models import DirectPathCNN, LinearModel, TruncatedResNet18, WarcraftCNN
from .problems import PROBLEMS, Problem, make_problem
from .registry import TUNED, load_plugins, register_method, register_problem
from .report import build_report, summarize
from .reproduce import load_reproduction, reproduction_page, run_reproduction
from .runner import StudyError, StudyInterrupted, StudyLocked, read_results, run_study
from .tuning import tune_study
from .warcraft import TERRAINS, Terrain, WarcraftMaps, generate_maps, generate_terrain, render_terrain
from .warcraft_data import load_warcraft_split

__all__: list[str] = ["Problem", "make_problem", "PROBLEMS", "LinearModel", "WarcraftCNN", "TruncatedResNet18",
    "DirectPathCNN",
    "StudyConfig", "ProblemSpec", "MethodSpec", "PRESETS", "preset", "load_config",
    "METHODS", "MethodContext", "TrainingObjective", "make_method", "method_defaults", "TUNED",
    "register_problem", "register_method", "load_plugins",
    "run_study", "read_results", "StudyError", "StudyInterrupted", "StudyLocked",
    "build_report", "summarize", "tune_study", "load_reproduction", "run_reproduction", "reproduction_page",
    "TERRAINS", "Terrain", "WarcraftMaps", "generate_maps", "generate_terrain", "render_terrain",
    "load_warcraft_split",
]
