"""Device and precision are decided from the machine and recorded; the memory plan refuses what cannot fit."""

import json

import pytest
import torch

from rlvr_utils.core.config import TrainConfig
from rlvr_utils.core.hardware import Hardware, check_plan, cpu_info, memory_plan, param_count, resolve


def test_auto_precision_is_measured_once_and_forcing_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path))
    hw = resolve("auto", "auto")
    assert hw.device == ("cuda" if torch.cuda.is_available() else "cpu") and hw.precision in ("fp32", "bf16")
    if hw.device == "cpu":
        assert "measured" in hw.reason and cpu_info()[0] in json.loads((tmp_path / "hardware.json").read_text()).popitem()[0]
        assert resolve("cpu", "auto") == hw  # the cached verdict: every run on this machine agrees
    assert resolve("cpu", "bf16").precision == "bf16" and resolve("cpu", "fp32").dtype == "float32"
    with pytest.raises(ValueError, match="precision"):
        resolve("cpu", "fp16")
    with pytest.raises(ValueError, match="precision='fp8' not in"):
        TrainConfig(precision="fp8")


def test_param_count_matches_the_model(tiny_model_path):
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

    mc = AutoConfig.from_pretrained(tiny_model_path)
    assert param_count(mc) == sum(p.numel() for p in AutoModelForCausalLM.from_config(mc).parameters())
    q = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, tie_word_embeddings=True)  # Qwen2 has q/k/v biases
    assert param_count(q) == sum(p.numel() for p in AutoModelForCausalLM.from_config(q).parameters())


def test_memory_plan_refuses_what_cannot_fit_and_names_the_knobs(tmp_path, tiny_model_path, monkeypatch):
    from transformers import Qwen2Config

    from rlvr_utils.train.loop import train

    q3b = Qwen2Config(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                      num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True)
    gpu = Hardware("cuda", "bf16", "H100", True, "test")
    cfg = TrainConfig(model="qwen2.5-3b", engine="vllm", micro_batch_size=16, vllm_gpu_memory=0.3)
    plan = memory_plan(q3b, cfg, gpu, available=80e9)
    assert plan.parts["AdamW moments (fp32)"] == 8 * plan.params and 3.0e9 < plan.params < 3.2e9
    assert not plan.fits and "DOES NOT FIT" in str(plan)
    with pytest.raises(MemoryError, match="micro_batch_size.*gradient_checkpointing"):
        check_plan(plan)
    lean = memory_plan(q3b, cfg.replace(micro_batch_size=8, gradient_checkpointing=True, vllm_sleep=True), gpu, 80e9)
    assert lean.fits and lean.update_peak < plan.update_peak
    # the trainer refuses before any weights load, and writes nothing (a machine with 1 MB of memory)
    monkeypatch.setattr("rlvr_utils.core.hardware._device_bytes", lambda device: 1e6)
    with pytest.raises(MemoryError):
        train(TrainConfig(model=tiny_model_path, micro_batch_size=4, max_tokens=64, eval_problems=0, engine="hf",
                          device="cpu", precision="fp32", levels="Level 1"), tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()


SHAPES = {"qwen2.5-3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                             num_key_value_heads=2),
          "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                               num_key_value_heads=2)}  # bench/gpu_rollouts.py SHAPES


def _qwen(name):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151936, tie_word_embeddings=True, **SHAPES[name])


def _paper(objective="grpo", **kw):
    from rlvr_utils.grid.profiles import PROFILES

    spec = PROFILES["paper"]
    return TrainConfig.from_dict({**spec.params, **spec.per_objective.get(objective, {}), "objective": objective, **kw},
                                 strict=False)


def test_memory_plan_against_the_update_measured_on_gpus():
    # bench/gpu_update.py on an H200 and an H100 80GB (bench/measured/): the `paper` profile's full-length update of
    # Qwen2.5-3B and -1.5B with GRPO's fp32 reference, measured with the loss path before the memory-lean one (4-5
    # fp32 [tokens x 152k] copies a sample). Where that micro-batch stayed under AdamW's step temporaries (3B, one
    # sample) the micro-batch did not set the peak, so the plan's other parts are held to it: not less than
    # measured (1% aside: an 80 GB card would OOM), nor more than a few percent above. Where it set the peak, the
    # lean loss must plan less than the old one used. The lean loss's own peak on a card: bench/gpu_smoke.py.
    import json
    from pathlib import Path

    rows = [r for f in sorted((Path(__file__).parents[2] / "bench/measured").glob("gpu_update_*.json"))
            for r in json.loads(f.read_text()) if r["code"].startswith("losses.Entropy")]
    assert {(r["model"], r["micro_batch"]) for r in rows} >= {("qwen2.5-3b", 1), ("qwen2.5-3b", 2), ("qwen2.5-1.5b", 1)}
    assert {r["device"] for r in rows} >= {"NVIDIA H200", "NVIDIA H100 80GB HBM3"}
    gpu = Hardware("cuda", "bf16", "NVIDIA H200", True, "test")
    for r in rows:
        cfg = _paper(engine="vllm", micro_batch_size=r["micro_batch"], micro_batch_tokens=0, ref_precision="fp32")
        plan = memory_plan(_qwen(r["model"]), cfg, gpu, available=150.1e9)
        no_engine = (plan.update_peak - plan.parts["vLLM asleep (CUDA graphs, buffers)"]) / 1e9  # the bench ran none
        if (r["model"], r["micro_batch"]) == ("qwen2.5-3b", 1):
            assert 0.99 <= no_engine / r["peak_gb"] <= 1.05, (r, str(plan))
        else:
            assert no_engine < r["peak_gb"], (r, str(plan))


def test_the_paper_profile_fits_an_80_gb_card_with_several_samples_a_micro_batch():
    """An H100 80GB has 85.0e9 bytes. The 3B GRPO cell (the grid's heaviest: a reference and its KL loss) fits with
    micro-batches of 4 full-length samples, its bf16 reference and vLLM's asleep residue counted."""
    gpu = Hardware("cuda", "bf16", "NVIDIA H100 80GB HBM3", True, "test")
    cfg = _paper(engine="vllm")
    plan = memory_plan(_qwen("qwen2.5-3b"), cfg, gpu, available=85.0e9)
    assert plan.fits and cfg.micro_batch_tokens // (cfg.max_prompt_tokens + cfg.max_tokens) >= 4, str(plan)
    assert plan.parts["reference policy (bf16)"] == 2 * plan.params
    assert 0.5e9 < plan.parts["vLLM asleep (CUDA graphs, buffers)"] < 2e9
    one = memory_plan(_qwen("qwen2.5-3b"), cfg.replace(micro_batch_tokens=0, micro_batch_size=1), gpu, available=85.0e9)
    assert plan.update_peak == one.update_peak  # AdamW's step temporaries, not the micro-batch, set the peak
    fp32_ref = memory_plan(_qwen("qwen2.5-3b"), cfg.replace(ref_precision="fp32"), gpu, available=85.0e9)
    assert fp32_ref.rollout_peak - plan.rollout_peak == 2 * plan.params  # 6 GB on 3B
    for objective in ("psr", "nsr", "w_reinforce", "reinforce"):  # no reference at all
        assert "reference policy (fp32)" not in memory_plan(_qwen("qwen2.5-3b"), _paper(objective, engine="vllm"), gpu,
                                                            available=85.0e9).parts


def test_the_plan_counts_gradients_only_while_they_live():
    """Gradients are freed when the update returns (update.update_policy): they are in the update's peak, not in
    the sampling peak; a frozen reference is resident in both when the run keeps one."""
    from transformers import Qwen2Config

    q3b = Qwen2Config(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                      num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True)
    gpu = Hardware("cuda", "bf16", "H100", True, "test")
    for track in (False, True):
        plan = memory_plan(q3b, TrainConfig(engine="vllm", micro_batch_size=1, track_kl=track, device="cuda"), gpu, 80e9)
        grads, ref = plan.parts["gradients (fp32)"], plan.parts.get("reference policy (fp32)", 0)
        resident = plan.parts["weights (fp32 master)"] + plan.parts["AdamW moments (fp32)"] + ref
        engine = sum(v for k, v in plan.parts.items() if k.startswith("vLLM"))
        assert plan.rollout_peak == resident + engine  # no gradients while sampling
        assert plan.update_peak >= resident + grads + engine
        assert (ref > 0) == track
