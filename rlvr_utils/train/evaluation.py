"""A run's evaluation at one step: `evaluate`'s protocols (greedy, sampled pass@k), the run's extra sampling
protocols (`eval_protocols`: several settings, large n; `core.protocols`), and the guessing floor beside every
pass@k (a blind guesser drawing from the training split's answers; `core.floor`)."""

from __future__ import annotations

from ..core.evaluate import evaluate
from ..core.floor import answer_distribution, guessing_floor
from ..core.protocols import evaluate_protocols
from ..core.stats import ks_for


def evaluation(s) -> tuple[dict, list[dict]]:
    """(eval row, sample records) of the loop `s`'s policy on its evaluation problems."""
    cfg, data = s.cfg, s.data
    row, records = evaluate(s.engine, s.pool, data.eval, data.eval_prompts, s.eval_settings)
    if cfg.eval_protocols:
        row["protocols"] = evaluate_protocols(s.engine, s.pool, [p.gold for p in data.eval], [p.id for p in data.eval],
                                              data.eval_prompts, cfg.eval_protocols, cfg.eval_length, cfg.seed,
                                              strata=[p.type for p in data.eval])
    n = max([cfg.eval_samples] + [p["samples"] for p in cfg.eval_protocols.values()])
    if data.train:
        dist = answer_distribution(p.gold for p in data.train)
        row["guess_floor"] = {str(k): v for k, v in guessing_floor([p.gold for p in data.eval], dist, ks_for(n)).items()}
    return row, records
