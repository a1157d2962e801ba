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
# # 01 · Sample MATH
#
# Load MATH, check the gold answers (the last `\boxed{}` of each reference solution, brace-matched),
# and draw the stratified subset the original study trained on (25% per subject, seed 42).

# %% tags=["parameters"]
source: str = ""          # jsonl file or dir, official MATH dir or tar, or hub (empty: the default data)
split: str = "train"      # train | test
ratio: float = 0.25       # share of each subject to keep
seed: int = 42            # sampling seed (the original study: 42)
out: str = ""             # write the subset here as JSONL (empty: do not write)

# %%
from rlvr_utils.core.config import default_data
from rlvr_utils.data.sources import check_gold, count_table, load_math, stratified_sample, write_jsonl

problems = load_math(source or default_data(), split)
len(problems)

# %% [markdown]
# ## Subject × level counts

# %%
table = count_table(problems)
table

# %%
from rlvr_utils.study.figures import plot_counts

plot_counts(table);

# %% [markdown]
# ## Gold-answer check
# Rows with no gold answer are dropped by the trainer; rows where the source's own `answer` column
# disagrees with the solution's last box show why that column is not trusted.

# %%
report = check_gold(problems)
print(f"{report.n} rows, {len(report.no_gold)} without gold, {len(report.disagree)} disagreements")
import pandas as pd

pd.DataFrame(report.disagree[:15], columns=["id", "answer column", "gold (last box)"])

# %% [markdown]
# ## Stratified sample

# %%
subset = stratified_sample(problems, ratio, seed)
if out:
    print("wrote", write_jsonl(subset, out))
count_table(subset)
