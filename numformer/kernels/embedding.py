"""Numba twin of ``numformer.ops.embedding``: the embedding gather and its scatter-add.

Shapes: B batch, T sequence, C channels (d_model), V vocabulary, N = the
number of ids (B * T). The cache is the reference's ``(ids, W.shape, W.dtype)``.
The positional ops (``sinusoidal_table``, ``position_forward``,
``position_backward``) are single NumPy broadcasts with nothing to fuse, so
this module re-exports the reference's.
"""

from __future__ import annotations

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (PARALLEL_OPTS, PLAIN_OPTS, chunk_bounds,
                                      parallel_chunks, run_rows)
from numformer.ops import _checks as chk
from numformer.ops import embedding as _ref
from numformer.ops.embedding import (position_backward, position_forward,  # noqa: F401
                                     sinusoidal_table)

# Columns per block of the scatter's parallel loop: a whole 64-byte cache line
# of float32, so two threads never write the same line.
COL_BLOCK = 16


def _gather_py(ids, W, out, lo, hi):
    """out[i] = W[ids[i]] for i in lo..hi-1."""
    C = W.shape[1]
    for i in range(lo, hi):
        r = ids[i]
        for j in range(C):
            out[i, j] = W[r, j]


_gather = jit(_gather_py, **PLAIN_OPTS)


def _gather_par_py(ids, W, out, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, ids.shape[0])
        _gather(ids, W, out, lo, hi)


_gather_par = jit(_gather_par_py, **PARALLEL_OPTS)


def _scatter_add_py(ids, dout, dW, c0, c1):
    """dW[ids[i], c0:c1] += dout[i, c0:c1] for every i in order, so repeated ids
    accumulate as they come (np.add.at's order). Each step is a contiguous,
    vectorised row slice; with c0:c1 the whole row (the serial path), one
    sweep over the ids does everything."""
    for i in range(ids.shape[0]):
        w = dW[ids[i], c0:c1]  # (c1 - c0,)
        d = dout[i, c0:c1]  # (c1 - c0,)
        for j in range(w.shape[0]):
            w[j] += d[j]


_scatter_add = jit(_scatter_add_py, **PLAIN_OPTS)


def _scatter_add_par_py(ids, dout, dW, nchunks):
    """Parallel over column ranges (whole 16-column blocks, one cache line of
    float32): each thread owns its columns of dW and walks all the ids, so no
    two threads ever add into the same element (no races, no atomics), and
    every element sums its ids in the same order whatever the thread count."""
    nblocks = (dout.shape[1] + COL_BLOCK - 1) // COL_BLOCK
    for c in prange(nchunks):
        b0, b1 = chunk_bounds(c, nchunks, nblocks)
        _scatter_add(ids, dout, dW, b0 * COL_BLOCK, min(dout.shape[1], b1 * COL_BLOCK))


_scatter_add_par = jit(_scatter_add_par_py, **PARALLEL_OPTS)


def embedding_forward(ids: np.ndarray, W: np.ndarray):
    """Gather rows of ``W`` (V, C) at integer ``ids`` (any shape, usually (B, T)).

    Returns ``out`` of shape ids.shape + (C,) and the reference's cache.
    Fast: a row copy, in parallel for large inputs (NumPy's fancy index is
    one thread).
    """
    chk.float_array("W", W)
    chk.ndim("W", W, 2, "(V, C)")
    chk.int_ids("ids", ids, W.shape[0])
    if ids.size == 0 or W.shape[1] == 0:
        return _ref.embedding_forward(ids, W)
    flat = np.ascontiguousarray(ids).reshape(-1)  # (N,)
    out = np.empty((flat.size, W.shape[1]), dtype=W.dtype)  # (N, C)
    run_rows(_gather, _gather_par, flat.size, out.size, flat.astype(np.int64, copy=False),
             np.ascontiguousarray(W), out)
    return out.reshape(ids.shape + (W.shape[1],)), (ids, W.shape, W.dtype)  # (B, T, C)


def embedding_backward(dout: np.ndarray, cache, out: np.ndarray | None = None) -> np.ndarray:
    """dW: scatter-add of ``dout`` rows into the rows named by ``ids``, repeated ids
    accumulating (as ``np.add.at``, which runs one element at a time); with
    ``out``, added into it (see the reference).

    Fast: column blocks in parallel (for large inputs), each a plain add
    loop over the ids; with ``out`` (the layer passes its Parameter's grad)
    nothing of shape (V, C) is allocated or swept.
    """
    ids, wshape, dtype = cache
    V, C = wshape
    chk.check_dout("embedding_backward", dout, ids.shape + (C,), dtype)
    if dout.size == 0:
        return _ref.embedding_backward(dout, cache, out)
    if out is not None:
        dW = _ref.check_out(out, wshape, dtype)
        if not dW.flags.c_contiguous:
            return _ref.embedding_backward(dout, cache, out)
    else:
        dW = np.zeros(wshape, dtype=dtype)  # (V, C)
    flat_ids = np.ascontiguousarray(ids).reshape(-1).astype(np.int64, copy=False)  # (N,)
    d2 = np.ascontiguousarray(dout).reshape(-1, C)  # (N, C)
    nchunks = parallel_chunks(-(-C // COL_BLOCK), dout.size)
    if nchunks == 1:
        _scatter_add(flat_ids, d2, dW, 0, C)
    else:
        _scatter_add_par(flat_ids, d2, dW, nchunks)
    return dW
