"""Batched 4D matmul: the per-head products of attention.

Shapes: a (B, H, M, K), b (B, H, K, N), out (B, H, M, N). Each of the B*H
pairs is an independent matrix product; the batch and head axes only ride along.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops._alloc import matmul


def check_matmul(a, b) -> None:
    """The checks of ``matmul_forward``'s inputs (shared with its kernel)."""
    chk.float_array("a", a)
    chk.ndim("a", a, 4, "(B, H, M, K)")
    chk.float_array("b", b, like=a)
    chk.ndim("b", b, 4, "(B, H, K, N)")
    B, H, M, K = a.shape
    if b.shape[:3] != (B, H, K):
        raise ValueError(f"b: expected shape ({B}, {H}, {K}, N) to match a {tuple(a.shape)}, "
                         f"got {tuple(b.shape)}")


def matmul_forward(a: np.ndarray, b: np.ndarray):
    """``out[i, h] = a[i, h] @ b[i, h]``. ``cache = (a, b)``."""
    check_matmul(a, b)
    out = matmul(a, b)  # (B, H, M, N)
    return out, (a, b)


def matmul_backward(dout: np.ndarray, cache):
    """(da, db) = (dout @ b^T, a^T @ dout), per batch and head."""
    a, b = cache
    chk.check_dout("matmul_backward", dout, a.shape[:3] + (b.shape[3],), a.dtype)
    # out = a @ b
    da = matmul(dout, b.swapaxes(-1, -2))  # (B, H, M, K)
    db = matmul(a.swapaxes(-1, -2), dout)  # (B, H, K, N)
    return da, db
