"""The report's parts for people: escaping, the first screen's sentences and banner, the figures' layout."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from synthetic import _seeded_grid  # noqa: E402

from rlvr_utils.study.frontpage import answer_frame, cannot_answer, plain_sentence  # noqa: E402
from rlvr_utils.study.crossed import crossed_mean  # noqa: E402
from rlvr_utils.study.passk import contrast_frame, pass_at_k_array, passk_frame  # noqa: E402
from rlvr_utils.study.safehtml import NO_MATH, markdown, math, table, text_with_math  # noqa: E402
from rlvr_utils.core.stats import pass_at_k  # noqa: E402
from rlvr_utils.study.studyfig import ladders, plot_passk, plot_study, plot_study_full, text_overlaps  # noqa: E402

HOSTILE = ["<script>window.__pwned=1</script>", '<img src=x onerror="window.__pwned=1">', "<q>quoted</q>",
           "<svg onload=window.__pwned=1>"]


def test_markdown_and_tables_escape_every_value():
    md = markdown("| a | b |\n|---|---|\n| " + " | ".join(HOSTILE[:2]) + " |\n\n" + HOSTILE[3]
                  + "\n\n[x](javascript:window.__pwned=1)")
    t = table(pd.DataFrame({"rung": HOSTILE, "x": [1.0, 2.0, 3.0, 4.0]}), caption=HOSTILE[2], notes=HOSTILE[1])
    for html in (md, t):
        assert "<script" not in html and "<img" not in html and "<q>" not in html and "<svg" not in html, html
        assert "javascript:" not in html.replace("&", "")
        assert html.startswith(f'<div class="{NO_MATH}')  # MathJax never scans generated text
    assert "&lt;script&gt;" in t and "<table>" in md  # the markdown's own table is still a table


def test_only_plain_tex_reaches_mathjax():
    ok = text_with_math(r"so $\frac{1}{2}$ and \(x^2\). The answer is $\boxed{4}$.")
    assert r"\(\boxed{4}\)" in ok and r"\(\frac{1}{2}\)" in ok and ok.count(r"\(") == 3
    for evil in (r"\href{javascript:window.__pwned=1}{x}", r"\class{x}{y}", r"\style{color:red}{x}", r"\require{html}",
                 r"\unicode{x41}", r"\def\a{\a\a}\a", "x" * 1000):
        out = text_with_math(f"$ {evil} $") + math(evil)
        assert r"\(" not in out and "\\[" not in out, out  # shown as text, inside elements MathJax skips
        assert out.count(f'class="{NO_MATH}"') >= 2
    assert "&lt;b&gt;" in text_with_math("<b>bold</b> $x$")


def test_pass_at_k_array_is_the_unbiased_estimator():
    n, c = np.full(33, 32), np.arange(33)
    for k in (1, 2, 4, 16, 32):
        assert np.allclose(pass_at_k_array(n, c, k), [pass_at_k(32, int(x), k) for x in c], atol=1e-12)
    assert np.isnan(pass_at_k_array(np.array([4]), np.array([1]), 8))[0]


def _it(est, lo, hi, seeds=22, k=1, ends=(-0.016, -0.050), mde=0.023):
    c = crossed_mean(np.random.default_rng(0).normal(size=(seeds, 8)))
    c = type(c)(est, (hi - lo) / 4, 30.0, lo, hi, seeds, 256, 0.0, 0.0, 0.0)
    return {"c": c, "labels": ("1m/1M", "7m/2M"), "k": k, "objectives": ("nsr", "psr"), "ends": ends, "mde": mde,
            "mde_interval": (mde * 0.8, mde * 1.2), "rungs": (1.0, 2.0)}


def test_first_screen_sentences_say_the_answer_and_when_there_is_none():
    yes = plain_sentence(_it(-0.034, -0.050, -0.018))
    assert yes.startswith("Pass@1: yes, PSR's lead over NSR grows with the prior") and "1m/1M" in yes
    no = plain_sentence(_it(-0.006, -0.046, 0.033, k=16, mde=0.056))
    assert no.startswith("Pass@16: no, NSR − PSR changes by less than ±0.05")
    assert plain_sentence(_it(0.0, -0.3, 0.3)).startswith("Pass@1: inconclusive")
    wide = _it(0.013, -2.930, 2.955, seeds=2, mde=3.761)
    assert "no answer at this size" in plain_sentence(wide)
    row = answer_frame([wide]).iloc[0]
    assert "wider than any possible change" in row.iloc[3] and "-2.930" not in "".join(map(str, row))
    assert row["smallest detectable (80% power)"] == "more than any possible change"
    ident = {"seeds": 2, "problems": 64, "name": "smoke"}
    banner = cannot_answer([wide, _it(0.1, -2.5, 2.7, seeds=2, k=16, mde=3.9)], ident)
    assert "cannot answer" in banner and "2 seeds × 64 problems detect only an interaction of 3.76" in banner
    assert cannot_answer([_it(-0.034, -0.050, -0.018)], ident | {"seeds": 22}) == ""


def test_ladders_tell_size_from_dose():
    lad = ladders(["1m/1M", "1m/2M", "1m/4M", "3m/2M", "7m/2M"])
    assert lad == {"1m/1M": "dose", "1m/2M": "both", "1m/4M": "dose", "3m/2M": "size", "7m/2M": "size"}
    assert set(ladders(["1m/1M", "1m/2M", "1m/3M"]).values()) == {"dose"}
    assert set(ladders(["n=0", "n=1000"]).values()) == {""}


def test_study_figures_draw_clipped_intervals_without_overlapping_text(tmp_path):
    # 4 seeds per cell on 64 problems, each seed's counts drawn at random; every base solves 2 of 4 samples
    rng = np.random.default_rng(3)
    deltas = _seeded_grid(tmp_path, lambda r, s, o: list(rng.integers(0, 5, 64)))
    pk = passk_frame(deltas)
    assert set(pk["which"]) == {"base", "final", "delta"} and set(pk["k"]) == {1}
    assert pk[pk["which"] == "base"]["lo"].isna().all()  # bases that agree exactly: no variance, no interval
    assert (pk["lo_clip"].dropna() >= -1).all() and (pk[pk["which"] == "final"]["lo_clip"] >= 0).all()
    assert (pk["hi_clip"].dropna() <= 1).all()
    con = contrast_frame(deltas, (1,))
    base = deltas[deltas["k"] == 1].groupby("rung")["base"].mean()
    figs = [plot_study(pk, con, base, (1,), ("n=0", "n=1000")), plot_passk(pk, base),
            plot_study_full(pk, con, base, (1,), ("n=0", "n=1000"), "a title that states the answer " * 8)]
    for fig in figs:
        assert text_overlaps(fig) == []
        plt.close(fig)
    # the check can fail: two rungs whose labels land on one spot (the old skill axis on the smoke grid)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xticks([0.1, 0.1005], ["1m/1M", "1m/2M"])
    ax.set_xlim(0, 1)
    assert text_overlaps(fig) == [("1m/1M", "1m/2M")]
    plt.close(fig)


@pytest.mark.parametrize("which", ["base", "delta"])
def test_an_interval_wider_than_the_range_is_flagged_not_drawn(which):
    from rlvr_utils.study.passk import _row

    seeds = [pd.Series([0.0] * 8), pd.Series([1.0, 0.9, 1.0, 1.0, 0.8, 1.0, 1.0, 0.9])]
    row = _row(seeds, {}, which)
    assert row["wide"] and row["hi"] - row["lo"] > (1 if which == "base" else 2)
    assert row["lo_clip"] >= (0 if which == "base" else -1) and row["hi_clip"] <= 1


def test_tensorboard_runs_are_grouped_by_objective(tmp_path):
    from synthetic import finished_cell

    from rlvr_utils.study.board import by_objective, tb_command

    for obj in ("psr", "nsr"):
        (finished_cell(tmp_path / "grid", f"fam-1m-2M__{obj}__s0", obj) / "tb").mkdir()
    out = by_objective(tmp_path / "grid")
    assert sorted(str(p.relative_to(out)) for p in out.glob("*/*/*")) == ["nsr/1m-2M/s0", "psr/1m-2M/s0"]
    assert (out / "psr" / "1m-2M" / "s0").resolve() == (tmp_path / "grid" / "fam-1m-2M__psr__s0" / "tb").resolve()
    assert tb_command(tmp_path / "grid")[:3] == ["tensorboard", "--logdir", str(out)]
    with pytest.raises(ValueError, match="no cell with TensorBoard events"):
        by_objective(tmp_path / "grid" / "fam-1m-2M__psr__s0")
