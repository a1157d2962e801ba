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
# # 04 · Analyze a grid
#
# Everything here is read from the run folders' files (`config.json`, `metrics.jsonl`,
# `eval.jsonl`, `samples/`), never from notebook outputs. Accuracy is on a fixed, seeded subset of the
# test split shared by every cell; intervals are 95% t-intervals over seeds (several) or bootstrap
# intervals over problems (one seed), and each table says which.

# %% tags=["parameters"]
runs_dir: str = "runs/smoke"   # a grid's folder
k: int = 0                     # pass@k of the headline answer (0: the largest k with at least 2k samples)
table_every: int = 10          # accuracy tables at steps 0, every, 2*every, ... (the original study: 10)
window: int = 2                # moving-average window of the training curves

# %% [markdown]
# ## The answer
# Does NSR − PSR (the difference between the changes each brings to pass@k) rise or fall with the prior? Each
# run's change is measured against its own rung's base (its step-0 evaluation), then compared across rungs, with
# seeds and problems both random.

# %%
from IPython.display import Markdown

from rlvr_utils.study import frames as A
from rlvr_utils.study import dynamics as D
from rlvr_utils.study import perseed as E
from rlvr_utils.study import figures as P
from rlvr_utils.study import secondary as T
from rlvr_utils.study import report as S
runs = A.load_grid(runs_dir)
deltas = E.run_deltas(runs)
if not_yet := E.unfinished(runs, deltas):
    raise ValueError(f"{runs_dir}: {not_yet}")  # nothing to tabulate yet
k = E.answer_k(deltas, k, runs_dir)

# %%
effects = E.perseed_effect_table(deltas)
display(Markdown(S.damage_note(runs) + S.primary_markdown(deltas, k)))
display(Markdown(S.movement_markdown(D.movement(runs, deltas))))
P.plot_delta_vs_rung(effects, k);

# %% [markdown]
# What this design detects (the primary outcomes' variance components), what more seeds would detect and cost,
# and what its cells cost.

# %%
display(Markdown(S.design_markdown(deltas, k, runs)))

# %% [markdown]
# The same with a t over seeds (the problems held fixed), the contrasts between objectives, and what a larger
# design would detect.

# %%
display(Markdown(S.skill_markdown(deltas, k) + T.summary_markdown(deltas, k)))

# %% [markdown]
# Every k: each objective's Δpass@k per rung with its 95% interval (`over`: a t-interval across `seeds`,
# or a bootstrap over problems for one seed or seeds that moved identically), and the noise floor: the
# base's pass@k across the sampling seeds of its evaluations.

# %%
display(effects.round(3))
E.noise_floor(deltas).round(3) if not deltas.empty else None

# %% [markdown]
# ## The runs

# %%
A.status_table(runs)

# %%
metrics, evals = A.metrics_frame(runs), A.eval_frame(runs)
display(Markdown(A.describe_settings(runs)))
A.run_settings(runs)

# %% [markdown]
# ## Accuracy per model over training, one table per objective (greedy decoding)

# %%
for objective, table in A.accuracy_tables(evals, "greedy", table_every).items():
    display(table.style.set_caption(f"{objective}: greedy accuracy"))

# %% [markdown]
# The original study's protocol: one sample at T = 1.0.

# %%
for objective, table in A.accuracy_tables(evals, "t1", table_every).items():
    display(table.style.set_caption(f"{objective}: accuracy, 1 sample at T=1.0"))

# %% [markdown]
# ## Training curves (moving average, window 2)

# %%
P.plot_curves(metrics, ("reward_mean", "kept"), window);

# %% [markdown]
# ## Final accuracy by model × objective

# %%
final = A.final_accuracy(evals)
P.plot_final_bars(final);

# %%
final[["model", "objective", "seed", "step", "base", "greedy", "greedy_lo", "greedy_hi", "delta"]]

# %% [markdown]
# ## pass@k: base model vs each objective
# NSR's claim is that it keeps (or raises) pass@k at large k while PSR narrows it. Per problem with
# $c$ correct of $n$ samples, the unbiased estimator is
# $\text{pass@}k = 1 - \binom{n-c}{k} \big/ \binom{n}{k}$, averaged over problems.

# %%
pk = A.pass_at_k_frame(evals)
P.plot_pass_at_k(pk);

# %% [markdown]
# ## What each objective did to the policy, per rung
# The paper's mechanism: PSR sharpens the policy (lower entropy), NSR keeps it spread. At T = 1 the
# sampled tokens' NLL estimates the entropy on the training prompts, comparably across objectives; step 1
# is the rung's own rollouts, the last steps' mean is where training left it.

# %%
display(Markdown(T.dynamics_markdown(D.training_dynamics(runs, deltas))))
for metric in ("sampled_nll", "distinct_answers", "response_len_mean"):  # the paper's mechanism: does NSR keep what PSR narrows?
    display(Markdown(T.dynamics_contrast_markdown(D.dynamics_contrast(runs, deltas, metric), metric)))

# %% [markdown]
# ## Entropy and response length, per run
# `entropy_kept`: the exact entropy of the policy at the loss's temperature, over the samples each step
# trained on (so it differs between objectives by which samples they keep).

# %%
P.plot_curves(metrics, ("entropy_kept", "response_len_mean"), window);
