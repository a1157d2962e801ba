"""A model family we own: tiny Llama models pretrained from scratch on generated worked solutions.

A rung is (size, pretraining tokens). One pretraining run per size and seed gives the dose axis for free:
a budget's checkpoint keeps the optimizer and data cursor, and a larger budget resumes from the largest one
below it, bit for bit as if it had run straight through (the learning rate is constant after warm-up, so a
budget never changes the steps before it). Each rung is a standard Hugging Face model folder (safetensors,
tokenizer, generation config) that transformers and vLLM load like any model, with its recipe (family.json)
and its measured prior (prior.json) beside the weights. A build is deterministic on one CPU kind.

Text format (the `plain` prompt): "Q: <problem>\\nA:\\n" then the worked solution and EOS, tokenized as the RL
runs do (prompt and solution separately), so RL answers start exactly where pretraining's did.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.connection
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ..data.sources import EVAL_SUBSET_SEED, Cursor, stratified_subset
from ..core.errors import OneLineError
from ..core.files import atomic_dir, atomic_write_json, cache_dir, read_json, wait_lock
from ..core.hardware import cpu_cores, cpu_info
from ..core.models import load_tokenizer
from ..core.optim import adamw_with_warmup, lm_step
from .measure import heldout_loss, measure, measure_protocols, read_prior
from ..data.problems import DataError, MathProblem
from ..core.prompts import PROMPTS, encode_examples
from .recipes import FamilyRung, family_shape
from ..data.tasks import generate, load_task, task_parts

if TYPE_CHECKING:  # imported where a rung is built or measured: a grid resolving a built rung never needs them
    from transformers import LlamaConfig, PreTrainedTokenizerFast

PAD, EOS = "<pad>", "<eos>"


FAMILY_ENV = "RLVR_FAMILY_CACHE"  # where rungs live; a study that spans sessions points it at its committed rungs


def root() -> Path:
    """The family's rungs and tokenizers: $RLVR_FAMILY_CACHE, else <cache>/family."""
    return Path(os.environ[FAMILY_ENV]) if os.environ.get(FAMILY_ENV) else cache_dir() / "family"


CONTEXT = 512  # every rung's positions: a run's prompt budget and engine context follow it (`TrainConfig.fit_context`)


def model_config(size: str, vocab: int, pad: int, eos: int) -> LlamaConfig:
    """A Llama of the family's shape (`recipes.family_shape`): RoPE, tied embeddings, and a 512-position context
    (the tasks' prompts and solutions are under 200 tokens)."""
    from transformers import LlamaConfig

    s = family_shape(size)
    return LlamaConfig(vocab_size=vocab, **s, num_key_value_heads=s["num_attention_heads"], head_dim=64,
                       max_position_embeddings=CONTEXT, tie_word_embeddings=True, pad_token_id=pad, eos_token_id=eos,
                       bos_token_id=eos, architectures=["LlamaForCausalLM"])


def corpus(r: FamilyRung) -> list[MathProblem]:
    """The pretraining examples: `r.corpus` ("chain:1=200+3=60000": a task family, then difficulty=examples),
    each difficulty drawn with a seed of its own, the RL task's test problems left out, shuffled. The same
    for every size and seed of a family (the seed orders the data, `Cursor`)."""
    fam, _, mix = r.corpus.partition(":")
    task_keys = {(name, p["difficulty"]) for name, p in task_parts(r.task)}
    held = {p.problem for p in load_task(r.task, "test")}
    out: list[MathProblem] = []
    for part in filter(None, mix.split("+")):
        d, _, n = part.partition("=")
        if not (d.isdigit() and n.isdigit()):
            raise DataError(f"corpus={r.corpus!r}: expected family:difficulty=examples+..., got {part!r}")
        extra = len(held) if (fam, int(d)) in task_keys else 0  # room for what is left out
        out += [p for p in generate(fam, int(n) + extra, int(d), seed=1000 + int(d)) if p.problem not in held][: int(n)]
    random.Random(0).shuffle(out)
    return out


def tokenizer(r: FamilyRung, examples: list[MathProblem], log: Callable[[str], None]) -> PreTrainedTokenizerFast:
    """A byte-level BPE of `r.vocab` tokens trained on the corpus text (digits one token each: the tasks'
    arithmetic is per digit), cached per corpus and vocabulary."""
    from transformers import PreTrainedTokenizerFast

    key = hashlib.sha1(f"{r.corpus}|{r.task}|{r.vocab}".encode()).hexdigest()[:8]
    out = root() / "tokenizers" / f"{key}-v{r.vocab}"
    if (out / "tokenizer.json").exists():
        return load_tokenizer(str(out))
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=r.vocab, special_tokens=[PAD, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator((text for p in examples for text in (_prompt_text(p), p.solution)), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=PAD, eos_token=EOS, clean_up_tokenization_spaces=False)
    with atomic_dir(out) as tmp:
        tok.save_pretrained(tmp)
    log(f"tokenizer: {len(tok)} tokens trained on {len(examples)} examples")
    return load_tokenizer(str(out))


def _prompt_text(p: MathProblem) -> str:
    return PROMPTS["plain"].user.format(problem=p.problem)


def encode(tok, problems: list[MathProblem]) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, solution ids + EOS) per problem, in the plain prompt the family is pretrained and RL'd on."""
    return encode_examples(tok, problems, "plain")


def build_rung(r: FamilyRung, log: Callable[[str], None] = print) -> Path:
    """The rung's model folder, built (or resumed from a smaller budget) on first use, its prior measured."""
    run = root() / r.run_key()
    out = run / f"t{r.tokens}"
    run.mkdir(parents=True, exist_ok=True)
    with wait_lock(run / ".lock", f"rung {run.name} t{r.tokens}", log):  # cells that start together build it once
        if not (out / "config.json").exists():
            _pretrain(r, run, out, log)
        if not _measured_as_wanted(r, read_prior(out)):
            _measure(r, out, log)
    return out


def build_rungs(rungs: list[FamilyRung], jobs: int = 0, log: Callable[[str], None] = print) -> list[Path]:
    """Many builds at once (a ladder): each pretrained in turn on every core, as `build_rung` builds one (its bits
    depend on the thread count); then their priors measured `jobs` at a time (default: one per core), each on its
    own core, as sampling a tiny model gains little from a second thread (docs/performance)."""
    outs = [build_rung(replace(r, eval_samples=0, eval_also=""), log) for r in rungs]  # weights, and the held-out loss only
    todo = sorted((r for r, out in zip(rungs, outs) if not _measured_as_wanted(r, read_prior(out))),
                  key=lambda r: (-r.params, -r.tokens, r.seed))  # the longest first, so the lanes end together
    free, running, failed = cpu_cores()[: jobs or None], {}, []
    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
    while todo or running:
        while todo and free:
            r, core = todo.pop(0), free.pop(0)
            p = ctx.Process(target=_measure_on, args=(r, core), name=r.key())
            p.start()
            running[p.sentinel] = (p, core)
        for sentinel in multiprocessing.connection.wait(list(running)):
            p, core = running.pop(sentinel)
            p.join()
            free.append(core)
            if p.exitcode:
                failed.append(p.name)
    if failed:
        raise OneLineError(f"measuring the prior failed for {', '.join(failed)} (their logs above); the other "
                           f"builds are measured, and rerunning measures only these")
    return outs


def _measure_on(r: FamilyRung, core: int) -> None:
    if hasattr(os, "sched_setaffinity"):  # Linux; elsewhere the one thread is the lane
        os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    build_rung(r, log=lambda m: print(m, flush=True))


def _measured_as_wanted(r: FamilyRung, prior: dict | None) -> bool:
    """Whether the saved prior answers `r`'s measurement. A loss-only request (eval_samples=0: a smoke's rung, whose
    cells measure their own base) is answered by a sampled prior, which never gives way to it: builds that a
    ladder measured at n = 512 are shared with a smoke of the same recipe."""
    if prior is None:
        return False
    if r.eval_samples == 0 and "greedy" in prior:
        return True
    return prior.get("measured_with") == r.measured_with() and not _protocols_missing(r, prior)


def _protocols_missing(r: FamilyRung, prior: dict) -> list[str]:
    """The protocols of `r.eval_also` that the saved prior lacks, or measured on other problems or n."""
    have = prior.get("protocols", {})
    return [n for n in r.also if have.get(n, {}).get("measured_with") != r.measured_with()]


def _pretrain(r: FamilyRung, run: Path, out: Path, log: Callable[[str], None]) -> None:
    t0 = time.perf_counter()
    examples = corpus(r)
    tok = tokenizer(r, examples, log)
    prompts, targets = encode(tok, examples)
    seqs = [p + t for p, t in zip(prompts, targets)]
    # every core the machine has, whatever share a grid gave the cell that asked first: the bits of a build depend
    # on its thread count (reduction order), and a rung must come out the same from any executor
    threads, before = len(cpu_cores()), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _train_to_budget(r, run, out, tok, seqs, threads, t0, log)
    finally:
        torch.set_num_threads(before)


def _train_to_budget(r: FamilyRung, run: Path, out: Path, tok, seqs: list[list[int]], threads: int, t0: float,
                     log: Callable[[str], None]) -> None:
    from transformers import GenerationConfig, LlamaForCausalLM

    states = sorted((int(f.stem[1:]), f) for f in run.glob("t*.pt") if int(f.stem[1:]) <= r.tokens)
    torch.manual_seed(r.seed)
    model = LlamaForCausalLM(model_config(r.size, len(tok), tok.pad_token_id, tok.eos_token_id))
    opt, sched = adamw_with_warmup(model.parameters(), r.lr, (0.9, 0.95), 0.1, r.warmup)
    cursor, step, seen = Cursor(len(seqs), r.seed), 0, 0
    if states:  # a smaller budget of the same run: continue from it
        budget, f = states[-1]
        st = torch.load(f, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        cursor.consumed, step, seen = st["cursor"], st["step"], st["tokens_seen"]
        torch.set_rng_state(st["rng"])
        log(f"{run.name}: resuming pretraining from the {budget}-token checkpoint (step {step})")
    model.train()
    while seen < r.tokens:
        batch = [seqs[i] for i in cursor.take(r.batch)]
        ids, mask = _pad(batch, tok.pad_token_id)
        loss = lm_step(model, opt, model(input_ids=ids, attention_mask=mask,
                                         labels=ids.masked_fill(mask == 0, -100)).loss, sched)
        step, seen = step + 1, seen + int(mask.sum())
        if step % 200 == 0:
            log(f"{run.name}: step {step}, {seen / 1e6:.2f}M tokens, loss {loss:.3f}")
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "cursor": cursor.consumed, "step": step, "tokens_seen": seen, "rng": torch.get_rng_state()}
    torch.save(state, run / f".t{r.tokens}.pt.partial")
    (run / f".t{r.tokens}.pt.partial").rename(run / f"t{r.tokens}.pt")
    with atomic_dir(out) as tmp:  # a killed build never leaves a half rung at the final path
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=True).save_pretrained(tmp)
        atomic_write_json(tmp / r.recipe_file, {**asdict(r), "tokens_seen": seen, "steps": step, "examples": len(seqs),
                                                 "threads": threads, "pretrain_seconds": round(time.perf_counter() - t0, 1)})
    log(f"{out}: pretrained {seen / 1e6:.2f}M tokens in {step} steps ({time.perf_counter() - t0:.0f} s)")


def _pad(batch: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in batch)
    ids = torch.full((len(batch), L), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for b, s in enumerate(batch):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    return ids, mask


def _measure(r: FamilyRung, out: Path, log: Callable[[str], None]) -> None:
    """The rung's prior on the RL task's held-out problems, as the RL evaluations measure them; a prior measured
    as `r` asks keeps its main measurement and gains only the protocols it lacks."""
    from transformers import LlamaForCausalLM

    t0 = time.perf_counter()
    tok = load_tokenizer(str(out))
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    held = stratified_subset(load_task(r.task, "test"), r.eval_problems, EVAL_SUBSET_SEED)
    prompts, targets = encode(tok, held)
    saved = read_json(out / r.recipe_file)
    prior = read_prior(out) or {}
    if prior.get("measured_with") != r.measured_with():
        prior = {"heldout_loss": heldout_loss(model, prompts, targets, batch_size=64), "n_eval": len(held),
                 "task": r.task, "tokens_seen": saved["tokens_seen"], "cpu": cpu_info()[0],
                 "measured_with": r.measured_with()}
        if r.eval_samples:  # 0: the held-out loss only (a smoke rung, whose RL cells measure their base at step 0)
            prior |= measure(model, tok, str(out), held, prompts, extraction="boxed", samples=r.eval_samples,
                             temperature=r.eval_temperature, top_p=1.0, max_tokens=r.max_tokens, seed=r.seed,
                             engine=r.engine, nll_samples=4, hf_batch_size=256)
        prior["build_seconds"] = round(saved["pretrain_seconds"] + time.perf_counter() - t0, 1)
    if missing := _protocols_missing(r, prior):
        got = measure_protocols(model, tok, str(out), held, prompts, missing, extraction="boxed",
                                samples=r.eval_samples, max_tokens=r.max_tokens, seed=r.seed, engine=r.engine,
                                hf_batch_size=256)
        prior["protocols"] = {**prior.get("protocols", {}),
                              **{n: row | {"measured_with": r.measured_with(), "cpu": cpu_info()[0]} for n, row in got.items()}}
    atomic_write_json(out / "prior.json", prior)
    line = f"{out}: held-out loss {prior['heldout_loss']:.3f}"
    if "greedy" in prior:
        ks = sorted(prior["pass_at_k"], key=int)
        line += (f", greedy {prior['greedy']['mean']:.3f}, pass@1 {prior['pass_at_k']['1']['mean']:.3f}, "
                 f"pass@{ks[-1]} {prior['pass_at_k'][ks[-1]]['mean']:.3f}")
    for name, row in prior.get("protocols", {}).items():
        pk = row["pass_at_k"]
        line += f"; {name}: pass@1 {pk['1']['mean']:.3f}, pass@{row['n']} {pk[str(row['n'])]['mean']:.3f}"
    log(line)


def ladder(sizes: tuple[str, ...], tokens: tuple[int, ...], **fields) -> list[FamilyRung]:
    """Rungs for every size x budget (a grid's models), other recipe fields as given."""
    base = FamilyRung(**fields)
    return [replace(base, size=s, tokens=t) for s in sizes for t in tokens]
