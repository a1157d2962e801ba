"""How often does a model solve MATH problems at all, per level, per (prompt, extraction policy)?

Sizes the cpu grid profile: a model whose base success is zero gives every objective nothing to
learn from (PSR keeps nothing, NSR only pushes down). Uses the trainer's own data filters, engine and
grading pool. Usage: python bench/base_success.py [--model smollm2-135m] [--per-level 24] [--n 4]
"""

import argparse
import json
from pathlib import Path

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.data.sources import stratified_subset
from rlvr_utils.core.grading import GradingPool
from rlvr_utils.core.models import load_tokenizer, resolve_named
from rlvr_utils.core.engines import make_engine
from rlvr_utils.core.rollouts import SamplingConfig
from rlvr_utils.data.sources import prepare_data

COMBOS = [("paper", "boxed"), ("paper", "boxed_or_answer_is"), ("answer_is", "boxed_or_answer_is")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--levels", default="Level 1,Level 2,Level 3")
    ap.add_argument("--per-level", type=int, default=24)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--combos", default=",".join(f"{p}:{e}" for p, e in COMBOS), help="prompt:extraction,...")
    a = ap.parse_args()
    path = resolve_named(a.model)
    tok = load_tokenizer(path)
    eng = make_engine(a.engine, path, tokenizer=tok, max_model_len=2048, seed=0)
    rows = []
    with GradingPool(workers=2) as pool:
        for prompt, policy in (c.split(":") for c in a.combos.split(",")):
            pool.policy = policy
            for level in a.levels.split(","):
                cfg = TrainConfig(model=a.model, prompt=prompt, extraction=policy, levels=level, eval_problems=10_000)
                d = prepare_data(cfg, tok)
                probs = stratified_subset(d.eval, a.per_level, 0)
                ids = {p.id: t for p, t in zip(d.eval, d.eval_prompts)}
                rolls = eng.generate([ids[p.id] for p in probs], a.n, SamplingConfig(a.temperature, 1.0, a.max_tokens, 0, 0))
                grades = pool.grade([r.text for r in rolls], [probs[r.prompt_index].gold for r in rolls])
                ok = [g.status == "correct" for g in grades]
                solved = {probs[r.prompt_index].id for r, c in zip(rolls, ok) if c}
                rows.append({"temperature": a.temperature, "prompt": prompt, "extraction": policy, "level": level,
                             "problems": len(probs),
                             "samples": len(ok), "success": sum(ok) / len(ok), "problems_solved": len(solved),
                             "no_answer": sum(g.status == "no_answer" for g in grades) / len(ok),
                             "truncated": sum(r.finish_reason == "length" for r in rolls) / len(ok)})
                print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"base_success_{a.model}_T{a.temperature:g}.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
