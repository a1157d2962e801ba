"""Fresh rollouts for the rollout browser: a few test problems sampled and graded by any model, written as a
run folder's evaluation records (`samples/eval_00000.jsonl`), which `browser.SampleBrowser` reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..data.sources import prepare_data
from ..core.evaluate import EvalSettings, evaluate
from ..core.grading import GradingPool
from ..core.hardware import resolve
from ..core.models import load_policy, load_tokenizer
from ..core.prompts import context_length
from ..grid.profiles import resolve_config
from ..core.engines import make_engine
from ..priors.resolve import resolve_model
from ..core.runs import RunDir


def rollouts_for(run_dir: str, profile: str = "smoke", model: str = "", problems: int = 4, samples: int = 4,
                 max_tokens: int = 64) -> Path:
    """The folder notebook 02 browses: `run_dir` where given (one clear error where it does not exist), else fresh
    rollouts (`preview_rollouts`)."""
    if run_dir:
        path = Path(run_dir)
        if not (path / "samples").is_dir():
            raise FileNotFoundError(f"run_dir {run_dir}: no run folder with samples/ there; `make study` writes "
                                    "runs/smoke/<cell>/, or set run_dir='' to sample fresh rollouts")
        return path
    return preview_rollouts(model, problems, samples, max_tokens, profile=profile)


def preview_rollouts(model: str = "", problems: int = 4, samples: int = 2, max_tokens: int = 64, profile: str = "smoke",
                     out: str | Path | None = None, engine: str = "hf") -> Path:
    """Sample and grade `problems` test problems x `samples` with `model` (a name, folder or rung spec; default the
    profile's first), on the profile's task, prompt and grading; returns the folder the records were written to
    (`out`, else a temporary one)."""
    cfg = resolve_config(profile, {"eval_problems": problems, "eval_samples": samples, "max_tokens": max_tokens,
                                   "engine": engine, "eval_t1": False, **({"model": model} if model else {})})
    path = resolve_model(cfg.model)
    cfg = cfg.fit_context(context_length(path))
    tok = load_tokenizer(path)
    prepared = prepare_data(cfg, tok)
    hw = resolve(cfg.device, cfg.precision)
    policy = load_policy(path, device=hw.device) if engine != "vllm" else None  # hf and static sample from it
    eng = make_engine(engine, path, policy=policy, tokenizer=tok, dtype=hw.dtype, max_model_len=cfg.max_model_len,
                      seed=0)
    run = RunDir(out or tempfile.mkdtemp(prefix="rlvr-preview-"))
    try:
        with GradingPool(workers=1, timeout=cfg.grade_timeout, policy=cfg.extraction) as pool:  # type: ignore[arg-type]
            _, recs = evaluate(eng, pool, prepared.eval, prepared.eval_prompts,
                               EvalSettings(samples, cfg.eval_temperature, cfg.eval_top_p, max_tokens, False, 0))
    finally:
        eng.close()
    run.write_samples("eval_00000", recs)
    return run.path
