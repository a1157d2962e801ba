"""What a run checks and prepares before any weights load, and the config.json it saves.

The model's weights against the run's own and its siblings' (`builds`), the prompt budget, the device
and precision, the memory plan; then the tokenized data. A run refused here has written nothing.
"""

from __future__ import annotations

import os
from typing import Callable

from transformers import AutoConfig

from .builds import check_same_weights, check_sibling_builds
from ..core.config import TrainConfig
from ..data.sources import Prepared, check_source, prepare_data
from ..core.hardware import check_plan, memory_plan, resolve_device, use_threads
from ..core.hardware import resolve as resolve_hardware
from ..core.models import fingerprint, load_tokenizer
from ..core.prompts import check_budget, context_length
from ..core.rollouts import resolve_engine
from ..priors.resolve import check_model, resolve_model
from ..core.runs import NEW_BUILD_ENV, RunDir, provenance


def check_inputs(cfg: TrainConfig) -> None:
    """The config's model, data and device, checked before a folder is claimed or anything loads."""
    check_model(cfg.model)
    check_source(cfg.data)
    if cfg.device != "auto":
        resolve_device(cfg.device)


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
    check_budget([0] * cfg.max_prompt_tokens, max(cfg.max_tokens, cfg.eval_max_tokens), context_length(model_path),
                 "max_prompt_tokens")
    tok = load_tokenizer(model_path)
    data = prepare_data(cfg, tok)
    threads = use_threads()  # the cores the grid's executor gave this cell (all, run alone)
    # a resumed run keeps the precision it started with: `auto` may resolve otherwise on another CPU kind
    precision = saved.get("hardware", {}).get("precision", cfg.precision) if cfg.precision == "auto" else cfg.precision
    hw = resolve_hardware(cfg.device, precision)
    log(f"hardware: {hw}, {threads} CPU threads")
    mc = AutoConfig.from_pretrained(model_path)
    engine = resolve_engine(cfg.engine, mc, hw.device)
    plan = memory_plan(mc, cfg, hw, engine=engine)
    log(str(plan))
    check_plan(plan)
    if not run.config.exists():
        cfg.save(run.config, {**provenance(), "model_path": model_path, "model_fingerprint": weights,
                              "engine": engine, "n_train": len(data.train), "n_eval": len(data.eval),
                              "dropped": data.dropped, "hardware": {**hw.to_dict(), "threads": threads},
                              "memory_plan_gb": {k: round(v / 1e9, 3) for k, v in plan.parts.items()},
                              **({"other_builds": other_builds} if other_builds else {})})
    return cfg.replace(device=hw.device, precision=hw.precision), model_path, tok, data
