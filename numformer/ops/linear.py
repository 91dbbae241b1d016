"""Dense layer: y = x @ W + b.

Shapes: x (..., C_in) (usually (B, T, C)), W (C_in, C_out), b (C_out,).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops._alloc import matmul


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None = None):
    """``out = x @ W + b``. ``cache = (x, W, has_bias)``."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., C_in)")
    chk.float_array("W", W, like=x)
    chk.ndim("W", W, 2, "(C_in, C_out)")
    if W.shape[0] != x.shape[-1]:
        raise ValueError(f"W: expected shape ({x.shape[-1]}, C_out) to match x's last axis "
                         f"C_in={x.shape[-1]}, got {tuple(W.shape)}")
    # one GEMM over all leading axes (a 3-D x @ W would loop over the batch)
    out = matmul(x.reshape(-1, x.shape[-1]), W).reshape(*x.shape[:-1], W.shape[1])  # (..., C_out)
    if b is not None:
        chk.float_array("b", b, like=x)
        chk.shape("b", b, (W.shape[1],), "(C_out,)")
        out += b
    return out, (x, W, b is not None)


def linear_backward(dout: np.ndarray, cache):
    """(dx, dW, db); db is None when the forward had no bias."""
    x, W, has_bias = cache
    chk.check_dout("linear_backward", dout, x.shape[:-1] + (W.shape[1],), x.dtype)
    # out = x @ W + b
    x2 = x.reshape(-1, x.shape[-1])  # (N, C_in)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, C_out)
    dx = matmul(d2, W.T).reshape(x.shape)  # (..., C_in)
    dW = matmul(x2.T, d2)  # (C_in, C_out)
    db = d2.sum(axis=0) if has_bias else None  # (C_out,)
    return dx, dW, db
