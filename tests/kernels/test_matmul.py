"""The batched 4D matmul kernel and its strided BLAS call, against NumPy and the
reference (numformer.ops.matmul). Runs compiled and with NUMBA_DISABLE_JIT=1."""

import numpy as np
import pytest

from numformer import kernels
from numformer.kernels import _jit
from numformer.kernels import matmul as km
from numformer.ops import matmul as ref
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# (B, H, M, K, N): size 1, odd sizes, one pair, and (compiled only) a product
# above SINGLE_THREAD_MNK, which takes the one-pair-at-a-time path.
SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 4, 7), (1, 1, 9, 1, 3), (3, 1, 2, 17, 1)]
if not _jit.JIT_DISABLED:
    SHAPES += [(2, 2, 33, 65, 40), (1, 2, 90, 90, 90)]


@pytest.fixture(params=[False, True], ids=["small-serial", "forced-parallel"])
def parallel(request, monkeypatch):
    """Small products run on the calling thread unless the threshold is lowered."""
    if request.param:
        monkeypatch.setattr(km, "PARALLEL_MIN_WORK", 0)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_agrees_with_reference(rng, parallel, shape, dtype):
    B, H, M, K, N = shape
    a = rng.standard_normal((B, H, M, K)).astype(dtype)
    b = rng.standard_normal((B, H, K, N)).astype(dtype)
    out, cache = km.matmul_forward(a, b)
    out_ref, cache_ref = ref.matmul_forward(a, b)
    assert out.dtype == dtype
    assert_close(out, out_ref, dtype, what="matmul out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    for name, g, g_ref in zip(("da", "db"), km.matmul_backward(dout, cache),
                              ref.matmul_backward(dout, cache_ref)):
        assert g.dtype == dtype
        assert_close(g, g_ref, dtype, what=name)


def test_strided_and_transposed_views(rng):
    """Non-contiguous (B, H, M, K) views: unit inner stride read in place, others copied."""
    base = rng.standard_normal((2, 6, 3, 10))
    a = base.transpose(0, 2, 1, 3)[..., :4]  # (2, 3, 6, 4), rows of stride 10
    b = rng.standard_normal((2, 3, 8, 4)).swapaxes(-1, -2)  # (2, 3, 4, 8), inner stride 4
    out, cache = km.matmul_forward(a, b)
    assert_close(out, ref.matmul_forward(a, b)[0], what="strided out")
    dout = rng.standard_normal(out.shape)
    for g, g_ref in zip(km.matmul_backward(dout, cache), ref.matmul_backward(dout, (a, b))):
        assert_close(g, g_ref, what="strided grads")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_gemm_blocks_with_alpha_beta(rng, dtype, trans_a, trans_b):
    """gemm writes alpha op(a) op(b) + beta c into a block of a bigger array and
    touches nothing else."""
    M, K, N = 5, 3, 6
    A = rng.standard_normal((12, 11)).astype(dtype)
    Bm = rng.standard_normal((10, 13)).astype(dtype)
    C = rng.standard_normal((9, 14)).astype(dtype)
    a = A[2:2 + K, 1:1 + M] if trans_a else A[2:2 + M, 1:1 + K]
    b = Bm[1:1 + N, 4:4 + K] if trans_b else Bm[1:1 + K, 4:4 + N]
    expected = C.copy()
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    expected[3:3 + M, 2:2 + N] = 0.5 * (opa.astype(np.float64) @ opb) + 2.0 * C[3:3 + M, 2:2 + N]
    km.gemm(a, b, C[3:3 + M, 2:2 + N], 0.5, 2.0, trans_a, trans_b)
    assert_close(C, expected, dtype, what="gemm block")
    # beta = 0 overwrites (even NaN already in c)
    C[3:3 + M, 2:2 + N] = np.nan
    km.gemm(a, b, C[3:3 + M, 2:2 + N], 1.0, 0.0, trans_a, trans_b)
    assert_close(C[3:3 + M, 2:2 + N], opa.astype(np.float64) @ opb, dtype, what="gemm beta=0")


def test_gemm_empty_inner_dimension(rng):
    c = rng.standard_normal((3, 4))
    km.gemm(np.zeros((3, 0)), np.zeros((0, 4)), c, 1.0, 0.0, False, False)
    assert np.all(c == 0)


def test_validation_errors_match_reference(rng):
    a = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    for args in [(a, b.astype(np.float64)), (a, b[:, :, :3]), (a[0], b), (a, b[0]),
                 (a.astype(np.int32), b)]:
        with pytest.raises(ValueError) as e_ref:
            ref.matmul_forward(*args)
        with pytest.raises(ValueError) as e_kernel:
            km.matmul_forward(*args)
        assert str(e_kernel.value) == str(e_ref.value)


def test_backend_switch_uses_the_kernel():
    assert kernels.op("matmul", backend="numba") is km
    assert kernels.op("matmul", backend="numpy") is ref
