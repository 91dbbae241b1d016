"""Low-rank adapters (LoRA): a dense layer whose weight is W + scale * A @ B.

Shapes: N rows (any leading axes, flattened), C_in, C_out, r the rank.
    x (..., C_in), W (C_in, C_out), b (C_out,) or None, A (C_in, r), B (r, C_out)

    out = x @ W + b + scale * (x @ A) @ B

The adapter's product is never formed as a (C_in, C_out) matrix: the forward
costs two thin GEMMs, and the backward of a frozen base weight skips the one
product a full fine-tune pays for, dW = x^T dout (N x C_in x C_out), keeping
dx = dout W^T and the adapter's thin products. ``merge`` folds the adapter
into the weight for export.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops._alloc import matmul


def check_lora(x, W, A, B) -> None:
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., C_in)")
    chk.float_array("W", W, like=x)
    chk.ndim("W", W, 2, "(C_in, C_out)")
    chk.float_array("A", A, like=x)
    chk.float_array("B", B, like=x)
    C_in, C_out = W.shape
    if x.shape[-1] != C_in:
        raise ValueError(f"W: expected shape ({x.shape[-1]}, C_out) to match x's last axis, "
                         f"got {tuple(W.shape)}")
    chk.ndim("A", A, 2, "(C_in, r)")
    chk.shape("A", A, (C_in, None), f"(C_in, r) with C_in = {C_in}")
    chk.shape("B", B, (A.shape[1], C_out), f"(r, C_out) with r = {A.shape[1]}, C_out = {C_out}")


def lora_linear_forward(x, W, b, A, B, scale: float):
    """``out = x @ W + b + scale * (x @ A) @ B``.

    ``cache = (x, W, has_bias, A, B, xa, scale)`` with xa = x @ A (N, r)."""
    check_lora(x, W, A, B)
    if b is not None:
        chk.float_array("b", b, like=x)
        chk.shape("b", b, (W.shape[1],), "(C_out,)")
    s = x.dtype.type(scale)
    x2 = x.reshape(-1, x.shape[-1])  # (N, C_in)
    out = matmul(x2, W)  # (N, C_out)
    if b is not None:
        out += b
    xa = matmul(x2, A)  # (N, r)
    out += s * matmul(xa, B)  # (N, C_out)
    return out.reshape(*x.shape[:-1], W.shape[1]), (x, W, b is not None, A, B, xa, s)


def lora_linear_backward(dout, cache, need_dW: bool = False):
    """(dx, dW, db, dA, dB); dW is None unless ``need_dW`` (a frozen base
    weight needs none), db None without a bias."""
    x, W, has_bias, A, B, xa, s = cache
    chk.check_dout("lora_linear_backward", dout, x.shape[:-1] + (W.shape[1],), x.dtype)
    x2 = x.reshape(-1, x.shape[-1])  # (N, C_in)
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, C_out)
    # out = x @ W + b + s * (x @ A) @ B
    dxa = s * matmul(d2, B.T)  # (N, r)
    dB = s * matmul(xa.T, d2)  # (r, C_out)
    dA = matmul(x2.T, dxa)  # (C_in, r)
    dx = matmul(d2, W.T)  # (N, C_in)
    dx += matmul(dxa, A.T)
    dW = matmul(x2.T, d2) if need_dW else None  # (C_in, C_out)
    db = d2.sum(axis=0) if has_bias else None  # (C_out,)
    return dx.reshape(x.shape), dW, db, dA, dB


def merge(W, A, B, scale: float) -> np.ndarray:
    """The merged weight ``W + scale * A @ B`` (C_in, C_out), for export."""
    check_lora(np.zeros((1, W.shape[0]), dtype=W.dtype), W, A, B)
    return W + W.dtype.type(scale) * matmul(A, B)
