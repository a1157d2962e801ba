"""The prior axis: rungs named by their recipe (recipes), the tiny Llama family pretrained from scratch (family),
SFT warm starts (warmstart), a rung's measured prior (measure), any model name -> a folder (resolve)."""
from .. import lazy_exports

_PUBLIC = {"parse_spec": "recipes", "short_name": "recipes", "build_rung": "family", "warmstart": "warmstart",
           "measure": "measure", "resolve_model": "resolve"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
