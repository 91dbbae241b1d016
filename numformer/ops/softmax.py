"""Softmax over the last axis, and log-softmax.

Shapes: x (..., N), any leading axes.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def softmax_forward(x: np.ndarray):
    """``p = exp(x - max) / sum(exp(x - max))`` over the last axis. ``cache = p``."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., N)")
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # (..., N)
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward(dp: np.ndarray, cache) -> np.ndarray:
    """dx = p * (dp - sum(dp * p)): the Jacobian-vector product, no Jacobian built."""
    p = cache
    chk.check_dout("softmax_backward", dp, p.shape, p.dtype, arg="dp")
    # p = softmax(x)
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def log_softmax_forward(x: np.ndarray):
    """``x - logsumexp(x)`` over the last axis. ``cache = p`` (the softmax)."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., N)")
    z = x - x.max(axis=-1, keepdims=True)  # (..., N)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)  # (..., 1)
    return z - np.log(s), e / s


def log_softmax_backward(dlogp: np.ndarray, cache) -> np.ndarray:
    """dx = dlogp - p * sum(dlogp)."""
    p = cache
    chk.check_dout("log_softmax_backward", dlogp, p.shape, p.dtype, arg="dlogp")
    # logp = x - logsumexp(x)
    return dlogp - p * dlogp.sum(axis=-1, keepdims=True)
