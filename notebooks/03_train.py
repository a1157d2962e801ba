# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Train one cell of the study
#
# One RL run: sample prompts → rollouts → grade → objective → update → sync, written to `run_dir`
# by `rlvr_utils`. `rlvr grid` runs this notebook with papermill for every model × objective × seed.
# Defaults are the fast CPU settings; the frozen config saved with the run is the record.

# %% tags=["parameters"]
model: str = "smollm2-135m"        # registry name (smollm2-135m, qwen2.5-0.5b/1.5b/3b), local dir or hub id
objective: str = "w_reinforce"     # psr | nsr | w_reinforce | reinforce | grpo
lam: float = 0.1                   # W-REINFORCE weight of correct samples
seed: int = 0
steps: int = 4                     # RL steps (the original study: 80)
prompts_per_step: int = 4          # (32)
rollouts_per_prompt: int = 2       # (2)
max_tokens: int = 128              # response budget (512)
lr: float = 2e-6                   # (1e-6)
levels: str = "Level 1"            # MATH levels to train on, comma-separated (empty: all)
prompt: str = "answer_is"          # prompt template (rlvr_utils.prompts.PROMPTS); "paper" boxes
extraction: str = "boxed_or_answer_is"  # grading policy; "boxed" is MATH's rule
eval_every: int = 2                # evaluate every N steps (and at 0 and the end)
eval_problems: int = 16            # fixed eval subset size
run_dir: str = "runs/scratch/cell"
resume: bool = True                # continue from the run's checkpoint if it has one
extra: dict = {}                   # any other TrainConfig field, e.g. {"mini_batches": 2}

# %%
from rlvr_utils.config import TrainConfig, config_from_namespace
from rlvr_utils.train import train

cfg: TrainConfig = config_from_namespace(globals(), extra)
cfg

# %% [markdown]
# ## Train
# Metrics go to `metrics.jsonl` (and TensorBoard under `tb/`), evaluations to `eval.jsonl`,
# per-sample records to `samples/`. A killed run continues from its last checkpoint.

# %%
run = train(cfg, run_dir, resume=resume)
run.status()

# %% [markdown]
# ## Curves
# Read back from the run's files, as the analysis notebook does.

# %%
from rlvr_utils.analysis import load_run
from rlvr_utils.plots import plot_run

r = load_run(run_dir)
plot_run(r);

# %%
r.metrics[["step", "reward_mean", "kept", "loss", "entropy", "response_len_mean", "time_total"]]
