"""One RL step by hand, as notebook 03 shows it before training: the first step's prompts and rollouts, their
rewards, every objective's advantages and kept mask on those same rollouts, and the loss and update the configured
objective takes (on a throwaway copy of the policy: the run itself starts from the untouched weights)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..core.config import TrainConfig
from ..data.sources import Cursor, prepare_data
from ..core.grading import GradingPool
from ..core.hardware import dtype_name, resolve
from ..core.models import load_tokenizer
from ..core.prompts import context_length
from ..core.objectives import advantages, objective_kwargs
from ..core.engines import make_engine
from ..core.rollouts import SamplingConfig, mix_seed
from ..priors.resolve import resolve_model
from ..core.update import build_learner, update_policy

SHOWN = ("psr", "nsr", "w_reinforce")


@dataclass
class HandStep:
    samples: pd.DataFrame  # a row per rollout: prompt, reward, and per objective its advantage and whether it is kept
    update: dict           # what `update_policy` returned for the configured objective (loss, optimizer steps, ...)
    objective: str

    def summary(self) -> str:
        """One line: what the configured objective trained on in this step, or that it trained on nothing."""
        kept = int(self.samples[f"{self.objective} kept"].sum())
        n = len(self.samples)
        if not kept or not self.update.get("optimizer_steps"):
            return (f"{self.objective}: this step trains on nothing: none of its {n} samples is kept "
                    f"({int(self.samples['reward'].sum())} correct), so the loss is 0 and the weights do not move.")
        return (f"{self.objective}: trains on {kept} of {n} samples ({int(self.samples['reward'].sum())} correct); loss "
                f"{self.update['loss']:.4f} over {self.update['tokens_trained']} response tokens, "
                f"{self.update['optimizer_steps']} optimizer step(s), gradient norm {self.update['grad_norm']:.3f}.")


def one_step(cfg: TrainConfig, shown: tuple[str, ...] = SHOWN) -> HandStep:
    """The run's first step, by hand: sample `prompts_per_step` prompts x `rollouts_per_prompt` as the loop does,
    grade them, give every objective in `shown` its advantages and keep mask, and update a copy of the policy with
    the configured objective's."""
    path = resolve_model(cfg.model)
    cfg = cfg.fit_context(context_length(path))
    tok = load_tokenizer(path)
    data = prepare_data(cfg, tok)
    hw = resolve(cfg.device, cfg.precision)
    cfg = cfg.replace(device=hw.device, precision=hw.precision)
    policy, ref, opt, sched = build_learner(cfg, path)
    idx = Cursor(len(data.train), cfg.seed).take(cfg.prompts_per_step)
    engine = make_engine(cfg.engine, path, policy=policy, tokenizer=tok, dtype=dtype_name(cfg.precision),
                         max_model_len=cfg.max_model_len, seed=cfg.seed, hf_batch_size=cfg.hf_batch_size)
    try:
        sp = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.min_tokens, mix_seed(cfg.seed, 1))
        rolls = engine.generate([data.train_prompts[i] for i in idx], cfg.rollouts_per_prompt, sp)
    finally:
        engine.close()
    probs = [data.train[idx[r.prompt_index]] for r in rolls]
    with GradingPool(workers=1, timeout=cfg.grade_timeout, policy=cfg.extraction) as pool:  # type: ignore[arg-type]
        grades = pool.grade([r.text for r in rolls], [p.gold for p in probs])
    correct = torch.tensor([g.status == "correct" for g in grades])
    groups = torch.tensor([r.prompt_index for r in rolls])
    rows = pd.DataFrame({"prompt": [r.prompt_index for r in rolls], "problem": [p.problem for p in probs],
                         "answer": [g.extracted for g in grades], "gold": [p.gold for p in probs],
                         "reward": [g.reward for g in grades]})
    mine = None
    for name in dict.fromkeys((*shown, cfg.objective)):
        kw = objective_kwargs(cfg) if name == cfg.objective else {}
        adv, keep = advantages(name, correct, groups, **kw)
        rows[f"{name} advantage"], rows[f"{name} kept"] = adv.tolist(), keep.tolist()
        mine = (adv, keep) if name == cfg.objective else mine
    upd = update_policy(cfg, policy, ref, opt, sched, rolls, mine[0], mine[1], 1)
    return HandStep(rows, upd, cfg.objective)
