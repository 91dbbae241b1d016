"""A parallel kernel runs its BLAS calls on one BLAS thread each (its workers
would otherwise queue for OpenBLAS's one shared pool), and BLAS's own thread
count is back as it was afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from numformer.kernels import attention as K
from numformer.kernels import matmul as M


class FakeBLAS:
    def __init__(self, n):
        self.n, self.seen = n, []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.seen.append(n)
        self.n = n


@pytest.fixture
def fake_blas(monkeypatch):
    fake = FakeBLAS(2)
    monkeypatch.setattr(M, "_kernel_blas", [fake])
    return fake


def _inputs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((4, 2, 160, 16)).astype(np.float32) for _ in range(3)]


def test_parallel_kernels_hold_blas_to_one_thread_and_restore_it(fake_blas):
    with M.one_blas_thread():
        assert fake_blas.n == 1
    assert fake_blas.n == 2 and fake_blas.seen == [1, 2]


def test_the_attention_kernel_goes_through_the_limit(fake_blas, monkeypatch):
    """With 2 numba threads the fused attention (forward and backward) sets BLAS
    to 1 thread around each parallel call and back to 2 after it."""
    from numformer.kernels import _jit
    if _jit.get_num_threads() < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 to take the parallel path")
    monkeypatch.setattr(K, "workers", lambda work: 2, raising=False)
    q, k, v = _inputs()
    out, cache = K.attention_forward(q, k, v)
    K.attention_backward(np.ones_like(out), cache)
    assert fake_blas.seen and fake_blas.seen[0::2] == [1] * (len(fake_blas.seen) // 2)
    assert fake_blas.n == 2  # restored


def test_serial_calls_leave_blas_alone(fake_blas):
    q, k, v = (x[:1, :1, :4] for x in _inputs())  # far below the parallel threshold
    K.attention_forward(q, k, v)
    assert fake_blas.seen == [] and fake_blas.n == 2  # the serial path never touches BLAS
