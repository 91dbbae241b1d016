"""Numba twin of ``numformer.ops.dropout``: the same mask, bit for bit.

Shapes: any; the kernel sees the input as a flat C-contiguous array, and
the output and mask have the input's shape and dtype. The cache is the
reference's (the float mask, values 0 and 1/(1-p)).

What makes it fast: the reference draws one key from the generator and
hashes (key, element index) with splitmix64 (see ``numformer.ops.dropout``);
here that hash, the comparison, the mask and the product are one pass,
which the compiler vectorises (eight 64-bit lanes), in parallel chunks for
large inputs. NumPy's ``rng.random`` alone costs about 1.8 ns an element
(measured on (32, 128, 128) float32, 1 thread); the whole fused pass about
0.3 ns.
"""

from __future__ import annotations

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import PARALLEL_OPTS, PLAIN_OPTS, chunk_bounds, run_flat
from numformer.ops import dropout as _ref
from numformer.ops.dropout import BITS, GOLDEN, MIX1, MIX2, dropout_backward  # noqa: F401

_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_TOP = np.uint64(64 - BITS)


def _dropout_py(x, key, thresh, scale, start, out, mask):
    """Element i (global index start + i): kept when the top BITS bits of
    splitmix64(key + index * GOLDEN) are >= thresh; mask = scale or 0, out = x * mask."""
    zero = x.dtype.type(0.0)
    for i in range(x.shape[0]):
        z = key + np.uint64(start + i) * GOLDEN
        z = (z ^ (z >> _S30)) * MIX1
        z = (z ^ (z >> _S27)) * MIX2
        z = z ^ (z >> _S31)
        m = scale if (z >> _TOP) >= thresh else zero
        mask[i] = m
        out[i] = x[i] * m


_dropout = jit(_dropout_py, **PLAIN_OPTS)


def _dropout_par_py(x, key, thresh, scale, start, out, mask, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _dropout(x[lo:hi], key, thresh, scale, start + lo, out[lo:hi], mask[lo:hi])


_dropout_par = jit(_dropout_par_py, **PARALLEL_OPTS)


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator | None = None,
                    training: bool = True, offset: int = 0):
    """As the reference: ``out = x * mask``, ``cache = mask`` (None when not
    training or p == 0), the same mask for the same generator state and
    ``offset`` (the index of x's first element in the whole tensor)."""
    p = _ref.check_dropout(x, p, rng, training)
    offset = _ref.check_offset(offset)
    if p is None:  # the identity, as in the reference
        return x, None
    if x.size == 0:
        return _ref.dropout_forward(x, p, rng, training, offset)
    out = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=x.dtype)
    run_flat(_dropout, _dropout_par, x.size, np.ascontiguousarray(x).reshape(-1),
             _ref.draw_key(rng), _ref.threshold(p), x.dtype.type(1.0 / (1.0 - p)), offset,
             out.reshape(-1), mask.reshape(-1))
    return out, mask
