"""Fixtures shared by the attention kernel tests."""

from __future__ import annotations

import pytest

from numformer.kernels import attention as ka
from numformer.kernels import matmul as km

# (BLOCK_Q, BLOCK_K, ROW_COLS): ROW_COLS picks the forward's block orientation
# (fewer columns than it: columns x keys), so each orientation meets every
# shape and block size.
BLOCKS = [None, (4, 8, None), (4, 8, 0), (64, 256, 1 << 30)]


@pytest.fixture(params=BLOCKS, ids=["default-blocks", "tiny-blocks-parallel",
                                    "tiny-blocks-columns", "rows-only"])
def blocks(request, monkeypatch):
    """Default blocks (and small calls on the calling thread); tiny blocks with
    every call split over all numba threads however small (few columns: the row
    orientation), the same with the column orientation only; the row
    orientation for every forward block."""
    if request.param is not None:
        bq, bk, row_cols = request.param
        monkeypatch.setattr(ka, "BLOCK_Q", bq)
        monkeypatch.setattr(ka, "BLOCK_K", bk)
        if row_cols is not None:
            monkeypatch.setattr(ka, "ROW_COLS", row_cols)
        if bk < 16:
            monkeypatch.setattr(km, "PARALLEL_MIN_WORK", 0)
    return request.param
