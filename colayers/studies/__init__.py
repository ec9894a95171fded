"""Comparative studies: benchmark problems, the study runner and reports."""

from .models import DirectPathCNN, LinearModel, WarcraftCNN
from .problems import PROBLEMS, Problem, make_problem

__all__: list[str] = ["Problem", "make_problem", "PROBLEMS", "LinearModel", "WarcraftCNN", "DirectPathCNN"]
