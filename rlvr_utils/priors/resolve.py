"""Any model name -> the folder (or hub id) `from_pretrained` takes, building a rung named by its recipe
on first use: `warm:...` (warmstart.py), `family:...` (family.py), else a registry name, local folder,
`.gguf` file or hub id (models.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .family import CONTEXT, build_rung
from ..core.models import MODELS, check_name, embedded_path, resolve_named
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


def known_context(name: str) -> int | None:
    """A model's context length where it is known without building or fetching anything: a family rung's (its
    recipe fixes it), a local folder's or a provisioned registry model's config.json; else None (the run's
    preflight reads it once the model is there)."""
    recipe = parse_spec(name)
    if isinstance(recipe, FamilyRung):
        return CONTEXT
    if recipe is not None:
        return None
    folder = embedded_path(name) if name in MODELS and MODELS[name].wheel else Path(name).expanduser()
    try:  # the file as written, not transformers' reading of it: a folder it cannot load fails in its own cell
        n = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
