"""Fused (flash) scaled dot-product attention: the Numba twin of ``numformer.ops.attention``.

Shapes: B batch, H heads, T sequence (Tq queries, Tk keys), D = C // H head
width, C channels. Attention works on (B, H, T, D); activations are (B, T, C).
Masks as in the reference: ``key_mask`` (B, Tk) bool, True for real tokens;
``causal=True`` lets query i see keys j <= i + (Tk - Tq); a query with no
visible key gets an output of zero, never NaN.

What the kernels do
-------------------
Forward: for each (batch, head, block of BQ queries) -- tasks dealt
round-robin to the workers of a ``prange`` -- walk over the keys in blocks
of BK with an online softmax: for each query a running sum of exponentials
taken against an offset, and the partial output ``sum_j P_ij V_j``, both
rescaled when the offset has to move.
The (Tq, Tk) score matrix never exists; a task holds one (BK, BQ) block.
The cache keeps q, k, v, out and the per-query log-sum-exp ``lse``
(B, H, Tq): nothing of size T x T.

Backward: for each (batch, head) -- dealt to the ``prange`` workers, so a
worker owns dq, dk, dv of its heads and no two threads write the same row --
walk over
blocks of queries and keys, recompute the probabilities of the block from
``lse`` (``P = exp(S - lse)``: no max, no sum), and accumulate
``dV += P^T dO``, ``dS = P * (dP - delta)`` with ``delta = rowsum(dO * out)``,
``dQ += dS K``, ``dK += dS^T Q`` straight into the gradient arrays.

What makes them fast
--------------------
- Every product is one BLAS call on a block (``kernels.matmul.gemm``: strided
  views, ``alpha`` carries the scale, ``beta = 1`` accumulates in place, no
  temporaries). Blocks keep ``BQ * BK * D <= SINGLE_THREAD_MNK`` so that
  BLAS stays on the calling thread inside the parallel loop.
- The blocks are stored transposed, keys x queries (``S^T = K Q^T``), so
  that the per-query max and sum are *column* reductions: the inner loop runs
  along a contiguous row of queries and the compiler vectorises max, exp and
  sum across 16 queries at a time; no per-key horizontal reduction. Q and dO
  are transposed once per query block (D x BQ), which makes every product a
  plain NN or TN call.
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
- The first product into each block of out, dq, dk, dv overwrites it
  (``beta = 0``): no zeroing pass over the outputs.
- Key blocks that are all padding, and blocks above the causal diagonal,
  are skipped.
- Small calls (below ``kernels.matmul.PARALLEL_MIN_WORK`` multiply-adds, e.g.
  one decoding step) run on the calling thread: waking the other threads
  would cost more than the work.

Everything the kernels need is passed in: no hidden state, and with
``NUMBA_DISABLE_JIT=1`` the same loops run as plain Python.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import JIT_DISABLED, jit, prange
from numformer.kernels.matmul import SINGLE_THREAD_MNK, gemm, run_strided, workers
from numformer.ops import attention as _ref
from numformer.ops import linear as _linear
from numformer.ops.attention import check_qkv, merge_heads, split_heads  # noqa: F401  (same API)

# Inside the kernels a masked score is this finite number rather than the
# reference's MASKED_SCORE = -inf, so no infinity ever enters a vectorised
# loop (its exp underflows to exactly 0 all the same). Real scores are far
# above it; a running maximum still at _NEG means "no visible key yet".
_NEG = -1.0e30
# Scores are kept in base-2 units, s2 = s * log2(e) (folded into the BLAS
# alpha), so the softmax needs exp2, which is cheaper to build than exp.
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# The forward's exponent offset per query is only moved when the running
# max leaves [offset - WINDOW, offset + WINDOW] (base 2): exp2 of anything in
# that window, summed over many keys, stays far inside float32's range.
WINDOW = 50.0
# fast-math without "no NaN / no inf" assumptions: reassociation lets the
# compiler vectorise sums and maxima; NaN inputs still give NaN outputs.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

BLOCK_Q = 64    # queries per block (columns of a score block)
BLOCK_K = 256   # keys per block (rows of a score block)


def block_sizes(D: int) -> tuple[int, int]:
    """(BQ, BK) for head width D: the defaults, shrunk until a block's products
    (BQ * BK * D multiply-adds) stay on one BLAS thread."""
    bq, bk = BLOCK_Q, BLOCK_K
    while bq * bk * D > SINGLE_THREAD_MNK and bk > 16:
        bk //= 2
    while bq * bk * D > SINGLE_THREAD_MNK and bq > 8:
        bq //= 2
    return bq, bk


# -- element-wise pieces ----------------------------------------------------------------

def _exp2f_py(x):
    """float32 2**x: 0 below -126 (and for _NEG), NaN for NaN.

    2**x = 2**k * 2**r with k = round(x), r = x - k in [-1/2, 1/2]; 2**r by a
    degree-5 polynomial (least-squares fit of the relative error, max 7.5e-8,
    2.1e-7 after float32 rounding), 2**k written straight into the exponent
    bits. No branch and no call, so a loop of it vectorises."""
    f32 = np.float32
    v = min(max(x, f32(-126.0)), f32(126.0))
    kf = np.floor(v + f32(0.5))
    r = v - kf
    p = f32(1.3276472055e-3)
    p = p * r + f32(9.6755414641e-3)
    p = p * r + f32(5.5507132744e-2)
    p = p * r + f32(2.4022119721e-1)
    p = p * r + f32(6.9314696706e-1)
    p = p * r + f32(1.0000000717)
    two_k = np.int32((np.int32(kf) + np.int32(127)) << np.int32(23)).view(np.float32)
    # (x - x) is 0, or NaN for NaN: the clamp above may have dropped a NaN
    return f32(0.0) if x < f32(-126.0) else p * two_k + (x - x)


def _exp2(x):
    """2**x for the softmax: float32 by ``_exp2f``, float64 by ``math.exp``
    (the gradient checks run in float64 and want every digit). Compiled code
    picks the implementation by type at compile time (the overload below)."""
    if isinstance(x, np.float32):
        return _exp2f_py(x)
    return math.exp(x * LN2)


_exp2f = jit(_exp2f_py, fastmath=_FASTMATH, inline="always")
if not JIT_DISABLED:
    from numba.core import types as _types
    from numba.extending import overload

    @overload(_exp2, inline="always", jit_options={"fastmath": _FASTMATH})
    def _exp2_by_type(x):
        if x == _types.float32:
            return _exp2f_py
        return lambda x: math.exp(x * LN2)


def _mask_block_py(s, n, m, key_mask, has_mask, causal, b, j0, i0, shift):
    """Set masked scores of the block ``s[:n, :m]`` (keys x queries) to _NEG: padded
    keys (whole rows) and, when causal, queries i < j - shift (a prefix of row j)."""
    for r in range(n):
        j = j0 + r
        if has_mask and not key_mask[b, j]:
            stop = m
        elif causal:
            stop = min(m, max(0, j - shift - i0))
        else:
            stop = 0
        for c in range(stop):
            s[r, c] = _NEG


_mask_block = jit(_mask_block_py, fastmath=_FASTMATH)


def _exp2_sum_max_py(s, n, m, off, colsum, colmax):
    """On the block ``s[:n, :m]`` (keys x queries), in place: ``s = 2**(s - off)``
    per query (column), ``colsum += s.sum(0)``, ``colmax = max(s before)``.

    One pass; the inner loop runs along a row of queries, so max, exp2 and sum
    are vectorised across queries. Blocks are passed whole (C-contiguous,
    rows of BQ) with their used size: a sliced view would be typed as
    non-contiguous and the compiler could not vectorise the rows."""
    for c in range(m):
        colmax[c] = _NEG
    for r in range(n):
        for c in range(m):
            x = s[r, c]
            colmax[c] = max(colmax[c], x)
            e = _exp2(x - off[c])
            s[r, c] = e
            colsum[c] += e


_exp2_sum_max = jit(_exp2_sum_max_py, fastmath=_FASTMATH)


def _probs_and_ds_py(s, dp, n, m, off, delta, scale):
    """Backward on a block (keys x queries), one pass, in place:
    ``P = 2**(s - off)`` into s (off = lse in base 2) and
    ``dS = P * (dP - delta) * scale`` into dp."""
    for r in range(n):
        for c in range(m):
            p = _exp2(s[r, c] - off[c])
            s[r, c] = p
            dp[r, c] = p * (dp[r, c] - delta[c]) * scale


_probs_and_ds = jit(_probs_and_ds_py, fastmath=_FASTMATH)


def _block_has_key_py(key_mask, b, j0, n):
    for j in range(j0, j0 + n):
        if key_mask[b, j]:
            return True
    return False


_block_has_key = jit(_block_has_key_py)


# -- forward ------------------------------------------------------------------------------

def _attention_fwd_py(q, k, v, key_mask, has_mask, causal, scale, out, lse, BQ, BK, W):
    """Flash forward into ``out`` (B, H, Tq, D) and ``lse`` (B, H, Tq).

    Tasks are (batch, head, query block), dealt round-robin to W workers (the
    ``prange``), each with its scratch blocks allocated once. A task walks the
    key blocks with an online softmax whose per-query offset moves only when
    the running max leaves the WINDOW around it, so a block usually costs one
    fused pass (max, exp2, sum) and no rescaling of the partial output."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    shift = Tk - Tq  # causal: query i sees keys j <= i + shift
    nqb = (Tq + BQ - 1) // BQ
    ntasks = B * H * nqb
    alpha = scale * LOG2E  # scores in base 2
    for w in prange(W):
        qt = np.empty((D, BQ), dtype=q.dtype)  # Q_i^T (D, BQ)
        st = np.empty((BK, BQ), dtype=q.dtype)  # S^T, then P^T (BK, BQ)
        off = np.empty(BQ, dtype=q.dtype)  # exponent offset per query
        run_max = np.empty(BQ, dtype=q.dtype)
        run_sum = np.empty(BQ, dtype=q.dtype)
        blk_max = np.empty(BQ, dtype=q.dtype)
        saved = np.empty(BQ, dtype=q.dtype)
        for task in range(w, ntasks, W):
            bh = task // nqb
            b = bh // H
            h = bh % H
            i0 = (task % nqb) * BQ
            m = min(BQ, Tq - i0)
            for d in range(D):
                for c in range(m):
                    qt[d, c] = q[b, h, i0 + c, d]
            for c in range(m):
                off[c] = 0.0
                run_max[c] = _NEG
                run_sum[c] = 0.0
            o = out[b, h, i0:i0 + m]  # (m, D) accumulated in place
            o_beta = 0.0  # the first product overwrites o: no zeroing pass
            kend = Tk if not causal else min(Tk, i0 + m + shift)  # later keys hidden from all m
            for j0 in range(0, kend, BK):
                n = min(BK, kend - j0)
                if has_mask and not _block_has_key(key_mask, b, j0, n):
                    continue
                for c in range(m):
                    saved[c] = run_sum[c]
                for attempt in range(2):
                    # S2^T = K_j Q_i^T * scale * log2(e)
                    gemm(k[b, h, j0:j0 + n], qt[:, :m], st[:n, :m], alpha, 0.0, False, False)
                    _mask_block(st, n, m, key_mask, has_mask, causal, b, j0, i0, shift)
                    _exp2_sum_max(st, n, m, off, run_sum, blk_max)
                    moved = False
                    for c in range(m):
                        run_max[c] = max(run_max[c], blk_max[c])
                        if run_max[c] > _NEG * 0.5 and abs(run_max[c] - off[c]) > WINDOW:
                            moved = True
                    if not moved:
                        break
                    # rare: move the offsets, rescale what came before, redo the block
                    for c in range(m):
                        run_sum[c] = saved[c]
                        if run_max[c] > _NEG * 0.5 and abs(run_max[c] - off[c]) > WINDOW:
                            f = 2.0 ** (off[c] - run_max[c])
                            run_sum[c] *= f
                            if o_beta != 0.0:
                                for d in range(D):
                                    o[c, d] *= f
                            off[c] = run_max[c]
                # O_i += P_ij V_j   (P_ij = st^T)
                gemm(st[:n, :m], v[b, h, j0:j0 + n], o, 1.0, o_beta, True, False)  # (m, D)
                o_beta = 1.0
            for c in range(m):
                if run_sum[c] == 0.0:  # no visible key: output 0, and lse = log(0)
                    for d in range(D):
                        o[c, d] = 0.0
                    lse[b, h, i0 + c] = -np.inf
                else:  # (NaN scores give NaN here, as in the reference)
                    inv = 1.0 / run_sum[c]
                    for d in range(D):
                        o[c, d] *= inv
                    lse[b, h, i0 + c] = (off[c] + math.log2(run_sum[c])) * LN2


_attention_fwd = jit(_attention_fwd_py, parallel=True, fastmath=_FASTMATH)


# -- backward --------------------------------------------------------------------------------

def _attention_bwd_py(q, k, v, out, dout, lse, key_mask, has_mask, causal, scale,
                      dq, dk, dv, BQ, BK, W):
    """Flash backward into dq (B, H, Tq, D), dk, dv (B, H, Tk, D).

    The (batch, head) pairs are dealt round-robin to W workers (the
    ``prange``): a worker owns its heads' gradients, so no two threads write
    the same row. The probabilities are recomputed block by block from lse,
    never stored; per block: two products (S and dP), one fused pass (P and
    dS), three products accumulating into dV, dK, dQ."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    shift = Tk - Tq
    alpha = scale * LOG2E
    for w in prange(W):
        qt = np.empty((D, BQ), dtype=q.dtype)  # Q_i^T
        dot = np.empty((D, BQ), dtype=q.dtype)  # dO_i^T
        pt = np.empty((BK, BQ), dtype=q.dtype)  # S^T, then P^T block
        dpt = np.empty((BK, BQ), dtype=q.dtype)  # dP^T, then dS^T block
        off = np.empty(BQ, dtype=q.dtype)  # lse in base 2
        delta = np.empty(BQ, dtype=q.dtype)
        # kv_rows[jb]: rows of key block jb written so far. The first product
        # into a block of dk/dv/dq overwrites it (beta = 0), so there is no
        # zeroing pass; causal blocks grow with the queries; rows never reached
        # are zeroed at the end.
        kv_rows = np.empty((Tk + BK - 1) // BK, dtype=np.int64)
        for bh in range(w, B * H, W):
            b = bh // H
            h = bh % H
            kv_rows[:] = 0
            for i0 in range(0, Tq, BQ):
                m = min(BQ, Tq - i0)
                for c in range(m):
                    acc = 0.0
                    for d in range(D):
                        acc += dout[b, h, i0 + c, d] * out[b, h, i0 + c, d]
                    delta[c] = acc  # delta_i = rowsum(dO * out) = rowsum(dP * P)
                    x = lse[b, h, i0 + c]
                    off[c] = -_NEG if x < _NEG * 0.5 else x * LOG2E  # no visible key: P = 0
                for d in range(D):
                    for c in range(m):
                        qt[d, c] = q[b, h, i0 + c, d]
                        dot[d, c] = dout[b, h, i0 + c, d]
                kend = Tk if not causal else min(Tk, i0 + m + shift)
                q_i = q[b, h, i0:i0 + m]
                do_i = dout[b, h, i0:i0 + m]
                dq_i = dq[b, h, i0:i0 + m]
                dq_beta = 0.0
                for j0 in range(0, kend, BK):
                    n = min(BK, kend - j0)
                    if has_mask and not _block_has_key(key_mask, b, j0, n):
                        continue
                    k_j = k[b, h, j0:j0 + n]
                    done = kv_rows[j0 // BK]
                    kv_beta = 1.0 if done > 0 else 0.0
                    if 0 < done < n:
                        dk[b, h, j0 + done:j0 + n, :] = 0.0
                        dv[b, h, j0 + done:j0 + n, :] = 0.0
                    kv_rows[j0 // BK] = max(done, n)
                    # S2^T = K_j Q_i^T * scale * log2(e);  dP^T = V_j dO_i^T
                    gemm(k_j, qt[:, :m], pt[:n, :m], alpha, 0.0, False, False)  # (n, m)
                    gemm(v[b, h, j0:j0 + n], dot[:, :m], dpt[:n, :m], 1.0, 0.0, False, False)
                    _mask_block(pt, n, m, key_mask, has_mask, causal, b, j0, i0, shift)
                    # P = softmax(S) = 2**(S2 - lse2)  ->  dS = P * (dP - delta), times scale
                    _probs_and_ds(pt, dpt, n, m, off, delta, scale)
                    # out = P V  ->  dV_j += P^T dO_i
                    gemm(pt[:n, :m], do_i, dv[b, h, j0:j0 + n], 1.0, kv_beta, False, False)
                    # S = Q K^T * scale  ->  dK_j += dS^T Q_i,  dQ_i += dS K_j
                    gemm(dpt[:n, :m], q_i, dk[b, h, j0:j0 + n], 1.0, kv_beta, False, False)
                    gemm(dpt[:n, :m], k_j, dq_i, 1.0, dq_beta, True, False)  # (m, D)
                    dq_beta = 1.0
                if dq_beta == 0.0:  # these queries see no key
                    dq_i[:, :] = 0.0
            for jb in range(kv_rows.size):  # keys no query sees
                dk[b, h, jb * BK + kv_rows[jb]:min(Tk, jb * BK + BK), :] = 0.0
                dv[b, h, jb * BK + kv_rows[jb]:min(Tk, jb * BK + BK), :] = 0.0


_attention_bwd = jit(_attention_bwd_py, parallel=True, fastmath=_FASTMATH)


# -- the op pair ----------------------------------------------------------------------

_NO_MASK = np.ones((1, 1), dtype=np.bool_)


def _unit_inner(x: np.ndarray) -> np.ndarray:
    """x when its last axis has unit stride (BLAS reads rows), else a copy."""
    if x.shape[-1] > 1 and x.strides[-1] != x.itemsize:
        return np.ascontiguousarray(x)
    return x


def _forward_into(q, k, v, key_mask, causal, scale, out):
    """Run the fused forward into ``out`` (any (B, H, Tq, D) view with unit inner
    stride); returns lse (B, H, Tq)."""
    B, H, Tq, D = q.shape
    lse = np.empty((B, H, Tq), dtype=q.dtype)
    if out.size == 0:
        lse[...] = -np.inf
        return lse
    bq, bk = block_sizes(D)
    mask = _NO_MASK if key_mask is None else np.ascontiguousarray(key_mask)
    W = workers(B * H * Tq * k.shape[2] * D)
    run_strided(_attention_fwd, q, k, v, mask, key_mask is not None, bool(causal), scale, out,
                lse, bq, bk, W, serial=W == 1)
    return lse


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None):
    """``out = softmax(q @ k^T * scale + mask) @ v``, scale = 1/sqrt(D) by default.

    Returns out (B, H, Tq, D) and ``cache = (q, k, v, out, lse, key_mask,
    causal, scale)`` with lse the per-query log-sum-exp of the scores (B, H, Tq)
    (-inf for a query that sees no key). Unlike the reference, no (B, H, Tq, Tk)
    probabilities are kept: the backward recomputes them block by block.
    """
    B, H, Tq, Tk, D = check_qkv(q, k, v, key_mask)
    dt = q.dtype.type
    scale = dt(1.0 / np.sqrt(D) if scale is None else scale)
    q, k, v = _unit_inner(q), _unit_inner(k), _unit_inner(v)
    out = np.empty((B, H, Tq, D), dtype=q.dtype)  # (B, H, Tq, D)
    lse = _forward_into(q, k, v, key_mask, causal, scale, out)  # (B, H, Tq)
    return out, (q, k, v, out, lse, key_mask, bool(causal), scale)


def _backward_into(dout, cache, dq, dk, dv):
    """Fused backward into given (B, H, T, D) views (unit inner stride)."""
    q, k, v, out, lse, key_mask, causal, scale = cache
    if dq.size == 0 and dk.size == 0:
        return
    if dq.size == 0 or dk.size == 0 or q.shape[3] == 0:
        dq[...] = 0.0
        dk[...] = 0.0
        dv[...] = 0.0
        return
    bq, bk = block_sizes(q.shape[3])
    mask = _NO_MASK if key_mask is None else np.ascontiguousarray(key_mask)
    W = workers(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3])
    run_strided(_attention_bwd, q, k, v, out, _unit_inner(dout), lse, mask, key_mask is not None,
                causal, scale, dq, dk, dv, bq, bk, W, serial=W == 1)


def attention_backward(dout, cache):
    """(dq, dk, dv)."""
    q, k, v, out, lse, key_mask, causal, scale = cache
    if dout.shape != out.shape or dout.dtype != out.dtype:
        raise ValueError(f"dout: expected shape {tuple(out.shape)} and dtype {out.dtype} "
                         f"(the forward's output), got {tuple(dout.shape)} {dout.dtype}")
    dq = np.empty(q.shape, dtype=q.dtype)  # (B, H, Tq, D)
    dk = np.empty(k.shape, dtype=q.dtype)  # (B, H, Tk, D)
    dv = np.empty(v.shape, dtype=q.dtype)  # (B, H, Tk, D)
    _backward_into(dout, cache, dq, dk, dv)
    return dq, dk, dv


# -- multi-head self-attention with the head split fused away ----------------------

def mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads: int, key_mask=None, causal=False, attention=None):
    """Multi-head self-attention, as ``numformer.ops.attention.mha_forward``.

    The heads are never copied: q, k, v are strided (B, H, T, D) views of
    the (B, T, 3C) projection, and the attention writes its output through a
    (B, H, T, D) view of a (B, T, C) buffer, so the head merge is a reshape.
    ``attention`` other than this module uses the reference composition.
    ``cache = (attention, qkv_cache, attn_cache, out_cache, n_heads)``.
    """
    if attention is not None and attention is not _this_module():
        return _ref.mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads, key_mask, causal,
                                attention=attention)
    from numformer.ops import _checks as chk
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    B, T, C = x.shape
    if n_heads < 1 or C % n_heads:
        raise ValueError(f"n_heads: expected a divisor of C={C}, got {n_heads}")
    qkv, qkv_cache = _linear.linear_forward(x, Wqkv, bqkv)  # (B, T, 3C)
    q, k, v = (split_heads(t, n_heads) for t in np.split(qkv, 3, axis=-1))  # 3 x (B, H, T, D)
    check_qkv(q, k, v, key_mask)
    D = C // n_heads
    scale = x.dtype.type(1.0 / np.sqrt(D))
    merged = np.empty((B, T, C), dtype=x.dtype)  # (B, T, C)
    a = split_heads(merged, n_heads)  # (B, H, T, D) view
    lse = _forward_into(q, k, v, key_mask, causal, scale, a)  # (B, H, T)
    attn_cache = (q, k, v, a, lse, key_mask, bool(causal), scale)
    out, out_cache = _linear.linear_forward(merged, Wo, bo)  # (B, T, C)
    return out, (_this_module(), qkv_cache, attn_cache, out_cache, n_heads)


def mha_backward(dout, cache):
    """(dx, dWqkv, dbqkv, dWo, dbo). The three head gradients are written
    straight into one (B, T, 3C) buffer (no merge, no concatenate)."""
    attention, qkv_cache, attn_cache, out_cache, n_heads = cache
    if attention is not _this_module():
        return _ref.mha_backward(dout, cache)
    # out = merge(a) @ Wo + bo
    dm, dWo, dbo = _linear.linear_backward(dout, out_cache)  # (B, T, C)
    da = split_heads(dm, n_heads)  # (B, H, T, D) view
    B, T, C = dm.shape
    dqkv = np.empty((B, T, 3 * C), dtype=dm.dtype)  # (B, T, 3C)
    dq, dk, dv = (split_heads(t, n_heads) for t in np.split(dqkv, 3, axis=-1))  # views
    # a = attention(q, k, v)
    _backward_into(da, attn_cache, dq, dk, dv)
    # qkv = x @ Wqkv + bqkv
    dx, dWqkv, dbqkv = _linear.linear_backward(dqkv, qkv_cache)
    return dx, dWqkv, dbqkv, dWo, dbo


def _this_module():
    import sys
    return sys.modules[__name__]
