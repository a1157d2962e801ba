"""The frozen, validated training config and `key=value` override parsing.

Defaults are the original small study's hyperparameters (Qwen2.5 runs: 80 steps, 32 prompts x 2
rollouts, 512 tokens, lr 1e-6, T=1.0). Other settings live in the grid's profiles (grid.PROFILES),
which resolve to complete configs; these defaults are the only other source.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .files import atomic_write_json, read_json
from .grading import EXTRACTION_POLICIES
from .hardware import PRECISIONS
from .losses import AGGREGATIONS, NORMALISATIONS
from .objectives import OBJECTIVES, objective_kwargs
from .optim import OPTIMIZERS
from .prompts import PROMPTS
from .protocols import protocol_errors
from .rollouts import ENGINES


def default_data() -> str:
    """$RLVR_DATA, else the offline MATH subset beside the checkout when present, else the hub."""
    if os.environ.get("RLVR_DATA"):
        return os.environ["RLVR_DATA"]
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "math_subset"
    return str(shared) if shared.is_dir() else "hub"


@dataclass(frozen=True)
class TrainConfig:
    # --- what is trained
    model: str = "smollm2-135m"        # registry name, local dir or hub id
    objective: str = "w_reinforce"      # rlvr_utils.core.objectives.OBJECTIVES
    lam: float = 0.1                    # W-REINFORCE weight of correct samples
    grpo_scale_std: bool = True         # GRPO: divide by the group's reward std
    objective_args: dict = field(default_factory=dict)  # other knobs of the objective, e.g. {"eps": 1e-4}
    seed: int = 0
    # --- data
    data: str = field(default_factory=default_data)  # jsonl file/dir, official MATH dir/tar, or "hub"
    train_split: str = "train"
    eval_split: str = "test"
    levels: str = ""                    # e.g. "Level 1,Level 2": restrict training problems ("" = all)
    max_prompt_tokens: int = 512        # longer prompts are dropped (counted in the run log), not truncated
    prompt: str = "paper"               # rlvr_utils.core.prompts.PROMPTS
    extraction: str = "boxed"           # grading policy: boxed | boxed_or_answer_is | boxed_or_last_number
    # --- rollouts
    steps: int = 80
    prompts_per_step: int = 32
    rollouts_per_prompt: int = 2
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    min_tokens: int = 0
    engine: str = "auto"                # auto | vllm | hf
    hf_batch_size: int = 64             # sequences per HF-engine batch (tiny models sample faster in big ones)
    vllm_gpu_memory: float = 0.35       # CUDA: the engine's share of the card (the policy trains beside it)
    vllm_sleep: bool = False            # CUDA: offload the engine's weights/KV between rollouts
    # --- update
    lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999           # the original small study: 0.95
    max_grad_norm: float = 1.0
    mini_batches: int = 1               # optimizer steps per rollout batch (>1 makes the clip active)
    mini_batch_size: int = 0            # >0: the paper's schedule: keep first, then cut the kept samples into
                                        # mini-batches of this many (ceil(kept/size) steps); 0: `mini_batches`
    scale_logits: bool = True           # divide logits by the sampling temperature in the loss (the paper's code)
    micro_batch_size: int = 4           # samples per forward/backward (gradient accumulation)
    clip_eps: float = 0.2
    loss_agg: str = "token_mean"        # token_mean (paper) | seq_mean (original small study)
    loss_norm: str = "all"              # divide by all samples' tokens/seqs, or by the kept ones only
    entropy_coef: float = 0.0
    gradient_checkpointing: bool = False  # recompute activations in the backward: less memory, ~30% more compute
    kl_coef: float = 0.0                # k3 KL to the initial policy (keeps a frozen copy when > 0)
    track_kl: bool = True               # log KL(pi_t || pi_0) on each step's samples (keeps a frozen copy)
    tis_cap: float = 0.0                # > 0: truncated importance sampling of engine vs policy, weights capped here
    optimizer: str = "adamw"            # adamw | sgd (with `momentum`: a step that scales with the gradient; optim.py)
    momentum: float = 0.9               # SGD's momentum (adamw ignores it)
    dynamic_kept: int = 0               # > 0: draw rollout batches until the objective keeps this many samples (then
                                        # keep exactly this many), at most `dynamic_max_batches` batches a step
    dynamic_max_batches: int = 4        # the cap on rollout batches drawn per step (the first one included)
    # --- evaluation
    eval_every: int = 10                # 0 = only at step 0 and at the end
    eval_problems: int = 100            # fixed, seeded subset of the eval split
    eval_samples: int = 4               # n for pass@k (k = 1, 2, 4, ... <= n)
    eval_temperature: float = 0.6
    eval_top_p: float = 0.95
    eval_max_tokens: int = 0            # 0 = max_tokens
    eval_t1: bool = True                # also the original study's protocol: 1 sample at T=1.0
    eval_protocols: dict = field(default_factory=dict)  # more settings, e.g. {"paper": {"samples": 512,
                                        # "temperature": 0.6, "top_p": 0.95}}: pass@k to k = n/2 (core/protocols.py)
    # --- plumbing
    checkpoint_every: int = 10
    keep_checkpoint: bool = False       # keep checkpoints/ after a run is done (1.6 GB for 135M + AdamW)
    grade_timeout: float = 5.0
    grade_workers: int = 2
    max_model_len: int = 2048
    device: str = "auto"                # auto (CUDA when available) | cpu | cuda | cuda:N
    precision: str = "auto"             # auto | fp32 | bf16 for the policy's matmuls and both engines;
                                        # auto = bf16 on CUDA, on a CPU the faster one (hardware.py)

    def __post_init__(self):
        errors = validate(self)
        if errors:
            raise ValueError("invalid config: " + "; ".join(errors))

    @property
    def eval_length(self) -> int:
        """Tokens per evaluation answer: eval_max_tokens, or max_tokens when it is 0."""
        return self.eval_max_tokens or self.max_tokens

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


def validate(c: TrainConfig) -> list[str]:
    e = field_errors(c, {"optimizer": OPTIMIZERS})
    e += field_errors(c, {"objective": OBJECTIVES, "loss_agg": AGGREGATIONS, "loss_norm": NORMALISATIONS, "engine": ENGINES,
                         "precision": PRECISIONS, "prompt": PROMPTS, "extraction": EXTRACTION_POLICIES})
    if c.objective in OBJECTIVES:
        try:
            objective_kwargs(c)
        except ValueError as err:
            e.append(str(err))
    e += field_errors(c, at_least_1=("steps", "prompts_per_step", "rollouts_per_prompt", "max_tokens", "mini_batches",
                                     "micro_batch_size", "grade_workers", "max_model_len", "max_prompt_tokens",
                                     "eval_samples", "hf_batch_size", "dynamic_max_batches"))
    if not (0 <= c.adam_beta1 < 1 and 0 <= c.adam_beta2 < 1):
        e.append(f"adam_beta1, adam_beta2 must be in [0, 1), got {c.adam_beta1}, {c.adam_beta2}")
    e += field_errors(c, above_0=("lr", "clip_eps", "grade_timeout", "max_grad_norm"),
                      at_least_0=("seed", "lam", "weight_decay", "entropy_coef", "kl_coef", "tis_cap", "warmup_steps",
                                  "eval_every", "eval_problems", "checkpoint_every", "min_tokens", "eval_max_tokens",
                                  "temperature", "eval_temperature", "dynamic_kept"))
    e += protocol_errors(c.eval_protocols)
    if not 0 <= c.momentum < 1:
        e.append(f"momentum must be in [0, 1), got {c.momentum}")
    if c.dynamic_kept and c.mini_batches != 1:
        e.append("dynamic_kept draws a varying number of samples: split its update with mini_batch_size, not mini_batches")
    if not 0 < c.vllm_gpu_memory < 1:
        e.append(f"vllm_gpu_memory must be in (0, 1), got {c.vllm_gpu_memory}")
    if not 0 < c.top_p <= 1 or not 0 < c.eval_top_p <= 1:
        e.append("top_p and eval_top_p must be in (0, 1]")
    if c.min_tokens > c.max_tokens:
        e.append(f"min_tokens={c.min_tokens} > max_tokens={c.max_tokens}")
    batch = c.prompts_per_step * c.rollouts_per_prompt
    if c.mini_batch_size < 0:
        e.append(f"mini_batch_size must be >= 0, got {c.mini_batch_size}")
    if c.mini_batch_size and c.mini_batches != 1:
        e.append("set one of mini_batch_size (the paper's schedule) and mini_batches (fixed count), not both")
    if c.mini_batches >= 1 and batch % c.mini_batches:
        e.append(f"rollout batch {c.prompts_per_step}x{c.rollouts_per_prompt}={batch} is not divisible by "
                 f"mini_batches={c.mini_batches}")
    if c.objective == "grpo" and c.rollouts_per_prompt < 2:
        e.append("grpo needs rollouts_per_prompt >= 2 (group baseline)")
    for k in ("train_split", "eval_split"):
        if getattr(c, k) not in ("train", "test"):
            e.append(f"{k}={getattr(c, k)!r} not in train, test")
    if c.device not in ("auto", "cpu", "cuda") and not c.device.startswith("cuda:"):
        e.append(f"device={c.device!r} not in auto, cpu, cuda (or cuda:N)")
    if c.max_prompt_tokens + max(c.max_tokens, c.eval_max_tokens) > c.max_model_len:
        e.append(f"max_prompt_tokens + max(max_tokens, eval_max_tokens) = "
                 f"{c.max_prompt_tokens + max(c.max_tokens, c.eval_max_tokens)} > max_model_len={c.max_model_len}")
    return e


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
