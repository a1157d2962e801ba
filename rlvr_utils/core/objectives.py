"""The objective axis of the study: who is kept, and with what advantage.

An objective maps per-sample binary correctness [B] (and group ids [B], one per prompt) to an
advantage [B] and a keep mask [B]. Adding one is one decorated function in this file: its keyword
arguments are its knobs, read from the config's field of the same name (`lam`, `grpo_scale_std`) or
from `objective_args` (e.g. `--set 'objective_args={"alpha": 2}'`). Each knob's annotation is its type and
range (`eps: Annotated[float, Range(0, lo_open=True)]`, `core/bounds.py`): config validation checks every value
against it before a run starts. The loss maths that consume the advantages are in `losses.py`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any, Callable

import torch

from .bounds import Range, value_error
from .losses import group_advantages
from .registry import Registry

AdvFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
OBJECTIVES = Registry("objective")


def register(name: str) -> Callable[[AdvFn], AdvFn]:
    def deco(fn: AdvFn) -> AdvFn:
        params = list(inspect.signature(fn).parameters.values())[2:]
        if any(p.default is p.empty for p in params):
            raise TypeError(f"objective {name!r}: every knob after (correct, groups) needs a default")
        hints = typing.get_type_hints(fn, include_extras=True)
        if untyped := [p.name for p in params if p.name not in hints]:
            raise TypeError(f"objective {name!r}: knob(s) {', '.join(untyped)} need a type annotation (their check)")
        return OBJECTIVES.register(name)(fn)

    return deco


def knobs(name: str) -> dict[str, Any]:
    """An objective's knobs and their defaults: the keyword arguments after (correct, groups)."""
    return {p.name: p.default for p in list(inspect.signature(get(name)).parameters.values())[2:]}


@functools.lru_cache(maxsize=None)
def knob_types(name: str) -> dict[str, Any]:
    """An objective's knobs and their declared types (with their `Range` where one is declared)."""
    hints = typing.get_type_hints(get(name), include_extras=True)
    return {k: hints[k] for k in knobs(name)}


def get(name: str) -> AdvFn:
    return OBJECTIVES.pick(name)


@register("psr")
def psr(correct: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive sample reinforcement: correct samples only, advantage +1."""
    return torch.ones(len(correct)), correct.clone()


@register("nsr")
def nsr(correct: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative sample reinforcement: incorrect samples only, advantage -1."""
    return -torch.ones(len(correct)), ~correct


@register("w_reinforce")
def w_reinforce(correct: torch.Tensor, groups: torch.Tensor,
                lam: Annotated[float, Range(0)] = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples: +lam for correct, -1 for incorrect."""
    return torch.where(correct, lam, -1.0).float(), torch.ones_like(correct)


@register("reinforce")
def reinforce(correct: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples, +1 / -1: PSR + NSR."""
    return torch.where(correct, 1.0, -1.0).float(), torch.ones_like(correct)


@register("grpo")
def grpo(correct: torch.Tensor, groups: torch.Tensor, grpo_scale_std: bool = True,
         eps: Annotated[float, Range(0, lo_open=True)] = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward (1/0) minus the group mean, optionally divided by the group std (unbiased, as GRPO)."""
    return group_advantages(correct.float(), groups, grpo_scale_std, eps), torch.ones_like(correct)


def objective_kwargs(cfg) -> dict[str, Any]:
    """The chosen objective's knobs from a config: `objective_args` first, then same-named fields. A name that is
    not a knob, or a value not of its knob's type and range, raises ValueError naming them all."""
    known = knobs(cfg.objective)
    extra = dict(cfg.objective_args)
    bad = sorted(set(extra) - set(known))
    if bad:
        raise ValueError(f"objective_args: {', '.join(bad)} not a knob of {cfg.objective!r} "
                         f"(its knobs: {', '.join(known) or 'none'})")
    out = {k: extra[k] if k in extra else getattr(cfg, k, v) for k, v in known.items()}
    errors = [e for k, hint in knob_types(cfg.objective).items()
              if (e := value_error(f"objective_args {k}" if k in extra else k, hint, out[k]))]
    if errors:
        raise ValueError(f"{cfg.objective}: " + "; ".join(errors))
    return out


def advantages(name: str, correct: torch.Tensor, groups: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage [B] float, keep [B] bool) of objective `name`; `kw` are its knobs (others ignored)."""
    fn = get(name)
    own = {k: v for k, v in kw.items() if k in knobs(name)}
    adv, keep = fn(correct.bool(), groups, **own)
    return adv.float(), keep.bool()
