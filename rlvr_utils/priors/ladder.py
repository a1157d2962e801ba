"""A ladder of rungs with several builds each: every rung's prior averaged over its builds, and the rule a
pre-registered ladder must meet before the first cell of its study (docs/prereg-controls.md, *Before the first cell*).

A build is one pretraining seed of a rung's recipe; the rung is the recipe without its seed. Its mean carries a
t-interval over its builds (the held-out problems fixed, as every build measured the same ones), so a rung with
three builds shows how far its builds disagree, not only how well each was measured.
"""

from __future__ import annotations

from math import inf, isnan
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.stats import seed_ci
from .measure import by_subject, floor_cell, ladder_table, measured_builds


@dataclass(frozen=True)
class LadderRule:
    """What a ladder must show before its study's first cell (the controls pre-registration's values)."""
    rungs: int = 4          # at least this many rungs ...
    sizes: int = 2          # ... of at least this many model sizes ...
    builds: int = 3         # ... each with at least this many builds (pretraining seeds)
    bottom: float = 0.1     # some rung's mean sampled pass@1 at most this (a prior with little to reinforce) ...
    top: float = 0.5        # ... and some rung's at least this
    k: int = 256            # the large k the study reports, which needs n >= 2k samples per problem ...
    ceiling: float = 0.9    # ... and every rung's mean base pass@k at most this: headroom above the base at large k
    # the protocol the ceiling is judged under ("": the prior's main measurement; a name: its `eval_also` protocol):
    # that of the pass@256 primary whose headroom it protects (the prereg's amendment after ladder 1)
    protocol: str = "paper"


@dataclass
class Rung:
    """One rung's builds: their recipe (seed dropped) and what each measured."""
    recipe: Any
    seeds: list[int] = field(default_factory=list)
    priors: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.recipe.short

    def values(self, k: int, protocol: str = "") -> list[float]:
        """Each build's sampled pass@k under `protocol` ("": the main measurement); NaN where a build measured fewer
        than 2k samples, or not under that protocol."""
        rows = [p if not protocol else p.get("protocols", {}).get(protocol, {}) for p in self.priors]
        return [r["pass_at_k"][str(k)]["mean"] if str(k) in r.get("pass_at_k", {}) else float("nan") for r in rows]

    def mean(self, k: int, protocol: str = "") -> float:
        return seed_ci(self.values(k, protocol))[0]


def rungs_of(dirs: list[str | Path]) -> list[Rung]:
    """The measured builds in `dirs` grouped into rungs, in prior-axis order."""
    rungs: dict[Any, Rung] = {}
    for r, _, prior in measured_builds(dirs):
        # the recipe without its seed, nor how its prior was asked for (a build pretrained by `--builds` records the
        # loss-only request it was pretrained under; prior.json says how it was measured)
        key = replace(r, **{f: getattr(type(r), f, None) for f in getattr(r, "EVAL_FIELDS", ())},
                      **({"seed": 0} if hasattr(r, "seed") else {}))
        rung = rungs.setdefault(key, Rung(key))
        rung.seeds.append(getattr(r, "seed", 0))
        rung.priors.append(prior)
    return sorted(rungs.values(), key=lambda g: g.recipe.order)


def _cell(values: list[float]) -> str:
    """'0.080 [0.005, 0.155]': a probability's mean over builds and its t-interval (unclipped: with 3 builds it may
    cross 0 or 1, and saying so is the point); an interval wider than [0, 1] is said, not drawn."""
    if all(isnan(v) for v in values):
        return "—"  # not measured: a build with fewer than 2k samples per problem
    mean, lo, hi = seed_ci(values)
    if isnan(hi):
        return f"{mean:.3f}"
    return f"{mean:.3f} " + ("(interval wider than the whole range)" if hi - lo > 1 else f"[{lo:.3f}, {hi:.3f}]")


def _each(values: list[float]) -> str:
    return " / ".join("—" if isnan(v) else f"{v:.3f}" for v in values)


def rungs_table(rungs: list[Rung], k: int = 256, protocols: tuple[str, ...] = ()) -> str:
    """Markdown: one row per rung, its mean sampled pass@1 and pass@k over its builds with a 95% t-interval over
    builds, each build's value, the same under each of `protocols`, and the blind guesser's pass@k beside."""
    cols = [("sampled pass@1", "", 1), (f"pass@{k}", "", k)] + [
        (f"{name}: {what}", name, kk) for name in protocols for what, kk in (("pass@1", 1), (f"pass@{k}", k))]
    head = ("| rung | builds (seeds) | " + " | ".join(f"{c}, mean over builds [95% t] | each build" for c, _, _ in cols)
            + f" | guessing floor at k={k} |\n|---|---|" + "---|---|" * len(cols) + "---|\n")
    rows = []
    for g in rungs:
        cells = " | ".join(f"{_cell(v)} | {_each(v)}" for v in (g.values(kk, name) for _, name, kk in cols))
        rows.append(f"| {g.name} | {len(g.seeds)} ({', '.join(map(str, g.seeds))}) | {cells} | {floor_cell(g.recipe, k)} |\n")
    return head + "".join(rows)


def parts_table(rungs: list[Rung], k: int = 256, protocols: tuple[str, ...] = ()) -> str:
    """Markdown: a mixed task's parts apart (`measure.by_subject`), each rung's mean over builds of each part's pass@1
    and pass@k, at its main measurement and under each of `protocols`; "" where no rung's task has two parts."""
    names = ("main", *protocols)
    rows = []
    for g in rungs:
        split = [by_subject(p, (1, k)) for p in g.priors]
        parts = sorted({s for b in split for s in b.get("main", {})})
        for part in parts if len(parts) > 1 else ():
            cells = [_cell([b.get(n, {}).get(part, {}).get(kk, float("nan")) for b in split])
                     for n in names for kk in (1, k)]
            rows.append(f"| {g.name} | {part} | " + " | ".join(cells) + " |\n")
    cols = [f"{'sampled' if n == 'main' else n + ':'} pass@{kk}" for n in names for kk in (1, k)]
    head = ("| rung | part | " + " | ".join(f"{c}, mean over builds [95% t]" for c in cols) + " |\n|---|---|"
            + "---|" * len(cols) + "\n")
    return head + "".join(rows) if rows else ""


def ladder_verdict(rungs: list[Rung], rule: LadderRule = LadderRule()) -> tuple[bool, list[str]]:
    """Whether the ladder meets `rule`, and one line per clause saying what was measured against it."""
    if not rungs:
        return False, ["no measured rungs"]
    sizes = sorted({getattr(g.recipe, "size", g.name) for g in rungs})
    low = min(rungs, key=lambda g: g.mean(1))
    high = max(rungs, key=lambda g: g.mean(1))
    fewest = min(rungs, key=lambda g: len(g.seeds))
    at = rule.protocol
    head = max(rungs, key=lambda g: inf if isnan(g.mean(rule.k, at)) else g.mean(rule.k, at))  # an unmeasured one fails
    top_k = head.mean(rule.k, at)
    under = f" under `{at}`" if at else ""
    clauses = [
        (len(rungs) >= rule.rungs, f"rungs: {len(rungs)} (at least {rule.rungs})"),
        (len(sizes) >= rule.sizes, f"sizes: {len(sizes)}, {', '.join(sizes)} (at least {rule.sizes})"),
        (len(fewest.seeds) >= rule.builds, f"builds: at least {len(fewest.seeds)} per rung, fewest on {fewest.name} "
                                           f"(at least {rule.builds})"),
        (low.mean(1) <= rule.bottom, f"bottom: lowest mean sampled pass@1 {low.mean(1):.3f} on {low.name} "
                                     f"(at most {rule.bottom})"),
        (high.mean(1) >= rule.top, f"top: highest mean sampled pass@1 {high.mean(1):.3f} on {high.name} "
                                   f"(at least {rule.top})"),
        (top_k <= rule.ceiling, f"ceiling: highest mean pass@{rule.k}{under} {top_k:.3f} on {head.name} (at most "
                                f"{rule.ceiling}" + (f"; NaN: a build measured fewer than {2 * rule.k} samples"
                                                     f"{under}, or not{under})" if isnan(top_k) else ")")),
    ]
    ok = all(c for c, _ in clauses)
    return ok, [f"- {'meets' if c else '**fails**'}: {line}" for c, line in clauses]


def ladder_report(dirs: list[str | Path], rule: LadderRule = LadderRule()) -> str:
    """The rungs' table and the rule's verdict, as markdown."""
    rungs = rungs_of(dirs)
    ok, lines = ladder_verdict(rungs, rule)
    protocols = (rule.protocol,) if rule.protocol else ()
    table, parts = rungs_table(rungs, rule.k, protocols), parts_table(rungs, rule.k, protocols)
    return (table + "\n" + ("**The ladder stands**" if ok else "**The ladder does not stand**")
            + " under the controls pre-registration's ladder rule (rung means over builds):\n\n" + "\n".join(lines) + "\n"
            + (f"\nThe mixed task's parts apart (per-problem counts; descriptive, not judged by the rule):\n\n{parts}"
               if parts else ""))


def ladder_text(dirs: list[str | Path], rule: bool = False) -> str:
    """`rlvr family --table`: one row per build; with `rule`, each rung's mean over its builds and the verdict."""
    text = ladder_table(dirs)
    return f"Each build (95% bootstrap CIs over problems):\n\n{text}\nEach rung:\n\n{ladder_report(dirs)}" if rule else text
