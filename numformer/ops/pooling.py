"""Pooling a sequence into one vector for classification.

Shapes: x (B, T, C), mask (B, T) bool (True for real tokens), out (B, C).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def mean_pool_forward(x: np.ndarray, mask: np.ndarray | None = None):
    """Mean of ``x`` over the real tokens of each sequence (all tokens when mask
    is None). A sequence with no real token pools to zeros.
    ``cache = w`` (B, T, 1), the weight of each position (mask / count)."""
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    B, T, _ = x.shape
    if mask is None:
        m = np.ones((B, T), dtype=x.dtype)  # (B, T)
    else:
        chk.bool_mask("mask", mask, (B, T), "(B, T)")
        m = mask.astype(x.dtype)
    count = m.sum(axis=1, keepdims=True)  # (B, 1)
    w = (m / np.maximum(count, 1))[:, :, None]  # (B, T, 1)
    out = (x * w).sum(axis=1)  # (B, C)
    return out, w


def mean_pool_backward(dout: np.ndarray, cache) -> np.ndarray:
    w = cache
    chk.check_dout("mean_pool_backward", dout, (w.shape[0], None), w.dtype)
    # out = sum_t w[t] * x[t]
    return dout[:, None, :] * w  # (B, T, C)


def cls_pool_forward(x: np.ndarray):
    """The first token's vector (the <cls> position). ``cache = x.shape``."""
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    return x[:, 0, :].copy(), (x.shape, x.dtype)  # (B, C)


def cls_pool_backward(dout: np.ndarray, cache) -> np.ndarray:
    xshape, dtype = cache
    chk.check_dout("cls_pool_backward", dout, (xshape[0], xshape[2]), dtype)
    # out = x[:, 0]
    dx = np.zeros(xshape, dtype=dtype)  # (B, T, C)
    dx[:, 0, :] = dout
    return dx
