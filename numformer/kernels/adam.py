"""Numba twin of ``numformer.ops.adam``: one Adam / AdamW step of one parameter array, in place.

Shapes: p, g, m, v all the parameter's shape (any), seen as flat arrays of n
elements. Arrays the kernel cannot take as they are (different shapes or
dtypes, not C-contiguous, read-only, not float32/float64) go to the
reference, which is what NumPy's broadcasting and casting then make of them.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import PARALLEL_OPTS, PLAIN_OPTS, chunk_bounds, run_flat
from numformer.ops import adam as _ref
from numformer.ops._checks import FLOAT_DTYPES

def _adam_py(p, g, m, v, use_l2, l2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2,
             step_size, bc2, eps):
    """The whole update in one pass: each element of p, g, m, v is read once
    and p, m, v written once, vectorised. ``use_l2``/``l2`` add wd * p to the
    gradient (Adam with weight decay), ``decay`` is 1 - lr * wd for AdamW and
    1 otherwise, so one loop serves both (the compiler hoists the test on
    ``use_l2`` out of the loop). The operations are the reference's, in its
    order (no fast-math, no fused multiply-add), so the result equals
    NumPy's to the last bit."""
    for i in range(p.shape[0]):
        pi = p[i]
        gi = g[i] + l2 * pi if use_l2 else g[i]
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = pi * decay - (step_size * mi) / (math.sqrt(vi / bc2) + eps)


_adam = jit(_adam_py, **PLAIN_OPTS)


def _adam_par_py(p, g, m, v, use_l2, l2, decay, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, step_size, bc2, eps, nchunks):
    """Chunks (slices) of the flat arrays in parallel."""
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, p.shape[0])
        _adam(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], use_l2, l2, decay, beta1,
              one_minus_beta1, beta2, one_minus_beta2, step_size, bc2, eps)


_adam_par = jit(_adam_par_py, **PARALLEL_OPTS)


def _kernel_ok(p, g, m, v) -> bool:
    arrays = (p, g, m, v)
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return False
    if p.dtype not in FLOAT_DTYPES or p.size == 0:
        return False
    return all(a.shape == p.shape and a.dtype == p.dtype and a.flags.c_contiguous
               for a in arrays) and all(a.flags.writeable for a in (p, m, v))


def adam_step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: float,
              beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
              decoupled: bool) -> None:
    """One Adam step at ``step`` (1-based), updating p, m, v in place (see the reference).

    Fast: memory-bound by design. NumPy's version makes nine passes over the
    arrays and three temporaries; this kernel makes one pass, reading each of
    p, g, m, v once and writing p, m, v once, in parallel over chunks for
    large arrays.
    """
    if not _kernel_ok(p, g, m, v):
        _ref.adam_step(p, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                       weight_decay=weight_decay, step=step, decoupled=decoupled)
        return
    dt = p.dtype.type
    use_l2 = bool(weight_decay) and not decoupled
    l2 = weight_decay if use_l2 else 0.0
    decay = 1.0 - lr * weight_decay if (weight_decay and decoupled) else 1.0
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    run_flat(_adam, _adam_par, p.size, p.reshape(-1), g.reshape(-1),
             m.reshape(-1), v.reshape(-1), use_l2, dt(l2), dt(decay), dt(beta1),
             dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(lr / bc1), dt(bc2), dt(eps))
