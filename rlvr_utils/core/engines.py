"""Which engine samples: the names a config may give (`ENGINES`), what `auto` means on this machine, and the
constructor. Apart from the engines themselves (core/rollouts.py, core/sampler.py) so that each imports only the
interface it implements."""

from __future__ import annotations

import typing
from typing import Literal

from .rollouts import Engine, HFEngine, VLLMEngine, vllm_available
from .sampler import StaticEngine, unsupported

EngineKind = Literal["auto", "vllm", "hf", "static"]
# auto: static for small Llamas on a CPU, else vLLM where installed, else hf (resolve_engine)
ENGINES: tuple[str, ...] = typing.get_args(EngineKind)
STATIC_MAX_PARAMS = 20_000_000  # auto picks the static engine up to this size (measured on the family: 0.8M-6.5M)


def resolve_engine(kind: EngineKind, config=None, device: str = "cpu") -> str:
    """The engine `kind` means on this machine for a model of `config` (a transformers config): `auto` is the
    static engine for a small Llama on a CPU (where it samples several times faster than the others:
    docs/performance.md), else vLLM when it is installed, else hf."""
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}; known: {', '.join(ENGINES)}")
    if kind != "auto":
        return kind
    if config is not None and device == "cpu" and _static_fits(config):
        return "static"
    return "vllm" if vllm_available() else "hf"


def _static_fits(config) -> bool:
    size = config.vocab_size * config.hidden_size + config.num_hidden_layers * (
        4 * config.hidden_size**2 + 3 * config.hidden_size * config.intermediate_size)
    return unsupported(config) is None and size <= STATIC_MAX_PARAMS


def make_engine(kind: EngineKind, model_path: str, policy=None, tokenizer=None, dtype: str = "float32",
                hf_batch_size: int = 64, **vllm_kw) -> Engine:
    """The engine `resolve_engine(kind)` names; hf samples from `policy` in batches of `hf_batch_size`, vLLM
    takes `vllm_kw` (and `policy`, to reload after a level-2 sleep). `dtype` is the engine's precision
    (float32 | bfloat16), resolved by `hardware.resolve`."""
    device = str(next(policy.parameters()).device) if policy is not None else "cpu"
    kind = resolve_engine(kind, policy.config if policy is not None else None, device)
    if kind == "vllm":
        return VLLMEngine(model_path, dtype=dtype, policy=policy, **vllm_kw)
    if policy is None or tokenizer is None:
        raise ValueError(f"the {kind} engine samples from the policy itself: pass policy= and tokenizer=")
    if kind == "static":
        return StaticEngine(policy, tokenizer, dtype=dtype)
    return HFEngine(policy, tokenizer, batch_size=hf_batch_size, dtype=dtype)
