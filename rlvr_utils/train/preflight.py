"""What a run checks and prepares before any weights load, and the config.json it saves.

The model's weights against the run's own and its siblings' (`builds`), the prompt budget (resolved against the
model's own context: `TrainConfig.fit_context`), the device
and precision, the memory plan; then the tokenized data. A run refused here has written nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .builds import check_same_weights, check_sibling_builds
from ..core.config import TrainConfig
from ..data.sources import Prepared, check_source, prepare_data
from ..core.hardware import GB, check_plan, memory_plan, resolve_device, use_threads
from ..core.hardware import resolve as resolve_hardware
from ..core.models import fingerprint, load_tokenizer
from ..core.prompts import context_length
from ..core.engines import resolve_engine
from ..core.rollouts import vllm_available
from ..priors.resolve import check_model, known_context, resolve_model
from ..core.provenance import provenance
from ..core.runs import NEW_BUILD_ENV, RunDir


def check_inputs(cfg: TrainConfig) -> None:
    """The config's model, data and device, checked before a folder is claimed or anything loads."""
    check_model(cfg.model)
    if (context := known_context(cfg.model)) is not None:  # the prompt budget, before a folder is claimed
        cfg.fit_context(context)
    check_source(cfg.data)
    if cfg.base_from and not Path(cfg.base_from).is_dir():
        raise ValueError(f"base_from={cfg.base_from!r}: no such folder (a grid folder whose cells' step-0 evaluations "
                         f"this run may copy)")
    if cfg.device != "auto":
        resolve_device(cfg.device)
    if cfg.engine == "vllm" and not vllm_available():  # not the HF engine in its place, ~10x slower, silently
        raise ValueError("engine=vllm but vLLM is not installed here: `make setup VLLM_EXTRA=vllm-gpu` on CUDA "
                         "(docs/gpu.md), or --set engine=hf to sample with the policy itself")


def preflight(cfg: TrainConfig, run: RunDir, log: Callable[[str], None],
              allow_new_build: bool | None = None) -> tuple[TrainConfig, str, object, Prepared]:
    """(the config with a concrete device and precision, the model's folder, its tokenizer, the data). Saves
    config.json with what ran (`_meta`) for a new run. `allow_new_build` None: as a grid executor says."""
    model_path = resolve_model(cfg.model)
    saved = run.saved_config().get("_meta", {}) if run.config.exists() else {}
    weights = fingerprint(model_path)
    check_same_weights(run, cfg.model, saved.get("model_fingerprint"), weights)
    allow = os.environ.get(NEW_BUILD_ENV) == "1" if allow_new_build is None else allow_new_build
    other_builds = {} if run.config.exists() else check_sibling_builds(run, cfg.model, model_path, weights, allow, log)
    asked, cfg = cfg, cfg.fit_context(context_length(model_path))  # the prompt budget from the model's own context
    tok = load_tokenizer(model_path)
    data = prepare_data(cfg, tok)
    threads = use_threads()  # the cores the grid's executor gave this cell (all, run alone)
    # a resumed run keeps the precision it started with: `auto` may resolve otherwise on another CPU kind
    precision = saved.get("hardware", {}).get("precision", cfg.precision) if cfg.precision == "auto" else cfg.precision
    hw = resolve_hardware(cfg.device, precision)
    log(f"hardware: {hw}, {threads} CPU threads")
    from transformers import AutoConfig  # here, not at import: a grid checks its inputs with this module

    mc = AutoConfig.from_pretrained(model_path)
    engine = resolve_engine(cfg.engine, mc, hw.device)
    plan = memory_plan(mc, cfg, hw, engine=engine)
    log(str(plan))
    check_plan(plan)
    check_disk(cfg, run, plan.params, any((run.checkpoints / d / "state.pt").exists() for d in ("latest", ".latest.old")))
    if hw.device.startswith("cuda") and (eta := expected_duration(cfg, hw.name)):
        log(eta)
    if not run.config.exists():  # what was asked (a resume compares it), with what it resolved to (`context`)
        context = {"max_model_len": cfg.max_model_len, "max_prompt_tokens": cfg.max_prompt_tokens}
        asked.save(run.config, {**provenance(), "context": context, "model_path": model_path, "model_fingerprint": weights,
                              "engine": engine, "n_train": len(data.train), "n_eval": len(data.eval),
                              "dropped": data.dropped, "hardware": {**hw.to_dict(), "threads": threads},
                              "memory_plan_gb": {k: round(v / 1e9, 3) for k, v in plan.parts.items()},
                              **({"other_builds": other_builds} if other_builds else {})})
    return cfg.replace(device=hw.device, precision=hw.precision), model_path, tok, data


# ------------------------------------------------------------------------------- disk and duration

CHECKPOINT_BYTES = 12  # a checkpoint per parameter: the fp32 policy (4) and AdamW's two fp32 moments (8)


def checkpoint_need(cfg: TrainConfig, params: int, has_one: bool) -> tuple[float, float]:
    """(one checkpoint's bytes, the free disk a run needs for its checkpoints). The previous checkpoint stays on disk
    while the next is written (`runs.RunDir.save_checkpoint`): a run that writes two or more needs room for two,
    less one already there (a resume)."""
    size = float(CHECKPOINT_BYTES * params)
    n = (cfg.steps - 1) // cfg.checkpoint_every if cfg.checkpoint_every else 0  # after steps k * every < steps
    return size, (0.0 if n == 0 else size * (1 if has_one or n == 1 else 2))


def _disk_free(path: Path) -> float:
    return float(shutil.disk_usage(path).free)


def _bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"  # a tiny model's checkpoint is not "0.0 GB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.1f}M"


def check_disk(cfg: TrainConfig, run: RunDir, params: int, has_one: bool) -> None:
    """Refuse a run whose checkpoints cannot fit on its disk, before any weights load."""
    size, need = checkpoint_need(cfg, params, has_one)
    free = _disk_free(run.path)
    if need > free:
        raise OSError(f"{run.path}: a checkpoint of {_count(params)} parameters is {_bytes(size)} (the policy and "
                      f"AdamW's state, {CHECKPOINT_BYTES} bytes a parameter) and the previous one stays while the next "
                      f"is saved: {_bytes(need)} free needed, {_bytes(free)} free on its disk. Free space, put "
                      "the run on a larger disk, or checkpoint_every=0 (then a killed run cannot resume)")


@dataclass(frozen=True)
class Pace:
    """A measured pace of part of an RL step on a card: `seconds` for `samples` samples of `max_tokens` tokens."""

    model: str
    card: str  # a substring of the CUDA device's name
    max_tokens: int
    samples: int
    seconds: float
    what: str  # the part of a step it covers
    source: str


# The `paper` update measured on cards with the loss path before the memory-lean one (micro-batches of 1), and
# the `seed` batch's whole step with the HF engine: what a cell's duration is known from, until vLLM's is measured.
PACES = (
    Pace("qwen2.5-3b", "H100", 3072, 128, 55.65, "the update alone", "bench/measured/gpu_update_h100_2026-11-27.json"),
    Pace("qwen2.5-1.5b", "H100", 3072, 128, 40.74, "the update alone", "bench/measured/gpu_update_h100_2026-11-27.json"),
    Pace("qwen2.5-3b", "H200", 3072, 128, 52.8, "the update alone", "bench/measured/gpu_update_h200_2026-11-27.json"),
    Pace("qwen2.5-1.5b", "H200", 3072, 128, 37.04, "the update alone", "bench/measured/gpu_update_h200_2026-11-27.json"),
    Pace("qwen2.5-0.5b", "H200", 512, 64, 15.76, "a step with the HF engine", "bench/measured/gpu_step_h200_2026-11-27.json"),
    Pace("qwen2.5-1.5b", "H200", 512, 64, 17.99, "a step with the HF engine", "bench/measured/gpu_step_h200_2026-11-27.json"),
    Pace("qwen2.5-3b", "H200", 512, 64, 22.91, "a step with the HF engine", "bench/measured/gpu_step_h200_2026-11-27.json"),
)


def expected_duration(cfg: TrainConfig, card: str) -> str | None:
    """One line: a cell's duration on `card` from its recorded pace (every sample trained, evaluation not counted),
    or None where none is known for this model, card and length."""
    pace = next((p for p in PACES if p.model == cfg.model and p.card in card and p.max_tokens == cfg.max_tokens), None)
    if pace is None:
        return None
    n = cfg.prompts_per_step * cfg.rollouts_per_prompt
    hours = cfg.steps * n / pace.samples * pace.seconds / 3600
    return (f"expected duration on {card}: {pace.what} ~{hours:.1f} h ({cfg.steps} steps x {n} samples, every one "
            f"trained; evaluation not counted; the pace of {pace.source})")
