"""A rung's measured prior: what a model knows of the RL task before RL, measured the way RL evaluations are.

The same for every kind of rung (warm starts, the pretrained family): the held-out loss of the worked
solutions, greedy pass@1 and sampled pass@k with bootstrap CIs over the held-out problems the RL runs
evaluate on, and the sampled tokens' NLL at T=1 (an estimate of the policy's entropy where RL samples).
It is saved beside the weights as prior.json; `ladder_table` prints a ladder of them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..core.evaluate import EvalSettings, evaluate
from ..core.files import read_json
from ..core.grading import GradingPool
from ..core.losses import masked_sum, response_logprobs
from ..core.protocols import SAMPLING, evaluate_protocols
from .recipes import RUNG_KINDS
from ..core.engines import make_engine
from ..core.rollouts import SamplingConfig, mix_seed
from ..core.stats import pass_at_k, reported_k
from ..data.guessing import task_floor
from ..data.tasks import is_task_spec, load_task


def heldout_loss(model, prompts: list[list[int]], targets: list[list[int]], batch_size: int = 8) -> float:
    """Mean negative log-likelihood per target token given its prompt (no gradient)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            lp, mask, _ = response_logprobs(model, prompts[i : i + batch_size], targets[i : i + batch_size])
            total -= float(masked_sum(lp, mask))
            count += int(mask.sum())
    return total / max(count, 1)


@contextmanager
def _sampler(model, tok, model_dir: str, *, extraction: str, seed: int, engine: str,
             hf_batch_size: int) -> Iterator[tuple[Any, GradingPool]]:
    """An engine over the policy's own weights and a grading pool, closed after use."""
    eng = make_engine(engine, model_dir, policy=model, tokenizer=tok, dtype="float32", seed=seed,  # type: ignore[arg-type]
                      max_model_len=2048, hf_batch_size=hf_batch_size)
    try:
        with GradingPool(workers=2, timeout=5.0, policy=extraction) as pool:  # type: ignore[arg-type]
            yield eng, pool
    finally:
        eng.close()


def measure(model, tok, model_dir: str, problems: Sequence, prompts: list[list[int]], *, extraction: str,
            samples: int, temperature: float, top_p: float, max_tokens: int, seed: int, engine: str = "auto",
            nll_samples: int = 0, hf_batch_size: int = 64) -> dict:
    """Greedy pass@1 and pass@k up to `samples` at `temperature` (bootstrap CIs over `problems`), and, with
    `nll_samples`, the mean NLL per sampled token of that many samples per problem at T=1."""
    with _sampler(model, tok, model_dir, extraction=extraction, seed=seed, engine=engine,
                  hf_batch_size=hf_batch_size) as (eng, pool):
        row, _ = evaluate(eng, pool, problems, prompts, EvalSettings(samples, temperature, top_p, max_tokens, False, seed))
        out = {"greedy": row["greedy"], "pass_at_k": row["pass_at_k"], "eval_temperature": temperature,
               "response_len_mean": row["response_len_mean"], "per_problem": row["per_problem"]}
        if nll_samples:
            rolls = eng.generate(prompts, nll_samples, SamplingConfig(1.0, 1.0, max_tokens, 0, seed + 3))
            out["sampled_nll_t1"] = -float(np.mean([x for r in rolls for x in r.logprobs]))
    return out


def measure_protocols(model, tok, model_dir: str, problems: Sequence, prompts: list[list[int]], names: Sequence[str], *,
                      extraction: str, samples: int, max_tokens: int, seed: int, engine: str = "auto",
                      hf_batch_size: int = 64) -> dict:
    """{name: {n, temperature, top_p, pass_at_k, per_problem, seconds}}: pass@k up to `samples` under each named
    sampling protocol (`core.protocols.SAMPLING`) on every one of `problems`, as a run's `eval_protocols` evaluate
    them. Each protocol's seed follows its name, not which others were asked for with it."""
    out = {}
    with _sampler(model, tok, model_dir, extraction=extraction, seed=seed, engine=engine,
                  hf_batch_size=hf_batch_size) as (eng, pool):
        for n in names:
            t0 = time.perf_counter()
            out[n] = evaluate_protocols(eng, pool, [p.gold for p in problems], [p.id for p in problems], prompts,
                                        {n: {**SAMPLING.pick(n, "eval_also: "), "samples": samples}}, max_tokens,
                                        mix_seed(seed, 200 + list(SAMPLING).index(n)), strata=[p.type for p in problems])[n]
            out[n]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def by_subject(prior: dict, ks: Sequence[int] = (1, 256)) -> dict[str, dict[str, dict[int, float]]]:
    """{protocol: {subject: {k: mean pass@k over its problems}}} of a prior on a generated task, from its
    per-problem counts ("main": the prior's own protocol): a mixed task's parts apart (`data.tasks`); {} for a prior
    not measured on a generated task."""
    if not is_task_spec(prior.get("task")):
        return {}
    subject = _subjects(prior["task"])
    out: dict[str, dict[str, dict[int, float]]] = {}
    for name, m in [("main", prior), *prior.get("protocols", {}).items()]:
        if "per_problem" not in m:
            continue  # measured before per-problem counts were kept
        n, groups = m["per_problem"]["n"], {}
        for pid, c in m["per_problem"]["correct"].items():
            groups.setdefault(subject[pid], []).append(c)
        out[name] = {s: {k: float(np.mean([pass_at_k(n, c, k) for c in cs])) for k in ks if k <= n}
                     for s, cs in sorted(groups.items())}
    return out


@lru_cache(maxsize=8)
def _subjects(task: str) -> dict[str, str]:
    return {p.id: p.type for p in load_task(task, "test")}


def read_prior(model_dir: str | Path) -> dict | None:
    """A rung's measured prior, or None for a model that is not a rung."""
    f = Path(model_dir) / "prior.json"
    return read_json(f, fix=f"delete {f.parent} to rebuild the rung") if f.exists() else None


def _ci(m: dict) -> str:
    return f"{m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"


@lru_cache(maxsize=64)
def _floor(spec: str, k: int) -> float:
    return task_floor(spec, (k,))["floor"][k]


def floor_cell(recipe, k: int) -> str:
    """The blind guesser's pass@k on the rung's RL task (`data.guessing`), where that task is a generated one."""
    spec = getattr(recipe, "task", None) or getattr(recipe, "data", None)
    return f"{_floor(spec, k):.3f}" if is_task_spec(spec) else "—"


def measured_builds(dirs: list[str | Path]) -> Iterator[tuple[Any, dict, dict]]:
    """(recipe, its saved recipe file, prior) of every folder in `dirs` that is a rung with a sampled prior."""
    for d in dirs:
        kind = next((c for c in RUNG_KINDS.values() if (Path(d) / c.recipe_file).exists()), None)
        prior = read_prior(d) or {}
        if kind is None or "greedy" not in prior:
            continue  # not a rung, or one built without a sampled prior (a smoke rung)
        recipe = read_json(Path(d) / kind.recipe_file)
        yield kind(**{k: v for k, v in recipe.items() if k in kind.__dataclass_fields__}), recipe, prior


def ladder_table(rungs: list[str | Path]) -> str:
    """Markdown: one row per rung (prior-axis order) with its measured prior, 95% bootstrap CIs over problems, and
    the guessing floor beside its pass@k (a measured prior with n >= 512 samples shows pass@256)."""
    rows = []
    for r, recipe, prior in measured_builds(rungs):
        ks = sorted(prior["pass_at_k"], key=int)
        half = str(reported_k(ks, int(ks[-1])))  # pass@n is the largest k: n samples
        nll = f"{prior['sampled_nll_t1']:.3f}" if "sampled_nll_t1" in prior else "—"
        loss = prior.get("heldout_loss", prior.get("held_out_sft_loss"))  # the key's name before the family
        rows.append((r.order, f"| {r.describe(recipe, prior)} | {_ci(prior['greedy'])} | {_ci(prior['pass_at_k']['1'])} | "
                     f"{_ci(prior['pass_at_k'][half])} (k={half}) | {floor_cell(r, int(half))} | "
                     f"{_ci(prior['pass_at_k'][ks[-1]])} (k={ks[-1]}) | "
                     f"{loss:.3f} | {nll} | {prior['build_seconds'] / 60:.1f} min | {prior.get('cpu', '—')} |"))
    head = ("| rung | greedy pass@1 | sampled pass@1 | pass@k, 2k ≤ n | guessing floor at that k | pass@n | held-out loss | "
            "sampled NLL at T=1 | build time | CPU |\n|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(r + "\n" for _, r in sorted(rows, key=lambda x: x[0]))
