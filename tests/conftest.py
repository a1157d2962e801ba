import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RLVR_SHARED_DATA", REPO.parent / "shared" / "data" / "math_subset"))


@pytest.fixture(scope="session")
def math_dir() -> Path:
    if not (SHARED_DATA / "test.jsonl").exists():
        pytest.fail(f"offline MATH subset not found at {SHARED_DATA} (set RLVR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pool():
    from rlvr_utils.grading import GradingPool

    with GradingPool(workers=2, timeout=5.0) as p:
        yield p


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from rlvr_utils.models import resolve_model

    return resolve_model("smollm2-135m")  # provisioned by `make setup`; fetched here if missing


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, smollm2_path) -> str:
    """SmolLM2's architecture and tokenizer with 2 small random layers: seconds, not minutes."""
    from rlvr_utils.models import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-smollm2", layers=2, hidden=128))
