"""Numba twins of ``numformer.ops.softmax``: softmax and log-softmax over the last axis.

Shapes: x (..., N), any leading axes; the kernels see it as R = prod(...) rows
of N (a C-contiguous (R, N) view, copied only if x is not contiguous).

The scalar helpers and the thread policy it uses live in ``_loops``.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (EXACT_OPTS, FAST_OPTS, PARALLEL_OPTS, chunk_bounds,
                                      exp_shifted, like, row_max, row_sum, run_rows)
from numformer.ops import _checks as chk
from numformer.ops import softmax as _ref


def _sub2_py(src, a, b, dst):
    """dst[j] = (src[j] - a) - b, in that order (log-softmax keeps x - max exact
    before subtracting log sum, which reassociation would undo)."""
    for j in range(src.shape[0]):
        dst[j] = (src[j] - a) - b


_sub2 = jit(_sub2_py, **EXACT_OPTS)


# --- softmax -----------------------------------------------------------------
# Every kernel below is a serial function over rows [lo, hi) plus a parallel
# driver that splits the rows into chunks (``prange``) and calls it per chunk.

def _softmax_rows_py(x, p, lo, hi):
    """p[i] = softmax(x[i]) for rows lo..hi-1 of x (R, N)."""
    for i in range(lo, hi):
        xi = x[i]  # (N,)
        pi = p[i]  # (N,)
        exp_shifted(xi, row_max(xi), pi)
        inv = like(1.0 / row_sum(pi), xi[0])
        for j in range(pi.shape[0]):
            pi[j] *= inv


_softmax_rows = jit(_softmax_rows_py, **FAST_OPTS)


def _softmax_rows_par_py(x, p, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _softmax_rows(x, p, lo, hi)


_softmax_rows_par = jit(_softmax_rows_par_py, **PARALLEL_OPTS)


def _log_softmax_rows_py(x, logp, p, lo, hi):
    """logp[i] = x[i] - logsumexp(x[i]), p[i] = softmax(x[i]) for rows lo..hi-1."""
    for i in range(lo, hi):
        xi = x[i]  # (N,)
        pi = p[i]  # (N,)
        m = row_max(xi)
        exp_shifted(xi, m, pi)
        s = row_sum(pi)
        inv = like(1.0 / s, xi[0])
        for j in range(pi.shape[0]):
            pi[j] *= inv
        _sub2(xi, m, like(math.log(s), xi[0]), logp[i])


_log_softmax_rows = jit(_log_softmax_rows_py, **FAST_OPTS)


def _log_softmax_rows_par_py(x, logp, p, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _log_softmax_rows(x, logp, p, lo, hi)


_log_softmax_rows_par = jit(_log_softmax_rows_par_py, **PARALLEL_OPTS)


def _softmax_backward_rows_py(dp, p, dx, lo, hi):
    """dx[i] = p[i] * (dp[i] - sum(dp[i] * p[i])) for rows lo..hi-1."""
    for i in range(lo, hi):
        pi = p[i]  # (N,)
        di = dp[i]  # (N,)
        s = 0.0
        for j in range(pi.shape[0]):
            s += di[j] * pi[j]
        c = like(s, pi[0])
        oi = dx[i]  # (N,)
        for j in range(pi.shape[0]):
            oi[j] = pi[j] * (di[j] - c)


_softmax_backward_rows = jit(_softmax_backward_rows_py, **FAST_OPTS)


def _softmax_backward_rows_par_py(dp, p, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, p.shape[0])
        _softmax_backward_rows(dp, p, dx, lo, hi)


_softmax_backward_rows_par = jit(_softmax_backward_rows_par_py, **PARALLEL_OPTS)


def _log_softmax_backward_rows_py(dlogp, p, dx, lo, hi):
    """dx[i] = dlogp[i] - p[i] * sum(dlogp[i]) for rows lo..hi-1."""
    for i in range(lo, hi):
        pi = p[i]  # (N,)
        di = dlogp[i]  # (N,)
        c = like(row_sum(di), pi[0])
        oi = dx[i]  # (N,)
        for j in range(pi.shape[0]):
            oi[j] = di[j] - pi[j] * c


_log_softmax_backward_rows = jit(_log_softmax_backward_rows_py, **FAST_OPTS)


def _log_softmax_backward_rows_par_py(dlogp, p, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, p.shape[0])
        _log_softmax_backward_rows(dlogp, p, dx, lo, hi)


_log_softmax_backward_rows_par = jit(_log_softmax_backward_rows_par_py, **PARALLEL_OPTS)


def _rows(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])  # (R, N)


def softmax_forward(x: np.ndarray):
    """``p = softmax(x)`` over the last axis; ``cache = p`` (as the reference).

    Fast: rows in parallel (for large inputs); per row a vectorised max
    pass, one vectorised exp pass that writes e into p (``fast_exp``), a sum
    over p while it is still in cache and one scaling pass by 1/sum. No
    temporaries beyond p.
    """
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., N)")
    if x.size == 0:
        return _ref.softmax_forward(x)
    x2 = _rows(x)  # (R, N)
    p = np.empty_like(x2)  # (R, N)
    run_rows(_softmax_rows, _softmax_rows_par, x2.shape[0], x2.size, x2, p)
    p = p.reshape(x.shape)  # (..., N)
    return p, p


def softmax_backward(dp: np.ndarray, cache) -> np.ndarray:
    """dx = p * (dp - sum(dp * p)): rows in parallel, two passes per row in cache."""
    p = cache
    chk.check_dout("softmax_backward", dp, p.shape, p.dtype, arg="dp")
    if p.size == 0:
        return _ref.softmax_backward(dp, cache)
    p2 = _rows(p)  # (R, N)
    dx = np.empty_like(p2)  # (R, N)
    run_rows(_softmax_backward_rows, _softmax_backward_rows_par, p2.shape[0], p2.size,
             _rows(dp), p2, dx)
    return dx.reshape(p.shape)  # (..., N)


def log_softmax_forward(x: np.ndarray):
    """``x - logsumexp(x)`` over the last axis; ``cache = p`` (as the reference).

    Fast: as ``softmax_forward``, the final passes writing both p and log p.
    """
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., N)")
    if x.size == 0:
        return _ref.log_softmax_forward(x)
    x2 = _rows(x)  # (R, N)
    p = np.empty_like(x2)  # (R, N)
    logp = np.empty_like(x2)  # (R, N)
    run_rows(_log_softmax_rows, _log_softmax_rows_par, x2.shape[0], x2.size, x2, logp, p)
    return logp.reshape(x.shape), p.reshape(x.shape)


def log_softmax_backward(dlogp: np.ndarray, cache) -> np.ndarray:
    """dx = dlogp - p * sum(dlogp): rows in parallel, two passes per row in cache."""
    p = cache
    chk.check_dout("log_softmax_backward", dlogp, p.shape, p.dtype, arg="dlogp")
    if p.size == 0:
        return _ref.log_softmax_backward(dlogp, cache)
    p2 = _rows(p)  # (R, N)
    dx = np.empty_like(p2)  # (R, N)
    run_rows(_log_softmax_backward_rows, _log_softmax_backward_rows_par, p2.shape[0], p2.size,
             _rows(dlogp), p2, dx)
    return dx.reshape(p.shape)  # (..., N)
