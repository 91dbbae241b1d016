"""Numba twin of ``numformer.ops.rope``: rotary position embeddings.

Shapes: x (B, H, T, D), D2 = D // 2, seen as R = B * H * T rows of D; the
tables cos and sin (L, D2). The cache is the reference's, ``(c, s)``: the
(T, D2) rows of the tables in use, so either backward accepts either
forward's cache.

What makes it fast: one pass over x reading each pair (i, i + D2) once and
writing both outputs, rows in parallel for large inputs; no temporaries
(NumPy makes six products and two sums over (B, H, T, D2) halves). x may
be a strided view (heads split from a (B, T, 3C) projection): the kernel
reads it in place instead of copying it. The backward is the same loop
with sin negated (the inverse rotation).
"""

from __future__ import annotations

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import EXACT_OPTS, PARALLEL_OPTS, chunk_bounds, run_rows
from numformer.ops import _checks as chk
from numformer.ops import rope as _ref
from numformer.ops.rope import half_split_permutation, rope_tables  # noqa: F401 (shared)


def _rope_rows_py(x, c, s, sign, out, lo, hi):
    """Rows lo..hi-1 of the flattened (B, H, T) index: out = x rotated by the
    angle of its row t (``sign`` = -1 rotates backwards)."""
    H, T, D = x.shape[1], x.shape[2], x.shape[3]
    D2 = D // 2
    for r in range(lo, hi):
        t = r % T
        h = (r // T) % H
        b = r // (T * H)
        xr = x[b, h, t]  # (D,)
        orow = out[b, h, t]  # (D,)
        cr = c[t]  # (D2,)
        sr = s[t]  # (D2,)
        for i in range(D2):
            x1 = xr[i]
            x2 = xr[i + D2]
            ci = cr[i]
            si = sign * sr[i]
            orow[i] = x1 * ci - x2 * si
            orow[i + D2] = x2 * ci + x1 * si


_rope_rows = jit(_rope_rows_py, **EXACT_OPTS)


def _rope_rows_par_py(x, c, s, sign, out, nchunks):
    n = x.shape[0] * x.shape[1] * x.shape[2]
    for k in prange(nchunks):
        lo, hi = chunk_bounds(k, nchunks, n)
        _rope_rows(x, c, s, sign, out, lo, hi)


_rope_rows_par = jit(_rope_rows_par_py, **PARALLEL_OPTS)


def _rotate(x, c, s, sign):
    out = np.empty(x.shape, dtype=x.dtype)  # (B, H, T, D)
    R = x.shape[0] * x.shape[1] * x.shape[2]
    run_rows(_rope_rows, _rope_rows_par, R, x.size, x, np.ascontiguousarray(c),
             np.ascontiguousarray(s), x.dtype.type(sign), out)
    return out


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, offset: int = 0):
    """Rotate position t of x (B, H, T, D) by the angle of position offset + t,
    with the reference's cache ``(c, s)``. One fused pass (see the module
    docstring); x is read in place whatever its strides."""
    _ref.check_rope(x, cos, sin, offset)
    T = x.shape[2]
    c = cos[offset:offset + T]  # (T, D2)
    s = sin[offset:offset + T]  # (T, D2)
    if x.size == 0:
        return _ref.rope_forward(x, cos, sin, offset)
    return _rotate(x, c, s, 1), (c, s)


def rope_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dx, the rotation by -angle of dout; the forward's loop with sin negated."""
    c, s = cache
    T, D2 = c.shape
    chk.check_dout("rope_backward", dout, (None, None, T, 2 * D2), c.dtype)
    if dout.size == 0:
        return _ref.rope_backward(dout, cache)
    return _rotate(dout, c, s, -1)
