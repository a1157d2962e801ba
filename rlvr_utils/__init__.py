"""rlvr_utils: positive vs negative sample reinforcement for LLM math reasoning."""

__version__ = "0.1.0"
