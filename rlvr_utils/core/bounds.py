"""Ranges and types of numeric settings, declared where the setting is (an objective's knob:
`lam: Annotated[float, Range(0)] = 0.1`), and the one check of a value against them."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval; `lo`/`hi` None: unbounded on that side. Every value in it is finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        return finite(v) and (self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)) and (
            self.hi is None or (v < self.hi if self.hi_open else v <= self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return "a finite number" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        return f"in {'(' if self.lo_open or self.lo is None else '['}{lo}, {self.hi:g}{')' if self.hi_open else ']'}"


def finite(v: Any) -> bool:
    """A real number, not nan or inf (the rule every float setting keeps: `inf` is refused wherever `nan` is)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def value_error(name: str, hint: Any, value: Any) -> str | None:
    """Why `value` cannot be `name` of type `hint` (bool, int, float or str, maybe `Annotated` with a Range), or
    None. Types are exact: a bool is only a JSON bool (the string "false" is refused, not taken as true), a
    number is never a bool or a string."""
    rng = next((a for a in getattr(hint, "__metadata__", ()) if isinstance(a, Range)), None)
    base = typing.get_args(hint)[0] if rng is not None or typing.get_origin(hint) is typing.Annotated else hint
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = not isinstance(base, type) or isinstance(value, base)
    if not ok:
        kind = getattr(base, "__name__", str(base))
        return f"{name} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {value!r} ({type(value).__name__})"
    if base in (int, float) and not finite(value):
        return f"{name} must be a finite number, got {value!r}"
    if rng is not None and value not in rng:
        return f"{name} must be {rng}, got {value!r}"
    return None
