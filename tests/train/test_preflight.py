"""What a run checks before any weights load: the disk its checkpoints need, vLLM when asked for, its expected duration."""

import pytest

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.train.preflight import CHECKPOINT_BYTES, checkpoint_need, expected_duration


def test_checkpoints_need_room_for_two_while_the_next_is_saved():
    params = 3_085_938_688  # Qwen2.5-3B
    cfg = TrainConfig(steps=140, checkpoint_every=7)
    size, need = checkpoint_need(cfg, params, has_one=False)
    assert size == CHECKPOINT_BYTES * params and 37e9 < size < 37.1e9 and need == 2 * size  # ~74 GB at the start
    assert checkpoint_need(cfg, params, has_one=True)[1] == size  # a resume: the one on disk is already paid for
    assert checkpoint_need(cfg.replace(steps=10, checkpoint_every=7), params, False)[1] == size  # one checkpoint
    assert checkpoint_need(cfg.replace(steps=7, checkpoint_every=7), params, False)[1] == 0  # none before the last step
    assert checkpoint_need(cfg.replace(checkpoint_every=0), params, False)[1] == 0


def test_a_run_whose_checkpoints_cannot_fit_its_disk_is_refused_before_weights_load(tmp_path, tiny_model_path,
                                                                                   monkeypatch):
    from rlvr_utils.train import train

    monkeypatch.setattr("rlvr_utils.train.preflight._disk_free", lambda path: 1e6)  # a disk with 1 MB free
    cfg = TrainConfig(model=tiny_model_path, steps=3, checkpoint_every=1, max_tokens=16, eval_problems=0, engine="hf",
                      device="cpu", precision="fp32", levels="Level 1")
    with pytest.raises(OSError, match=r"[MG]B \(the policy and AdamW's state, 12 bytes a parameter\).*GB free needed, "
                                      r"[0-9.]+ [MG]B free.*checkpoint_every=0"):
        train(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()


def test_engine_vllm_is_refused_where_vllm_is_missing(tmp_path, tiny_model_path, monkeypatch):
    from rlvr_utils.train.preflight import check_inputs

    monkeypatch.setattr("rlvr_utils.train.preflight.vllm_available", lambda: False)
    with pytest.raises(ValueError, match="engine=vllm but vLLM is not installed.*--set engine=hf"):
        check_inputs(TrainConfig(model=tiny_model_path, engine="vllm", device="cpu", levels="Level 1"))


def test_a_cells_expected_duration_comes_from_its_recorded_pace():
    from rlvr_utils.grid.profiles import cells

    paper = {c.config.model: c.config for c in cells("paper", {"objectives": "grpo", "seeds": "0"})}
    line = expected_duration(paper["qwen2.5-3b"], "NVIDIA H100 80GB HBM3")
    # 140 steps x 512 samples at 55.65 s a 128: 8.7 h of update alone
    assert line and "the update alone ~8.7 h" in line and "gpu_update_h100" in line, line
    assert expected_duration(paper["qwen2.5-3b"], "NVIDIA A10G") is None  # no pace recorded on that card
    seed = {c.config.model: c.config for c in cells("seed", {"objectives": "nsr", "seeds": "0"})}
    assert "a step with the HF engine ~0.5 h" in expected_duration(seed["qwen2.5-3b"], "NVIDIA H200")
