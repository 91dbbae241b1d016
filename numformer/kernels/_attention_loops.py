"""The loop bodies of the fused attention kernel (``kernels/attention.py``); their
element-wise pieces are in ``_attention_blocks.py``. Each is a plain Python
function ``_name_py`` bound to its jitted twin ``_name`` below it, so
``NUMBA_DISABLE_JIT=1`` runs the same code uncompiled.

Shapes: B batch, H query heads, Hkv key/value heads, G = H // Hkv query heads
per kv head (query head h reads kv head h // G), Tq queries, Tk keys, D head
width. q, out, dq (B, H, Tq, D); k, v, dk, dv (B, Hkv, Tk, D); lse (B, H, Tq).

A *group* is one (batch, kv head) pair: its G query heads are processed
together against each block of its keys, so K and V are read once per
group, not once per query head. A block's columns are (query head, query)
pairs: column ``g * m + c`` is query ``i0 + c`` of head ``hk * G + g``, for m
queries of each of the G heads (``nc = G * m`` columns in use, at most
``NC = G * QB``). Score blocks are keys x columns (``S^T = K Q^T``), so the
per-query max and sum are column reductions along contiguous rows; a forward
task with few columns (a decoding step) uses columns x keys instead.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._attention_blocks import (LANES, LN2, LOG2E, WINDOW, _FASTMATH, _NEG,
                                                 _block_has_key, _drop_block, _exp2_rows,
                                                 _exp2_sum_max, _mask_block, _mask_rows,
                                                 _probs_and_ds, _probs_and_ds_drop)
from numformer.kernels._jit import jit, prange
from numformer.kernels.matmul import gemm


# -- forward ------------------------------------------------------------------------------

def _attention_fwd_py(q, k, v, key_mask, has_mask, causal, scale, out, lse, QB, BK, W,
                      row_cols, drop, key, thresh, inv_keep, offset):
    """Flash forward into ``out`` (B, H, Tq, D) and ``lse`` (B, H, Tq).

    ``drop``: dropout on the probabilities, the mask of element (b, h, i, j)
    decided by ``_drop_block`` from (key, offset + its index) after a block's
    exponentials have entered the running sums (the softmax is normalised
    before the drop) and before ``O += P V_j``; lse is that of the undropped
    softmax. Tasks then keep the column orientation.

    Tasks are (batch, kv head, block of QB queries), dealt round-robin to W
    workers (the ``prange``), each with its scratch blocks allocated once. A
    task packs the QB queries of all G heads of its group into the columns
    of one block, so each key block costs one product ``S^T = K_j Q^T`` and
    one ``O += P V_j`` for the whole group (a decoding step, Tq = 1, is a
    (BK, D) x (D, G) product instead of G matrix-vector products), then walks
    the key blocks with an online softmax whose per-column offset moves only
    when the running max leaves the WINDOW around it, so a block usually
    costs one fused pass (max, exp2, sum) and no rescaling of the partial
    output. A task with fewer than ``row_cols`` columns (a decoding step:
    G heads x 1 query) turns its blocks around, columns x keys
    (``S = Q K_j^T``), so that its element-wise pass runs along the keys,
    vectorised, instead of along a handful of columns."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    NC = G * QB
    shift = Tk - Tq  # causal: query i sees keys j <= i + shift
    nqb = (Tq + QB - 1) // QB
    ntasks = B * Hkv * nqb
    alpha = scale * LOG2E  # scores in base 2
    for w in prange(W):
        qt = np.empty((D, NC), dtype=q.dtype)  # Q^T of the group's columns (D, NC)
        st = np.empty((BK, NC), dtype=q.dtype)  # S^T, then P^T (BK, NC)
        qp = np.empty((NC, D), dtype=q.dtype)  # Q of the columns, row orientation
        sr = np.empty((NC, BK), dtype=q.dtype)  # S, then P, row orientation
        lmax = np.empty(LANES, dtype=q.dtype)
        lsum = np.empty(LANES, dtype=q.dtype)
        acc = np.empty((NC, D), dtype=q.dtype)  # unnormalised output rows (NC, D)
        off = np.empty(NC, dtype=q.dtype)  # exponent offset per column
        run_max = np.empty(NC, dtype=q.dtype)
        run_sum = np.empty(NC, dtype=q.dtype)
        blk_max = np.empty(NC, dtype=q.dtype)
        saved = np.empty(NC, dtype=q.dtype)
        for task in range(w, ntasks, W):
            bg = task // nqb
            b = bg // Hkv
            hk = bg % Hkv
            i0 = (task % nqb) * QB
            m = min(QB, Tq - i0)
            nc = G * m
            rows = nc < row_cols and not drop
            for g in range(G):
                h = hk * G + g
                if rows:
                    for c in range(m):
                        for d in range(D):
                            qp[g * m + c, d] = q[b, h, i0 + c, d]
                else:
                    for d in range(D):
                        for c in range(m):
                            qt[d, g * m + c] = q[b, h, i0 + c, d]
            for c in range(nc):
                off[c] = 0.0
                run_max[c] = _NEG
                run_sum[c] = 0.0
            a = acc[:nc]  # (nc, D)
            a_beta = 0.0  # the first product overwrites acc: no zeroing pass
            kend = Tk if not causal else min(Tk, i0 + m + shift)  # later keys hidden from all
            for j0 in range(0, kend, BK):
                n = min(BK, kend - j0)
                if has_mask and not _block_has_key(key_mask, b, j0, n):
                    continue
                for c in range(nc):
                    saved[c] = run_sum[c]
                for attempt in range(2):
                    if rows:  # S2 = Q K_j^T * scale * log2(e)
                        gemm(qp[:nc], k[b, hk, j0:j0 + n], sr[:nc, :n], alpha, 0.0, False, True)
                        _mask_rows(sr, nc, n, m, key_mask, has_mask, causal, b, j0, i0, shift)
                        _exp2_rows(sr, nc, n, off, run_sum, blk_max, lmax, lsum)
                    else:  # S2^T = K_j Q^T * scale * log2(e)
                        gemm(k[b, hk, j0:j0 + n], qt[:, :nc], st[:n, :nc], alpha, 0.0, False,
                             False)
                        _mask_block(st, n, nc, m, key_mask, has_mask, causal, b, j0, i0, shift)
                        _exp2_sum_max(st, n, nc, off, run_sum, blk_max)
                    moved = False
                    for c in range(nc):
                        run_max[c] = max(run_max[c], blk_max[c])
                        if run_max[c] > _NEG * 0.5 and abs(run_max[c] - off[c]) > WINDOW:
                            moved = True
                    if not moved:
                        break
                    # rare: move the offsets, rescale what came before, redo the block
                    for c in range(nc):
                        run_sum[c] = saved[c]
                        if run_max[c] > _NEG * 0.5 and abs(run_max[c] - off[c]) > WINDOW:
                            f = 2.0 ** (off[c] - run_max[c])
                            run_sum[c] *= f
                            if a_beta != 0.0:
                                for d in range(D):
                                    a[c, d] *= f
                            off[c] = run_max[c]
                if drop:  # P_j * M_j, the kept exponentials scaled by 1/(1-p)
                    _drop_block(st, n, m, G, key, thresh, inv_keep,
                                offset + (b * H + hk * G) * Tq * Tk, Tq, Tk, i0, j0)
                # O += P_j V_j   (P_j = sr, or st^T)
                if rows:
                    gemm(sr[:nc, :n], v[b, hk, j0:j0 + n], a, 1.0, a_beta, False, False)  # (nc, D)
                else:
                    gemm(st[:n, :nc], v[b, hk, j0:j0 + n], a, 1.0, a_beta, True, False)  # (nc, D)
                a_beta = 1.0
            for g in range(G):
                h = hk * G + g
                for c in range(m):
                    col = g * m + c
                    if run_sum[col] == 0.0:  # no visible key: output 0, and lse = log(0)
                        for d in range(D):
                            out[b, h, i0 + c, d] = 0.0
                        lse[b, h, i0 + c] = -np.inf
                    else:  # (NaN scores give NaN here, as in the reference)
                        inv = 1.0 / run_sum[col]
                        for d in range(D):
                            out[b, h, i0 + c, d] = a[col, d] * inv
                        lse[b, h, i0 + c] = (off[col] + math.log2(run_sum[col])) * LN2


_attention_fwd = jit(_attention_fwd_py, parallel=True, fastmath=_FASTMATH)


# -- backward --------------------------------------------------------------------------------

def _attention_bwd_py(q, k, v, out, dout, lse, key_mask, has_mask, causal, scale,
                      dq, dk, dv, QB, BK, W, drop, key, thresh, inv_keep, offset):
    """Flash backward into dq (B, H, Tq, D), dk, dv (B, Hkv, Tk, D).

    The groups (batch, kv head) are dealt round-robin to W workers (the
    ``prange``): a worker owns dk, dv of its kv heads and dq of their G query
    heads, so no two threads write the same row, and the sum of dK and dV
    over a group's query heads happens inside the products (the G heads are
    columns of one block). The probabilities are recomputed block by block
    from lse, never stored; per block: two products (S and dP), one fused
    pass (P and dS), three products accumulating into dV, dK, dQ. With ``drop``
    the pass also recomputes the forward's dropout mask M of the block (the
    same hash) and dV takes P * M, dS = P * (dP * M - delta)."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    NC = G * QB
    shift = Tk - Tq
    alpha = scale * LOG2E
    for w in prange(W):
        qt = np.empty((D, NC), dtype=q.dtype)  # Q^T of the group's columns
        dot = np.empty((D, NC), dtype=q.dtype)  # dO^T
        pt = np.empty((BK, NC), dtype=q.dtype)  # S^T, then P^T block
        dpt = np.empty((BK, NC), dtype=q.dtype)  # dP^T, then dS^T block
        dqa = np.empty((NC, D), dtype=q.dtype)  # dQ rows of the columns
        off = np.empty(NC, dtype=q.dtype)  # lse in base 2
        delta = np.empty(NC, dtype=q.dtype)
        # kv_rows[jb]: rows of key block jb written so far. The first product
        # into a block of dk/dv overwrites it (beta = 0), so there is no
        # zeroing pass; causal blocks grow with the queries; rows never reached
        # are zeroed at the end.
        kv_rows = np.empty((Tk + BK - 1) // BK, dtype=np.int64)
        for bg in range(w, B * Hkv, W):
            b = bg // Hkv
            hk = bg % Hkv
            kv_rows[:] = 0
            for i0 in range(0, Tq, QB):
                m = min(QB, Tq - i0)
                nc = G * m
                for g in range(G):
                    h = hk * G + g
                    for c in range(m):
                        acc = 0.0
                        for d in range(D):
                            acc += dout[b, h, i0 + c, d] * out[b, h, i0 + c, d]
                        delta[g * m + c] = acc  # delta_i = rowsum(dO * out) = rowsum(dP * P)
                        x = lse[b, h, i0 + c]
                        off[g * m + c] = -_NEG if x < _NEG * 0.5 else x * LOG2E  # no key: P = 0
                    for d in range(D):
                        for c in range(m):
                            qt[d, g * m + c] = q[b, h, i0 + c, d]
                            dot[d, g * m + c] = dout[b, h, i0 + c, d]
                kend = Tk if not causal else min(Tk, i0 + m + shift)
                dq_i = dqa[:nc]
                dq_beta = 0.0
                for j0 in range(0, kend, BK):
                    n = min(BK, kend - j0)
                    if has_mask and not _block_has_key(key_mask, b, j0, n):
                        continue
                    k_j = k[b, hk, j0:j0 + n]
                    done = kv_rows[j0 // BK]
                    kv_beta = 1.0 if done > 0 else 0.0
                    if 0 < done < n:
                        dk[b, hk, j0 + done:j0 + n, :] = 0.0
                        dv[b, hk, j0 + done:j0 + n, :] = 0.0
                    kv_rows[j0 // BK] = max(done, n)
                    # S2^T = K_j Q^T * scale * log2(e);  dP^T = V_j dO^T
                    gemm(k_j, qt[:, :nc], pt[:n, :nc], alpha, 0.0, False, False)  # (n, nc)
                    gemm(v[b, hk, j0:j0 + n], dot[:, :nc], dpt[:n, :nc], 1.0, 0.0, False, False)
                    _mask_block(pt, n, nc, m, key_mask, has_mask, causal, b, j0, i0, shift)
                    # P = softmax(S) = 2**(S2 - lse2)  ->  dS = P * (dP - delta), times scale
                    if drop:  # out = (P * M) V: pt = P * M, dS = P * (dP * M - delta) * scale
                        _probs_and_ds_drop(pt, dpt, n, m, G, off, delta, scale, key, thresh,
                                           inv_keep, offset + (b * H + hk * G) * Tq * Tk, Tq,
                                           Tk, i0, j0)
                    else:
                        _probs_and_ds(pt, dpt, n, nc, off, delta, scale)
                    # out[h] = P[h] V  ->  dV_j += sum over the group's heads P[h]^T dO[h]
                    gemm(pt[:n, :nc], dot[:, :nc], dv[b, hk, j0:j0 + n], 1.0, kv_beta, False, True)
                    # S[h] = Q[h] K^T * scale  ->  dK_j += sum_h dS[h]^T Q[h],  dQ += dS K_j
                    gemm(dpt[:n, :nc], qt[:, :nc], dk[b, hk, j0:j0 + n], 1.0, kv_beta, False, True)
                    gemm(dpt[:n, :nc], k_j, dq_i, 1.0, dq_beta, True, False)  # (nc, D)
                    dq_beta = 1.0
                for g in range(G):
                    h = hk * G + g
                    for c in range(m):
                        for d in range(D):  # no visible key for any of them: dq = 0
                            dq[b, h, i0 + c, d] = dq_i[g * m + c, d] if dq_beta != 0.0 else 0.0
            for jb in range(kv_rows.size):  # keys no query sees
                dk[b, hk, jb * BK + kv_rows[jb]:min(Tk, jb * BK + BK), :] = 0.0
                dv[b, hk, jb * BK + kv_rows[jb]:min(Tk, jb * BK + BK), :] = 0.0


_attention_bwd = jit(_attention_bwd_py, parallel=True, fastmath=_FASTMATH)
