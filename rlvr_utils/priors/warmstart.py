"""Warm starts: the prior as a dose. Supervised fine-tuning of a base model on N worked solutions.

A rung of the prior ladder is a model directory (cached under `~/.cache/rlvr_utils/warmstarts/`) with
its recipe (`warmstart.json`) and its measured prior (`prior.json`: greedy accuracy and pass@k on
held-out problems with bootstrap CIs, and the held-out SFT loss) beside the weights. N = 0 is the base
model itself, measured the same way. Any rung's directory is a `model` for `rlvr train` / the grid.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..data.sources import EVAL_SUBSET_SEED, load_math, stratified_subset
from ..core.files import atomic_dir, atomic_write_json, cache_dir, read_json, wait_lock
from ..core.hardware import resolve
from ..core.losses import masked_mean, response_logprobs
from ..core.models import load_policy, load_tokenizer, resolve_named
from ..core.optim import adamw_with_warmup, lm_step
from .measure import heldout_loss, measure
from ..core.prompts import encode_examples
from .recipes import WarmStart


def warmstart(ws: WarmStart, out: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Build (or find cached) the rung `ws`; returns its model directory. Cells that start from the same
    rung at once (a Ray grid) build it once: the others wait on a lock beside it, then find it cached."""
    out = Path(out) if out else cache_dir() / "warmstarts" / ws.key()
    out.parent.mkdir(parents=True, exist_ok=True)
    with wait_lock(out.with_name(out.name + ".lock"), f"warm start {out.name}", log):
        if (out / "prior.json").exists() and not _other_recipe(out, ws):
            log(f"{out}: cached")
            return out
        _check_replaceable(out, ws)  # before the SFT: a folder of other things is refused, never overwritten
        return _build(ws, out, log)


def _other_recipe(out: Path, ws: WarmStart) -> str:
    """'' where the folder `out` holds a build of exactly `ws`; else what it holds instead."""
    f = out / ws.recipe_file
    saved = read_json(f) if f.is_file() else None
    if not isinstance(saved, dict):
        return f"no warm start (no {ws.recipe_file})"
    wanted = json.loads(json.dumps(asdict(ws)))  # as the recipe file holds it
    diff = [f"{k}={saved[k]!r} there, {v!r} asked" if k in saved else f"{k} unrecorded there, {v!r} asked"
            for k, v in wanted.items() if k not in saved or saved[k] != v]
    return f"a warm start of another recipe: {', '.join(diff)}" if diff else ""


def _check_replaceable(out: Path, ws: WarmStart) -> None:
    """Raise unless `out` is absent, an empty folder, or a build of `ws`: the only folders a build may replace."""
    if not out.exists() or out.is_dir() and not any(out.iterdir()):
        return
    holds = _other_recipe(out, ws) if out.is_dir() else "a file"
    if holds:
        raise ValueError(f"{out} is taken: it holds {holds}; build into a new or empty folder, or remove it yourself")


def _build(ws: WarmStart, out: Path, log: Callable[[str], None]) -> Path:
    path = resolve_named(ws.base)
    tok = load_tokenizer(path)
    train = load_math(ws.data, "train")
    if ws.n > len(train):
        raise ValueError(f"n={ws.n} but {ws.data} has only {len(train)} training problems")
    random.Random(ws.seed).shuffle(train)
    train = train[: ws.n]
    held = stratified_subset(load_math(ws.data, "test"), ws.eval_problems, EVAL_SUBSET_SEED)  # RL evals' problems
    encode = lambda ps: encode_examples(tok, ps, ws.prompt)
    hw = resolve("auto", "fp32")  # SFT in fp32: small models, and exact resumable numbers
    torch.manual_seed(ws.seed)
    model = load_policy(path, device=hw.device)
    t0 = time.perf_counter()
    if ws.n:
        _sft(model, *encode(train), ws, log)
    model.eval()
    held_loss = heldout_loss(model, *encode(held), ws.batch_size)
    with atomic_dir(out) as tmp:  # a killed build never leaves a half rung at the final path
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        prior = {"heldout_loss": held_loss, "n_eval": len(held), "cpu": hw.name}
        if ws.eval_samples:  # 0: a rung for a smoke run, whose RL cells measure their own base at step 0
            prior |= measure(model, tok, str(tmp), held, encode(held)[0], extraction=ws.extraction,
                             samples=ws.eval_samples, temperature=0.6, top_p=0.95, max_tokens=ws.max_tokens,
                             seed=ws.seed, engine=ws.engine)
        prior["build_seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(tmp / "warmstart.json", {**asdict(ws), "base_path": path})
        atomic_write_json(tmp / "prior.json", prior)
        _check_replaceable(out, ws)  # again: something may have been put there during the build
    g = prior.get("greedy")
    log(f"{out}: held-out loss {held_loss:.3f}" + (f", greedy {g['mean']:.3f} [{g['lo']:.3f}, {g['hi']:.3f}]" if g else ""))
    return out


def _sft(model, prompts: list[list[int]], targets: list[list[int]], ws: WarmStart, log) -> None:
    """Plain SFT: the mean token NLL of the worked solution given the prompt, AdamW, shuffled batches."""
    model.train()
    opt, _ = adamw_with_warmup(model.parameters(), ws.lr)
    order = list(range(len(prompts)))
    rng = random.Random(ws.seed)
    for epoch in range(ws.epochs):
        rng.shuffle(order)
        total = 0.0
        for i in range(0, len(order), ws.batch_size):
            b = order[i : i + ws.batch_size]
            lp, mask, _ = response_logprobs(model, [prompts[j] for j in b], [targets[j] for j in b])
            total += lm_step(model, opt, -masked_mean(lp, mask)) * len(b)
        log(f"sft epoch {epoch + 1}/{ws.epochs}: train loss {total / len(order):.3f}")
