import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NUMFORMER_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def data_dir():
    """The shared real-data folder; tests that need it skip where it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (set NUMFORMER_DATA)")
    return DATA
