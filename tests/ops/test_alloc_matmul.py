"""ops._alloc.matmul: the product into an np.empty output, and few-row products on
one BLAS thread (restored afterwards; off with NUMFORMER_SMALL_MATMUL_ONE_THREAD=0)."""

from __future__ import annotations

import numpy as np
import pytest

from numformer.ops import _alloc

threadpoolctl = pytest.importorskip("threadpoolctl", reason="pip install threadpoolctl")


@pytest.fixture
def two_blas_threads(monkeypatch):
    """NumPy's BLAS on 2 threads for the test, and a spy on np.matmul that records
    the BLAS thread count each call ran with."""
    monkeypatch.setattr(_alloc, "_blas", None)
    monkeypatch.delenv(_alloc.ENV, raising=False)
    seen = []
    real = np.matmul
    blas = [c for c in threadpoolctl.ThreadpoolController().lib_controllers
            if c.user_api == "blas"]

    def spy(a, b, out=None):
        seen.append(max(c.get_num_threads() for c in blas))
        return real(a, b, out=out)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if not blas or max(c.get_num_threads() for c in blas) < 2:
            pytest.skip("NumPy's BLAS runs on one thread here")
        monkeypatch.setattr(_alloc.np, "matmul", spy)
        yield seen
    monkeypatch.setattr(_alloc, "_blas", None)


@pytest.mark.parametrize("rows,expected", [(1, 1), (16, 1), (17, 2)])
def test_few_rows_run_on_one_blas_thread_and_the_count_is_restored(two_blas_threads, rows,
                                                                   expected):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, rows, 24)), rng.standard_normal((24, 40))
    got = _alloc.matmul(a, b)  # (1, rows, 40)
    assert two_blas_threads == [expected]
    assert max(c.get_num_threads() for c in _alloc._blas_controllers()) == 2  # restored
    np.testing.assert_allclose(got, np.einsum("brk,kn->brn", a, b), rtol=1e-12, atol=1e-12)
    assert got.dtype == np.float64 and got.shape == (1, rows, 40)


def test_the_switch_off_keeps_blas_threads(two_blas_threads, monkeypatch):
    _alloc.set_small_matmul_one_thread(False)
    try:
        _alloc.matmul(np.ones((1, 8), np.float32), np.ones((8, 3), np.float32))
        assert two_blas_threads == [2]
    finally:
        _alloc.set_small_matmul_one_thread(True)
    _alloc.matmul(np.ones((1, 8), np.float32), np.ones((8, 3), np.float32))
    assert two_blas_threads == [2, 1]


def test_a_batched_product_keeps_blas_threads(two_blas_threads):
    """(B, H, M, K) x (B, H, K, N): not the few-row 2-D case."""
    a, b = np.ones((2, 3, 1, 4), np.float32), np.ones((2, 3, 4, 5), np.float32)
    out = _alloc.matmul(a, b)
    assert two_blas_threads == [2] and out.dtype == np.float32 and (out == 4).all()
