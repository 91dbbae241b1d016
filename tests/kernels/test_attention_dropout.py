"""Dropout on the attention probabilities in the fused kernel against the
reference: the same mask bit for bit (decided inside the blocks, forward and
backward, never stored), forward and backward agreement in float32 and float64
with causal and padding masks and grouped-query heads, and the kernel's own
gradient check with the mask fixed.

Every case runs with the default block sizes and with tiny ones (BQ=4, BK=8, all
numba threads), so masks cross query and key blocks and partial blocks."""

import itertools

import numpy as np
import pytest

from numformer.gradcheck import check_op
from numformer.kernels import _jit
from numformer.kernels import attention as ka
from numformer.testing import attention_inputs as make
from numformer.kernels import matmul as km
from numformer.ops import attention as ref
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# (B, H, Hkv, Tq, Tk, D): T=1, GQA/MQA/MHA, decode shapes, sizes off every block size
SHAPES = [(1, 2, 1, 1, 1, 3), (2, 6, 2, 5, 5, 3), (2, 6, 3, 7, 13, 5), (1, 4, 2, 13, 6, 3),
          (2, 9, 3, 1, 17, 8), (2, 4, 4, 5, 5, 3)]
if not _jit.JIT_DISABLED:
    SHAPES += [(2, 6, 2, 70, 70, 16), (1, 4, 1, 65, 300, 32)]
IDS = ["x".join(map(str, s)) for s in SHAPES]


@pytest.fixture(params=[None, (4, 8)], ids=["default-blocks", "tiny-blocks-parallel"])
def blocks(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(ka, "BLOCK_Q", request.param[0])
        monkeypatch.setattr(ka, "BLOCK_K", request.param[1])
        monkeypatch.setattr(km, "PARALLEL_MIN_WORK", 0)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked,causal", list(itertools.product([False, True], [False, True])))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_dropout_agrees_with_reference(rng, blocks, shape, dtype, masked, causal):
    q, k, v, key_mask = make(rng, shape, dtype, masked)
    kw = dict(key_mask=key_mask, causal=causal, dropout=0.3)
    out, cache = ka.attention_forward(q, k, v, rng=np.random.default_rng(9), **kw)
    out_ref, cache_ref = ref.attention_forward(q, k, v, rng=np.random.default_rng(9), **kw)
    assert out.dtype == dtype and out.shape == q.shape
    assert_close(out, out_ref, dtype, what="dropout out")
    plain, _ = ref.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
    if shape[3] * shape[4] > 4 and (key_mask is None or key_mask.any()):
        assert not np.allclose(out, plain)  # something was dropped
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = ka.attention_backward(dout, cache)
    grads_ref = ref.attention_backward(dout, cache_ref)
    for name, g, g_ref, x in zip(("dq", "dk", "dv"), grads, grads_ref, (q, k, v)):
        assert g.dtype == dtype and g.shape == x.shape
        assert np.all(np.isfinite(g)), f"{name} has NaN/inf"
        assert_close(g, g_ref, dtype, what=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H,Hkv,Tq,Tk,causal", [(2, 4, 2, 9, 9, True), (1, 3, 1, 5, 37, False),
                                                  (2, 2, 2, 40, 40, False)])
def test_the_kernels_mask_is_the_references_bit_for_bit(rng, blocks, dtype, B, H, Hkv, Tq, Tk,
                                                        causal):
    """With v the identity (D = Tk) the output is the dropped probabilities: the
    kernel's zeros are exactly the reference mask's zeros (where p > 0), and the
    backward's dv = (p * mask)^T dout drops the same entries."""
    q = rng.standard_normal((B, H, Tq, Tk)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Tk, Tk)).astype(dtype)
    v = np.broadcast_to(np.eye(Tk, dtype=dtype), (B, Hkv, Tk, Tk)).copy()
    out, cache = ka.attention_forward(q, k, v, causal=causal, dropout=0.5,
                                      rng=np.random.default_rng(21))
    _, cr = ref.attention_forward(q, k, v, causal=causal, dropout=0.5,
                                  rng=np.random.default_rng(21))
    p, mask = cr[3], cr[5]
    np.testing.assert_array_equal(out != 0, (mask != 0) & (p > 0))
    assert_close(out, p * mask, dtype, what="p * mask")
    # the backward recomputes the same mask: dv of a one-hot upstream gradient
    dout = np.zeros_like(out)
    dout[:, :, :, 0] = 1.0  # dv[b, g, j, 0] = sum over the group's heads and queries of (p*mask)
    _, _, dv = ka.attention_backward(dout, cache)
    G = H // Hkv
    expect = (p * mask).reshape(B, Hkv, G, Tq, Tk).sum(axis=(2, 3))  # (B, Hkv, Tk)
    assert_close(dv[..., 0], expect, dtype, what="dv")


def test_no_t_by_t_mask_in_the_cache(rng):
    B, H, Hkv, Tq, Tk, D = 2, 6, 2, 9, 11, 3
    q, k, v, key_mask = make(rng, (B, H, Hkv, Tq, Tk, D), np.float32, True)
    _, cache = ka.attention_forward(q, k, v, key_mask=key_mask, dropout=0.2,
                                    rng=np.random.default_rng(0))
    arrays = [x for x in cache if isinstance(x, np.ndarray)]
    assert arrays and all(x.size < H * Tq * Tk for x in arrays if x.ndim == 4 and x is not q)
    assert cache[8] is not None


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_kernel_with_dropout(rng, blocks, causal):
    q, k, v, key_mask = make(rng, (2, 6, 2, 5, 7, 3), np.float64, True)
    key_mask[0, 2:] = True

    def forward(q, k, v):
        return ka.attention_forward(q, k, v, key_mask=key_mask, causal=causal, dropout=0.3,
                                    rng=np.random.default_rng(5))
    report = check_op(forward, ka.attention_backward, {"q": q, "k": k, "v": v},
                      ["q", "k", "v"], title="kernel attention dropout")
    report.assert_ok()


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_step_with_dropout_agrees(rng, dtype):
    """A few new queries against cached keys: the forward keeps its column blocks
    when dropping, and matches the reference."""
    B, H, Hkv, S, Tq, D = 2, 9, 3, 37, 1, 8
    q = rng.standard_normal((B, H, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, S + Tq, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, S + Tq, D)).astype(dtype)
    kw = dict(causal=True, dropout=0.4, offset=5)
    out, _ = ka.attention_forward(q, k, v, rng=np.random.default_rng(1), **kw)
    out_ref, _ = ref.attention_forward(q, k, v, rng=np.random.default_rng(1), **kw)
    assert_close(out, out_ref, dtype, what="decode dropout")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("Hkv", [4, 2])
def test_mha_with_dropout_agrees_with_reference(rng, dtype, Hkv):
    B, T, H, D = 3, 7, 4, 3
    C = H * D
    n = (H + 2 * Hkv) * D
    x = rng.standard_normal((B, T, C)).astype(dtype)
    Wqkv, bqkv = (rng.standard_normal((C, n)) * 0.5).astype(dtype), rng.standard_normal(n).astype(dtype)
    Wo, bo = (rng.standard_normal((C, C)) * 0.5).astype(dtype), rng.standard_normal(C).astype(dtype)
    km_ = np.ones((B, T), bool)
    km_[1, 4:] = False
    kw = dict(key_mask=km_, causal=False, n_kv_heads=Hkv, dropout=0.3, offset=H * T * T)
    out, cache = ka.mha_forward(x, Wqkv, bqkv, Wo, bo, H, rng=np.random.default_rng(8), **kw)
    out_r, cache_r = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, rng=np.random.default_rng(8), **kw)
    assert_close(out, out_r, dtype, what="mha out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    for name, g, gr in zip(("dx", "dWqkv", "dbqkv", "dWo", "dbo"), ka.mha_backward(dout, cache),
                           ref.mha_backward(dout, cache_r)):
        assert_close(g, gr, dtype, reduced=name != "dx", what=name)
