"""Any model name -> the folder (or hub id) `from_pretrained` takes, building a rung named by its recipe
on first use: `warm:...` (warmstart.py), `family:...` (family.py), else a registry name, local folder,
`.gguf` file or hub id (models.py)."""

from __future__ import annotations

from .family import build_rung
from ..core.models import check_name, resolve_named
from .recipes import FamilyRung, WarmStart, parse_spec
from .warmstart import warmstart

BUILDERS = {WarmStart: warmstart, FamilyRung: build_rung}  # recipe class -> its builder: recipe -> folder, cached


def check_model(name: str) -> None:
    """What is wrong with a model name or rung spec (its base included), said before anything loads or builds."""
    recipe = parse_spec(name)
    if recipe is None:
        check_name(name)
    elif isinstance(recipe, WarmStart):
        check_name(recipe.base)


def resolve_model(name: str, fetch: bool = True) -> str:
    """A model name or rung spec -> what `from_pretrained` takes (rungs built and cached on first use)."""
    recipe = parse_spec(name)
    if recipe is not None:
        return str(BUILDERS[type(recipe)](recipe))
    return resolve_named(name, fetch)
