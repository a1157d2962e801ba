"""One training run: the RL loop (loop.py, the file to open first), the checks before any weights load
(preflight), and what a run shares with its siblings in a grid (builds: the base evaluation, the weights); a
step's rollouts (dynamic: one batch, or until K samples are kept) and its evaluations (evaluation); its first
step by hand (handstep, what notebook 03 shows before training)."""
from .. import lazy_exports

_PUBLIC = {"train": "loop", "preflight": "preflight", "check_inputs": "preflight", "shared_base_eval": "builds"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
