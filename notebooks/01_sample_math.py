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
# # 01 · The task and the prior axis
#
# The study trains on a generated task (`make study`, the family study): arithmetic chains with exact integer
# answers and a worked solution for each, at a difficulty knob. Its prior axis is a family of tiny Llama models
# pretrained on such solutions, in sizes and pretraining doses. MATH is one parameter away: set `data` to `math` (or
# a MATH source: a JSONL file or folder, the official folder or tar, or `hub`) and the same cells show it instead.

# %% tags=["parameters"]
data: str = "study"       # study: the family study's task; math: the default MATH data; or a task spec or MATH source
ladder: str = "runs/family-rungs"             # where the family's rungs are (the committed study's)
split: str = "train"      # MATH: train | test
ratio: float = 0.25       # MATH: share of each subject to keep in the stratified subset
seed: int = 42            # MATH: sampling seed (the original study: 42)
out: str = ""             # MATH: write the subset here as JSONL (empty: do not write)

# %%
from IPython.display import HTML, Markdown

from rlvr_utils.study.safehtml import table
from rlvr_utils.study.taskview import difficulty_ladder, examples, family_ladder, source_of
from rlvr_utils.data.tasks import is_task_spec

data = source_of(data)
generated = is_task_spec(data)
if generated:
    display(HTML(table(examples(data), f"{data}: what the policy is asked, and the worked solutions the family's "
                       "pretraining corpus holds", pre=["worked solution"])))

# %% [markdown]
# ## The difficulty knob
# One knob grows the task: more terms, and from difficulty 3 on two-digit numbers (the family study trains on
# difficulty 2).

# %%
if generated:
    display(difficulty_ladder(data))

# %% [markdown]
# ## The family ladder: the prior axis
# Each rung is a model pretrained from scratch on worked solutions; its prior is measured on the held-out problems
# the RL runs evaluate on (95% bootstrap intervals over problems). The dose ladder is one size at more tokens, the
# size ladder larger models at one dose.

# %%
if generated:
    display(Markdown(family_ladder(ladder)))

# %% [markdown]
# ## MATH (with `data` set to a MATH source)
# The gold answer is the last `\boxed{}` of each reference solution (brace-matched); rows without one are dropped
# by the trainer. The original study trained on a stratified 25% of each subject.

# %%
if not generated:
    from rlvr_utils.data.sources import check_gold, count_table, load_math, stratified_sample, write_jsonl
    from rlvr_utils.study.figures import plot_counts

    problems = load_math(data, split)
    report = check_gold(problems)
    print(f"{len(problems)} problems; {len(report.no_gold)} without gold, {len(report.disagree)} where the source's "
          "own answer column disagrees with the solution's last box")
    plot_counts(count_table(problems))
    subset = stratified_sample(problems, ratio, seed)
    if out:
        print("wrote", write_jsonl(subset, out))
    display(count_table(subset))
