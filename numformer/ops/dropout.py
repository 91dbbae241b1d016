"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

Shapes: any. The RNG is explicit (a ``numpy.random.Generator``), so a seed
fixes the mask.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator | None = None,
                    training: bool = True):
    """``out = x * mask`` with ``mask`` in {0, 1/(1-p)}. ``cache = mask`` (None when
    not training or p == 0: the op is then the identity)."""
    chk.float_array("x", x)
    p = chk.probability("p", p)
    if not training or p == 0.0:
        return x, None
    if rng is None:
        raise ValueError("rng: expected a numpy.random.Generator when training with p > 0, got None")
    keep = rng.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))  # x.shape
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache) -> np.ndarray:
    mask = cache
    # out = x * mask
    return dout if mask is None else dout * mask
