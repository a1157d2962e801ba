"""Rungs of a prior ladder named by their recipe: `warm:n=200,seed=0` (an SFT warm start of a base model) or
`family:size=1m,tokens=2000000` (a model of the family pretrained from scratch).

A spec works wherever a model name does; this module only parses specs and says what they are (their
cache key, their place on the prior axis, a folder-safe name): light enough for the analysis side.
Building a rung is `warmstart.py`'s or `family.py`'s job, and resolving any model name to a folder is
`resolve.py`'s. Adding a kind of rung is one decorated recipe class.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..core.config import coerce, field_errors
from ..core.files import read_json
from ..core.grading import EXTRACTION_POLICIES
from ..core.hardware import param_count
from ..core.prompts import PROMPTS
from ..core.protocols import SAMPLING
from ..core.registry import Registry
from ..core.engines import ENGINES
from ..data.tasks import task_parts

RUNG_KINDS = Registry("rung kind")  # spec prefix -> recipe class


def rung_kind(prefix: str):
    """Register a recipe class under its spec prefix (`warm:`)."""
    def register(cls: type) -> type:
        cls.prefix = prefix
        return RUNG_KINDS.register(prefix)(cls)
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


def split_models(value: str) -> list[str]:
    """A comma-separated list of models where a rung spec's own fields are comma-separated too:
    `family:size=1m,tokens=1000000,warm:n=0,/path/m` -> three models. A `field=value` part after a spec
    belongs to that spec."""
    out: list[str] = []
    for part in (x.strip() for x in value.split(",")):
        if out and is_spec(out[-1]) and not is_spec(part) and "=" in part and "/" not in part.partition("=")[0]:
            out[-1] += "," + part
        elif part:
            out.append(part)
    return out


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
    engine: str = "auto"                             # samples the prior (engines.ENGINES): vLLM where installed

    recipe_file = "warmstart.json"  # written beside the rung's weights
    EVAL_FIELDS = ("extraction", "eval_problems", "eval_samples", "max_tokens", "engine")  # measure, not shape

    def __post_init__(self):
        # checked where the spec is parsed: a bad field would otherwise fail after the SFT, in every cell on the rung
        e = field_errors(self, {"engine": ENGINES, "extraction": EXTRACTION_POLICIES, "prompt": PROMPTS},
                         at_least_1=("batch_size", "eval_problems", "max_tokens"), above_0=("lr",),
                         at_least_0=("n", "epochs", "seed", "eval_samples"))
        if e:
            raise ValueError("invalid warm start: " + "; ".join(e))

    def key(self) -> str:
        """The rung's folder name: readable, plus a hash of the whole recipe."""
        return f"{Path(self.base.rstrip('/')).name}-n{self.n}-s{self.seed}-{recipe_hash(self)}"

    @property
    def order(self) -> float:
        """Its place on the prior axis: the SFT dose."""
        return float(self.n)

    @property
    def label(self) -> str:
        return f"n={self.n}" + _beyond_defaults(self, ("n",))

    @property
    def short(self) -> str:
        return f"warm-n{self.n}"

    def describe(self, saved: dict, prior: dict) -> str:
        """The ladder table's rung cell (`saved`: the recipe file, with the base's resolved path)."""
        return f"{Path(saved.get('base_path', self.base)).name} n={self.n} ({self.n} × {self.epochs} epochs of {self.data})"


# The family's sizes: hidden width and layers; one shape rule for all (`family_shape`).
FAMILY_SIZES: dict[str, tuple[int, int]] = {"1m": (128, 4), "3m": (192, 6), "7m": (256, 8)}


def family_shape(size: str) -> dict[str, int]:
    """The family's one shape rule: heads of 64, a SwiGLU width of 8/3 the hidden (rounded up to 32)."""
    hidden, layers = FAMILY_SIZES[size]
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // 64,
            "intermediate_size": -(-hidden * 8 // 3 // 32) * 32}


def family_params(size: str, vocab: int) -> int:
    """Parameters of a family model (a Llama with tied embeddings and no biases, `family.model_config`)."""
    s = family_shape(size)
    return param_count(SimpleNamespace(**s, vocab_size=vocab, num_key_value_heads=s["num_attention_heads"], head_dim=64,
                                       tie_word_embeddings=True, model_type="llama"))


@rung_kind("family:")
@dataclass(frozen=True)
class FamilyRung:
    size: str = "1m"                                 # FAMILY_SIZES
    tokens: int = 2_000_000                          # pretraining budget (training tokens seen): the dose
    seed: int = 0                                    # the initialisation and the data order
    corpus: str = "chain:1=200+2=6000+3=30000"      # family:difficulty=examples+..., generated worked solutions
    task: str = "gen:chain?difficulty=2&n=4000"      # the RL task: its test split is held out of the corpus
    vocab: int = 512
    lr: float = 1e-3
    warmup: int = 100                                # steps of linear warm-up, then constant (so budgets nest)
    batch: int = 32                                  # examples per step
    # how the prior is measured (not part of the weights: `key` leaves them out)
    eval_problems: int = 256
    eval_samples: int = 32
    eval_temperature: float = 1.0
    max_tokens: int = 96
    engine: str = "hf"
    # more protocols measured beside that one, on the same problems and n: `+`-separated names of
    # `core.protocols.SAMPLING` ("paper": T = 0.6, top-p 0.95), saved under prior.json's "protocols"
    eval_also: str = ""

    recipe_file = "family.json"
    EVAL_FIELDS = ("eval_problems", "eval_samples", "eval_temperature", "max_tokens", "engine", "eval_also")

    def __post_init__(self):
        if self.size not in FAMILY_SIZES:
            raise ValueError(f"family size {self.size!r} not in {', '.join(FAMILY_SIZES)}")
        if self.tokens < 1 or self.batch < 1 or self.vocab < 300:
            raise ValueError(f"family rung needs tokens >= 1, batch >= 1 and vocab >= 300 (256 bytes + merges), got "
                             f"tokens={self.tokens}, batch={self.batch}, vocab={self.vocab}")
        task_parts(self.task)  # a spec that does not parse is named now, before a corpus is drawn
        for name in self.also:
            SAMPLING.pick(name, "eval_also: ")
        if self.also and self.eval_samples < 1:
            raise ValueError(f"eval_also={self.eval_also!r} measures with the rung's eval_samples: set it >= 1")

    @property
    def also(self) -> tuple[str, ...]:
        """The protocols measured beside the main one (`eval_also`), by name."""
        return tuple(filter(None, self.eval_also.split("+")))

    def measured_with(self) -> dict:
        """How the main prior is measured (prior.json says it: a prior measured otherwise is measured again). The
        protocols of `eval_also` are checked one by one, so asking for one more never re-measures the rest."""
        return {k: getattr(self, k) for k in self.EVAL_FIELDS if k != "eval_also"}

    def run_key(self) -> str:
        """The pretraining run this rung is a checkpoint of: every weight-shaping field but the budget."""
        train = {k: v for k, v in asdict(self).items() if k not in (*self.EVAL_FIELDS, "tokens")}
        h = hashlib.sha1(json.dumps(train, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.size}-s{self.seed}-{h}"

    def key(self) -> str:
        return f"{self.run_key()}/t{self.tokens}"

    @property
    def params(self) -> int:
        """At the nominal vocabulary (a BPE may learn fewer tokens: family.json has the model's own count)."""
        return family_params(self.size, self.vocab)

    @property
    def order(self) -> float:
        """Its place on the prior axis: pretraining compute, 6 x parameters x tokens."""
        return 6.0 * self.params * self.tokens

    @property
    def label(self) -> str:
        return f"{self.size}/{_human(self.tokens)}" + _beyond_defaults(self, ("size", "tokens"))

    @property
    def short(self) -> str:
        """fam-1m-2M; a build other than seed 0 adds -b<seed> (builds of one rung side by side in a grid)."""
        return f"fam-{self.size}-{_human(self.tokens)}" + (f"-b{self.seed}" if self.seed else "")

    def describe(self, saved: dict, prior: dict) -> str:
        return (f"{self.size} ({self.params / 1e6:.2f}M params) × {prior.get('tokens_seen', self.tokens) / 1e6:.2f}M "
                f"tokens, seed {self.seed}")


def _beyond_defaults(recipe: Any, shown: tuple[str, ...]) -> str:
    """' seed=1 vocab=1024': the weight-shaping fields a recipe sets away from their defaults, beyond those its
    label shows. The analysis groups runs by label: two rungs of one grid must never share one."""
    skip = {*shown, *recipe.EVAL_FIELDS}
    parts = [f"{f.name}={Path(str(v)).name if '/' in str(v) else v}" for f in fields(recipe)
             if f.name not in skip and (v := getattr(recipe, f.name)) != f.default]
    return "".join(f" {p}" for p in parts)


def _human(n: int) -> str:
    """2000000 -> 2M, 500000 -> 500k."""
    for unit, s in ((1_000_000, "M"), (1_000, "k")):
        if n >= unit:
            return f"{n / unit:g}{s}"
    return str(n)


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
