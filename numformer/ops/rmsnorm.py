"""RMS normalisation over the last axis (Llama's norm: no mean, no bias).

Shapes: x (..., C) (usually (B, T, C)), weight (C,).

The arithmetic runs in the input's dtype: float32 in, float32 statistics
and float32 out (as Llama's RMSNorm, which upcasts half precision to
float32); float64 stays float64.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def check_rmsnorm(x, weight, eps) -> None:
    """The checks of ``rmsnorm_forward``'s inputs (shared with its kernel)."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., C)")
    C = x.shape[-1]
    chk.float_array("weight", weight, like=x)
    chk.shape("weight", weight, (C,), "(C,)")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive number, got {eps}")


def rmsnorm_forward(x: np.ndarray, weight: np.ndarray, eps: float = 1e-5):
    """``out = x * rstd * weight``, rstd = 1/sqrt(mean(x^2, -1) + eps).

    ``cache = (xhat, weight, rstd)`` with xhat = x * rstd (..., C) and rstd
    (..., 1). A zero row gives xhat = 0 (rstd = 1/sqrt(eps)), finite.
    """
    check_rmsnorm(x, weight, eps)
    ms = (x * x).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = (1.0 / np.sqrt(ms + x.dtype.type(eps))).astype(x.dtype)  # (..., 1)
    xhat = x * rstd  # (..., C)
    out = xhat * weight  # (..., C)
    return out, (xhat, weight, rstd)


def rmsnorm_backward(dout: np.ndarray, cache):
    """(dx, dweight).

    dx = rstd * (dxhat - xhat * mean(dxhat * xhat)): the direct path and the
    path through rstd (layernorm's formula without its mean path).
    """
    xhat, weight, rstd = cache
    chk.check_dout("rmsnorm_backward", dout, xhat.shape, xhat.dtype)
    # out = xhat * weight
    C = xhat.shape[-1]
    dweight = (dout * xhat).reshape(-1, C).sum(axis=0)  # (C,)
    dxhat = dout * weight  # (..., C)
    # xhat = x * rstd,  rstd = (mean(x^2) + eps)^(-1/2)
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))  # (..., C)
    return dx, dweight
