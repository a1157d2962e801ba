"""Run `notebooks/03_train` with papermill over a model x objective x seed (x lambda) grid.

One folder per cell. Completed cells are skipped, a failed cell is recorded and the rest go on,
an interrupted cell resumes from its checkpoint (the notebook calls `train(..., resume=True)`).
Where the cells run (here one at a time, or on a Ray cluster) is `executors.py`'s concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import TrainConfig
from .executors import EXECUTORS, Progress, Resources
from .profiles import cells, settings_diff
from ..core.files import FolderBusy
from ..core.hardware import Hardware, memory_plan, micro_words
from ..core.hardware import resolve as resolve_hardware
from ..core.models import known_config
from ..core.engines import resolve_engine
from ..core.runs import RunDir
from ..train.preflight import check_inputs, expected_duration


def run_grid(profile: str, runs: str | Path, sets: dict[str, Any] | None = None, dry_run: bool = False,
             log=print, executor: str = "local", resources: Resources | None = None,
             progress_every: float = 30.0) -> int:
    """Execute every cell not yet done with `executor` (executors.EXECUTORS). Returns the number of failed cells."""
    dispatch = EXECUTORS.pick(executor)
    todo = cells(profile, sets)
    runs = Path(runs)
    if dry_run:
        base = TrainConfig().to_dict()
        log(f"{len(todo)} cells; settings that differ from TrainConfig's defaults (the rest are those defaults):")
        for c in todo:
            st = RunDir(runs / c.name).status()
            diff = ", ".join(f"{k}={v!r} (default {base[k]!r})" for k, v in settings_diff(c.config).items())
            why = f"  [{st['error'][:200]}]" if st.get("state") == "failed" and st.get("error") else ""
            log(f"{st.get('state', 'pending'):11s} {c.name}  {diff}{why}")
            for line in cell_plan(c.config):
                log(f"            {line}")
        return 0
    for c in {(c.config.model, c.config.data, c.config.device): c for c in todo}.values():
        check_inputs(c.config)  # a bad model path or an unusable device fails the grid, not each cell
    pending = []
    for c in todo:
        run = RunDir(runs / c.name)
        if run.status().get("state") == "done":
            log(f"{c.name}: done, skipped")
            continue
        busy = run.busy()
        if busy:  # the same grid running twice: refuse before either touches the other's cells
            raise FolderBusy(busy)
        pending.append(c)
    log(f"grid {profile}: {len(pending)} of {len(todo)} cells to run ({executor} executor)")
    progress = Progress(runs, pending, log, progress_every)
    progress.start()
    try:
        results = dispatch(pending, runs, resources or Resources(), log)
    finally:
        progress.stop.set()
    failed = [r.name for r in results if not r.ok and not r.busy]
    if busy := [r for r in results if r.busy]:  # another grid on this folder got there first: it runs them
        raise FolderBusy(f"grid {profile} stopped, {len(failed)} failed, {len(pending) - len(results)} not started: "
                         f"{busy[0].error}")
    log(f"grid {profile}: {len(todo) - len(failed)} done, {len(failed)} failed" +
        (f" ({', '.join(failed)})" if failed else ""))
    return len(failed)


CARDS = ("NVIDIA H100 80GB HBM3", "NVIDIA H200")  # the cards with a recorded pace (`preflight.PACES`)


def cell_plan(cfg: TrainConfig) -> list[str]:
    """A cell's memory plan in one line (on its own device; a GPU cell on a machine without one: an 80 GB card,
    85.0e9 bytes), its micro-batch, and its expected duration where a pace is recorded; [] where the model's
    config is not known yet (a rung not built)."""
    import torch

    mc = known_config(cfg.model)
    if mc is None:
        return []
    engine = "vllm" if cfg.engine == "vllm" else resolve_engine(cfg.engine)
    here = torch.cuda.is_available()
    if cfg.device.startswith("cuda") and not here:
        precision = "bf16" if cfg.precision == "auto" else cfg.precision
        hw, available = Hardware("cuda", precision, "an 80 GB card (assumed)", True, "dry run"), 85.0e9
    else:
        hw, available = resolve_hardware(cfg.device, cfg.precision), None
    plan = memory_plan(mc, cfg, hw, available, engine)
    asleep = plan.parts.get("vLLM asleep (CUDA graphs, buffers)")
    out = [f"plan on {hw.name if here or hw.device == 'cpu' else 'an 80 GB card'} ({plan.available / 1e9:.0f} GB): "
           f"sampling {plan.rollout_peak / 1e9:.1f} GB, updating {plan.update_peak / 1e9:.1f} GB "
           f"({'fits' if plan.fits else 'DOES NOT FIT'})" + (f", vLLM asleep {asleep / 1e9:.2f} GB" if asleep else "")
           + f"; micro-batches of {micro_words(cfg)}"]
    if hw.device.startswith("cuda"):
        out += [line for card in ((torch.cuda.get_device_name(),) if here else CARDS)
                if (line := expected_duration(cfg, card))]
    return out
