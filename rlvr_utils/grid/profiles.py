"""The grid's profiles: named designs (models x objectives x seeds x settings), each resolved to complete,
validated cell configs: TrainConfig's defaults <- the profile's settings <- `--set`. The registry of
profiles is `PROFILES`; `settings_table` prints them beside the recipes they follow (docs/profiles.md).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from ..core.config import TrainConfig
from ..core.objectives import knobs
from ..core.protocols import SAMPLING
from ..core.registry import Registry
from ..priors.recipes import short_name, split_models


@dataclass(frozen=True)
class GridSpec:
    models: tuple[str, ...]
    objectives: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    lams: tuple[float, ...] = (0.1,)
    params: dict[str, Any] = field(default_factory=dict)
    per_objective: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. GRPO's KL loss
    about: str = ""
    # run every cell of a seed before the next seed's: a study stopped part-way (it spans sessions) is then a
    # balanced design of fewer seeds, not some rungs with every seed and others with none
    seed_major: bool = False
    # a calibration grid (e.g. of the step size) names the study it calibrates: its seeds must not be the study's,
    # or study outcomes are tabulated before the setting they depend on is fixed (`cells` refuses the overlap)
    calibrates: str = ""


# What every profile on the model family shares (docs/priors.md): the RL task its corpus holds the test split
# of, the plain prompt it was pretrained on, integer answers, sampling and evaluating at T=1, fp32 (comparable
# across CPU kinds, which a study spanning sessions meets), the HF engine in batches of 256 (tiny models sample
# fastest so), no periodic evaluation (only the base's at step 0 and the end).
FAMILY_RL = dict(data="gen:chain?difficulty=2&n=4000", prompt="plain", extraction="boxed", max_prompt_tokens=64,
                 max_tokens=64, max_model_len=512, temperature=1.0, engine="hf", hf_batch_size=256, precision="fp32",
                 micro_batch_size=32, eval_every=0, eval_temperature=1.0, eval_top_p=1.0, eval_t1=False, grade_workers=2)

# The controls study (docs/prereg-controls.md): the mixed column task (a blind guesser's pass@256 0.007, `core.floor`), its
# own corpus, rungs of >= 2 sizes x doses, each built from 3 pretraining seeds (builds: a random effect in the
# analysis, `study.nested`). The doses are candidates: the ladder is measured (`make controls-ladder`) and fixed
# before any cell runs. Evaluation: 256 problems x 32 at T = 1 (pass@1..16), and pass@k to k = 256 from n = 512 on
# the first 32 problems at the paper's T = 0.6, top-p 0.95 (`core.protocols`; Amendment 4). The engine is `auto`:
# the static engine on a CPU, several times the HF engine's rate (docs/performance.md), which the n = 512
# evaluations need; its samples follow the policy's distribution as the HF engine's do (tests/core/test_sampler.py).
CONTROLS_CORPUS = "column:1=5000+2=40000+3=2000"  # Amendment 2: a fifth of 5-digit sums, barely taught
CONTROLS_TASK = "gen:column?difficulty=2&n=4000+gen:column?difficulty=3&n=1000"
# each rung's prior is measured as the study's pass@256 protocols evaluate (240 tokens: a worked 5-digit sum is
# ~160; the first 64 held-out problems x 512 samples, the static engine), at T = 1 and under the paper's protocol,
# whose pass@256 the ladder's ceiling is judged by (eval fields: they do not change the weights or the rung's name).
# Ladder 4 (docs/prereg-controls.md): candidate 2's mixed task and corpus, at ladder 1's doses.
CONTROLS_RUNGS = tuple(f"family:size={s},tokens={t},corpus={CONTROLS_CORPUS},task={CONTROLS_TASK},max_tokens=240"
                       for s, t in (("1m", 2_000_000), ("1m", 4_000_000), ("1m", 8_000_000), ("3m", 4_000_000)))
CONTROLS_BUILDS = tuple(f"{r},eval_problems=64,eval_samples=512,engine=auto,eval_also=paper,seed={b}"
                        for r in CONTROLS_RUNGS for b in (0, 1, 2))
CONTROLS_RL = dict(FAMILY_RL, engine="auto", data=CONTROLS_TASK, max_tokens=240, steps=20, prompts_per_step=16,
                   rollouts_per_prompt=8,
                   # lr: the calibration's (runs/controls-calibration/CALIBRATION.md, by the prereg's rule)
                   lr=2e-5, eval_problems=256, eval_samples=32, checkpoint_every=5,
                   # the pilot's cut (docs/prereg-controls.md, Amendment 4): pass@k to 256 under the paper's protocol
                   # only (its primary), on the first 32 problems: a third of a cell's sampling as first designed
                   eval_protocols={"paper": {"samples": 512, **SAMPLING["paper"], "problems": 32}})
# the matched arm: every objective trains on K = 256 kept samples a step (drawn for, up to 8 batches of 16 x 8),
# the loss divided by the kept samples' tokens; the off-policy arm: the paper's 4 mini-batches with PPO's clip 0.2
CONTROLS_MATCHED = dict(CONTROLS_RL, dynamic_kept=256, dynamic_max_batches=8, loss_norm="kept")
CONTROLS_OFFPOLICY = dict(CONTROLS_RL, mini_batches=4, clip_eps=0.2)

# The prompt budget and engine context the profiles on SmolLM2 and Qwen were designed and run with (TrainConfig's
# defaults then; now 0, from the model's own context): stated, so that their cells and committed runs stay as they were.
FIXED_CONTEXT = dict(max_prompt_tokens=512, max_model_len=2048)

PROFILES = Registry("profile", {
    # Sized from measurements on the 2-core CPU (bench/base_success.py, README): SmolLM2-135M solves no
    # MATH problem when it must box its answer (0/576 samples, Levels 1-3, T=1) and ~1.5% of Level 1
    # samples when prompted for, and graded on, "The answer is: N" (T=0.6). So the cpu profile trains and
    # evaluates on Level 1 with that prompt and the boxed_or_answer_is policy, at T=0.6 and lr 1e-5 (135M
    # moves little at 1e-6 in 6 steps).
    "cpu": GridSpec(
        models=("smollm2-135m",), objectives=("psr", "nsr", "w_reinforce"),
        params=dict(**FIXED_CONTEXT,
                    steps=6, prompts_per_step=12, rollouts_per_prompt=4, max_tokens=160, temperature=0.6, lr=1e-5,
                    levels="Level 1", prompt="answer_is", extraction="boxed_or_answer_is",
                    eval_every=3, eval_problems=48, eval_samples=4, checkpoint_every=3),
        about="SmolLM2-135M x PSR/NSR/W-REINFORCE on MATH Level 1, fast CPU settings",
    ),
    # `make study`: the family's prior axis at smoke scale, the study's dose axis of its smallest model (one
    # pretraining run: 1M, 2M and 3M tokens; eval_samples=0: each cell measures its base at step 0) x
    # PSR/NSR/W-REINFORCE x 2 seeds, 20 steps of 8 prompts x 8, evaluated on 64 problems x 32 samples. Its lr,
    # 1e-4, is larger than the study's on purpose: in 20 small steps every cell must move beyond re-sampling
    # noise (the report's movement table shows it); at this rate NSR collapses the weakest rung (a smoke
    # exercises the pipeline and the analysis, not the study's question). Its engine is `auto`: the static
    # engine on a CPU (several times the HF engine's rate on these models, docs/performance.md).
    "smoke": GridSpec(
        models=tuple(f"family:size=1m,tokens={t},eval_samples=0" for t in (1_000_000, 2_000_000, 3_000_000)),
        objectives=("psr", "nsr", "w_reinforce"), seeds=(0, 1),
        params=dict(FAMILY_RL, engine="auto", steps=20, prompts_per_step=8, rollouts_per_prompt=8, lr=1e-4,
                    eval_problems=64, eval_samples=32, checkpoint_every=10),
        about="the family's prior axis at smoke scale: 3 doses of the 1m model x PSR/NSR/W-REINFORCE x 2 seeds (make study)",
    ),
    # The pre-registered study (docs/prereg-family.md): five rungs of the family (sizes 1m, 3m, 7m at 2M
    # pretraining tokens; the 1m model's dose, 1M, 2M and 4M tokens) x PSR/NSR/W-REINFORCE, seeds as the
    # pilot sized them (22: the most whose whole design fits ~8 hours of a 2-core CPU); 20 steps of 16 prompts
    # x 8 at lr 4e-5 (calibrated before the first cell, outside the study: runs/family-calibration); 256 held-out
    # problems x 32 samples.
    "family": GridSpec(
        models=("family:size=1m,tokens=1000000", "family:size=1m,tokens=2000000", "family:size=1m,tokens=4000000",
                "family:size=3m,tokens=2000000", "family:size=7m,tokens=2000000"),
        objectives=("psr", "nsr", "w_reinforce"), seeds=tuple(range(22)),  # the pilot's 0-4, then Stage 2's
        params=dict(FAMILY_RL, steps=20, prompts_per_step=16, rollouts_per_prompt=8, lr=4e-5, eval_problems=256,
                    eval_samples=32, checkpoint_every=5),
        about="the pre-registered study: 5 family rungs x PSR/NSR/W-REINFORCE x seeds (make family-study)",
        seed_major=True,
    ),
    # The controls study's three arms (docs/prereg-controls.md): 4 rungs x 3 builds x PSR/NSR/W-REINFORCE, the
    # pilot's seeds 0-4 (Stage 2 sizes the rest from `study.nested`'s components), run seed by seed.
    "controls": GridSpec(
        models=CONTROLS_BUILDS, objectives=("psr", "nsr", "w_reinforce"), seeds=tuple(range(5)), params=CONTROLS_RL,
        about="controls: column task, 4 rungs x 3 builds x PSR/NSR/W-REINFORCE, on-policy (make controls-study)",
        seed_major=True),
    "controls-matched": GridSpec(
        models=CONTROLS_BUILDS, objectives=("psr", "nsr", "w_reinforce"), seeds=tuple(range(5)), params=CONTROLS_MATCHED,
        about="controls, matched arm: 256 kept samples a step for every objective (dynamic sampling)", seed_major=True),
    "controls-offpolicy": GridSpec(
        models=CONTROLS_BUILDS, objectives=("psr", "nsr", "w_reinforce"), seeds=tuple(range(5)), params=CONTROLS_OFFPOLICY,
        about="controls, the paper's off-policy regime: 4 mini-batches a rollout batch, clip 0.2", seed_major=True),
    # The step size of the controls study, calibrated outside it: 1m/4M's builds x PSR/NSR (the weakest rung on which
    # a PSR cell sees correct samples and an NSR cell has a reward rate to lose: `study.calibration.calibration_rung`,
    # the prereg's Amendment 3), on seeds the study never uses (the grid refuses its study's seeds); `--set lr=...`
    # per calibration folder. Its rule reads the main evaluation's pass@1 only, so it skips the n = 512 protocols.
    "controls-calibration": GridSpec(
        models=CONTROLS_BUILDS[3:6], objectives=("psr", "nsr"), seeds=(1000, 1001), params=dict(CONTROLS_RL, eval_protocols={}),
        about="the controls study's step-size calibration, on seeds outside the study's", calibrates="controls"),
    # The controls design end to end at smoke scale (`make controls-smoke`, each arm into its own folder): 2 rungs x
    # 2 builds x PSR/NSR x 2 seeds, 5 steps of 8 x 8, pass@k to 256 on 8 problems.
    "controls-smoke": GridSpec(
        models=tuple(f"{r},eval_samples=0,seed={b}" for r in CONTROLS_RUNGS[:2] for b in (0, 1)), objectives=("psr", "nsr"),
        seeds=(0, 1), params=dict(CONTROLS_RL, steps=5, prompts_per_step=8, lr=1e-4, eval_problems=32, checkpoint_every=5,
                                  eval_protocols={"t1": {"samples": 512, "problems": 8},
                                                  "paper": {"samples": 512, **SAMPLING["paper"], "problems": 8}}),
        about="the controls design at smoke scale: 2 rungs x 2 builds x PSR/NSR x 2 seeds (make controls-smoke)",
        seed_major=True),
    # The warm-start prior study's design at smoke scale (~40 min from a clean clone on a 2-core CPU). Two
    # warm-start rungs of SmolLM2-135M (the base, and SFT on 200 worked solutions of 3-term integer chains;
    # eval_samples=0: the rung's own prior is not sampled, each RL cell measures its base at step 0) x
    # PSR/NSR/W-REINFORCE, one seed: its answer is over problems only.
    "warm-smoke": GridSpec(
        models=("warm:n=0,eval_samples=0", "warm:n=200,eval_samples=0"), objectives=("psr", "nsr", "w_reinforce"),
        params=dict(**FIXED_CONTEXT, data="gen:chain?difficulty=2&n=5000", steps=4, prompts_per_step=8, rollouts_per_prompt=4,
                    max_tokens=64, temperature=1.0, lr=1e-5, prompt="answer_is", extraction="boxed_or_answer_is",
                    eval_every=0, eval_problems=32, eval_samples=4, eval_temperature=0.6, checkpoint_every=2),
        about="the warm-start prior axis at smoke scale: 2 SmolLM2 rungs x PSR/NSR/W-REINFORCE, 1 seed",
    ),
    # The original small study (shared/reference/paper_recipe.md): one optimizer step per rollout batch of
    # 32 prompts x 2, AdamW (0.9, 0.95) with weight decay 0.01, per-sequence token mean, min 128 tokens,
    # vLLM at 0.3 of the card; its evaluation was 1 sample at T=1 (eval_t1), ours adds greedy and pass@k.
    # Memory (hardware.memory_plan, 3B on an 80 GB card): micro-batches of 8 with activation checkpointing
    # and vLLM asleep while the policy trains; the micro-batch size changes memory, not the maths. No KL to the
    # initial policy (track_kl): its frozen copy of 3B is 12 GB the plan has no room for (`--set track_kl=true` on
    # a card with it). vLLM is asked for, not `auto`: without it every cell would sample on the HF engine, ~10x
    # slower, and say so only in its log.
    "seed": GridSpec(
        models=("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b"), objectives=("psr", "nsr", "w_reinforce"),
        params=dict(**FIXED_CONTEXT,
                    steps=80, prompts_per_step=32, rollouts_per_prompt=2, max_tokens=512, min_tokens=128, lr=1e-6,
                    temperature=1.0, adam_beta2=0.95, weight_decay=0.01, loss_agg="seq_mean", micro_batch_size=8,
                    gradient_checkpointing=True, vllm_sleep=True, track_kl=False, device="cuda", engine="vllm",
                    prompt="paper", extraction="boxed", levels="", vllm_gpu_memory=0.3, eval_t1=True,
                    eval_every=10, eval_problems=500, eval_samples=8, checkpoint_every=10),
        about="the original small study's grid and hyperparameters (GPU)",
    ),
    # RLVR-Decomposed (Zhu et al. 2025) at a scale one GPU can run: its prompt, loss (PPO clip 0.2, token
    # mean over the kept samples of each mini-batch, a partial last one weighted by its size, logits / T),
    # regularisers (entropy 0.001, weight decay 0.01, grad clip 1, GRPO's k3 KL loss 0.001) and PSR/NSR
    # schedule (filter, then mini-batches of a fixed size), with 64 prompts x 8 per step instead of 1024 x 8
    # and a 128-sample mini-batch (4 updates when all are kept, as the paper's 256 prompts of 1024).
    # Micro-batches by a token budget: 16384 tokens are 4 full-length samples (1024 + 3072), more shorter ones.
    # The loss keeps one [tokens x 152k] tensor in bf16 (losses.SelectedLogprobs), so on 3B such a micro-batch
    # (~10 GB) stays under torch's AdamW step temporaries (12.3 GB) and the update's peak is that of micro-batches
    # of 1 (74.1 GB measured on an H100 before, with the fp32 reference). GRPO's reference is a bf16 copy: the
    # policy's matmuls under bf16 autocast see its weights rounded so anyway, and it saves 6 GB on 3B. vLLM is
    # asked for, not `auto` (see `seed`).
    "paper": GridSpec(
        models=("qwen2.5-1.5b", "qwen2.5-3b"), objectives=("psr", "nsr", "w_reinforce", "reinforce", "grpo"),
        seeds=(0, 1, 2),
        params=dict(steps=140, prompts_per_step=64, rollouts_per_prompt=8, max_tokens=3072, max_prompt_tokens=1024,
                    max_model_len=4096, lr=1e-6, temperature=1.0, top_p=1.0, mini_batch_size=128,
                    micro_batch_tokens=16384, gradient_checkpointing=True, vllm_sleep=True, track_kl=False, device="cuda",
                    engine="vllm",
                    clip_eps=0.2, loss_agg="token_mean", loss_norm="kept", scale_logits=True, entropy_coef=0.001,
                    weight_decay=0.01, max_grad_norm=1.0, prompt="paper", extraction="boxed_or_last_number", levels="",
                    eval_every=7, eval_problems=500, eval_samples=16, eval_temperature=0.6, eval_top_p=0.95,
                    eval_max_tokens=3072, checkpoint_every=7),
        per_objective={"grpo": dict(kl_coef=0.001, ref_precision="bf16")},
        about="Zhu et al. 2025's recipe at one-GPU scale (64 prompts x 8, mini-batches of 128; GPU)",
    ),
    # The prior axis on a CPU: warm starts of SmolLM2-135M (`rlvr warmstart`; 0, 200 and 1,000 worked
    # solutions of 3-term integer chains) x PSR/NSR/W-REINFORCE x 3 seeds, on the same generated task.
    # Each rung is built on first use and cached. Measured (README, `rlvr warmstart --table`): the base
    # solves 16% greedy and has pass@16 0.34 at difficulty 2 (PSR has correct samples to learn from),
    # 200 solutions lift greedy to 53%. Evaluation only at step 0 and the end: sampling 64 x 17 answers
    # of the base (up to 160 tokens) took ~13 min here. Precision is pinned, not `auto`: the study spans
    # sessions on different CPU kinds (auto is bf16 on a Zen 5), and its rungs were built in fp32.
    "prior": GridSpec(
        models=("warm:n=0", "warm:n=200", "warm:n=1000"), objectives=("psr", "nsr", "w_reinforce"), seeds=(0, 1, 2),
        params=dict(**FIXED_CONTEXT, data="gen:chain?difficulty=2&n=5000", steps=20, prompts_per_step=16, rollouts_per_prompt=4,
                    max_tokens=96, temperature=1.0, lr=1e-5, prompt="answer_is", extraction="boxed_or_answer_is",
                    eval_every=0, eval_problems=64, eval_samples=16, eval_temperature=0.6, checkpoint_every=5,
                    precision="fp32"),
        about="the prior axis on a CPU: SmolLM2 warm-start rungs x PSR/NSR/W-REINFORCE x 3 seeds (make prior-study)",
    ),
})

# The two recipes the profiles follow, as facts (shared/reference/paper_recipe.md), for the README table.
RECIPES: dict[str, dict[str, Any]] = {
    "original small study": dict(
        model="Qwen2.5-0.5B/1.5B/3B-Instruct", steps=80, prompts_per_step=32, rollouts_per_prompt=2, max_tokens=512,
        min_tokens=128, temperature=1.0, lr=1e-6, adam_beta2=0.95, weight_decay=0.01, mini_batches=1,
        loss_agg="seq_mean", clip_eps="0.2 (inactive)", entropy_coef=0, kl_coef=0, eval_samples="1 at T=1.0"),
    "paper": dict(
        model="Qwen2.5-Math-7B", steps=140, prompts_per_step=1024, rollouts_per_prompt=8, max_tokens=3072,
        max_prompt_tokens=1024, temperature=1.0, lr=1e-6, adam_beta2=0.999, weight_decay=0.01,
        mini_batch_size="2048 (256 prompts)", loss_agg="token_mean", loss_norm="kept", scale_logits=True, clip_eps=0.2,
        entropy_coef=0.001, kl_coef="0 (grpo: 0.001)", extraction="box, else 'answer is', else the last number",
        eval_samples="256 at T=0.6, top-p 0.95"),
}
AXES = {"models": str, "objectives": str, "seeds": int, "lams": float}  # --set models=a,b narrows an axis


@dataclass(frozen=True)
class Cell:
    name: str
    config: TrainConfig  # complete: nothing is left for the notebook to fill in


AXIS_KEYS = ("model", "objective", "seed")  # a cell's own values: the table lists each profile's


def _column(cs: list[Cell], k: str) -> str:
    """One profile's value of setting `k` across its cells: the axes' values listed, any other setting as the first
    cell's value with the objectives that differ from it (GRPO's KL)."""
    f = TrainConfig.__dataclass_fields__[k]
    if k in AXIS_KEYS:
        vals = list(dict.fromkeys(getattr(c.config, k) for c in cs))
        contiguous = k == "seed" and len(vals) > 2 and vals == list(range(vals[0], vals[0] + len(vals)))
        return f"{vals[0]}-{vals[-1]}" if contiguous else ", ".join(map(str, vals))

    def show(v: Any) -> str:
        return f.metadata["shown"] if f.metadata["shown"] and v == f.default_factory() else repr(v)
    first = getattr(cs[0].config, k)
    other = {c.config.objective: getattr(c.config, k) for c in cs if getattr(c.config, k) != first}
    return show(first) + "".join(f" ({o}: {show(v)})" for o, v in other.items())


def settings_table() -> str:
    """Markdown: each setting in which the profiles differ or that a recipe states x {the two recipes, each
    profile's resolved cells}. The docs carry it verbatim (docs/profiles.md)."""
    cols = list(RECIPES) + [f"`{p}`" for p in PROFILES]
    rows = ["| setting | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    resolved = {p: cells(p) for p in PROFILES}
    for k in TrainConfig.__dataclass_fields__:
        vals = [_column(resolved[p], k) for p in PROFILES]
        if len(set(vals)) > 1 or any(k in r for r in RECIPES.values()):
            rows.append(f"| `{k}` | " + " | ".join([str(RECIPES[r].get(k, "")) for r in RECIPES] + vals) + " |")
    return "\n".join(rows) + "\n"


def resolve_config(profile: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """One config from a profile: TrainConfig's defaults <- the profile's settings <- `overrides`
    (the profile's first model and objective unless overridden; a model may be named by its cell name, such as
    fam-1m-2M). The notebook's interactive path."""
    spec = PROFILES.pick(profile)
    d = {"model": spec.models[0], "objective": spec.objectives[0], **(overrides or {})}
    d["model"] = {short: m for m, short in _model_names(spec.models).items()}.get(d["model"], d["model"])
    return TrainConfig.from_dict({**spec.params, **spec.per_objective.get(d["objective"], {}), **d})


def cells(profile: str, sets: dict[str, Any] | None = None) -> list[Cell]:
    """The grid's cells, each a complete validated config; `sets` override profile values and may
    narrow an axis (models=a,b). Every cell is validated before the first one runs."""
    spec = PROFILES.pick(profile)
    sets = dict(sets or {})
    axes = {"models": spec.models, "objectives": spec.objectives, "seeds": spec.seeds, "lams": spec.lams}
    for ax, conv in AXES.items():
        if ax in sets:
            v = str(sets.pop(ax))
            axes[ax] = tuple(conv(x) for x in (split_models(v) if ax == "models" else v.split(",")))
    unknown = sorted(set(sets) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: not a TrainConfig field nor an axis "
                         f"({', '.join(AXES)}); the notebook's parameters cell takes a whole config")
    for key, ax in (("model", "models"), ("objective", "objectives"), ("seed", "seeds"), ("lam", "lams")):
        if key in sets:  # each cell's own value would silently replace it
            raise ValueError(f"{key}={sets[key]}: the grid sets {key} per cell from its {ax} axis; say {ax}={sets[key]}")
    if spec.calibrates:
        check_calibration_seeds(profile, axes["seeds"], PROFILES.pick(spec.calibrates).seeds)
    short = _model_names(axes["models"])
    out = []
    order = ((m, o, s) for s, m, o in itertools.product(axes["seeds"], axes["models"], axes["objectives"])) \
        if spec.seed_major else itertools.product(axes["models"], axes["objectives"], axes["seeds"])
    for model, obj, seed in order:
        # lam is W-REINFORCE's knob: a lams axis multiplies only the objectives that read it; psr x lam=0.5
        # would be a second identical run (and one seed twice in one arm of the analysis)
        sweep = "lam" in knobs(obj) and len(axes["lams"]) > 1
        for lam in axes["lams"] if sweep else axes["lams"][:1]:
            cfg = TrainConfig.from_dict({**spec.params, **spec.per_objective.get(obj, {}), **sets, "model": model,
                                         "objective": obj, "seed": seed, "lam": lam})
            out.append(Cell(f"{short[model]}__{obj}__s{seed}" + (f"__lam{lam:g}" if sweep else ""), cfg))
    return out


def check_calibration_seeds(profile: str, seeds: tuple[int, ...], study_seeds: tuple[int, ...]) -> None:
    """A calibration grid's seeds must be none of its study's: its runs would be study cells, run first."""
    shared = sorted(set(seeds) & set(study_seeds))
    if shared:
        raise ValueError(f"profile {profile!r} calibrates a study that uses seed(s) {shared}: a calibration on the study's "
                         f"own seeds runs study cells before the setting is fixed; use seeds outside "
                         f"{min(study_seeds)}-{max(study_seeds)} (e.g. seeds={max(study_seeds) + 1000},"
                         f"{max(study_seeds) + 1001})")


def settings_diff(cfg: TrainConfig) -> dict[str, Any]:
    """The settings of `cfg` that differ from TrainConfig's defaults (what a profile decided)."""
    base = TrainConfig().to_dict()
    return {k: v for k, v in cfg.to_dict().items() if v != base[k]}


def _model_names(models: tuple[str, ...]) -> dict[str, str]:
    """Folder-safe short names (`recipes.short_name`: a rung's dose, a path's last part); a hash where two
    collide (the full recipe is in the cell's config)."""
    base = {m: short_name(m) for m in models}
    clash = {b for b in base.values() if list(base.values()).count(b) > 1}
    return {m: (f"{b}-{hashlib.sha1(m.encode()).hexdigest()[:6]}" if b in clash else b) for m, b in base.items()}
