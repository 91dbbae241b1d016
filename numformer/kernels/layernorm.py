"""Numba twin of ``numformer.ops.layernorm``: layer normalisation over the last axis.

Shapes: x (..., C) (usually (B, T, C)), seen as R = prod(...) rows of C;
gamma and beta (C,). The cache is the reference's, ``(xhat, gamma, rstd)``
with xhat (..., C) and rstd (..., 1), so either backward accepts either
forward's cache.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (FAST_OPTS, PARALLEL_OPTS, chunk_bounds, like,
                                      parallel_chunks, run_rows)
from numformer.ops import layernorm as _ref
from numformer.ops._checks import check_dout

# Chunks of rows in the backward: each keeps its own partial dgamma/dbeta,
# summed at the end. The chunking depends on R only (not on the thread count
# or on running serially), so neither does the order of those sums.
_MAX_CHUNKS = 64
_MIN_ROWS_PER_CHUNK = 16


def _layernorm_rows_py(x, gamma, beta, eps, out, xhat, rstd, lo, hi):
    """Rows lo..hi-1, one at a time: mean, variance (two passes over the row,
    in cache, sums in the input's dtype spread over vector lanes), then xhat
    and out written in one pass."""
    C = x.shape[1]
    for i in range(lo, hi):
        xi = x[i]  # (C,)
        s = like(0.0, xi[0])
        for j in range(C):
            s += xi[j]
        mu = like(s / C, xi[0])  # (a Python int divisor would make it float64)
        ss = like(0.0, xi[0])
        for j in range(C):
            d = xi[j] - mu
            ss += d * d
        rstd[i] = 1.0 / math.sqrt(ss / C + eps)
        r = rstd[i]
        hrow = xhat[i]  # (C,)
        oi = out[i]  # (C,)
        for j in range(C):
            h = (xi[j] - mu) * r
            hrow[j] = h
            oi[j] = h * gamma[j] + beta[j]


_layernorm_rows = jit(_layernorm_rows_py, **FAST_OPTS)


def _layernorm_rows_par_py(x, gamma, beta, eps, out, xhat, rstd, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _layernorm_rows(x, gamma, beta, eps, out, xhat, rstd, lo, hi)


_layernorm_rows_par = jit(_layernorm_rows_par_py, **PARALLEL_OPTS)


def _layernorm_backward_chunks_py(dout, xhat, gamma, rstd, dx, dgamma_part, dbeta_part, c0, c1):
    """Chunks c0..c1-1 of the rows. Per row: the two row means (of dxhat and
    dxhat * xhat) in one pass, dx in a second; the first pass also adds the
    row into its chunk's partial dgamma and dbeta (a chunk sums at most
    R / 64 rows, so those partials stay accurate in float32)."""
    R, C = xhat.shape
    nchunks = dgamma_part.shape[0]
    for c in range(c0, c1):
        lo, hi = chunk_bounds(c, nchunks, R)
        pg = dgamma_part[c]  # (C,)
        pb = dbeta_part[c]  # (C,)
        for i in range(lo, hi):
            di = dout[i]  # (C,)
            hrow = xhat[i]  # (C,)
            a = like(0.0, hrow[0])
            b = like(0.0, hrow[0])
            for j in range(C):
                g = di[j] * gamma[j]  # dxhat
                a += g
                b += g * hrow[j]
                pg[j] += di[j] * hrow[j]
                pb[j] += di[j]
            ma = like(a / C, hrow[0])
            mb = like(b / C, hrow[0])
            r = rstd[i]
            oi = dx[i]  # (C,)
            for j in range(C):
                oi[j] = r * (di[j] * gamma[j] - ma - hrow[j] * mb)


_layernorm_backward_chunks = jit(_layernorm_backward_chunks_py, **FAST_OPTS)


def _layernorm_backward_chunks_par_py(dout, xhat, gamma, rstd, dx, dgamma_part, dbeta_part):
    for c in prange(dgamma_part.shape[0]):
        _layernorm_backward_chunks(dout, xhat, gamma, rstd, dx, dgamma_part, dbeta_part,
                                   c, c + 1)


_layernorm_backward_chunks_par = jit(_layernorm_backward_chunks_par_py, **PARALLEL_OPTS)


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
    """``out = (x - mean) * rstd * gamma + beta`` with the reference's cache
    ``(xhat, gamma, rstd)``.

    Fast: rows in parallel (for large inputs); each row (C values, in L1)
    is read three times from cache and its out and xhat written once, with
    the sums spread over vector lanes. NumPy makes about eight full passes and four
    temporaries of the whole (..., C) array.
    """
    _ref.check_layernorm(x, gamma, beta, eps)
    if x.size == 0:
        return _ref.layernorm_forward(x, gamma, beta, eps)
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])  # (R, C)
    R = x2.shape[0]
    out = np.empty_like(x2)  # (R, C)
    xhat = np.empty_like(x2)  # (R, C)
    rstd = np.empty(R, dtype=x.dtype)  # (R,)
    run_rows(_layernorm_rows, _layernorm_rows_par, R, x2.size, x2, np.ascontiguousarray(gamma),
             np.ascontiguousarray(beta), float(eps), out, xhat, rstd)
    lead = x.shape[:-1]
    return (out.reshape(x.shape),
            (xhat.reshape(x.shape), gamma, rstd.reshape(lead + (1,))))  # (..., C), (..., 1)


def layernorm_backward(dout: np.ndarray, cache):
    """(dx, dgamma, dbeta), dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).

    Fast: chunks of rows in parallel (for large inputs), two passes per row in cache
    (no (..., C) temporaries); dgamma and dbeta are reduced in the same
    passes into per-chunk partials (summed in float64 at the end).
    """
    xhat, gamma, rstd = cache
    check_dout("layernorm_backward", dout, xhat.shape, xhat.dtype)
    if xhat.size == 0:
        return _ref.layernorm_backward(dout, cache)
    C = xhat.shape[-1]
    h2 = np.ascontiguousarray(xhat).reshape(-1, C)  # (R, C)
    R = h2.shape[0]
    nchunks = max(1, min(_MAX_CHUNKS, R // _MIN_ROWS_PER_CHUNK))
    dx = np.empty_like(h2)  # (R, C)
    dt = xhat.dtype
    dgamma_part = np.zeros((nchunks, C), dtype=dt)  # (chunks, C)
    dbeta_part = np.zeros((nchunks, C), dtype=dt)  # (chunks, C)
    args = (np.ascontiguousarray(dout).reshape(-1, C), h2, np.ascontiguousarray(gamma),
            np.ascontiguousarray(rstd).reshape(-1), dx, dgamma_part, dbeta_part)
    if parallel_chunks(nchunks, h2.size) == 1:
        _layernorm_backward_chunks(*args, 0, nchunks)
    else:
        _layernorm_backward_chunks_par(*args)
    return (dx.reshape(xhat.shape), dgamma_part.sum(axis=0, dtype=np.float64).astype(dt),
            dbeta_part.sum(axis=0, dtype=np.float64).astype(dt))  # (..., C), (C,), (C,)
