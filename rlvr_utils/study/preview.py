"""Fresh rollouts for the rollout browser: a few test problems sampled and graded by any model, written as a
run folder's evaluation records (`samples/eval_00000.jsonl`), which `browser.SampleBrowser` reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.config import TrainConfig
from ..data.sources import prepare_data
from ..core.evaluate import EvalSettings, evaluate
from ..core.grading import GradingPool
from ..core.hardware import resolve
from ..core.models import load_policy, load_tokenizer
from ..core.rollouts import make_engine
from ..priors.resolve import resolve_model
from ..core.runs import RunDir


def preview_rollouts(model: str = "smollm2-135m", problems: int = 4, samples: int = 2, max_tokens: int = 96,
                     prompt: str = "answer_is", extraction: str = "boxed_or_answer_is", levels: str = "Level 1",
                     out: str | Path | None = None, engine: str = "hf", data: str | None = None) -> Path:
    """Sample and grade `problems` test problems x `samples` with `model` (a name, folder or rung spec);
    returns the folder the records were written to (`out`, else a temporary one)."""
    cfg = TrainConfig(model=model, eval_problems=problems, eval_samples=samples, max_tokens=max_tokens,
                      prompt=prompt, extraction=extraction, levels=levels, engine=engine, eval_t1=False,
                      **({"data": data} if data else {}))
    path = resolve_model(model)
    tok = load_tokenizer(path)
    prepared = prepare_data(cfg, tok)
    hw = resolve(cfg.device, cfg.precision)
    policy = load_policy(path, device=hw.device) if engine != "vllm" else None  # hf and static sample from it
    eng = make_engine(engine, path, policy=policy, tokenizer=tok, dtype=hw.dtype, max_model_len=cfg.max_model_len,
                      seed=0)
    run = RunDir(out or tempfile.mkdtemp(prefix="rlvr-preview-"))
    try:
        with GradingPool(workers=1, timeout=cfg.grade_timeout, policy=extraction) as pool:  # type: ignore[arg-type]
            _, recs = evaluate(eng, pool, prepared.eval, prepared.eval_prompts,
                               EvalSettings(samples, cfg.eval_temperature, cfg.eval_top_p, max_tokens, False, 0))
    finally:
        eng.close()
    run.write_samples("eval_00000", recs)
    return run.path
