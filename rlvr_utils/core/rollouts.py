"""Rollout engines: one interface, three implementations (vLLM in-process, the HF model's own KV-cached loop,
and `static`, a sampler for small Llama policies on a CPU: core/sampler.py); core/engines.py picks one.

Every engine returns, per sample, the exact token ids it sampled (EOS included when generation
stopped on it), so the trainer never re-tokenizes decoded text, and the model's log-probability of
each sampled token. `logprobs` are the raw model log-probs, log_softmax(logits) at temperature 1,
before temperature/top-p: the same quantity in every engine, and what the policy's forward pass
computes, so engine-vs-policy agreement is a direct check of weight sync.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

from .hardware import cpu_cores, vllm_bind

@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 256
    min_tokens: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1 or not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 1 <= max_tokens and 0 <= min_tokens <= max_tokens, got "
                             f"max_tokens={self.max_tokens}, min_tokens={self.min_tokens}")


@dataclass
class Rollout:
    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "stop" (ended on EOS) | "length"


class Engine(ABC):
    name: str

    @abstractmethod
    def generate(self, prompts: Sequence[list[int]], n: int,
                 sampling: SamplingConfig | Sequence[SamplingConfig]) -> list[Rollout]:
        """n samples per prompt, ordered prompt-major (all samples of prompt 0 first).

        `sampling` is one config for all prompts or one per prompt (lets several evaluation
        protocols share one engine call).
        """

    @abstractmethod
    def sync_weights(self, policy) -> None:
        """Make the engine sample from the policy's current weights."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


def mix_seed(seed: int, salt: int) -> int:
    """One seed per (run seed, step / request / sample): the one rule used wherever seeds are derived."""
    return seed * 1_000_003 + salt


def sample_seeds(sampling: Sequence[SamplingConfig], n: int) -> list[list[int]]:
    """The seed of each prompt's j-th sample: distinct across prompts and samples (prompt i's samples are
    mix_seed(seed, i * n + j), so prompt i's sample j+1 never shares a seed with prompt i+1's sample j)."""
    return [[mix_seed(sp.seed, i * n + j) for j in range(n)] for i, sp in enumerate(sampling)]


def vllm_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    except Exception:  # noqa: BLE001
        return False


def eos_ids(tokenizer, generation_config=None) -> list[int]:
    """Every id generation stops on: the tokenizer's EOS and the generation config's (Qwen's lists two), as
    both engines stop (vLLM adds the generation config's to its stop tokens)."""
    ids = set()
    for src in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(src)
    return sorted(ids)


# ---------------------------------------------------------------------------------------------- HF


class HFEngine(Engine):
    """Samples from the policy module itself (so it is always in sync) with a KV-cached loop.

    A hand-written loop instead of `generate` keeps only the sampled token's log-prob per step
    (generate's output_logits would hold 64 x 512 x 49k floats), and makes min_tokens/top_p/seed exact.
    """

    name = "hf"

    def __init__(self, policy, tokenizer, batch_size: int = 64, dtype: str | None = None):
        import copy

        import torch

        self.tok = tokenizer
        self.batch_size = batch_size
        # dtype None or the policy's own: sample from the policy itself. bf16: a low-precision copy, since
        # under autocast every decode step would re-cast all fp32 weights (autocast caches casts only
        # with grad enabled); measured 1.5-2.4x faster than autocast on a CPU with avx512_bf16.
        dt = getattr(torch, dtype) if dtype else policy.dtype
        self._owns_copy = policy.dtype != dt
        self.model = copy.deepcopy(policy).to(dt).requires_grad_(False) if self._owns_copy else policy
        self.eos = eos_ids(tokenizer, getattr(policy, "generation_config", None))
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]

    def sync_weights(self, policy) -> None:
        if self._owns_copy:
            self.model.load_state_dict(policy.state_dict())  # casts to the copy's dtype in place
        else:
            self.model = policy

    def generate(self, prompts: Sequence[list[int]], n: int,
                 sampling: SamplingConfig | Sequence[SamplingConfig]) -> list[Rollout]:
        if not isinstance(sampling, SamplingConfig):
            out: list[Rollout] = []
            for sp in dict.fromkeys(sampling):  # one pass per distinct config, original order kept
                idx = [i for i, x in enumerate(sampling) if x == sp]
                for r in self.generate([prompts[i] for i in idx], n, sp):
                    r.prompt_index = idx[r.prompt_index]
                    out.append(r)
            return sorted(out, key=lambda r: (r.prompt_index, r.sample_index))
        return self._generate(prompts, n, sampling)

    def _generate(self, prompts: Sequence[list[int]], n: int, sampling: SamplingConfig) -> list[Rollout]:
        import torch

        flat = [(i, j, list(p)) for i, p in enumerate(prompts) for j in range(n)]
        # on the model's device: a CPU generator would move B x vocab probabilities to the host every token
        gen = torch.Generator(device=next(self.model.parameters()).device).manual_seed(sampling.seed)
        out: list[Rollout] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for s in range(0, len(flat), self.batch_size):
                chunk = flat[s : s + self.batch_size]
                resp, lps, fin = self._sample([c[2] for c in chunk], sampling, gen)
                for (i, j, p), r, lp, f in zip(chunk, resp, lps, fin):
                    text = self.tok.decode(r, skip_special_tokens=True)
                    out.append(Rollout(i, j, p, r, lp, text, f))
        finally:
            self.model.train(was_training)
        return out

    def _sample(self, prompts: list[list[int]], sp: SamplingConfig, gen):
        import torch

        dev = next(self.model.parameters()).device
        B, L = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((B, L), self.pad, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for b, p in enumerate(prompts):  # left padding
            ids[b, L - len(p):] = torch.tensor(p)
            mask[b, L - len(p):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        eos = torch.tensor(self.eos, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        toks, lps = [], []
        with torch.no_grad():
            o = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            past, logits = o.past_key_values, o.logits[:, -1].float()
            for t in range(sp.max_tokens):
                raw = torch.log_softmax(logits, -1)
                if sp.temperature == 0:
                    scaled = logits.clone()
                else:
                    scaled = logits / sp.temperature
                if t < sp.min_tokens:
                    scaled[:, eos] = float("-inf")
                if sp.temperature == 0:
                    tok = scaled.argmax(-1)
                else:
                    probs = torch.softmax(scaled, -1)
                    if sp.top_p < 1:
                        probs = _top_p(probs, sp.top_p)
                    tok = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
                tok = torch.where(done, torch.full_like(tok, self.pad), tok)
                toks.append(tok)
                lps.append(raw.gather(-1, tok[:, None]).squeeze(-1))
                done = done | torch.isin(tok, eos)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=dev)], -1)
                pos = pos[:, -1:] + 1
                o = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos,
                                past_key_values=past, use_cache=True)
                past, logits = o.past_key_values, o.logits[:, -1].float()
        T = torch.stack(toks, 1).tolist()
        LP = torch.stack(lps, 1).tolist()
        resp, outlp, fin = [], [], []
        eos_set = set(self.eos)
        for row, lrow in zip(T, LP):
            end = next((k for k, x in enumerate(row) if x in eos_set), None)
            if end is None:
                resp.append(row)
                outlp.append(lrow)
                fin.append("length")
            else:
                resp.append(row[: end + 1])
                outlp.append(lrow[: end + 1])
                fin.append("stop")
        return resp, outlp, fin


def _top_p(probs, top_p: float):
    import torch

    sp, si = probs.sort(-1, descending=True)
    keep = sp.cumsum(-1) - sp < top_p  # keep the smallest prefix reaching top_p (at least one token)
    sp = sp * keep
    out = torch.zeros_like(probs).scatter(-1, si, sp)
    return out / out.sum(-1, keepdim=True)


# -------------------------------------------------------------------------------------------- vLLM


def configure_vllm_env() -> None:
    """Settings vLLM reads at import: in-process engine (weight sync by reference), CPU threads."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    # every core this process may use, unless `hardware.use_threads` gave a cell's allocation
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", vllm_bind(cpu_cores()))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")


class VLLMEngine(Engine):
    """vLLM in this process (`vllm-cpu` on CPU, `vllm` on CUDA)."""

    name = "vllm"

    def __init__(self, model_path: str, max_model_len: int = 2048, seed: int = 0, dtype: str = "float32",
                 enforce_eager: bool | None = None, gpu_memory_utilization: float = 0.35, sleep_mode: bool = False,
                 batch_size: int | None = None, policy=None):
        configure_vllm_env()
        import torch
        from transformers import GenerationConfig
        from vllm import LLM

        kw: dict = {}
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            # policy and engine share one card: cap the engine's share, optionally sleep between rollouts
            kw.update(gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep_mode)
        else:
            # vLLM's CPU runner cannot rewind a seeded sampler (torch CPU generators have no offset), which
            # it must do when a prompt is prefilled in chunks: schedule whole prompts only.
            kw.update(enable_chunked_prefill=False, max_num_batched_tokens=max(max_model_len, 16384))
        # Sequences per generate call. On a CPU more than the KV cache holds makes vLLM preempt and recompute,
        # and its CPU runner then crashes on seeded sampling ("CPU Generator does not use offset"); on CUDA vLLM
        # schedules any number itself.
        self.batch_size = batch_size or (None if self.cuda else 128)
        self.sleep_mode = sleep_mode and self.cuda
        self.dtype = getattr(torch, dtype)
        self.policy = policy  # what a level-2 sleep's discarded weights are reloaded from
        self.llm = LLM(model=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                       enforce_eager=not self.cuda if enforce_eager is None else enforce_eager,  # CUDA graphs on CUDA
                       enable_prefix_caching=True, **kw)
        self.tok = self.llm.get_tokenizer()
        try:
            gen = GenerationConfig.from_pretrained(model_path)
        except OSError:  # no generation_config.json: the tokenizer's EOS alone
            gen = None
        self.eos = eos_ids(self.tok, gen)
        self._asleep = self._stale = False

    def generate(self, prompts: Sequence[list[int]], n: int,
                 sampling: SamplingConfig | Sequence[SamplingConfig]) -> list[Rollout]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._wake()
        sps = [sampling] * len(prompts) if isinstance(sampling, SamplingConfig) else list(sampling)
        # one request per sample, each with its own seed (prefix caching shares the prompt): vLLM's n > 1 would
        # give sample j the seed + j, which the next prompt's seeds overlap
        reqs = [(i, j, SamplingParams(n=1, temperature=sp.temperature, top_p=sp.top_p, max_tokens=sp.max_tokens,
                                      min_tokens=sp.min_tokens, seed=seed, logprobs=0, skip_special_tokens=True))
                for i, (sp, seeds) in enumerate(zip(sps, sample_seeds(sps, n))) for j, seed in enumerate(seeds)]
        per_call = self.batch_size or len(reqs)
        outs = []
        for s in range(0, len(reqs), per_call):
            chunk = reqs[s : s + per_call]
            outs += self.llm.generate([TokensPrompt(prompt_token_ids=list(prompts[i])) for i, _, _ in chunk],
                                      [p for _, _, p in chunk], use_tqdm=False)
        if self.sleep_mode:  # free the card for the update; the weights are reloaded before the next use
            self.llm.sleep(level=2)
            self._asleep = self._stale = True
        rollouts: list[Rollout] = []
        for (i, j, _), o in zip(reqs, outs):
            c = o.outputs[0]
            ids = list(c.token_ids)
            lps = [float(d[t].logprob) for d, t in zip(c.logprobs or [], ids)]
            # the engine's own reason: vLLM stops on the generation config's EOS ids too
            rollouts.append(Rollout(i, j, list(prompts[i]), ids, lps, c.text, "stop" if c.finish_reason == "stop" else "length"))
        return rollouts

    def _wake(self) -> None:
        """After a level-2 sleep: weights back (reloaded from the policy unless a sync already did), then the KV cache."""
        if not self._asleep:
            return
        if self._stale:
            if self.policy is None:
                raise RuntimeError("vLLM slept at level 2 and has no policy to reload its weights from")
            self.sync_weights(self.policy)
        self.llm.wake_up(tags=["kv_cache"])
        if self.llm.llm_engine.is_sleeping():  # whatever else the sleep paused
            self.llm.wake_up()
        self._asleep = False

    def sync_weights(self, policy) -> None:
        self.policy = policy
        if self._asleep:
            self.llm.wake_up(tags=["weights"])
        state = policy.state_dict()
        # the engine keeps its own dtype (the run's precision): cast here, one tensor at a time, to bound memory
        weights = ((k, v.detach().to(self.dtype)) for k, v in state.items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        # cached prefixes hold K/V computed with the old weights: serving them after a sync is wrong (a sleep
        # at level >= 1 has cleared them already)
        if not self._asleep:
            self.llm.reset_prefix_cache()
        self._stale = False

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()
