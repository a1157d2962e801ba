"""TrainConfig's fields document themselves: each carries its help, and `rlvr train --help` lists every field with
its default; the rules a field declares are the ones `validate` applies."""

from dataclasses import fields

import pytest

from rlvr_utils import cli
from rlvr_utils.core.config import BOUNDS, TRAINING_ONLY, TrainConfig, config_help, shown_default


def test_every_field_has_help_and_a_known_bound():
    for f in fields(TrainConfig):
        assert f.metadata["help"], f"{f.name} has no help"
        assert f.metadata["bound"] in (None, *BOUNDS), f.name


def test_train_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    lines = {x.split(" = ")[0].strip(): x for x in out.splitlines() if x.startswith("  ") and " = " in x}
    for f in fields(TrainConfig):
        default = shown_default(f)
        assert f.name in lines, f.name
        assert (default if f.metadata["shown"] else repr(default)) in lines[f.name], lines[f.name]
    assert config_help() in out


def test_a_declared_bound_is_the_one_validate_applies():
    with pytest.raises(ValueError, match=r"micro_batch_size must be >= 1, got 0"):
        TrainConfig(micro_batch_size=0)
    with pytest.raises(ValueError, match=r"device='tpu' not in auto, cpu, cuda, cuda:N"):
        TrainConfig(device="tpu")
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_training_only_settings_are_the_declared_ones():
    assert "lr" in TRAINING_ONLY and "objective" in TRAINING_ONLY
    assert not TRAINING_ONLY & {"model", "seed", "data", "eval_samples", "eval_temperature", "prompt", "extraction"}
