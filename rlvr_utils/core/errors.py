"""The base of the failures `rlvr` reports in one line (exit 2), apart from a layer's heavy imports.

The CLI catches this class, not each subclass, so that starting `rlvr` imports neither transformers (the update's
SyncMismatch) nor the report's notebook machinery (ReportFailed).
"""


class OneLineError(RuntimeError):
    """A failure whose message says all a user needs: printed as `rlvr: error: ...`, no traceback."""
