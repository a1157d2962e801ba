"""Answer extraction and verification of untrusted model text.

Extraction is a linear scan in the caller's process. Verification (math-verify, i.e. sympy) runs in a
pool of worker processes with a hard wall-clock timeout and a memory cap per worker: sympy can hang
or eat all memory on hostile input (power towers, huge factorials), and math-verify's own timeout
uses SIGALRM, which does not work off the main thread. A worker past its deadline is killed and
replaced; the caller never waits longer than the timeout for one item.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import time
import typing
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Literal, Sequence

from . import interrupts

Status = Literal["correct", "incorrect", "no_answer", "invalid_gold", "timeout", "error"]
STATUSES: tuple[str, ...] = typing.get_args(Status)  # the one list of statuses: metrics, filters, reports

# `boxed`: MATH's rule (last \boxed{} / \fbox{}).
# `boxed_or_answer_is`: for weak models that rarely box (SmolLM2 ends with "The answer is: N");
# used only when no box is present, and recorded with every result, never applied silently.
# `boxed_or_last_number`: the paper's MATH reward (RLVR-Decomposed, verl/utils/reward_score/utils.py
# `extract_answer_math`): the box, else what follows the last "answer is", else the response's last number.
ExtractionPolicy = Literal["boxed", "boxed_or_answer_is", "boxed_or_last_number"]
EXTRACTION_POLICIES: tuple[str, ...] = typing.get_args(ExtractionPolicy)

START_TIMEOUT = 300.0  # seconds for a worker to import math-verify (and the parent's main module: spawn)
MAX_ANSWER_CHARS = 1000  # longer "answers" are garbage; parsing them only wastes worker time

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d*\.?\d+")  # the paper's pattern, over the text with its commas removed
_INTEGER = re.compile(r"-?\d{1,50}")  # an integer answer graded without a worker (short: int() of a huge one is slow)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} in text, braces matched to any depth.

    Also accepts MATH's rare `\\boxed 5` form (a single token after a space). Returns None when there
    is no box or the last box is never closed.
    """
    start = max(text.rfind(c) for c in _BOX_COMMANDS)
    while start >= 0:
        cmd = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
        i = start + len(cmd)
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                ch = text[j]
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j]
            return None  # unbalanced: the model never closed its box
        if i < len(text) and text[i] == " ":
            m = re.match(r" +([^\s$]+)", text[i:])
            if m:
                return m.group(1)
        # `\boxedfoo` or a box at the very end: look at the previous one
        start = max(text.rfind(c, 0, start) for c in _BOX_COMMANDS)
    return None


def extract_answer(completion: str, policy: ExtractionPolicy = "boxed") -> str | None:
    """The model's final answer under the named policy, or None."""
    if policy not in EXTRACTION_POLICIES:
        raise ValueError(f"unknown extraction policy {policy!r}; known: {', '.join(EXTRACTION_POLICIES)}")
    boxed = last_boxed(completion)
    if boxed is not None or policy == "boxed":
        return boxed
    said = _last_answer_is(completion)
    if said is not None or policy == "boxed_or_answer_is":
        return said
    numbers = _NUMBER.findall(completion[-20_000:].replace(",", ""))  # bounded, as `_last_answer_is`
    return numbers[-1].rstrip(".") if numbers else None


def _last_answer_is(text: str) -> str | None:
    """The rest of the line after the last "answer is[:]"; after its last '=' if it is a calculation."""
    matches = list(_ANSWER_IS.finditer(text[-20_000:]))  # bounded: a final answer is near the end
    if not matches:
        return None
    last = matches[-1]
    text = text[-20_000:]
    line = text[last.end() : last.end() + 300].split("\n", 1)[0]
    if "=" in line:
        line = line.rsplit("=", 1)[1]
    ans = line.strip().rstrip(".").strip().strip("$").strip()
    return ans or None


@dataclass(frozen=True)
class GradeResult:
    status: Status
    reward: float
    extracted: str | None
    seconds: float
    policy: str
    detail: str = ""


@dataclass(frozen=True)
class RewardSpec:
    """Binary reward from a status: `correct` gets `correct`, every other status gets `wrong`."""

    correct: float = 1.0
    wrong: float = 0.0

    def __call__(self, status: str) -> float:
        return self.correct if status == "correct" else self.wrong


# ----------------------------------------------------------------------------------------- worker


def _to_math(s: str) -> str:
    return "$" + s.strip().strip("$") + "$"


def verify_pair(extracted: str, gold: str, timeout: int | None = None) -> str:
    """math-verify comparison of an extracted answer with a gold answer (runs inside a worker).

    `timeout`: math-verify's own SIGALRM timeouts (main thread only); the pool passes None and
    enforces its own hard limit instead.
    """
    from math_verify import LatexExtractionConfig, parse, verify

    # LaTeX extraction only: math-verify's plain-expression path hands text to sympy's parse_expr,
    # which is eval underneath. latex2sympy2's ANTLR parser never evaluates model text as Python.
    cfg = [LatexExtractionConfig(boxed_match_priority=0)]
    gold_parsed = parse(_to_math(gold), extraction_config=cfg, parsing_timeout=timeout)
    if not gold_parsed:
        return "invalid_gold"
    pred = parse(_to_math(extracted), extraction_config=cfg, parsing_timeout=timeout)
    if not pred:
        # math-verify can't parse it as math; exact string match is still a fair correct
        return "correct" if _norm(extracted) == _norm(gold) else "incorrect"
    ok = verify(gold_parsed, pred, timeout_seconds=timeout)
    if not ok and _norm(extracted) == _norm(gold):
        ok = True
    return "correct" if ok else "incorrect"


def _norm(s: str) -> str:
    return re.sub(r"\s+|\\[,!;: ]|\\text\{\s*\}|\$", "", s).replace("\\left", "").replace("\\right", "")


def _cap_memory(mem_mb: int) -> None:
    """Cap the worker's address space at what it holds now plus `mem_mb`.

    The cap counts growth, not the total: a spawned worker re-imports the parent's main module, and a
    CUDA build of torch alone maps several GB of libraries (an absolute 2 GB cap killed every worker
    on start-up on an H200 machine, before any text was graded).
    """
    import resource

    held = 0
    try:
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass  # not Linux: RLIMIT_AS is advisory there anyway
    limit = held + mem_mb * 1024 * 1024
    # the soft limit is what fails allocations; the hard one stays so the worker can say why it died
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _worker_main(conn: Connection, mem_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole process group: the pool's owner stops us
    try:
        if mem_mb > 0:
            _cap_memory(mem_mb)
        import sys

        sys.set_int_max_str_digits(10_000)  # a 10^6-digit int -> str conversion is a CPU bomb
        import logging

        import math_verify  # noqa: F401  (import before signalling ready so the first task isn't charged)

        logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": the pool enforces it
    except BaseException as e:  # noqa: BLE001 - tell the pool why, so it can say so
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (resource.getrlimit(resource.RLIMIT_AS)[1],) * 2)
        conn.send(("start-up failed", f"{type(e).__name__}: {str(e)[:200]}"))
        return

    try:
        conn.send("ready")
    except OSError:  # the pool's process died while this worker started (a run stopped): nothing to tell
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        extracted, gold = msg
        try:
            conn.send(("ok", verify_pair(extracted, gold)))
        except MemoryError:
            conn.send(("error", "MemoryError"))
        except BaseException as e:  # noqa: BLE001 - model text may trigger anything inside sympy
            conn.send(("error", f"{type(e).__name__}: {str(e)[:200]}"))


class _Worker:
    def __init__(self, ctx, mem_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, mem_mb), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.born = time.perf_counter()
        self.task: int | None = None
        self.deadline = 0.0
        self.started = 0.0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class GradingPool:
    """Worker processes that verify (extracted, gold) pairs with a hard per-item timeout.

    Use as a context manager, or call close(). Workers start in the background on creation.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        mem_mb: int = 2048,
        policy: ExtractionPolicy = "boxed",
        reward: RewardSpec = RewardSpec(),
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if policy not in EXTRACTION_POLICIES:
            raise ValueError(f"unknown extraction policy {policy!r}; known: {', '.join(EXTRACTION_POLICIES)}")
        self.n = workers or max(1, min(4, os.cpu_count() or 1))
        self.timeout = timeout
        self.mem_mb = mem_mb
        self.policy = policy
        self.reward = reward
        # forkserver/spawn: never fork a process that holds torch/vLLM threads
        self._ctx = mp.get_context("spawn")
        self._workers = [_Worker(self._ctx, mem_mb) for _ in range(self.n)]
        self._start_failures = 0

    def __enter__(self) -> "GradingPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        idle = []
        for w in self._workers:
            try:
                if w.proc.is_alive() and w.task is None and w.ready:
                    w.conn.send(None)
                    idle.append(w)
                    continue
            except OSError:
                pass
            # still importing math-verify (a run whose answers all compared in-process never waited for it), or
            # busy past any use: nothing of it is ours to keep, and a join would wait out its start-up
            w.kill()
        for w in idle:
            w.proc.join(timeout=1)
            if w.proc.is_alive():
                w.kill()
        self._workers = []
        interrupts.stop_resource_tracker()  # a kernel's shutdown would wait 2.5 s on it

    def _replace(self, i: int) -> None:
        self._workers[i].kill()
        self._workers[i] = _Worker(self._ctx, self.mem_mb)

    def grade(self, completions: Sequence[str], golds: Sequence[str | None]) -> list[GradeResult]:
        """Grade completions against gold answers; one result per item, in order. Never raises on text."""
        if len(completions) != len(golds):
            raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
        if not self._workers:
            raise RuntimeError("GradingPool is closed")
        results: list[GradeResult | None] = [None] * len(completions)
        pending: list[tuple[int, str, str]] = []
        for k, (text, gold) in enumerate(zip(completions, golds)):
            t0 = time.perf_counter()
            try:
                extracted = extract_answer(_clean(text), self.policy)
            except Exception as e:  # noqa: BLE001
                results[k] = self._result("error", None, t0, f"extraction: {type(e).__name__}")
                continue
            if not isinstance(gold, str) or not gold.strip():
                results[k] = self._result("invalid_gold", extracted, t0)
            elif extracted is None or not extracted.strip():
                results[k] = self._result("no_answer", extracted, t0)
            elif len(extracted) > MAX_ANSWER_CHARS:
                results[k] = self._result("incorrect", extracted[:MAX_ANSWER_CHARS], t0, "answer too long")
            elif _INTEGER.fullmatch(extracted.strip()) and _INTEGER.fullmatch(_clean(gold).strip()):
                # two integers (the generated tasks' answers): equal as numbers is math-verify's verdict too,
                # and a worker round trip for each of an evaluation's thousands of samples is most of its time
                same = int(extracted.strip()) == int(_clean(gold).strip())
                results[k] = self._result("correct" if same else "incorrect", extracted, t0)
            else:
                pending.append((k, extracted, _clean(gold)))
        self._run(pending, results)
        return results  # type: ignore[return-value]

    def _result(self, status: str, extracted: str | None, t0: float, detail: str = "") -> GradeResult:
        return GradeResult(status, self.reward(status), extracted, time.perf_counter() - t0, self.policy, detail)  # type: ignore[arg-type]

    def _run(self, pending: list[tuple[int, str, str]], results: list) -> None:
        queue = list(reversed(pending))
        extracted_of = {k: e for k, e, _ in pending}
        while queue or any(w.task is not None for w in self._workers):
            now = time.perf_counter()
            for w in self._workers:
                if w.ready and w.task is None and queue:
                    k, extracted, gold = queue.pop()
                    try:
                        w.conn.send((extracted, gold))
                    except OSError:
                        queue.append((k, extracted, gold))
                        w.ready = False
                        continue
                    w.task, w.started, w.deadline = k, now, now + self.timeout
            # a dead worker that never got ready still has its last words (or EOF) to read
            conns = [w.conn for w in self._workers if w.proc.is_alive() or w.task is not None or not w.ready]
            deadlines = [w.deadline for w in self._workers if w.task is not None]
            wait_for = max(0.0, min(deadlines) - time.perf_counter()) if deadlines else 0.5
            ready = wait(conns, timeout=wait_for)
            for i, w in enumerate(self._workers):
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is None or (isinstance(msg, tuple) and msg[0] == "start-up failed"):
                        if not w.ready:
                            self._start_failed(msg[1] if msg else f"exit code {w.proc.exitcode}")
                        self._fail(i, results, extracted_of, "error", "worker died")
                    elif msg == "ready":
                        w.ready = True
                        self._start_failures = 0
                    elif w.task is not None:
                        kind, payload = msg
                        status, detail = (payload, "") if kind == "ok" else ("error", payload)
                        results[w.task] = GradeResult(
                            status, self.reward(status), extracted_of[w.task],
                            time.perf_counter() - w.started, self.policy, detail,
                        )
                        w.task = None
                elif w.task is not None and time.perf_counter() >= w.deadline:
                    self._fail(i, results, extracted_of, "timeout", f"killed after {self.timeout:g}s")
                elif not w.ready and time.perf_counter() > w.born + START_TIMEOUT:
                    self._start_failed(f"not ready after {START_TIMEOUT:g} s")
                    self._fail(i, results, extracted_of, "error", "worker never started")
                elif w.ready and not w.proc.is_alive():  # one that never got ready is read above (EOF)
                    self._fail(i, results, extracted_of, "error", "worker died")

    def _start_failed(self, why: str) -> None:
        """Count a worker that died before it was ready; a few in a row is a broken install, not bad text."""
        self._start_failures += 1
        if self._start_failures > 3:
            raise RuntimeError(f"grading workers die on start-up ({self._start_failures} in a row; the last: {why}; "
                               f"memory cap {self.mem_mb} MB above start-up, `mem_mb`). Is math-verify installed?")

    def _fail(self, i: int, results: list, extracted_of: dict, status: str, detail: str) -> None:
        w = self._workers[i]
        if w.task is not None:
            results[w.task] = GradeResult(
                status, self.reward(status), extracted_of[w.task],  # type: ignore[arg-type]
                time.perf_counter() - w.started, self.policy, detail,
            )
        self._replace(i)


def _clean(text) -> str:
    """Model text as a str that is safe to pickle and parse (NUL bytes and lone surrogates removed)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
