"""Profiles resolve to complete configs; docs/profiles.md carries their table."""

import re
from pathlib import Path

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.grid.profiles import PROFILES, cells, resolve_config, settings_diff, settings_table

REPO = Path(__file__).resolve().parents[2]


def test_docs_table_is_the_profiles_resolved_cells():
    page = (REPO / "docs" / "profiles.md").read_text()
    assert settings_table() in page, "docs/profiles.md's settings table is stale: paste `rlvr grid --table`"


def test_the_table_has_a_row_for_every_setting_in_which_the_profiles_differ():
    table, first = settings_table(), {p: cells(p)[0].config for p in PROFILES}
    differ = [k for k in TrainConfig.__dataclass_fields__ if len({repr(getattr(c, k)) for c in first.values()}) > 1]
    assert {"device", "engine", "precision", "data"} <= set(differ)
    for k in differ:
        assert f"| `{k}` |" in table, k


def test_gpu_profiles_inherit_nothing_from_the_cpu_profile():
    for profile, extraction in (("seed", "boxed"), ("paper", "boxed_or_last_number")):  # paper: its reward's fallback
        for c in cells(profile):
            assert (c.config.levels, c.config.prompt, c.config.extraction) == ("", "paper", extraction), c.name
    seed = cells("seed")[0].config
    assert (seed.adam_beta2, seed.weight_decay, seed.loss_agg, seed.min_tokens) == (0.95, 0.01, "seq_mean", 128)
    paper = {c.config.objective: c.config for c in cells("paper")}
    assert paper["grpo"].kl_coef == 0.001 and all(c.kl_coef == 0 for o, c in paper.items() if o != "grpo")
    assert paper["nsr"].mini_batch_size == 128 and paper["nsr"].entropy_coef == 0.001
    for profile in ("seed", "paper"):  # a GPU profile never falls back to the CPU, and keeps no spare 3B copy
        assert all(c.config.device == "cuda" and not c.config.track_kl for c in cells(profile))
    # the notebook's interactive path resolves the same way
    assert resolve_config("seed", {"objective": "nsr"}) == [c.config for c in cells("seed") if c.name.endswith("nsr__s0")][0]
    assert set(PROFILES) == {"cpu", "smoke", "family", "warm-smoke", "seed", "paper", "prior", "controls",
                             "controls-matched", "controls-offpolicy", "controls-calibration", "controls-smoke"}
    assert [c.name for c in cells("prior")][:2] == ["warm-n0__psr__s0", "warm-n0__psr__s1"]


def test_a_lams_axis_multiplies_only_the_objectives_that_read_lam():
    grid = {c.name: c.config for c in cells("prior", {"models": "warm:n=0", "objectives": "psr,w_reinforce",
                                                       "seeds": "0", "lams": "0.1,0.5"})}
    assert sorted(grid) == ["warm-n0__psr__s0", "warm-n0__w_reinforce__s0__lam0.1", "warm-n0__w_reinforce__s0__lam0.5"]
    assert grid["warm-n0__w_reinforce__s0__lam0.5"].lam == 0.5


def test_dry_run_prints_each_cells_resolved_settings(tmp_path, capsys):
    from rlvr_utils import cli

    assert cli.main(["grid", "--profile", "seed", "--runs", str(tmp_path), "--dry-run"]) == 0  # no GPU needed to list
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("pending")]
    assert len(lines) == 9
    for c, ln in zip(cells("seed"), lines):
        assert c.name in ln
        for k, v in settings_diff(c.config).items():
            assert f"{k}={v!r}" in ln
    assert "adam_beta2=0.95" in lines[0] and "Level 1" not in out
    assert settings_diff(TrainConfig()) == {}


def test_a_models_axis_keeps_a_rung_specs_own_commas():
    from rlvr_utils.priors.recipes import split_models

    v = "family:size=1m,tokens=1000000,warm:n=0,seed=1,/some/model,family:size=3m,tokens=2000000"
    assert split_models(v) == ["family:size=1m,tokens=1000000", "warm:n=0,seed=1", "/some/model",
                               "family:size=3m,tokens=2000000"]
    grid = cells("family", {"models": "family:size=1m,tokens=1000000,family:size=7m,tokens=2000000", "seeds": "0",
                            "objectives": "psr"})
    assert [c.config.model for c in grid] == ["family:size=1m,tokens=1000000", "family:size=7m,tokens=2000000"]


def test_a_study_that_spans_sessions_runs_seed_by_seed():
    names = [c.name for c in cells("family")]
    per_seed = len(PROFILES["family"].models) * len(PROFILES["family"].objectives)
    assert all(n.endswith("__s0") for n in names[:per_seed]) and names[per_seed].endswith("__s1")
    assert len(set(names)) == len(names) == per_seed * len(PROFILES["family"].seeds)


def test_a_calibration_grid_refuses_the_seeds_of_the_study_it_calibrates():
    import pytest

    assert {c.config.seed for c in cells("controls-calibration")} == {1000, 1001}
    with pytest.raises(ValueError, match=r"calibrates a study that uses seed\(s\) \[3\]"):
        cells("controls-calibration", {"seeds": "3,1002"})


def test_the_controls_arms_differ_only_where_their_design_says():
    arms = {p: {c.name: c.config for c in cells(p)} for p in ("controls", "controls-matched", "controls-offpolicy")}
    assert arms["controls"].keys() == arms["controls-matched"].keys() == arms["controls-offpolicy"].keys()
    name = "fam-1m-2M-b2__nsr__s4"
    base = arms["controls"][name]
    diff = lambda c: {k for k, v in c.to_dict().items() if v != base.to_dict()[k]}  # noqa: E731
    assert diff(arms["controls-matched"][name]) == {"dynamic_kept", "dynamic_max_batches", "loss_norm"}
    assert diff(arms["controls-offpolicy"][name]) == {"mini_batches"}  # clip 0.2 is the default; only now it acts
    assert base.data == "gen:column?difficulty=2&n=4000+gen:column?difficulty=3&n=1000" and base.max_tokens == 240
    assert base.eval_protocols["paper"]["samples"] == 512
    builds = {c.model for c in arms["controls"].values()}
    assert len(builds) == 12 and sum("seed=2" in m for m in builds) == 4  # 4 rungs x 3 builds


def test_paper_dry_run_shows_each_cells_memory_plan_with_vllms_asleep_residue_and_micro_batch(tmp_path, capsys):
    from rlvr_utils import cli

    assert cli.main(["grid", "--profile", "paper", "--runs", str(tmp_path), "--dry-run"]) == 0  # no GPU, no hub
    out = capsys.readouterr().out.splitlines()
    names = [c.name for c in cells("paper")]
    plans = [out[i + 1] for i, ln in enumerate(out) if ln.startswith("pending")]
    assert len(plans) == len(names) == 30
    for ln in plans:
        assert "plan on an 80 GB card (85 GB): sampling" in ln and "(fits)" in ln, ln
        assert re.search(r"vLLM asleep 0\.\d\d GB", ln) and "micro-batches of 4 full-length samples (16384 tokens" in ln, ln
    assert sum("expected duration on NVIDIA H100 80GB HBM3: the update alone" in ln for ln in out) == 30
