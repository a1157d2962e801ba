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

# %% tags=["parameters"]
runs_dir: str = "runs/smoke"   # a grid's folder
k: int = 0                     # pass@k of the headline answer (0: the largest k with at least 2k samples)
table_every: int = 10          # accuracy tables at steps 0, every, 2*every, ... (the original study: 10)
window: int = 2                # moving-average window of the training curves

# %%
# The report (`rlvr report <grid>` runs this notebook and hides its code): everything is read from the run folders'
# files (config.json, metrics.jsonl, eval.jsonl, samples/), never from notebook outputs, and every value from them is
# escaped before it reaches the page. Each section is left out where it has nothing to show.
from rlvr_utils.study import dynamics as D
from rlvr_utils.study import figures as P
from rlvr_utils.study import reportpage as R
from rlvr_utils.study import secondary as T
from rlvr_utils.study import report as S

st = R.load_study(runs_dir, k)
R.show(R.first_screen(st, S.damage_note(st.runs)))
R.show_figure(R.page_figure(st), R.STUDY_CAPTION.format(k=st.k))

# %%
R.show(R.section("pass@k against k", "<p>The paper's view: does training raise pass@k at every k, or trade the "
                                    "largest k for pass@1?</p>"))
R.show_figure(R.passk_figure(st), R.PASSK_CAPTION)

# %% [markdown]
# Per problem with $c$ correct of $n$ samples, pass@k is estimated without bias as
# $1 - \binom{n-c}{k} \big/ \binom{n}{k}$, then averaged over problems.

# %%
R.show(R.section("The primary analysis in full", R.md(S.primary_markdown(st.deltas, st.k))))
R.show(R.section("How far training moved each policy", R.md(S.movement_markdown(D.movement(st.runs, st.deltas)))))
R.show(R.section("Secondary outcomes: entropy, distinct answers, length",
                 R.md("\n".join(S.outcome_markdowns(st.runs, st.deltas)))))
R.show(R.section("What this design detects, what more would take, what it cost",
                 R.md(S.design_markdown(st.deltas, st.k, st.runs, its=st.its))))
R.show(R.section("Secondary analyses: along skill, a t over seeds, contrasts",
                 R.md(S.skill_markdown(st.deltas, st.k) + T.summary_markdown(st.deltas, st.k, secondary=True))))

# %%
R.show(R.section("The runs", R.runs_section(st)))
R.show(R.section("Accuracy over training", R.accuracy_section(st, table_every)))

# %%
metrics = R.metrics_by_rung(st)
R.show(R.section("Training curves", "<p>Reward and samples kept per step, per rung.</p>" if len(metrics) else ""))
if len(metrics):
    R.show_figure(P.plot_curves(metrics, ("reward_mean", "kept"), window))
    R.show(R.section("Entropy and response length", "<p><code>entropy_kept</code>: the policy's exact entropy over the "
                     "samples each step trained on (so objectives differ by which samples they keep).</p>"))
    R.show_figure(P.plot_curves(metrics, ("entropy_kept", "response_len_mean"), window))

# %%
R.show(R.appendix(st))
