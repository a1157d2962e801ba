"""rlvr_utils: positive vs negative sample reinforcement for LLM math reasoning.

The layers, each a subpackage, imported only downwards (pyproject's import contract):
    cli      the command line                     study   run files -> estimands, report, figures, HTML, browser
    grid     profiles, one papermill cell, executors
    train    the RL loop (train/loop.py: open it first), preflight checks, what a run shares with its siblings
    priors   rung recipes, the pretrained family, warm starts, measuring a rung, resolving a model name
    data     the problem record, MATH loaders, generated task families
    core     config, losses, objectives, update, engines, grading, prompts, evaluation, stats, run folders, files
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

__version__ = "0.1.0"


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A PEP 562 `__getattr__` for a package's public names: {name: module}, imported on first use (the analysis
    side stays free of torch)."""
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
    return __getattr__


_PUBLIC = {"train": "train.loop", "TrainConfig": "core.config", "run_grid": "grid.sweep", "report_summary": "study.report"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
