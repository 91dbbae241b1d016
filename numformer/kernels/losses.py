"""Numba twin of ``numformer.ops.losses``: softmax cross-entropy fused over the vocabulary.

Shapes: logits (..., V) seen as N rows of V; targets (...) integer class ids,
flattened to (N,); positions whose target equals ``ignore_index`` are not
counted. The cache is the reference's, ``(p, targets, counted, n, eps, shape)``,
so either backward accepts either forward's cache.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (FAST_OPTS, PARALLEL_OPTS, chunk_bounds, exp_shifted, like,
                                      row_max, row_sum, run_rows)
from numformer.ops import losses as _ref
from numformer.ops._checks import check_dloss
from numformer.ops.losses import (bce_logits_backward, bce_logits_forward,  # noqa: F401
                                   cosent_backward, cosent_forward,  # no kernel: a batch's B^2
                                   mse_backward, mse_forward)  # no kernel: elementwise, cheap

# A row is read in blocks of this many logits (8 KiB of float32, a quarter of
# L1): the block's max, exp and sums all run on data already in L1.
BLOCK = 2048


def _cross_entropy_rows_py(x, t, counted, eps, p, per, block_max, lo, hi):
    """Per row, one pass over the vocabulary in blocks (online softmax): the
    running max m and the running sum s of exp(x - m) (s rescaled by
    exp(m_old - m_new) when a block raises the max), with exp(x - m) written
    into p as it goes and the block's m kept; then p is scaled per block by
    exp(m_block - m) / s, and the row's loss is taken from m, log s, the
    target logit and (with label smoothing) the row sum of x. Rows lo..hi-1."""
    N, V = x.shape
    nb = block_max.shape[1]
    for i in range(lo, hi):
        xi = x[i]  # (V,)
        pi = p[i]  # (V,)
        m = -math.inf
        s = 0.0
        sx = 0.0
        for b in range(nb):
            j0 = b * BLOCK
            j1 = min(V, j0 + BLOCK)
            xb = xi[j0:j1]  # (block,)
            pb = pi[j0:j1]  # (block,)
            mb = row_max(xb)
            if mb > m:
                s *= math.exp(m - mb)
                m = mb
            exp_shifted(xb, like(m, xi[0]), pb)
            s += row_sum(pb)
            if eps > 0.0:
                sx += row_sum(xb)
            block_max[i, b] = m
        for b in range(nb):
            f = like(math.exp(block_max[i, b] - m) / s, xi[0])
            pb = pi[b * BLOCK:min(V, (b + 1) * BLOCK)]  # (block,)
            for j in range(pb.shape[0]):
                pb[j] *= f
        if counted[i]:
            lse = m + math.log(s)  # logsumexp of the row
            nll = lse - xi[t[i]]
            if eps > 0.0:
                per[i] = (1.0 - eps) * nll + eps * (lse - sx / V)
            else:
                per[i] = nll
        else:
            per[i] = 0.0


_cross_entropy_rows = jit(_cross_entropy_rows_py, **FAST_OPTS)


def _cross_entropy_rows_par_py(x, t, counted, eps, p, per, block_max, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _cross_entropy_rows(x, t, counted, eps, p, per, block_max, lo, hi)


_cross_entropy_rows_par = jit(_cross_entropy_rows_par_py, **PARALLEL_OPTS)


def _cross_entropy_backward_rows_py(p, t, counted, scale, smooth, hit, dx, lo, hi):
    """dx[i] = scale * (p[i] - smooth) with scale * hit more off the target,
    for counted rows; 0 for the others. One pass, no temporaries. Rows lo..hi-1."""
    N, V = p.shape
    for i in range(lo, hi):
        oi = dx[i]  # (V,)
        if counted[i]:
            pi = p[i]  # (V,)
            for j in range(V):
                oi[j] = (pi[j] - smooth) * scale
            oi[t[i]] -= hit * scale
        else:
            for j in range(V):
                oi[j] = 0.0


_cross_entropy_backward_rows = jit(_cross_entropy_backward_rows_py, **FAST_OPTS)


def _cross_entropy_backward_rows_par_py(p, t, counted, scale, smooth, hit, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, p.shape[0])
        _cross_entropy_backward_rows(p, t, counted, scale, smooth, hit, dx, lo, hi)


_cross_entropy_backward_rows_par = jit(_cross_entropy_backward_rows_par_py, **PARALLEL_OPTS)


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100,
                          label_smoothing: float = 0.0):
    """Mean over counted positions of ``-sum_c q_c log p_c`` (see the reference),
    returning the loss in the logits' dtype and the reference's cache.

    Fast: rows in parallel (for large inputs); each row is read from memory once (in
    L1-sized blocks: online max and sum of exp, vectorised ``fast_exp``), p
    is written once and scaled while in cache, and the loss comes from the
    row's logsumexp without forming log p. NumPy makes about eight passes
    over (N, V) and three (N, V) temporaries.
    """
    t, counted = _ref.check_cross_entropy(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    if logits.size == 0:
        return _ref.cross_entropy_forward(logits, targets, ignore_index, label_smoothing)
    x = np.ascontiguousarray(logits).reshape(-1, V)  # (N, V)
    N = x.shape[0]
    n = int(counted.sum())
    p = np.empty_like(x)  # (N, V)
    per = np.empty(N)  # (N,) float64
    block_max = np.empty((N, -(-V // BLOCK)))  # (N, blocks) float64
    run_rows(_cross_entropy_rows, _cross_entropy_rows_par, N, x.size, x, t.astype(np.int64),
             counted, float(label_smoothing), p, per, block_max)
    dt = logits.dtype.type
    loss = dt(per.sum() / n) if n else dt(0.0)
    return loss, (p, t, counted, n, label_smoothing, logits.shape)


def cross_entropy_backward(dloss, cache) -> np.ndarray:
    """dlogits = dloss * (p - q) / n on counted positions, 0 elsewhere (logits' shape).

    Fast: one pass (rows in parallel for large inputs) that reads p once and
    writes dlogits once.
    """
    p, t, counted, n, eps, shape = cache
    check_dloss("cross_entropy_backward", dloss, p.dtype)
    if n == 0 or p.size == 0:
        return _ref.cross_entropy_backward(dloss, cache)
    p2 = np.ascontiguousarray(p)  # (N, V)
    V = p2.shape[-1]
    dt = p2.dtype.type
    dx = np.empty_like(p2)  # (N, V)
    run_rows(_cross_entropy_backward_rows, _cross_entropy_backward_rows_par, p2.shape[0],
             p2.size, p2, np.asarray(t, dtype=np.int64), counted, dt(dt(dloss) / n),
             dt(eps / V), dt(1.0 - eps), dx)
    return dx.reshape(shape)  # (..., V)
