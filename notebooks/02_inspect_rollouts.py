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
# # 02 · Inspect rollouts
#
# Browse any run's per-sample records (training steps and evaluations): choose a step, filter by
# status, subject and level, and read the problem, the completion, and the extracted answer
# against the gold, rendered as LaTeX. With `run_dir` empty, fresh rollouts are sampled first.

# %% tags=["parameters"]
run_dir: str = ""               # a run folder, e.g. runs/smoke/warm-n200__nsr__s0 (empty: fresh rollouts)
model: str = "smollm2-135m"     # for fresh rollouts
problems: int = 4               # fresh rollouts: number of problems (Level 1, test split)
samples: int = 2                # fresh rollouts: samples per problem
max_tokens: int = 96
prompt: str = "answer_is"
extraction: str = "boxed_or_answer_is"

# %%
from rlvr_utils.study.browser import SampleBrowser
from rlvr_utils.study.preview import preview_rollouts

if not run_dir:
    run_dir = preview_rollouts(model, problems, samples, max_tokens, prompt, extraction)
browser = SampleBrowser(run_dir)
browser.widget

# %% [markdown]
# ## Counts for the current filter

# %%
from rlvr_utils.study.frames import base_success

base_success(browser.current, by="level")

# %%
base_success(browser.records, by="subject")
