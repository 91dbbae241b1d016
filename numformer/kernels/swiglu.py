"""Numba twin of ``numformer.ops.swiglu``: the SwiGLU feed-forward.

Shapes: x (..., C), W_gate and W_up (C, F), W_down (F, C); g, u, h (..., F),
seen by the kernels as flat C-contiguous arrays. The caches are the
reference's (``silu_mul``: ``(g, u)``; ``swiglu``: the four sub-caches).

What makes it fast: the three dense products are BLAS GEMMs (as in the
reference); the elementwise middle ``h = silu(g) * u`` is one pass over g
and u writing h, and its backward one pass reading dh, g and u and writing
dg and du, sigmoid(g) recomputed on the fly with the vectorised
``fast_exp`` (NumPy makes about six passes forward and ten backward, with
their temporaries).
"""

from __future__ import annotations

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import EXACT_OPTS, PARALLEL_OPTS, chunk_bounds, fast_exp, run_flat
from numformer.ops import _checks as chk
from numformer.ops import swiglu as _ref


def _silu_mul_py(g, u, one, h):
    """h = g * sigmoid(g) * u, sigmoid from exp(-|g|) (no overflow)."""
    for i in range(g.shape[0]):
        gi = g[i]
        e = fast_exp(-abs(gi))
        r = one / (one + e)
        sg = r if gi >= 0 else e * r
        h[i] = gi * sg * u[i]


_silu_mul = jit(_silu_mul_py, **EXACT_OPTS)  # calls fast_exp: no reassociation


def _silu_mul_par_py(g, u, one, h, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, g.shape[0])
        _silu_mul(g[lo:hi], u[lo:hi], one, h[lo:hi])


_silu_mul_par = jit(_silu_mul_par_py, **PARALLEL_OPTS)


def _silu_mul_backward_py(dh, g, u, one, dg, du):
    """du = dh * g * sig, dg = dh * u * sig * (1 + g (1 - sig)), sig = sigmoid(g)."""
    for i in range(g.shape[0]):
        gi = g[i]
        e = fast_exp(-abs(gi))
        r = one / (one + e)
        sg = r if gi >= 0 else e * r
        d = dh[i]
        du[i] = d * gi * sg
        dg[i] = d * u[i] * (sg * (one + gi * (one - sg)))


_silu_mul_backward = jit(_silu_mul_backward_py, **EXACT_OPTS)


def _silu_mul_backward_par_py(dh, g, u, one, dg, du, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, g.shape[0])
        _silu_mul_backward(dh[lo:hi], g[lo:hi], u[lo:hi], one, dg[lo:hi], du[lo:hi])


_silu_mul_backward_par = jit(_silu_mul_backward_par_py, **PARALLEL_OPTS)


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1)  # (n,)


def silu_mul_forward(g: np.ndarray, u: np.ndarray):
    """``h = silu(g) * u`` in one pass, with the reference's cache ``(g, u)``."""
    _ref.check_silu_mul(g, u)
    if g.size == 0:
        return _ref.silu_mul_forward(g, u)
    h = np.empty(g.shape, dtype=g.dtype)  # (..., F)
    run_flat(_silu_mul, _silu_mul_par, g.size, _flat(g), _flat(u), g.dtype.type(1),
             h.reshape(-1))
    return h, (g, u)


def silu_mul_backward(dh: np.ndarray, cache):
    """(dg, du) in one pass over dh, g and u."""
    g, u = cache
    chk.check_dout("silu_mul_backward", dh, g.shape, g.dtype, arg="dh")
    if g.size == 0:
        return _ref.silu_mul_backward(dh, cache)
    dg = np.empty(g.shape, dtype=g.dtype)  # (..., F)
    du = np.empty(g.shape, dtype=g.dtype)  # (..., F)
    run_flat(_silu_mul_backward, _silu_mul_backward_par, g.size, _flat(dh), _flat(g), _flat(u),
             g.dtype.type(1), dg.reshape(-1), du.reshape(-1))
    return dg, du


def swiglu_forward(x: np.ndarray, W_gate: np.ndarray, W_up: np.ndarray, W_down: np.ndarray):
    """``(silu(x @ W_gate) * (x @ W_up)) @ W_down``: the reference's GEMMs around
    the fused middle; the reference's cache."""
    return _ref._forward_with(x, W_gate, W_up, W_down, silu_mul_forward)


def swiglu_backward(dout: np.ndarray, cache):
    """(dx, dW_gate, dW_up, dW_down): the reference's GEMMs, the fused middle."""
    return _ref._backward_with(dout, cache, silu_mul_backward)
