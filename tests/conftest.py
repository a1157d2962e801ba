import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RLVR_SHARED_DATA", REPO.parent / "shared" / "data" / "math_subset"))


@pytest.fixture(scope="session")
def math_dir() -> Path:
    if not (SHARED_DATA / "test.jsonl").exists():
        pytest.fail(f"offline MATH subset not found at {SHARED_DATA} (set RLVR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pool():
    from rlvr_utils.core.grading import GradingPool

    with GradingPool(workers=2, timeout=5.0) as p:
        yield p


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from rlvr_utils.core.models import resolve_named

    return resolve_named("smollm2-135m")  # provisioned by `make setup`; fetched here if missing


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, smollm2_path) -> str:
    """SmolLM2's architecture and tokenizer with 2 small random layers: seconds, not minutes."""
    from rlvr_utils.core.models import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-smollm2", layers=2, hidden=128))


# A run of the family's tiny rung (`fam_tiny_path`) in a few seconds: its task, the plain prompt, 2 steps of 2 x 2
TINY_RUN = ["data=gen:chain?difficulty=3&n=400", "prompt=plain", "extraction=boxed", "levels=", "max_prompt_tokens=64",
            "max_model_len=512", "temperature=1.0", "steps=2", "prompts_per_step=2", "rollouts_per_prompt=2",
            "max_tokens=12", "eval_problems=4", "eval_samples=2", "eval_every=0", "engine=hf", "grade_workers=1",
            "precision=fp32"]
TINY_GRID = [*TINY_RUN, "eval_problems=3", "checkpoint_every=1"]  # on top of the cpu profile


def run_grid_cli(runs, *sets, check=True, extra_args=()):
    args = [sys.executable, "-m", "rlvr_utils.cli", "grid", "--profile", "cpu", "--runs", str(runs), *extra_args]
    for s in merge(*sets):
        args += ["--set", s]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO)
    if check and p.returncode:
        raise AssertionError(f"grid failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="session")
def broken_model_path(tmp_path_factory) -> str:
    """A model folder that exists but no library can load (an unknown architecture): it fails at run time."""
    path = tmp_path_factory.mktemp("broken") / "broken-model"
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    return str(path)


# The family recipe the suite pretrains in seconds: the 1m shape on a 1,000-example corpus, 12k tokens, a
# 300-token vocabulary (a 49k one, SmolLM2's, makes every sampled token cost a 49k-way softmax and sort)
FAMILY_TINY = dict(size="1m", tokens=12_000, corpus="chain:1=200+2=400+3=400", task="gen:chain?difficulty=3&n=400",
                   vocab=300, batch=16, warmup=5, lr=3e-3, eval_problems=8, eval_samples=2, max_tokens=48)


@pytest.fixture(scope="session")
def fam_tiny_path(tmp_path_factory) -> str:
    """A rung of the model family, pretrained here (a few seconds): the suite's fast real model."""
    from rlvr_utils.priors.family import FAMILY_ENV, build_rung
    from rlvr_utils.priors.recipes import FamilyRung

    old = os.environ.get(FAMILY_ENV)
    os.environ[FAMILY_ENV] = str(tmp_path_factory.mktemp("family"))
    try:
        return str(build_rung(FamilyRung(**FAMILY_TINY), log=lambda _: None))
    finally:
        os.environ.pop(FAMILY_ENV) if old is None else os.environ.__setitem__(FAMILY_ENV, old)


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory, fam_tiny_path, broken_model_path):
    """A 2-cell grid of the family's tiny rung, plus cells whose model cannot load (they must fail alone); two cells
    at a time (a cell is mostly its kernel's start-up, one core's work)."""
    runs = tmp_path_factory.mktemp("grid")
    p = run_grid_cli(runs, f"models={fam_tiny_path},{broken_model_path}", "objectives=psr,nsr", *TINY_GRID, check=False,
                     extra_args=("--jobs", "2"))
    return runs, p, Path(fam_tiny_path).name



@pytest.fixture(scope="session")
def tiny_grid_run(tiny_grid):
    runs, _, tiny = tiny_grid
    return runs / f"{tiny}__psr__s0"


# `rlvr train` on SmolLM2 and the shared MATH subset in seconds: 2 steps of 2 x 2 samples, 4 eval problems
FAST = ["steps=2", "prompts_per_step=2", "rollouts_per_prompt=2", "max_tokens=24", "eval_problems=4",
        "eval_samples=2", "eval_every=0", "extraction=boxed_or_answer_is", "levels=Level 1", "grade_workers=1"]


def rlvr(*args, check=True, env=None, timeout=900):
    """`rlvr ...` as a user runs it (a subprocess): its CompletedProcess; raises with its output if it fails and `check`."""
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", *args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"rlvr {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def merge(*pairs: str) -> list[str]:
    """key=value pairs, a later one replacing an earlier one of its key (FAST's or TINY_GRID's defaults):
    `rlvr` refuses a key given twice."""
    return list({p.split("=", 1)[0]: p for p in pairs}.values())


def sets(*pairs):
    """--set arguments for key=value pairs (`merge`d)."""
    return [x for p in merge(*pairs) for x in ("--set", p)]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, fam_tiny_path) -> Path:
    """A finished 2-step run of the family's tiny rung, for tests that damage or resume a copy of it."""
    from rlvr_utils.core.config import TrainConfig, parse_sets
    from rlvr_utils.train.loop import train

    cfg = TrainConfig.from_dict(parse_sets(merge(*TINY_RUN, "keep_checkpoint=true", "checkpoint_every=1",
                                                 f"model={fam_tiny_path}")))
    return train(cfg, tmp_path_factory.mktemp("tiny-run") / "run", log=lambda _: None).path


def default_sigint() -> None:
    """Popen's preexec_fn for a child that a test interrupts: a shell's background job (a CI runner, `make test &`)
    starts with SIGINT ignored, which Python then keeps ignoring; Ctrl-C in a terminal is delivered by default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
