"""The frozen, validated training config and `key=value` override parsing.

Defaults are the original small study's hyperparameters (Qwen2.5 runs: 80 steps, 32 prompts x 2
rollouts, 512 tokens, lr 1e-6, T=1.0). Other settings live in the grid's profiles (grid/profiles.py,
`PROFILES`), which resolve to complete configs; these defaults are the only other source.

Each field documents itself, as TRL's dataclass configs do (`setting`): its help, its bound or choices, and
whether only training reads it. `validate`, the training-only list, `rlvr train --help` and the CLI's fault
matrix are generated from that metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .bounds import value_error
from .files import atomic_write_json, read_json
from .grading import EXTRACTION_POLICIES
from .hardware import PRECISIONS, REF_PRECISIONS
from .losses import AGGREGATIONS, NORMALISATIONS
from .objectives import OBJECTIVES, knobs, objective_kwargs
from .optim import OPTIMIZERS
from .prompts import PROMPTS, PromptTooLong
from .protocols import protocol_errors
from .engines import ENGINES


def default_data() -> str:
    """$RLVR_DATA, else the offline MATH subset beside the checkout when present, else the hub."""
    if os.environ.get("RLVR_DATA"):
        return os.environ["RLVR_DATA"]
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "math_subset"
    return str(shared) if shared.is_dir() else "hub"


PROMPT_TOKENS = 512  # the prompt budget where the model's context has room for it (max_prompt_tokens=0)

# The bounds a field may declare, each the phrase its error and its help print.
BOUNDS: dict[str, Callable[[Any], bool]] = {
    ">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
    "in [0, 1)": lambda v: 0 <= v < 1, "in (0, 1)": lambda v: 0 < v < 1, "in (0, 1]": lambda v: 0 < v <= 1}


def setting(default: Any = MISSING, help: str = "", *, bound: str | None = None, choices: Any = None,
            training_only: bool = False, default_factory: Any = MISSING, shown: str | None = None) -> Any:
    """A config field that documents itself: `help`; a `bound` (a key of BOUNDS) or `choices` (the registry of
    names it may take, the one place that lists them; a `prefix:N` entry admits `prefix:` and any suffix);
    `training_only`: the step-0 evaluation does not read it, so runs that differ only in such settings share
    it (`train/builds.py`); `shown`: how tables print a default computed at run time."""
    if bound is not None and bound not in BOUNDS:
        raise ValueError(f"bound {bound!r} not in {', '.join(BOUNDS)}")
    meta = {"help": help, "bound": bound, "choices": choices, "training_only": training_only, "shown": shown}
    return field(default=default, default_factory=default_factory, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    # --- what is trained
    model: str = setting("smollm2-135m", "registry name (`rlvr model list`), local model directory, hub id or rung spec")
    objective: str = setting("w_reinforce", "the advantage rule (core/objectives.py)", choices=OBJECTIVES,
                             training_only=True)
    lam: float = setting(0.1, "W-REINFORCE: the weight of correct samples", bound=">= 0", training_only=True)
    grpo_scale_std: bool = setting(True, "GRPO: divide by the group's reward std", training_only=True)
    objective_args: dict = setting(help='other knobs of the objective, as JSON, e.g. {"eps": 1e-4}',
                                   default_factory=dict, training_only=True)
    seed: int = setting(0, "seeds torch, rollout and evaluation sampling, and the training problems' order", bound=">= 0")
    # --- data
    data: str = setting(help='jsonl file or folder, official MATH folder or tar, a generated task (gen:...), or "hub"',
                        default_factory=default_data, shown="$RLVR_DATA, else the MATH subset, else hub")
    train_split: str = setting("train", "the split trained on", choices=("train", "test"))
    eval_split: str = setting("test", "the split evaluated on", choices=("train", "test"))
    levels: str = setting("", 'restrict training problems, e.g. "Level 1,Level 2" ("" = all)')
    max_prompt_tokens: int = setting(0, "longer prompts are dropped (counted in the run log), not truncated; 0 = 512, "
                                        "or what the model's context leaves after the longest answer when less",
                                     bound=">= 0")
    prompt: str = setting("paper", "the prompt template (core/prompts.py)", choices=PROMPTS)
    extraction: str = setting("boxed", "the grading policy: where the answer is read", choices=EXTRACTION_POLICIES)
    # --- rollouts
    steps: int = setting(80, "RL steps (rollout batches)", bound=">= 1", training_only=True)
    prompts_per_step: int = setting(32, "prompts per rollout batch", bound=">= 1", training_only=True)
    rollouts_per_prompt: int = setting(2, "samples per prompt (the group)", bound=">= 1", training_only=True)
    temperature: float = setting(1.0, "rollout sampling temperature", bound=">= 0", training_only=True)
    top_p: float = setting(1.0, "rollout nucleus sampling", bound="in (0, 1]", training_only=True)
    max_tokens: int = setting(512, "tokens per rollout answer", bound=">= 1", training_only=True)
    min_tokens: int = setting(0, "no end of answer before this many tokens", bound=">= 0", training_only=True)
    engine: str = setting("auto", "the sampler: auto = static for a small Llama on a CPU, else vLLM where installed, "
                          "else hf", choices=ENGINES)
    hf_batch_size: int = setting(64, "sequences per HF-engine batch (tiny models sample faster in big ones)",
                                 bound=">= 1")
    vllm_gpu_memory: float = setting(0.35, "CUDA: the engine's share of the card (the policy trains beside it)",
                                     bound="in (0, 1)")
    vllm_sleep: bool = setting(False, "CUDA: offload the engine's weights/KV between rollouts")
    # --- update
    lr: float = setting(1e-6, "AdamW's learning rate", bound="> 0", training_only=True)
    warmup_steps: int = setting(0, "optimizer steps of linear learning-rate warm-up", bound=">= 0", training_only=True)
    weight_decay: float = setting(0.0, "AdamW's decoupled weight decay", bound=">= 0", training_only=True)
    adam_beta1: float = setting(0.9, "AdamW's beta1", bound="in [0, 1)", training_only=True)
    adam_beta2: float = setting(0.999, "AdamW's beta2 (the original small study: 0.95)", bound="in [0, 1)",
                                training_only=True)
    max_grad_norm: float = setting(1.0, "gradient clipping norm", bound="> 0", training_only=True)
    mini_batches: int = setting(1, "optimizer steps per rollout batch (>1 makes the clip active)", bound=">= 1",
                                training_only=True)
    mini_batch_size: int = setting(0, ">0: the paper's schedule: keep first, then cut the kept samples into mini-batches "
                                      "of this many (ceil(kept/size) steps); 0: `mini_batches`", bound=">= 0",
                                   training_only=True)
    scale_logits: bool = setting(True, "divide logits by the sampling temperature in the loss (the paper's code)",
                                 training_only=True)
    micro_batch_size: int = setting(4, "samples per forward/backward (gradient accumulation)", bound=">= 1",
                                    training_only=True)
    micro_batch_tokens: int = setting(0, ">0: instead, length-sorted micro-batches of up to this many padded tokens "
                                         "(samples x the longest; a longer sample alone; micro_batch_size unused)",
                                      bound=">= 0", training_only=True)
    clip_eps: float = setting(0.2, "PPO clip range of the importance ratio", bound="> 0", training_only=True)
    loss_agg: str = setting("token_mean", "token_mean (paper) | seq_mean (original small study)", choices=AGGREGATIONS,
                            training_only=True)
    loss_norm: str = setting("all", "divide by all samples' tokens/seqs, or by the kept ones only",
                             choices=NORMALISATIONS, training_only=True)
    entropy_coef: float = setting(0.0, "weight of the entropy bonus", bound=">= 0", training_only=True)
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward: less memory, ~30% more "
                                                  "compute", training_only=True)
    kl_coef: float = setting(0.0, "k3 KL to the initial policy (keeps a frozen copy when > 0)", bound=">= 0",
                             training_only=True)
    ref_precision: str = setting("fp32", "the frozen reference copy's weights (kl_coef, track_kl): bf16 halves its "
                                         "memory (matmuls under bf16 autocast round the weights to bf16 anyway)",
                                 choices=REF_PRECISIONS,
                                 training_only=True)
    track_kl: bool = setting(True, "log KL(pi_t || pi_0) on each step's samples (keeps a frozen copy)",
                             training_only=True)
    tis_cap: float = setting(0.0, "> 0: truncated importance sampling of engine vs policy, weights capped here",
                             bound=">= 0", training_only=True)
    sync_guard_steps: int = setting(3, "the first steps of a run (or a resume) stop when the engine's log-probs and the "
                                       "policy's differ beyond the precision's bound (core/update.py SYNC_BOUNDS)",
                                    bound=">= 0", training_only=True)
    optimizer: str = setting("adamw", "adamw, or sgd with `momentum`: a step that scales with the gradient (core/optim.py)",
                             choices=OPTIMIZERS, training_only=True)
    momentum: float = setting(0.9, "SGD's momentum (adamw ignores it)", bound="in [0, 1)", training_only=True)
    dynamic_kept: int = setting(0, "> 0: draw rollout batches until the objective keeps this many samples (then keep "
                                   "exactly this many), at most `dynamic_max_batches` batches a step", bound=">= 0",
                                training_only=True)
    dynamic_max_batches: int = setting(4, "the cap on rollout batches drawn per step (the first one included)",
                                       bound=">= 1", training_only=True)
    # --- evaluation
    eval_every: int = setting(10, "steps between evaluations (0 = only at step 0 and at the end)", bound=">= 0",
                              training_only=True)
    eval_problems: int = setting(100, "a fixed, seeded subset of the eval split", bound=">= 0")
    eval_samples: int = setting(4, "n for pass@k (k = 1, 2, 4, ... <= n)", bound=">= 1")
    eval_temperature: float = setting(0.6, "evaluation sampling temperature", bound=">= 0")
    eval_top_p: float = setting(0.95, "evaluation nucleus sampling", bound="in (0, 1]")
    eval_max_tokens: int = setting(0, "tokens per evaluation answer (0 = max_tokens)", bound=">= 0")
    eval_t1: bool = setting(True, "also the original study's protocol: 1 sample at T=1.0")
    eval_protocols: dict = setting(help='more evaluation settings, e.g. {"paper": {"samples": 512, "temperature": 0.6, '
                                        '"top_p": 0.95}}: pass@k to k = n/2 (core/protocols.py)', default_factory=dict)
    # --- plumbing
    checkpoint_every: int = setting(10, "steps between checkpoints", bound=">= 0", training_only=True)
    keep_checkpoint: bool = setting(False, "keep checkpoints/ after a run is done (1.6 GB for 135M + AdamW)",
                                    training_only=True)
    base_from: str = setting("", "another grid folder whose cells' step-0 evaluations this run may copy where it "
                                 "would sample the same (arms of one study in their own folders)", training_only=True)
    grade_timeout: float = setting(5.0, "seconds per graded answer (hard)", bound="> 0")
    grade_workers: int = setting(2, "grading processes", bound=">= 1")
    max_model_len: int = setting(0, "prompt + answer tokens the engine holds, at most the model's context "
                                    "(max_position_embeddings); 0 = max_prompt_tokens + the longest answer", bound=">= 0")
    device: str = setting("auto", "auto = CUDA when available", choices=("auto", "cpu", "cuda", "cuda:N"))
    precision: str = setting("auto", "the policy's matmuls and both engines; auto = bf16 on CUDA, on a CPU the faster "
                                     "one (core/hardware.py)", choices=PRECISIONS)

    def __post_init__(self):
        errors = validate(self)
        if errors:
            raise ValueError("invalid config: " + "; ".join(errors))

    @property
    def eval_length(self) -> int:
        """Tokens per evaluation answer: eval_max_tokens, or max_tokens when it is 0."""
        return self.eval_max_tokens or self.max_tokens

    @property
    def answer_length(self) -> int:
        """The longest answer a run samples: max_tokens, or eval_max_tokens when longer."""
        return max(self.max_tokens, self.eval_max_tokens)

    def fit_context(self, context: int) -> "TrainConfig":
        """This config with its context settings resolved against the model's `context` (max_position_embeddings):
        max_prompt_tokens 0 -> 512, or what the context leaves after the longest answer when less; max_model_len
        0 -> that prompt budget + the longest answer. Resolved once, before any weights load; a budget that cannot
        fit raises PromptTooLong naming the setting to change."""
        where = f"the model's context of {context} tokens (max_position_embeddings in its config.json)"
        if self.max_model_len > context:
            raise PromptTooLong(f"max_model_len={self.max_model_len} exceeds {where}: lower max_model_len, or set it "
                                "to 0 (max_prompt_tokens + the longest answer)")
        length = self.max_model_len or context
        what = f"max_model_len={self.max_model_len}" if self.max_model_len else where
        answer = "max_tokens" if self.max_tokens >= self.eval_max_tokens else "eval_max_tokens"
        if self.answer_length >= length:
            raise PromptTooLong(f"{answer}={self.answer_length} leaves no room for a prompt in {what}: lower {answer}")
        if self.max_prompt_tokens + self.answer_length > length:
            raise PromptTooLong(f"max_prompt_tokens={self.max_prompt_tokens} + {answer}={self.answer_length} exceed "
                                f"{what}: lower max_prompt_tokens (longer prompts are dropped) or {answer}, or set "
                                f"max_prompt_tokens=0 (here {min(PROMPT_TOKENS, length - self.answer_length)})")
        prompt = self.max_prompt_tokens or min(PROMPT_TOKENS, length - self.answer_length)
        return self.replace(max_prompt_tokens=prompt, max_model_len=self.max_model_len or prompt + self.answer_length)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = True) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown and strict:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: coerce(k, v) for k, v in d.items() if k in known})

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        atomic_write_json(path, {**self.to_dict(), **({"_meta": extra} if extra else {})})

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        d = read_json(path, fix=f"a run's config.json is written once, whole: delete {Path(path).parent} "
                                "and run it again")
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object (a run's config), got {type(d).__name__}")
        d.pop("_meta", None)
        return cls.from_dict(d)


def field_errors(obj: Any, choices: dict[str, Any] | None = None, at_least_1: tuple[str, ...] = (),
                 above_0: tuple[str, ...] = (), at_least_0: tuple[str, ...] = ()) -> list[str]:
    """One message per field of `obj` (a config or a rung recipe) outside its registry (`choices`: field -> the
    names it may take, the one place that lists them) or below its bound."""
    e = [f"{k}={getattr(obj, k)!r} not in {', '.join(known)}" for k, known in (choices or {}).items()
         if getattr(obj, k) not in known]
    e += [f"{k} must be >= 1, got {getattr(obj, k)}" for k in at_least_1 if getattr(obj, k) < 1]
    e += [f"{k} must be > 0, got {getattr(obj, k)}" for k in above_0 if not getattr(obj, k) > 0]
    return e + [f"{k} must be >= 0, got {getattr(obj, k)}" for k in at_least_0 if getattr(obj, k) < 0]


def among(value: Any, known: Any) -> bool:
    """`value` is one of `known` (a registry or a tuple); a `prefix:N` entry admits `prefix:` and any suffix."""
    return value in known or any(k.endswith(":N") and str(value).startswith(k[:-1]) for k in known)


def metadata_errors(obj: Any) -> list[str]:
    """One message per field not of its declared type (a bool only a bool, a number finite and no bool), or
    outside the choices or bound its `setting` declares."""
    e = []
    hints = _type_hints(type(obj))
    for f in fields(obj):
        v, known, bound = getattr(obj, f.name), f.metadata.get("choices"), f.metadata.get("bound")
        if hints[f.name] in (bool, int, float) and (err := value_error(f.name, hints[f.name], v)):
            e.append(err)
            continue
        if known is not None and not among(v, known):
            e.append(f"{f.name}={v!r} not in {', '.join(known)}")
        if bound is not None and not BOUNDS[bound](v):
            e.append(f"{f.name} must be {bound}, got {v}")
    return e


def validate(c: TrainConfig) -> list[str]:
    """Every message a config earns: its fields' own rules (`setting`), then those that tie fields together."""
    e = metadata_errors(c)
    if c.objective in OBJECTIVES and not any(err.startswith(k + " ") for err in e for k in knobs(c.objective)):
        try:
            objective_kwargs(c)
        except ValueError as err:
            e.append(str(err))
    e += protocol_errors(c.eval_protocols)
    if c.dynamic_kept and c.mini_batches != 1:
        e.append("dynamic_kept draws a varying number of samples: split its update with mini_batch_size, not mini_batches")
    if c.min_tokens > c.max_tokens:
        e.append(f"min_tokens={c.min_tokens} > max_tokens={c.max_tokens}")
    batch = c.prompts_per_step * c.rollouts_per_prompt
    if c.mini_batch_size and c.mini_batches != 1:
        e.append("set one of mini_batch_size (the paper's schedule) and mini_batches (fixed count), not both")
    if c.mini_batches >= 1 and batch % c.mini_batches:
        e.append(f"rollout batch {c.prompts_per_step}x{c.rollouts_per_prompt}={batch} is not divisible by "
                 f"mini_batches={c.mini_batches}")
    if c.objective == "grpo" and c.rollouts_per_prompt < 2:
        e.append("grpo needs rollouts_per_prompt >= 2 (group baseline)")
    if c.max_model_len and (c.answer_length >= c.max_model_len or c.max_prompt_tokens + c.answer_length > c.max_model_len):
        e.append(f"max_prompt_tokens + max(max_tokens, eval_max_tokens) = {c.max_prompt_tokens} + {c.answer_length} "
                 f"leaves no room in max_model_len={c.max_model_len}: lower max_prompt_tokens or max_tokens, or raise "
                 "max_model_len (0: the model's context)")
    return e


# Settings that shape training only: two runs that agree on everything else evaluate the same model with the
# same seeds at step 0, so one can reuse the other's step-0 evaluation (train/builds.py).
TRAINING_ONLY = frozenset(f.name for f in fields(TrainConfig) if f.metadata["training_only"])


def shown_default(f: dataclasses.Field) -> Any:
    """A field's default as help and tables print it: a default computed at run time by its `shown` text."""
    if f.default_factory is MISSING:
        return f.default
    return f.metadata.get("shown") or f.default_factory()


def config_help(cls: type = TrainConfig, width: int = 100) -> str:
    """Every field of `cls`: its name, default and rule, then its help (`rlvr train --help`)."""
    out = []
    for f in fields(cls):
        m = f.metadata
        rule = [m["bound"]] if m.get("bound") else []
        rule += ["one of " + ", ".join(m["choices"])] if m.get("choices") is not None else []
        rule += ["training only"] if m.get("training_only") else []
        out.append(f"  {f.name} = {m.get('shown') or repr(shown_default(f))}" + (f"  ({'; '.join(rule)})" if rule else ""))
        out += textwrap.wrap(m.get("help", ""), width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types, once per class (resolving them per field made a 180-cell grid take 17 s)."""
    return typing.get_type_hints(cls)


def coerce(name: str, value: Any, cls: type | None = None) -> Any:
    """A value from the command line / papermill into the field's declared type (of TrainConfig or `cls`)."""
    hint = _type_hints(cls or TrainConfig)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is dict and isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise ValueError(f"{name} expects a JSON object, e.g. {name}={{\"eps\": 1e-4}}")
        return value
    if not isinstance(value, str) or hint is str:
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    try:
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return hint(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a valid {hint.__name__}") from None


def parse_sets(pairs: list[str] | None, cls: type | None = None) -> dict[str, Any]:
    """['lr=1e-6', 'objective=nsr'] -> {'lr': 1e-06, 'objective': 'nsr'} (typed by TrainConfig's or `cls`'s fields)."""
    cls = cls or TrainConfig
    known = {f.name for f in fields(cls)}
    raw = split_sets(pairs)
    for k in raw:
        if k not in known:
            raise ValueError(f"unknown config key {k!r} in --set {k}={raw[k]}; known: {', '.join(sorted(known))}")
    return {k: coerce(k, v, cls) for k, v in raw.items()}


def split_sets(pairs: list[str] | None) -> dict[str, str]:
    """['lr=1e-6', ' seeds = 0,1'] -> {'lr': '1e-6', 'seeds': '0,1'}: untyped, each key once."""
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set expects key=value, got {p!r}")
        k, v = (x.strip() for x in p.split("=", 1))
        if k in out:
            raise ValueError(f"--set {k} given twice (the second: {p!r}): say it once")
        out[k] = v
    return out
