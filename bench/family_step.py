"""One RL step of the family's middle size against SmolLM2-135M at the same batch, in one run.

Both train through the real trainer (`train`) on the same generated problems, 8 prompts x 4 samples of
exactly 32 tokens (forced: a model's own stopping would make the batches differ), fp32, the HF engine, one
optimizer step; the second step of each run is timed (the first pays for start-up), and the two models
alternate, twice each, since this machine's speed drifts. Weights do not change what a step costs, so the
family model is a fresh `3m` of the family's shape and tokenizer (no pretraining needed).

python bench/family_step.py [--repeats 2]   -> a table, and bench/results/family_step.json
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.priors.family import corpus, model_config, tokenizer
from rlvr_utils.core.hardware import cpu_info
from rlvr_utils.priors.recipes import FamilyRung
from rlvr_utils.core.runs import RunDir
from rlvr_utils.priors.resolve import resolve_model
from rlvr_utils.train.loop import train

BATCH = dict(steps=2, prompts_per_step=8, rollouts_per_prompt=4, max_tokens=32, min_tokens=32, engine="hf",
             precision="fp32", eval_problems=0, checkpoint_every=0, data="gen:chain?difficulty=2&n=400", lr=1e-5,
             micro_batch_size=16, extraction="boxed")


def family_model(folder: Path) -> str:
    """A fresh model of the family's 3m shape with the family's tokenizer, saved as a rung's folder is."""
    from transformers import LlamaForCausalLM

    r = FamilyRung(size="3m")
    tok = tokenizer(r, corpus(r), log=lambda _: None)
    torch.manual_seed(0)
    LlamaForCausalLM(model_config("3m", len(tok), tok.pad_token_id, tok.eos_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def one_run(model: str, prompt: str, folder: Path) -> dict:
    cfg = TrainConfig(model=model, prompt=prompt, max_prompt_tokens=256, **BATCH)
    m = RunDir(train(cfg, folder, log=lambda _: None).path).read_metrics()[-1]
    return {k: m[k] for k in ("time_generate", "time_grade", "time_train", "time_sync", "time_total")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results/family_step.json")
    a = ap.parse_args()
    name, flags = cpu_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {"family 3m (2.7M params)": (family_model(tmp / "fam"), "plain"),
                  "SmolLM2-135M": (resolve_model("smollm2-135m"), "answer_is")}
        rows = {k: [] for k in models}
        for rep in range(a.repeats):
            for label, (path, prompt) in models.items():  # interleaved: the machine's drift hits both alike
                rows[label].append(one_run(path, prompt, tmp / f"{label[:6]}-{rep}"))
                print(label, rep, rows[label][-1], flush=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in rows.items()}
    fam, smol = med["family 3m (2.7M params)"], med["SmolLM2-135M"]
    result = {"cpu": name, "avx512_bf16": "avx512_bf16" in flags, "batch": BATCH, "median_seconds": med,
              "ratio_total": smol["time_total"] / fam["time_total"], "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"\n{name} (avx512_bf16: {result['avx512_bf16']}), 8 prompts x 4 x 32 tokens, fp32, median of {a.repeats}")
    print("| model | generate s | grade s | train s | step s |\n|---|---|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v['time_generate']:.2f} | {v['time_grade']:.2f} | {v['time_train']:.2f} | {v['time_total']:.2f} |")
    print(f"SmolLM2 step / family step: {result['ratio_total']:.1f}x")


if __name__ == "__main__":
    main()
