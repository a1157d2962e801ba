"""More evaluation settings per run: named sampling protocols, each with its own n, temperature and top-p, e.g.
`eval_protocols={"t1": {"samples": 512}, "paper": {"samples": 512, "temperature": 0.6, "top_p": 0.95}}` (the
paper's pass@k to k = 256 at T = 0.6, top-p 0.95); `problems` m: only the first m of the evaluation's problems
(n = 512 on every problem can cost more than the training). Each is evaluated wherever the run evaluates (step 0, every
`eval_every`, the end) and stored in the eval row under `protocols`: pass@k for k = 1, 2, 4, ... <= n with bootstrap
intervals, and the per-problem correct counts the analysis reads. Their samples are counted, not written (512
per problem would make an evaluation's sample file tens of megabytes).
"""

from __future__ import annotations

from typing import Any, Sequence

from .grading import GradingPool
from .registry import Registry
from .rollouts import Engine, SamplingConfig, mix_seed
from .stats import ks_for, pass_at_k, stratified_first, summarize

# Sampling settings by name, where a setting names a protocol rather than spelling it out (a rung's prior measured
# under more than one, `FamilyRung.eval_also`; the controls profiles): one source for the paper's T and top-p.
SAMPLING = Registry("sampling protocol", {"t1": {"temperature": 1.0, "top_p": 1.0},
                                          "paper": {"temperature": 0.6, "top_p": 0.95}})

PROTOCOL_KEYS = {"samples": int, "temperature": float, "top_p": float, "problems": int}
CHUNK_SAMPLES = 8192  # samples per engine call: bounds what is held at once, whatever n x problems


def protocol_errors(protocols: Any) -> list[str]:
    """One message per malformed protocol of `eval_protocols` (name -> {samples, temperature, top_p})."""
    if not isinstance(protocols, dict):
        return [f"eval_protocols must be a JSON object of name -> settings, got {type(protocols).__name__}"]
    e = []
    for name, p in protocols.items():
        if not isinstance(p, dict) or set(p) - set(PROTOCOL_KEYS) or "samples" not in p:
            e.append(f"eval_protocols[{name!r}] must be an object with samples (and optionally temperature, top_p, problems), "
                     f"got {p!r}")
            continue
        if not (isinstance(p["samples"], int) and p["samples"] >= 1):
            e.append(f"eval_protocols[{name!r}].samples must be an integer >= 1, got {p['samples']!r}")
        if not (isinstance(p.get("problems", 1), int) and p.get("problems", 1) >= 1):
            e.append(f"eval_protocols[{name!r}].problems must be an integer >= 1, got {p['problems']!r}")
        if not 0 < p.get("top_p", 1.0) <= 1 or p.get("temperature", 1.0) < 0:
            e.append(f"eval_protocols[{name!r}]: top_p must be in (0, 1] and temperature >= 0, got {p!r}")
    return e


def evaluate_protocols(engine: Engine, pool: GradingPool, golds: Sequence[str], problem_ids: Sequence[str],
                       prompt_ids: Sequence[list[int]], protocols: dict, max_tokens: int, seed: int,
                       strata: Sequence[str] | None = None) -> dict:
    """{name: {n, temperature, top_p, pass_at_k, per_problem}} of each protocol on (a stratified `problems` of) the
    problems, n samples each, seeded from (the run's seed, the protocol's place in name order, the chunk). `strata`
    (each problem's subject): a protocol's m problems are each subject's first ones, at its share of the list
    (`stats.stratified_first`); the first m of a list ordered by subject would hold its first subjects only."""
    out = {}
    for i_p, (name, p) in enumerate(sorted(protocols.items())):
        n, t, top = p["samples"], float(p.get("temperature", 1.0)), float(p.get("top_p", 1.0))
        pseed = mix_seed(seed, 100 + i_p)  # `evaluate` uses seed, seed + 1, seed + 2: these stay clear of them
        m = min(p.get("problems", len(golds)), len(golds))
        chosen = stratified_first(strata, m) if strata is not None else list(range(m))
        per, correct = max(1, CHUNK_SAMPLES // n), []
        for lo in range(0, m, per):
            idx = chosen[lo : lo + per]
            # one config for the chunk, n samples a prompt: an engine batches them all in one pass (a config per
            # sample would be a pass per sample on the HF engine); the chunk's start keeps its seeds its own
            rolls = engine.generate([prompt_ids[i] for i in idx], n, SamplingConfig(t, top, max_tokens, 0, mix_seed(pseed, lo)))
            grades = pool.grade([r.text for r in rolls], [golds[idx[r.prompt_index]] for r in rolls])
            hits = [0] * len(idx)
            for r, g in zip(rolls, grades):
                hits[r.prompt_index] += g.status == "correct"
            correct += hits
        out[name] = {"n": n, "temperature": t, "top_p": top,
                     "pass_at_k": {str(k): summarize([pass_at_k(n, c, k) for c in correct], seed) for k in ks_for(n)},
                     "per_problem": {"n": n, "correct": dict(zip([problem_ids[i] for i in chosen], correct))}}
    return out
