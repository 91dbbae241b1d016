"""Fused (flash) scaled dot-product attention: the Numba twin of ``numformer.ops.attention``,
with grouped-query attention (GQA).

Shapes: B batch, H (query) heads, Hkv key/value heads dividing H, G = H // Hkv,
T sequence (Tq queries, Tk keys), D = C // H head width, C channels.
q (B, H, Tq, D), k and v (B, Hkv, Tk, D): query head h reads kv head h // G
(the Hugging Face / Llama grouping); K and V are never repeated or copied.
Activations are (B, T, C). Masks as in the reference: ``key_mask`` (B, Tk)
bool, True for real tokens; ``causal=True`` lets query i see keys
j <= i + (Tk - Tq); a query with no visible key gets an output of zero,
never NaN. Dropout on the probabilities as in the reference, the same mask
bit for bit: one key drawn from ``rng`` per call, and element (b, h, i, j)
kept by the hash of (key, offset + its index in (B, H, Tq, Tk)), which the
forward and the backward decide inside their blocks (no T x T mask stored).

What the kernels do (loops in ``_attention_loops.py``, pieces in ``_attention_blocks.py``)
----------------------------------------------------------------------------------------
Forward: for each (batch, kv head, block of QB queries) -- tasks dealt
round-robin to the workers of a ``prange`` -- the QB queries of each of the
group's G query heads are packed side by side as the G * QB columns of one
block, and the task walks over the keys of its kv head in blocks of BK with
an online softmax: per column a running sum of exponentials taken against
an offset, and the partial output ``sum_j P_ij V_j``, both rescaled when
the offset has to move. Each K and V block is read once for the G heads,
and the group's scores are one product. The (Tq, Tk) score matrix never
exists; a task holds one (BK, G * QB) block. The cache keeps q, k, v, out
and the per-query log-sum-exp ``lse`` (B, H, Tq): nothing of size T x T.

Backward: for each (batch, kv head) group -- dealt to the ``prange``
workers, so a worker owns dk, dv of its kv head and dq of its G query heads
and no two threads write the same row -- walk over blocks of queries (the G
heads' queries packed as columns, as in the forward) and keys, recompute the
probabilities of the block from ``lse`` (``P = exp(S - lse)``: no max, no
sum), and accumulate ``dV += P^T dO``, ``dS = P * (dP - delta)`` with
``delta = rowsum(dO * out)``, ``dQ += dS K``, ``dK += dS^T Q``. Since the G
heads are columns of one block, the sums of dK and dV over the heads of a
group are inside the products.

Decoding (one new query, or a few, against S cached keys, causal aligned
at the end): a task is one group's Tq <= QB queries, so its scores against
a key block are one (G * Tq, D) x (D, BK) product, not G matrix-vector
products, and only the Tq x S scores of the new queries are computed. With
fewer than ROW_COLS columns (G * Tq; SmolLM2: 3) the blocks are turned
around, columns x keys, so that max, exp2 and sum run along the keys,
vectorised LANES at a time, rather than along 3 columns. The parallel loop
runs over the B * Hkv groups (SmolLM2: 3 tasks), on the calling thread
alone below ``PARALLEL_MIN_WORK``.

What makes them fast
--------------------
- Every product is one BLAS call on a block (``kernels.matmul.gemm``: strided
  views, ``alpha`` carries the scale, ``beta = 1`` accumulates in place, no
  temporaries). Blocks keep ``G * QB * BK * D <= SINGLE_THREAD_MNK`` so that
  BLAS stays on the calling thread inside the parallel loop.
- The blocks are stored transposed, keys x columns (``S^T = K Q^T``), so
  that the per-query max and sum are *column* reductions: the inner loop runs
  along a contiguous row of queries and the compiler vectorises max, exp and
  sum across 16 queries at a time; no per-key horizontal reduction. Q and dO
  are transposed once per query block (D x G * QB), which makes every product
  a plain NN, TN or NT call.
- One pass over a block does all the element-wise work: forward max, exp
  and sum together (the offset is not the block's max but a value that
  only moves when the max drifts more than WINDOW away, so the exponentials
  never wait for a max pass and the partial output is almost never
  rescaled); backward P and dS together.
- Scores are in base 2 (log2(e) rides in the BLAS alpha) and float32 exp2 is
  a degree-5 polynomial with the exponent written into the float's bits
  (``_exp2f``), which the compiler vectorises; libm's ``exp`` would be a
  scalar call per score. float64 (used by the gradient checks) keeps
  ``math.exp``.
- The first product into each block of the output accumulators and of dk,
  dv overwrites it (``beta = 0``): no zeroing pass.
- Key blocks that are all padding, and blocks above the causal diagonal,
  are skipped.
- Dropout stores nothing: the mask of a block is recomputed from its indices
  (one splitmix64 per probability, in the pass that already touches it).
- Small calls (below ``kernels.matmul.PARALLEL_MIN_WORK`` multiply-adds, e.g.
  one decoding step at short context) run on the calling thread: waking the
  other threads would cost more than the work.

Everything the kernels need is passed in: no hidden state, and with
``NUMBA_DISABLE_JIT=1`` the same loops run as plain Python.
"""

from __future__ import annotations

import numpy as np

from numformer.kernels._attention_blocks import (  # noqa: F401  (tests reach the pieces here)
    _NEG, LANES, LN2, LOG2E, WINDOW, _exp2, _exp2_rows, _exp2_sum_max, _exp2f, _mask_block,
    _mask_rows)
from numformer.kernels._attention_loops import _attention_bwd, _attention_fwd
from numformer.kernels.matmul import SINGLE_THREAD_MNK, run_strided, workers
from numformer.ops import _checks as chk
from numformer.ops import attention as _ref
from numformer.ops import linear as _linear
from numformer.ops.attention import (check_mha, check_qkv, merge_heads,  # noqa: F401  (same API)
                                     split_heads, split_qkv)

BLOCK_Q = 64    # columns per block (query heads of a group x queries)
BLOCK_K = 256   # keys per block (rows of a score block)
# A forward task with fewer columns than this (a decoding step: G heads x 1
# query) computes its blocks as columns x keys, vectorising along the keys.
ROW_COLS = 16


def block_sizes(D: int, G: int = 1) -> tuple[int, int]:
    """(QB, BK) for head width D and G query heads per kv head: QB queries of
    each head per block (G * QB columns), BK keys, shrunk from the defaults
    until a block's products (G * QB * BK * D multiply-adds) stay on one BLAS
    thread."""
    bq, bk = BLOCK_Q, BLOCK_K
    while bq * bk * D > SINGLE_THREAD_MNK and bk > 16:
        bk //= 2
    while bq * bk * D > SINGLE_THREAD_MNK and bq > 8:
        bq //= 2
    qb = max(1, bq // G)
    while G * qb * bk * D > SINGLE_THREAD_MNK and bk > 16:
        bk //= 2
    return qb, bk


# -- the op pair ----------------------------------------------------------------------

_NO_MASK = np.ones((1, 1), dtype=np.bool_)
_NO_DROP = (np.uint64(0), np.uint64(0), 1.0, 0)  # key, threshold, 1/(1-p), offset


def _drop_args(drop, dtype) -> tuple:
    """The kernels' dropout arguments, of the same types with or without dropout
    (one compiled signature per dtype)."""
    key, thresh, inv_keep, offset = _NO_DROP if drop is None else drop
    return drop is not None, np.uint64(key), np.uint64(thresh), dtype.type(inv_keep), int(offset)


def _unit_inner(x: np.ndarray) -> np.ndarray:
    """x when its last axis has unit stride (BLAS reads rows), else a copy."""
    if x.shape[-1] > 1 and x.strides[-1] != x.itemsize:
        return np.ascontiguousarray(x)
    return x


def _forward_into(q, k, v, key_mask, causal, scale, out, drop=None):
    """Run the fused forward into ``out`` (any (B, H, Tq, D) view with unit inner
    stride); returns lse (B, H, Tq). ``drop``: ``_ref.drop_key``'s tuple or None."""
    B, H, Tq, D = q.shape
    lse = np.empty((B, H, Tq), dtype=q.dtype)
    if out.size == 0:
        lse[...] = -np.inf
        return lse
    qb, bk = block_sizes(D, H // k.shape[1])
    mask = _NO_MASK if key_mask is None else np.ascontiguousarray(key_mask)
    W = workers(B * H * Tq * k.shape[2] * D)
    run_strided(_attention_fwd, q, k, v, mask, key_mask is not None, bool(causal), scale, out,
                lse, qb, bk, W, ROW_COLS, *_drop_args(drop, q.dtype), serial=W == 1)
    return lse


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None, dropout=0.0, rng=None,
                      offset=0):
    """``out = dropout(softmax(q @ k^T * scale + mask)) @ v``, scale = 1/sqrt(D) by default.

    q (B, H, Tq, D), k and v (B, Hkv, Tk, D) with Hkv dividing H (query head h
    reads kv head h // (H // Hkv)); ``dropout``, ``rng``, ``offset`` as in the
    reference (the same mask for the same generator state). Returns out (B,
    H, Tq, D) and ``cache = (q, k, v, out, lse, key_mask, causal, scale,
    drop)`` with lse the per-query log-sum-exp of the scores (B, H, Tq) (-inf
    for a query that sees no key) and drop None or (key, threshold, 1/(1-p),
    offset). Unlike the reference, no (B, H, Tq, Tk) probabilities or mask
    are kept: the backward recomputes them block by block.
    """
    B, H, Tq, Tk, D = check_qkv(q, k, v, key_mask)
    drop = _ref.drop_key(dropout, rng, offset)
    dt = q.dtype.type
    scale = dt(1.0 / np.sqrt(D) if scale is None else scale)
    q, k, v = _unit_inner(q), _unit_inner(k), _unit_inner(v)
    out = np.empty((B, H, Tq, D), dtype=q.dtype)  # (B, H, Tq, D)
    lse = _forward_into(q, k, v, key_mask, causal, scale, out, drop)  # (B, H, Tq)
    return out, (q, k, v, out, lse, key_mask, bool(causal), scale, drop)


def _backward_into(dout, cache, dq, dk, dv):
    """Fused backward into given views dq (B, H, Tq, D), dk, dv (B, Hkv, Tk, D)
    (unit inner stride)."""
    q, k, v, out, lse, key_mask, causal, scale, drop = cache
    if dq.size == 0 and dk.size == 0:
        return
    if dq.size == 0 or dk.size == 0 or q.shape[3] == 0:
        dq[...] = 0.0
        dk[...] = 0.0
        dv[...] = 0.0
        return
    B, H, Tq, D = q.shape
    qb, bk = block_sizes(D, H // k.shape[1])
    mask = _NO_MASK if key_mask is None else np.ascontiguousarray(key_mask)
    W = workers(B * H * Tq * k.shape[2] * D)
    run_strided(_attention_bwd, q, k, v, out, _unit_inner(dout), lse, mask, key_mask is not None,
                causal, scale, dq, dk, dv, qb, bk, W, *_drop_args(drop, q.dtype), serial=W == 1)


def attention_backward(dout, cache):
    """(dq, dk, dv); dk and dv (B, Hkv, Tk, D) sum over the query heads that share them."""
    q, k, v, out, lse, key_mask, causal, scale, drop = cache
    chk.check_dout("attention_backward", dout, out.shape, out.dtype)
    dq = np.empty(q.shape, dtype=q.dtype)  # (B, H, Tq, D)
    dk = np.empty(k.shape, dtype=q.dtype)  # (B, Hkv, Tk, D)
    dv = np.empty(v.shape, dtype=q.dtype)  # (B, Hkv, Tk, D)
    _backward_into(dout, cache, dq, dk, dv)
    return dq, dk, dv


# -- multi-head self-attention with the head split fused away ----------------------

def mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads: int, key_mask=None, causal=False, attention=None,
                n_kv_heads: int | None = None, dropout=0.0, rng=None, offset=0):
    """Multi-head self-attention, as ``numformer.ops.attention.mha_forward``
    (Wqkv (C, (H + 2 Hkv) D), H = n_heads, Hkv = n_kv_heads or H; biases may be None).

    The heads are never copied: q, k, v are strided (B, H|Hkv, T, D) views
    of the (B, T, (H + 2 Hkv) D) projection, and the attention writes its
    output through a (B, H, T, D) view of a (B, T, C) buffer, so the head
    merge is a reshape. ``attention`` other than this module uses the
    reference composition. ``dropout``, ``rng``, ``offset``: the probabilities'
    dropout, as in ``attention_forward``.
    ``cache = (attention, qkv_cache, attn_cache, out_cache, n_heads, n_kv_heads)``.
    """
    if attention is not None and attention is not _this_module():
        return _ref.mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads, key_mask, causal,
                                attention=attention, n_kv_heads=n_kv_heads, dropout=dropout,
                                rng=rng, offset=offset)
    B, T, C, H, Hkv, D = check_mha(x, Wqkv, n_heads, n_kv_heads)
    qkv, qkv_cache = _linear.linear_forward(x, Wqkv, bqkv)  # (B, T, (H + 2 Hkv) D)
    q, k, v = split_qkv(qkv, H, Hkv)  # (B, H, T, D), 2 x (B, Hkv, T, D) views
    check_qkv(q, k, v, key_mask)
    drop = _ref.drop_key(dropout, rng, offset)
    scale = x.dtype.type(1.0 / np.sqrt(D))
    merged = np.empty((B, T, C), dtype=x.dtype)  # (B, T, C)
    a = split_heads(merged, H)  # (B, H, T, D) view
    lse = _forward_into(q, k, v, key_mask, causal, scale, a, drop)  # (B, H, T)
    attn_cache = (q, k, v, a, lse, key_mask, bool(causal), scale, drop)
    out, out_cache = _linear.linear_forward(merged, Wo, bo)  # (B, T, C)
    return out, (_this_module(), qkv_cache, attn_cache, out_cache, H, Hkv)


def mha_backward(dout, cache):
    """(dx, dWqkv, dbqkv, dWo, dbo), None for absent biases. The three head
    gradients are written straight into one (B, T, (H + 2 Hkv) D) buffer (no
    merge, no concatenate)."""
    attention, qkv_cache, attn_cache, out_cache, n_heads, n_kv_heads = cache
    if attention is not _this_module():
        return _ref.mha_backward(dout, cache)
    x_m, Wo = out_cache[0], out_cache[1]
    chk.check_dout("mha_backward", dout, x_m.shape[:-1] + (Wo.shape[1],), Wo.dtype)
    # out = merge(a) @ Wo + bo
    dm, dWo, dbo = _linear.linear_backward(dout, out_cache)  # (B, T, C)
    da = split_heads(dm, n_heads)  # (B, H, T, D) view
    B, T, C = dm.shape
    D = C // n_heads
    dqkv = np.empty((B, T, (n_heads + 2 * n_kv_heads) * D), dtype=dm.dtype)  # (B, T, (H + 2 Hkv) D)
    dq, dk, dv = split_qkv(dqkv, n_heads, n_kv_heads)  # views
    # a = attention(q, k, v)
    _backward_into(da, attn_cache, dq, dk, dv)
    # qkv = x @ Wqkv + bqkv
    dx, dWqkv, dbqkv = _linear.linear_backward(dqkv, qkv_cache)
    return dx, dWqkv, dbqkv, dWo, dbo


def _this_module():
    import sys
    return sys.modules[__name__]
