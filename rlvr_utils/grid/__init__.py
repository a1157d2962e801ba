"""A grid of runs: named designs (profiles), one papermill cell (cell), where cells run (executors: local, Ray),
and the sweep that skips done cells and resumes the rest (sweep)."""
from .. import lazy_exports

_PUBLIC = {"PROFILES": "profiles", "cells": "profiles", "run_cell": "cell", "EXECUTORS": "executors",
           "run_grid": "sweep"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
