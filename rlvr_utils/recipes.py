"""Rungs of a prior ladder named by their recipe: `warm:n=200,seed=0` (an SFT warm start of a base model).

A spec works wherever a model name does; this module only parses specs and says what they are (their
cache key, their place on the prior axis, a folder-safe name): light enough for the analysis side.
Building a rung is `warmstart.py`'s job, and resolving any model name to a folder is `rungs.py`'s.
Adding a kind of rung is one decorated recipe class.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .config import coerce
from .files import read_json

RUNG_KINDS: dict[str, type] = {}  # spec prefix -> recipe class


def rung_kind(prefix: str):
    """Register a recipe class under its spec prefix (`warm:`)."""
    def register(cls: type) -> type:
        cls.prefix = prefix
        RUNG_KINDS[prefix] = cls
        return cls
    return register


def parse_spec(spec: str) -> Any:
    """`warm:n=200,seed=0` -> its recipe (commas separate fields; a field's value may hold `=` and `&`).
    None for a name that is not a rung spec."""
    for prefix, cls in RUNG_KINDS.items():
        if isinstance(spec, str) and spec.startswith(prefix):
            names = [f.name for f in fields(cls)]
            kw = {}
            for part in filter(None, spec[len(prefix):].split(",")):
                k, sep, v = part.partition("=")
                if not sep or k not in names:
                    raise ValueError(f"{spec!r}: expected field=value with a {cls.__name__} field "
                                     f"({', '.join(names)}), got {part!r}")
                kw[k] = coerce(k, v, cls)
            return cls(**kw)
    return None


def is_spec(name: str) -> bool:
    return isinstance(name, str) and any(name.startswith(p) for p in RUNG_KINDS)


def recipe_hash(recipe: Any) -> str:
    return hashlib.sha1(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:8]


@rung_kind("warm:")
@dataclass(frozen=True)
class WarmStart:
    base: str = "smollm2-135m"                       # registry name or local model directory
    data: str = "gen:chain?difficulty=2&n=5000"      # a task spec or MATH source: train split = SFT data
    n: int = 200                                     # worked solutions trained on (0 = the base, measured)
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 8
    seed: int = 0
    prompt: str = "answer_is"                        # as the RL runs on these rungs (weak models rarely box)
    extraction: str = "boxed_or_answer_is"
    eval_problems: int = 64                          # held-out (test split) problems for the prior
    eval_samples: int = 16                           # pass@k up to k = this, at T=0.6 (0: held-out loss only)
    max_tokens: int = 160
    engine: str = "auto"                             # samples the prior (rollouts.ENGINES): vLLM where installed

    recipe_file = "warmstart.json"  # written beside the rung's weights

    def key(self) -> str:
        """The rung's folder name: readable, plus a hash of the whole recipe."""
        return f"{Path(self.base.rstrip('/')).name}-n{self.n}-s{self.seed}-{recipe_hash(self)}"

    @property
    def order(self) -> float:
        """Its place on the prior axis: the SFT dose."""
        return float(self.n)

    @property
    def label(self) -> str:
        return f"n={self.n}"

    @property
    def short(self) -> str:
        return f"warm-n{self.n}"


def same_model(a: Any, b: str) -> bool:
    """One model under two names: rung specs are compared by their recipe (their cache key)."""
    if not isinstance(a, str):
        return False
    if is_spec(a) and is_spec(b):
        try:
            return parse_spec(a).key() == parse_spec(b).key()
        except ValueError:
            return a == b
    return a == b


def short_name(spec: str) -> str:
    """A folder-safe name for a model: a rung's dose, else the path's last part or the registry name."""
    if is_spec(spec):
        return parse_spec(spec).short
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec.rstrip("/")).name or spec)


def rung_of(config: dict) -> tuple[float, str]:
    """(order, label) of the rung a run (its saved config.json) started from: from the recipe beside its
    weights, or from its spec when the rung is not on this machine (committed runs read anywhere), else
    the model's name (no order: a named model stands beside the ladder, unordered)."""
    model = str(config.get("_meta", {}).get("model_path") or config.get("model", ""))
    for cls in RUNG_KINDS.values():
        f = Path(model) / cls.recipe_file
        if f.exists():
            saved = read_json(f)
            r = cls(**{k: v for k, v in saved.items() if k in {x.name for x in fields(cls)}})
            return r.order, r.label
    recipe = parse_spec(str(config.get("model", "")))
    if recipe is not None:
        return recipe.order, recipe.label
    return float("nan"), Path(model.rstrip("/")).name or model
