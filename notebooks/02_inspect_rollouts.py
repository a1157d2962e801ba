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
# Read what a run's policy wrote: every training step's rollouts and every evaluation, one sample at a time or one
# problem at a time (all its samples at a step, what the loss did with each, and how many were correct before and
# after training). By default a cell of `make study`'s grid: NSR on the family's 1m model after 2M pretraining tokens.
# With `run_dir` empty, a few fresh rollouts are sampled first.

# %% tags=["parameters"]
run_dir: str = "runs/smoke/fam-1m-2M__nsr__s0"  # a run folder (this one exists after `make study`); empty: fresh rollouts
profile: str = "smoke"     # fresh rollouts: the grid profile whose model, task, prompt and grading apply
model: str = ""            # fresh rollouts: another model than the profile's first (a name, folder or rung spec)
problems: int = 4          # fresh rollouts: test problems
samples: int = 4           # fresh rollouts: samples per problem
max_tokens: int = 64       # fresh rollouts: the longest completion

# %%
from IPython.display import HTML

from rlvr_utils.study.browser import SampleBrowser, static_html
from rlvr_utils.study.preview import rollouts_for

browser = SampleBrowser(rollouts_for(run_dir, profile, model, problems, samples, max_tokens))
browser.widget

# %% [markdown]
# ## One problem, before and after training
# The per-problem view without widgets: an exported copy of this notebook shows it too.

# %%
HTML(static_html(browser.records))
