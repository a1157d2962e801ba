"""`Registry`: names -> the choices of one axis (objectives, task families, rung kinds, executors, profiles).

A registry is filled by its decorator where each choice is defined, so adding a choice stays one decorated
function or class; `pick` is the one lookup, and its error names the choices there are.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    """A dict of name -> choice that says what it holds (`kind`) when asked for a name it lacks."""

    def __init__(self, kind: str, items: dict[str, Any] | None = None, error: type[Exception] = ValueError,
                 sort: bool = False):
        super().__init__(items or {})
        self.kind, self.error, self.sort = kind, error, sort

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that files the function or class under `name`."""
        def deco(obj: T) -> T:
            self[name] = obj
            return obj
        return deco

    def pick(self, name: str, where: str = "") -> Any:
        """The choice named `name`, else `error` naming the known ones (`where`: a prefix saying what asked)."""
        if name not in self:
            known = sorted(self) if self.sort else list(self)
            raise self.error(f"{where}unknown {self.kind} {name!r}; known: {', '.join(known)}")
        return self[name]
