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
# One RL run: sample prompts → rollouts → grade → objective → update → sync, written to `run_dir` by `rlvr_utils`.
# `rlvr grid` runs this notebook with papermill for every model × objective × seed, passing each cell's complete
# config. Run by hand it takes the settings of the profile `make study` runs (`smoke`: the family's 1m model on
# generated arithmetic chains) plus your overrides; the frozen config saved with the run is the record.

# %% tags=["parameters"]
profile: str = "smoke"             # grid profile whose settings apply (rlvr grid --profile NAME --dry-run shows them)
overrides: dict = {"model": "fam-1m-2M", "objective": "psr", "steps": 8, "eval_problems": 16, "eval_samples": 8}  # TrainConfig fields on top (a model by its cell name or any spec)
config: dict = {}                  # a complete config (the grid passes each cell's); when given, the two above are unused
run_dir: str = "runs/scratch/cell"
resume: bool = True                # continue from the run's checkpoint if it has one
by_hand: bool = True               # show the first step by hand before training (the grid turns it off)

# %%
from rlvr_utils.core.config import TrainConfig
from rlvr_utils.grid.profiles import resolve_config, settings_diff

cfg: TrainConfig = TrainConfig.from_dict(config) if config else resolve_config(profile, overrides)
settings_diff(cfg)  # what differs from TrainConfig's defaults

# %% [markdown]
# ## One step by hand
# The first step's rollouts, graded; what each objective makes of the same samples (its advantage, and whether the
# sample is kept in the loss: PSR keeps the correct ones, NSR the incorrect ones, W-REINFORCE all); then the loss and
# update of this run's objective, on a copy of the policy (the run below starts from the untouched weights).

# %%
if by_hand:
    from rlvr_utils.train.handstep import one_step

    hand = one_step(cfg)
    print(hand.summary())
    display(hand.samples.drop(columns=["problem"]).head(16))

# %% [markdown]
# ## Train
# Metrics go to `metrics.jsonl` (and TensorBoard under `tb/`), evaluations to `eval.jsonl`, per-sample records to
# `samples/`. A killed run continues from its last checkpoint. A step that keeps no sample says so in its line.

# %%
from rlvr_utils.core.quiet import third_party_log
from rlvr_utils.train.loop import train

with third_party_log(f"{run_dir}/third_party.log"):
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
