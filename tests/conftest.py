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
