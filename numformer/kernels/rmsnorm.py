"""Numba twin of ``numformer.ops.rmsnorm``: RMS normalisation over the last axis.

Shapes: x (..., C) (usually (B, T, C)), seen as R = prod(...) rows of C;
weight (C,). The cache is the reference's, ``(xhat, weight, rstd)`` with
xhat (..., C) and rstd (..., 1), so either backward accepts either
forward's cache.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (FAST_OPTS, PARALLEL_OPTS, chunk_bounds, like,
                                      parallel_chunks, run_rows)
from numformer.ops import _checks as chk
from numformer.ops import rmsnorm as _ref

# Chunks of rows in the backward, each with its own partial dweight (summed
# at the end). The chunking depends on R only, so the order of those sums
# does not depend on the thread count or on the serial/parallel path.
_MAX_CHUNKS = 64
_MIN_ROWS_PER_CHUNK = 16


def _rmsnorm_rows_py(x, weight, eps, out, xhat, rstd, lo, hi):
    """Rows lo..hi-1: the sum of squares in one pass over the row (in cache,
    spread over vector lanes, in the input's dtype), then xhat and out
    written in a second."""
    C = x.shape[1]
    for i in range(lo, hi):
        xi = x[i]  # (C,)
        ss = like(0.0, xi[0])
        for j in range(C):
            ss += xi[j] * xi[j]
        r = like(1.0 / math.sqrt(like(ss / C, xi[0]) + eps), xi[0])  # eps has x's dtype
        rstd[i] = r
        hrow = xhat[i]  # (C,)
        oi = out[i]  # (C,)
        for j in range(C):
            h = xi[j] * r
            hrow[j] = h
            oi[j] = h * weight[j]


_rmsnorm_rows = jit(_rmsnorm_rows_py, **FAST_OPTS)


def _rmsnorm_rows_par_py(x, weight, eps, out, xhat, rstd, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _rmsnorm_rows(x, weight, eps, out, xhat, rstd, lo, hi)


_rmsnorm_rows_par = jit(_rmsnorm_rows_par_py, **PARALLEL_OPTS)


def _rmsnorm_backward_chunks_py(dout, xhat, weight, rstd, dx, dweight_part, c0, c1):
    """Chunks c0..c1-1 of the rows. Per row: mean(dxhat * xhat) in one pass
    that also adds dout * xhat into the chunk's partial dweight, dx in a
    second pass."""
    R, C = xhat.shape
    nchunks = dweight_part.shape[0]
    for c in range(c0, c1):
        lo, hi = chunk_bounds(c, nchunks, R)
        pw = dweight_part[c]  # (C,)
        for i in range(lo, hi):
            di = dout[i]  # (C,)
            hrow = xhat[i]  # (C,)
            b = like(0.0, hrow[0])
            for j in range(C):
                p = di[j] * hrow[j]
                b += p * weight[j]  # dxhat * xhat
                pw[j] += p
            mb = like(b / C, hrow[0])
            r = rstd[i]
            oi = dx[i]  # (C,)
            for j in range(C):
                oi[j] = r * (di[j] * weight[j] - hrow[j] * mb)


_rmsnorm_backward_chunks = jit(_rmsnorm_backward_chunks_py, **FAST_OPTS)


def _rmsnorm_backward_chunks_par_py(dout, xhat, weight, rstd, dx, dweight_part):
    for c in prange(dweight_part.shape[0]):
        _rmsnorm_backward_chunks(dout, xhat, weight, rstd, dx, dweight_part, c, c + 1)


_rmsnorm_backward_chunks_par = jit(_rmsnorm_backward_chunks_par_py, **PARALLEL_OPTS)


def rmsnorm_forward(x: np.ndarray, weight: np.ndarray, eps: float = 1e-5):
    """``out = x * rstd * weight`` with the reference's cache ``(xhat, weight, rstd)``.

    Fast: rows in parallel (for large inputs); each row (C values, in L1) is
    read twice from cache and its out and xhat written once. NumPy makes
    about five full passes and three (..., C) temporaries.
    """
    _ref.check_rmsnorm(x, weight, eps)
    if x.size == 0:
        return _ref.rmsnorm_forward(x, weight, eps)
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])  # (R, C)
    R = x2.shape[0]
    out = np.empty_like(x2)  # (R, C)
    xhat = np.empty_like(x2)  # (R, C)
    rstd = np.empty(R, dtype=x.dtype)  # (R,)
    run_rows(_rmsnorm_rows, _rmsnorm_rows_par, R, x2.size, x2, np.ascontiguousarray(weight),
             x.dtype.type(eps), out, xhat, rstd)
    lead = x.shape[:-1]
    return (out.reshape(x.shape),
            (xhat.reshape(x.shape), weight, rstd.reshape(lead + (1,))))  # (..., C), (..., 1)


def rmsnorm_backward(dout: np.ndarray, cache):
    """(dx, dweight), dx = rstd * (dxhat - xhat * mean(dxhat * xhat)).

    Fast: chunks of rows in parallel (for large inputs), two passes per row in
    cache and no (..., C) temporaries; dweight is reduced in the first pass
    into per-chunk partials (summed in float64 at the end).
    """
    xhat, weight, rstd = cache
    chk.check_dout("rmsnorm_backward", dout, xhat.shape, xhat.dtype)
    if xhat.size == 0:
        return _ref.rmsnorm_backward(dout, cache)
    C = xhat.shape[-1]
    h2 = np.ascontiguousarray(xhat).reshape(-1, C)  # (R, C)
    R = h2.shape[0]
    nchunks = max(1, min(_MAX_CHUNKS, R // _MIN_ROWS_PER_CHUNK))
    dx = np.empty_like(h2)  # (R, C)
    dweight_part = np.zeros((nchunks, C), dtype=xhat.dtype)  # (chunks, C)
    args = (np.ascontiguousarray(dout).reshape(-1, C), h2, np.ascontiguousarray(weight),
            np.ascontiguousarray(rstd).reshape(-1), dx, dweight_part)
    if parallel_chunks(nchunks, h2.size) == 1:
        _rmsnorm_backward_chunks(*args, 0, nchunks)
    else:
        _rmsnorm_backward_chunks_par(*args)
    dweight = dweight_part.sum(axis=0, dtype=np.float64).astype(xhat.dtype)  # (C,)
    return dx.reshape(xhat.shape), dweight
