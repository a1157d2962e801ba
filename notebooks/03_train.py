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
# by `rlvr_utils`. `rlvr grid` runs this notebook with papermill for every model × objective × seed,
# passing each cell's complete config. Run by hand, the settings come from a grid profile plus your
# overrides; the frozen config saved with the run is the record.

# %% tags=["parameters"]
profile: str = "cpu"               # grid profile whose settings apply (rlvr grid --profile NAME --dry-run shows them)
overrides: dict = {"steps": 4, "prompts_per_step": 4, "eval_problems": 16}  # TrainConfig fields on top, e.g. {"objective": "nsr"}
config: dict = {}                  # a complete config (the grid passes each cell's); when given, the two above are unused
run_dir: str = "runs/scratch/cell"
resume: bool = True                # continue from the run's checkpoint if it has one

# %%
from rlvr_utils.core.config import TrainConfig
from rlvr_utils.grid.profiles import resolve_config, settings_diff
from rlvr_utils.train.loop import train

cfg: TrainConfig = TrainConfig.from_dict(config) if config else resolve_config(profile, overrides)
settings_diff(cfg)  # what differs from TrainConfig's defaults

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
from rlvr_utils.study.frames import load_run
from rlvr_utils.study.figures import plot_run

r = load_run(run_dir)
plot_run(r);

# %%
r.metrics[["step", "reward_mean", "kept", "loss", "entropy_kept", "response_len_mean", "time_total"]]
