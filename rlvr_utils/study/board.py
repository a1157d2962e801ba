"""TensorBoard over a grid, its runs grouped by objective: a folder of links `<grid>/.tb/<objective>/<rung>/s<seed>`
to each cell's `tb/`, so TensorBoard's run list, colours and regex filter go objective first (`rlvr tb <grid>`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..priors.recipes import rung_of


def by_objective(runs_dir: str | Path) -> Path:
    """(Re)build `<runs_dir>/.tb` with a link per cell that has TensorBoard events; returns the folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no such grid folder")
    out = runs_dir / ".tb"
    shutil.rmtree(out, ignore_errors=True)
    n = 0
    for cell in sorted(p for p in runs_dir.iterdir() if (p / "config.json").exists() and (p / "tb").is_dir()):
        cfg = json.loads((cell / "config.json").read_text())
        rung = re.sub(r"[^A-Za-z0-9.=_-]+", "-", rung_of(cfg)[1])
        link = out / str(cfg.get("objective", "unknown")) / rung / f"s{cfg.get('seed', 0)}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((cell / "tb").resolve(), target_is_directory=True)
        n += 1
    if not n:
        raise ValueError(f"{runs_dir}: no cell with TensorBoard events (tb/) yet")
    return out


def tb_command(runs_dir: str | Path, port: int = 6006) -> list[str]:
    """The TensorBoard command over `by_objective`'s folder."""
    return ["tensorboard", "--logdir", str(by_objective(runs_dir)), "--port", str(port), "--bind_all"]
