"""What the kit's processes leave out of their start-up."""

from __future__ import annotations

import sys


def skip_unused_validators() -> None:
    """Call before nbformat is imported (papermill, nbconvert). jsonschema, under nbformat, imports `rfc3987_syntax`
    where it is installed (JupyterLab's jupyter-events asks for it), and that package compiles 38 Lark grammars at
    import: 1.1 s of every process that runs or renders a notebook (a Zen 5, docs/performance.md), for the `iri`
    format, which no notebook schema uses. Marked absent, jsonschema goes on as it does where it is not installed
    (it imports it under `suppress(ImportError)`)."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)
