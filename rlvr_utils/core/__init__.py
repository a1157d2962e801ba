"""The RL core: what one training step needs, and nothing from the layers above.
config (the validated TrainConfig), losses (the maths, tensors in and out), objectives (who is kept, with what
advantage), update (the micro-batched steps), rollouts (sampling engines), grading (untrusted text -> reward),
prompts, evaluate (pass@k), stats (intervals), runs (a run's folder), files (atomic writes and folders, journals),
hardware (device, precision, memory plan), models (named models and loading), optim (AdamW or SGD with warm-up,
one LM step), registry (the choices of an axis, filled by a decorator), protocols (more evaluation settings, large
n), floor (a blind guesser's pass@k), envcheck (`rlvr env check`: what a CUDA run needs), quiet (third-party
log noise to a file)."""
from .. import lazy_exports

_PUBLIC = {"TrainConfig": "config", "parse_sets": "config", "OBJECTIVES": "objectives", "ENGINES": "engines",
           "make_engine": "engines", "GradingPool": "grading", "extract_answer": "grading", "RunDir": "runs",
           "pass_at_k": "stats", "evaluate": "evaluate", "load_policy": "models"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
