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


@pytest.mark.parametrize("sets,context,expect", [
    ({}, 8192, (512, 1024)),  # a long context keeps the 512-token prompt budget
    ({"max_tokens": 96}, 512, (416, 512)),  # a family rung's: what its context leaves after the answer
    ({"max_tokens": 64, "eval_max_tokens": 128}, 512, (384, 512)),
    ({"max_prompt_tokens": 100, "max_tokens": 64}, 512, (100, 164)),
    ({"max_model_len": 300, "max_tokens": 64}, 512, (236, 300)),
    ({"max_prompt_tokens": 512, "max_model_len": 2048}, 8192, (512, 2048)),  # stated values stay
])
def test_the_context_follows_the_model_unless_set(sets, context, expect):
    c = TrainConfig(**sets).fit_context(context)
    assert (c.max_prompt_tokens, c.max_model_len) == expect and c.fit_context(context) == c


@pytest.mark.parametrize("sets,word", [
    ({}, "max_tokens=512 leaves no room for a prompt in the model's context of 512"),
    ({"max_tokens": 64, "max_prompt_tokens": 512}, "lower max_prompt_tokens .* or max_tokens, or set max_prompt_tokens=0 "
                                                   r"\(here 448\)"),
    ({"max_tokens": 64, "max_model_len": 1024}, "max_model_len=1024 exceeds the model's context of 512"),
    ({"max_tokens": 64, "eval_max_tokens": 512}, "lower eval_max_tokens"),
])
def test_a_context_that_cannot_fit_names_the_setting_to_change(sets, word):
    with pytest.raises(ValueError, match=word):
        TrainConfig(**sets).fit_context(512)


@pytest.mark.parametrize("sets,word", [
    ({"lr": float("inf")}, "lr must be a finite number"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"lr": True}, "lr must be a float"),
    ({"steps": 2.5}, "steps must be an int"),
    ({"vllm_sleep": "false"}, "vllm_sleep must be a bool"),
])
def test_a_number_setting_is_of_its_type_and_finite(sets, word):
    with pytest.raises(ValueError, match=word):
        TrainConfig(**sets)
