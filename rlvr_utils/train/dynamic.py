"""A step's rollouts: one batch of prompts x rollouts, or, with `dynamic_kept` K > 0, batches drawn until the
objective keeps K samples (dynamic sampling, as DAPO's and verl's `max_num_gen_batches` loop does for groups).

Under the same settings PSR keeps a step's correct samples and NSR its wrong ones, so on a weak prior PSR trains
on a few dozen samples a step and NSR on hundreds: the prior is then confounded with how much each objective
trains. Drawing until each objective's kept set reaches the same K (then keeping exactly K, in the order drawn)
matches the training signal. The draw stops at `dynamic_max_batches` batches (the first included) whether or not
K is reached, and the step's metrics say how many batches, prompts and samples it drew and whether it fell short.
Every batch's advantages are the objective's on that batch alone (a group is one prompt of one batch). The first
batch is exactly the one a run without dynamic sampling draws (same prompts, same sampling seed).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from ..core.objectives import advantages, objective_kwargs
from ..core.rollouts import SamplingConfig, mix_seed


@dataclass
class Drawn:
    """A step's rollouts across its batches: prompt indices renumbered so that each prompt of each batch is a group."""

    idx: list[int] = field(default_factory=list)    # training problem index of each drawn prompt
    rolls: list = field(default_factory=list)
    grades: list = field(default_factory=list)
    adv: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    keep: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
    info: dict = field(default_factory=dict)


def draw(cfg, engine, pool, data, cursor, step: int) -> Drawn:
    """The step's rollouts, grades, advantages and keep mask (`cfg.dynamic_kept`: until K kept, capped)."""
    K, cap = cfg.dynamic_kept, (cfg.dynamic_max_batches if cfg.dynamic_kept else 1)
    d = Drawn()
    advs, keeps = [], []
    t_gen = t_grade = 0.0
    for batch in range(cap):
        t0 = time.perf_counter()
        idx = cursor.take(cfg.prompts_per_step)
        seed = mix_seed(cfg.seed, step) if batch == 0 else mix_seed(mix_seed(cfg.seed, step), batch)
        sp = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.min_tokens, seed)
        rolls = engine.generate([data.train_prompts[i] for i in idx], cfg.rollouts_per_prompt, sp)
        t1 = time.perf_counter()
        grades = pool.grade([r.text for r in rolls], [data.train[idx[r.prompt_index]].gold for r in rolls])
        t_gen, t_grade = t_gen + t1 - t0, t_grade + time.perf_counter() - t1
        correct = torch.tensor([g.status == "correct" for g in grades])
        adv, keep = advantages(cfg.objective, correct, torch.tensor([r.prompt_index for r in rolls]),
                               **objective_kwargs(cfg))
        offset = len(d.idx)
        d.rolls += [dataclasses.replace(r, prompt_index=r.prompt_index + offset) for r in rolls]
        d.idx += idx
        d.grades += grades
        advs.append(adv)
        keeps.append(keep)
        if not K or sum(int(k.sum()) for k in keeps) >= K:
            break
    d.adv, keep = torch.cat(advs), torch.cat(keeps)
    kept_drawn = int(keep.sum())
    if K and kept_drawn > K:  # exactly K: the surplus of the last batch (the latest kept samples) is not trained on
        keep = keep & (torch.cumsum(keep.long(), 0) <= K)
    d.keep = keep
    d.info = {"time_generate": t_gen, "time_grade": t_grade}
    if K:
        d.info |= {"batches_drawn": len(keeps), "prompts_drawn": len(d.idx), "samples_drawn": len(d.rolls),
                   "kept_drawn": kept_drawn, "kept_short": int(kept_drawn < K)}
    return d
