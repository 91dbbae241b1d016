"""Grouped-query attention in the fused kernel (numformer.kernels.attention) against
the NumPy reference, the decode path, and the online-softmax rescaling.

Every case runs with the default block sizes and with tiny ones (BQ=4, BK=8,
all numba threads however small the call), so short sequences cross several
query and key blocks, a group's packed columns (G heads x QB queries) end in
partial blocks, and several workers share the groups. Runs compiled and, with
NUMBA_DISABLE_JIT=1, as plain Python (smaller grid).
"""

import itertools

import numpy as np
import pytest

from numformer.gradcheck import check_op
from numformer.kernels import _jit
from numformer.kernels import attention as ka
from numformer.testing import attention_inputs as make
from numformer.ops import attention as ref
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# (B, H, Hkv, Tq, Tk, D): T=1, Hkv = 1, = H and in between, decode shapes (Tq < Tk),
# Tq > Tk, sizes that are not multiples of any block size.
SHAPES = [(1, 2, 1, 1, 1, 3), (2, 6, 2, 5, 5, 3), (2, 6, 3, 7, 13, 5), (1, 4, 2, 13, 6, 3),
          (2, 9, 3, 1, 17, 8), (1, 6, 1, 3, 40, 4), (2, 4, 4, 5, 5, 3)]
if not _jit.JIT_DISABLED:
    SHAPES += [(1, 9, 3, 1, 300, 64), (2, 6, 2, 70, 70, 16), (1, 4, 1, 65, 300, 32)]
IDS = ["x".join(map(str, s)) for s in SHAPES]


# The block settings every case runs under: the `blocks` fixture of conftest.py.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked,causal", list(itertools.product([False, True], [False, True])))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gqa_agrees_with_reference(rng, blocks, shape, dtype, masked, causal):
    q, k, v, key_mask = make(rng, shape, dtype, masked)
    out, cache = ka.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
    out_ref, cache_ref = ref.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
    assert out.dtype == dtype and out.shape == q.shape
    assert_close(out, out_ref, dtype, what="gqa out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = ka.attention_backward(dout, cache)
    grads_ref = ref.attention_backward(dout, cache_ref)
    for name, g, g_ref, x in zip(("dq", "dk", "dv"), grads, grads_ref, (q, k, v)):
        assert g.dtype == dtype and g.shape == x.shape
        assert np.all(np.isfinite(g)), f"{name} has NaN/inf"
        assert_close(g, g_ref, dtype, what=name)


def test_kv_are_not_copied(rng):
    """The cache holds the caller's k and v (Hkv heads), nothing repeated per query head."""
    q, k, v, key_mask = make(rng, (2, 6, 2, 5, 9, 3), np.float32, True)
    out, cache = ka.attention_forward(q, k, v, key_mask=key_mask, causal=True)
    assert cache[1] is k and cache[2] is v
    H, Tk, D = 6, 9, 3
    assert not any(isinstance(x, np.ndarray) and x.size >= 2 * H * Tk * D for x in cache)


def test_gradcheck_kernel_gqa(rng, blocks):
    """The kernel's own backward against finite differences (float64), a group of 3."""
    q, k, v, key_mask = make(rng, (2, 6, 2, 5, 7, 3), np.float64, True)
    key_mask[0, 2:] = True  # some keys visible in both sequences
    report = check_op(ka.attention_forward, ka.attention_backward,
                      {"q": q, "k": k, "v": v}, ["q", "k", "v"],
                      kwargs={"key_mask": key_mask, "causal": True}, title="kernel gqa")
    report.assert_ok()


# -- decoding: new queries against a cache of keys ---------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S,Tq", [(1, 1), (16, 1), (37, 1), (37, 3), (260, 2)])
def test_decode_equals_the_last_rows_of_the_full_pass(rng, blocks, dtype, S, Tq):
    """Tq new queries against S + Tq keys (causal, aligned at the end) give the last
    Tq rows of causal attention over all S + Tq positions."""
    B, H, Hkv, D = 2, 9, 3, 8
    T = S + Tq
    q = rng.standard_normal((B, H, T, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, T, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, T, D)).astype(dtype)
    key_mask = np.ones((B, T), bool)
    key_mask[1, :S // 2] = False  # a left-padded prompt in the batch
    full, _ = ka.attention_forward(q, k, v, key_mask=key_mask, causal=True)
    step, cache = ka.attention_forward(q[:, :, S:], k, v, key_mask=key_mask, causal=True)
    assert step.shape == (B, H, Tq, D)
    assert_close(step, full[:, :, S:], dtype, what="decode vs full")
    step_ref, _ = ref.attention_forward(q[:, :, S:], k, v, key_mask=key_mask, causal=True)
    assert_close(step, step_ref, dtype, what="decode vs reference")
    assert cache[4].shape == (B, H, Tq)  # lse of the new queries only


# -- the online softmax's rescaling ----------------------------------------------------------

def _rescale_inputs(bk, dtype):
    """q, k, v (B=1, H=2, Tq=2, D=4) whose base-2 scores s * log2(e) are laid out per
    key block of ``bk`` keys so that the kernel's per-query offset (0 at start,
    moved to the running max when that leaves [offset - WINDOW, offset + WINDOW])
    must move *after* partial outputs were accumulated, and the keys that came
    before still carry a large share of the softmax, so that a missing or wrong
    rescale of the accumulated output changes the result.

    Query p = h * Tq + i is one-hot on dimension p, so its scores are column p of
    k (times the scale 1/2, exact). Patterns (W = WINDOW = 50), max per block:
      p0: 48 | 51 | low | low       one rescale after block 0 (2**-3 share left)
      p1: 48 | 51 | 100 | 102       two: after block 0 and after block 2
      p2: 45 | 40 | 30 | 20         no move (control)
      p3: 60 | 108 | 111 | low      a move on block 0 (nothing accumulated yet:
                                    the redo path), then one rescale of blocks
                                    0 and 1 (block 1 keeps a 2**-3 share)
    Returns the inputs and the per-block maxima of base-2 scores (4, 4)."""
    W = ka.WINDOW
    rng = np.random.default_rng(7)
    Tk = 4 * bk
    s2 = rng.uniform(-20.0, 30.0, size=(Tk, 4))  # base-2 scores, key x query
    peaks = np.array([[48, 51, None, None], [48, 51, 100, 102], [45, 40, 30, 20],
                      [60, 108, 111, None]], dtype=object)
    for p in range(4):
        for blk in range(4):
            if peaks[p, blk] is not None:
                s2[blk * bk + (3 * p + blk) % bk, p] = peaks[p, blk]
    s_nat = np.round(s2 / ka.LOG2E * 64) / 64  # natural-unit scores, exact in float32
    k = np.zeros((1, 1, Tk, 4))
    k[0, 0] = 2.0 * s_nat  # scale = 1/sqrt(4) = 1/2
    q = np.zeros((1, 2, 2, 4))
    for p in range(4):
        q[0, p // 2, p % 2, p] = 1.0
    v = rng.standard_normal((1, 1, Tk, 4))
    blk_max = (s_nat * ka.LOG2E).reshape(4, bk, 4).max(axis=1).T  # (query, block)
    # the patterns do what the docstring says (else the test would prove nothing)
    assert blk_max[0, 0] < W - 1 and blk_max[0, 1] > W + 0.5
    assert blk_max[1, 2] < blk_max[1, 1] + W - 0.5 and blk_max[1, 3] > blk_max[1, 1] + W + 0.5
    assert blk_max[2].max() < W - 1
    assert blk_max[3, 0] > W + 1 and blk_max[3, 1] < blk_max[3, 0] + W - 0.5
    assert blk_max[3, 2] > blk_max[3, 0] + W + 0.5
    return q.astype(dtype), k.astype(dtype), v.astype(dtype), s_nat


@pytest.mark.parametrize("Hkv", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_online_softmax_rescaling_branch(blocks, dtype, Hkv):
    """Scores that move the running max past the offset's window after earlier key
    blocks were accumulated: the kernel must rescale its partial output (and sum)
    and still equal the reference to the suite's tight tolerance."""
    bq, bk = ka.block_sizes(4, 2 // Hkv)
    q, k, v, s_nat = _rescale_inputs(bk, dtype)
    if Hkv == 2:  # the same scores through two kv heads (one query head each)
        k, v = np.concatenate([k, k], axis=1), np.concatenate([v, v], axis=1)
    out, cache = ka.attention_forward(q, k, v)
    out_ref, _ = ref.attention_forward(q, k, v)
    assert_close(out, out_ref, dtype, what="out across rescales")
    # The blocks before each move hold a share of the softmax far above the
    # tolerance: without the rescale of the accumulated output the result
    # would be off by that share (here: more than 1e-3 of the mass).
    p = np.exp(s_nat - s_nat.max(0))
    p /= p.sum(0)  # (Tk, query)
    bk_share = p.reshape(4, bk, 4).sum(axis=1).T  # (query, block)
    assert bk_share[0, 0] > 1e-3 and bk_share[1, 2] > 1e-3 and bk_share[3, 1] > 1e-3
    lse_ref = np.log(np.exp(s_nat - s_nat.max(0)).sum(0)) + s_nat.max(0)  # (query,)
    assert_close(cache[4].reshape(-1), lse_ref.astype(dtype), dtype, what="lse")
    if dtype == np.float32:
        # The backward has no online softmax (it recomputes P from lse, checked
        # above); with keys of norm ~150, float32 dq is ill-conditioned in both
        # implementations alike, so the gradients are compared in float64.
        return
    dout = np.random.default_rng(3).standard_normal(out.shape).astype(dtype)
    _, cache_ref = ref.attention_forward(q, k, v)
    for name, g, g_ref in zip("qkv", ka.attention_backward(dout, cache),
                              ref.attention_backward(dout, cache_ref)):
        assert_close(g, g_ref, dtype, what=f"d{name} after rescaling")


# -- multi-head self-attention with n_kv_heads ------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("H,Hkv", [(6, 1), (6, 2), (6, 6)])
def test_mha_n_kv_heads_agrees_with_reference(rng, H, Hkv, causal, bias):
    B, T, C = 2, 7, 12
    D = C // H
    n = (H + 2 * Hkv) * D
    x = rng.standard_normal((B, T, C))
    Wqkv, Wo = rng.standard_normal((C, n)) * 0.3, rng.standard_normal((C, C)) * 0.3
    bqkv = rng.standard_normal(n) if bias else None
    bo = rng.standard_normal(C) if bias else None
    key_mask = np.ones((B, T), bool)
    key_mask[1, 5:] = False
    out, cache = ka.mha_forward(x, Wqkv, bqkv, Wo, bo, H, key_mask, causal, n_kv_heads=Hkv)
    out_ref, cache_ref = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, key_mask, causal,
                                         n_kv_heads=Hkv)
    assert_close(out, out_ref, what="mha out")
    dout = rng.standard_normal(out.shape)
    grads, grads_ref = ka.mha_backward(dout, cache), ref.mha_backward(dout, cache_ref)
    assert len(grads) == 5
    for name, g, g_ref in zip(("dx", "dWqkv", "dbqkv", "dWo", "dbo"), grads, grads_ref):
        if g_ref is None:
            assert g is None, f"{name}: expected None for an absent bias"
        else:
            assert_close(g, g_ref, reduced=name != "dx", what=name)  # dW, db: batch-reduced
    # the reference attention module through the kernel's mha (the fallback) agrees too
    out_f, cache_f = ka.mha_forward(x, Wqkv, bqkv, Wo, bo, H, key_mask, causal, attention=ref,
                                    n_kv_heads=Hkv)
    assert_close(out_f, out_ref, what="mha out (reference attention)")


def test_mha_gradcheck_kernel_gqa(rng):
    B, T, C, H, Hkv = 2, 5, 6, 2, 1
    x = rng.standard_normal((B, T, C))
    inputs = dict(x=x, Wqkv=rng.standard_normal((C, 12)) * 0.5, bqkv=None,
                  Wo=rng.standard_normal((C, C)) * 0.5, bo=None)
    key_mask = np.ones((B, T), bool)
    key_mask[1, 3:] = False
    report = check_op(ka.mha_forward, ka.mha_backward, inputs, ["x", "Wqkv", "bqkv", "Wo", "bo"],
                      dict(n_heads=H, key_mask=key_mask, causal=True, n_kv_heads=Hkv),
                      title="kernel mha gqa")
    report.assert_ok()
    assert [r.name for r in report.rows] == ["x", "Wqkv", "Wo"]


# -- errors --------------------------------------------------------------------------------

def test_float64_dout_into_float32_forward_is_refused(rng):
    """No silent upcast and no fallback to the reference: the kernel refuses."""
    q, k, v, _ = make(rng, (2, 4, 2, 3, 5, 3), np.float32, False)
    out, cache = ka.attention_forward(q, k, v, causal=True)
    with pytest.raises(ValueError, match=r"attention_backward: dout: expected dtype float32 "
                                         r"\(the dtype of the forward pass\), got float64"):
        ka.attention_backward(np.ones(out.shape), cache)
    with pytest.raises(ValueError, match=r"attention_backward: dout: expected shape"):
        ka.attention_backward(np.ones((2, 4, 3, 2), np.float32), cache)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    Wqkv = rng.standard_normal((6, 12)).astype(np.float32)
    Wo = rng.standard_normal((6, 6)).astype(np.float32)
    out, cache = ka.mha_forward(x, Wqkv, None, Wo, None, 2, n_kv_heads=1)
    with pytest.raises(ValueError, match=r"mha_backward: dout: expected dtype float32 "
                                         r"\(the dtype of the forward pass\), got float64"):
        ka.mha_backward(np.ones(out.shape), cache)
    dx, dWqkv, dbqkv, dWo, dbo = ka.mha_backward(np.ones(out.shape, np.float32), cache)
    assert dx.dtype == dWqkv.dtype == dWo.dtype == np.float32 and dbqkv is None and dbo is None


def test_grouping_errors_match_reference(rng):
    q, k, v, _ = make(rng, (2, 6, 2, 4, 5, 3), np.float32, False)
    bad_cases = [
        dict(q=q, k=np.concatenate([k, k[:, :2]], axis=1), v=v),  # Hkv=4 does not divide 6
        dict(q=q, k=k, v=v[:, :1]),
        dict(q=q, k=k[..., :2], v=v),
        dict(q=q, k=k[:1], v=v),
    ]
    for case in bad_cases:
        with pytest.raises(ValueError) as e_ref:
            ref.attention_forward(**case)
        with pytest.raises(ValueError) as e_kernel:
            ka.attention_forward(**case)
        assert str(e_kernel.value) == str(e_ref.value)
        assert str(e_kernel.value).startswith(("k:", "v:"))
    x = rng.standard_normal((1, 2, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="n_kv_heads: expected a divisor of n_heads=3"):
        ka.mha_forward(x, np.zeros((6, 18), np.float32), None, np.zeros((6, 6), np.float32), None,
                       3, n_kv_heads=2)


def test_block_sizes_keep_blas_on_one_thread_for_groups():
    from numformer.kernels.matmul import SINGLE_THREAD_MNK
    for D, G in itertools.product((1, 3, 64, 100, 256), (1, 2, 3, 7, 64, 100)):
        qb, bk = ka.block_sizes(D, G)
        assert qb >= 1 and bk >= 1
        assert G * qb * bk * D <= SINGLE_THREAD_MNK or bk <= 16
    assert ka.block_sizes(64, 1) == ka.block_sizes(64)
