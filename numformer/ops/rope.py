"""Rotary position embeddings (RoPE) on the queries and keys of attention.

Shapes: x (B, H, T, D) with D = C // H even, D2 = D // 2; the tables cos and
sin (L, D2), L the longest sequence; positions offset .. offset + T - 1.

Layout: the half-split one of Hugging Face Llama (``rotate_half``): channel
i and channel i + D2 of a head form the pair rotated by the angle
theta(t, i) = t * base^(-2i / D), i = 0 .. D2 - 1:

    out[i]      = x[i] * cos - x[i + D2] * sin
    out[i + D2] = x[i + D2] * cos + x[i] * sin

GGML (llama.cpp) rotates the interleaved pairs (2i, 2i + 1) instead. The two
are the same rotation up to a fixed permutation of each head's D channels:
half-split channel i is interleaved channel 2i and half-split channel i + D2
is interleaved channel 2i + 1 (``half_split_permutation(D)`` gives it).
llama.cpp's converter applies the inverse of that permutation to the output
rows of the Q and K projection weights (PyTorch and GGUF store them
(out, in); numformer's Wq/Wk are (C_in, C_out), so it is their columns),
within each head, so that its interleaved rope equals Llama's. A GGUF
loader undoes it: per head, ``w_half = w_gguf[..., perm]`` on the output
axis, after which ``rope_forward`` applies as in Hugging Face. V and the
output projection are not permuted.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def check_head_dim(D: int, name: str = "D") -> None:
    if not (isinstance(D, (int, np.integer)) and D > 0 and D % 2 == 0):
        raise ValueError(f"{name}: rotary embeddings rotate pairs of channels, so the head "
                         f"dimension D must be a positive even integer, got D={D}")


def rope_tables(max_len: int, D: int, base: float = 10000.0, dtype=np.float32):
    """(cos, sin), each (L, D2): cos/sin of t * base^(-2i/D) for t < max_len.

    Computed in float64, then cast to ``dtype`` (so float32 tables are
    correctly rounded even at large t)."""
    check_head_dim(D)
    if not (isinstance(max_len, (int, np.integer)) and max_len > 0):
        raise ValueError(f"max_len: expected a positive integer, got {max_len}")
    if not base > 0:
        raise ValueError(f"base: expected a positive number, got {base}")
    dtype = np.dtype(dtype)
    if dtype not in chk.FLOAT_DTYPES:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    inv_freq = float(base) ** (-np.arange(0, D, 2, dtype=np.float64) / D)  # (D2,)
    angle = np.arange(max_len, dtype=np.float64)[:, None] * inv_freq[None, :]  # (L, D2)
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


def half_split_permutation(D: int) -> np.ndarray:
    """Indices ``perm`` (D,) with ``x_half = x_interleaved[..., perm]``: channel
    i of the half-split layout is interleaved channel 2i, channel i + D2 is 2i + 1."""
    check_head_dim(D)
    return np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])  # (D,)


def check_rope(x, cos, sin, offset) -> None:
    """The checks of ``rope_forward``'s inputs (shared with its kernel)."""
    chk.float_array("x", x)
    chk.ndim("x", x, 4, "(B, H, T, D)")
    D = x.shape[-1]
    check_head_dim(D, "x")
    chk.float_array("cos", cos, like=x)
    chk.float_array("sin", sin, like=x)
    chk.ndim("cos", cos, 2, "(L, D2)")
    chk.shape("cos", cos, (None, D // 2), f"(L, D2) with D2 = {D // 2}")
    chk.shape("sin", sin, cos.shape, "(L, D2), the shape of cos")
    if not (isinstance(offset, (int, np.integer)) and offset >= 0):
        raise ValueError(f"offset: expected a non-negative integer, got {offset!r}")
    T, L = x.shape[2], cos.shape[0]
    if offset + T > L:
        raise ValueError(f"offset: positions {offset}..{offset + T - 1} need tables of at least "
                         f"{offset + T} rows, cos/sin have L={L} (build them with a larger max_len)")


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, offset: int = 0):
    """Rotate position t of x (B, H, T, D) by the angle of position offset + t.

    x may be any strided view (heads split from a (B, T, 3C) projection).
    ``cache = (c, s)``, the (T, D2) rows of the tables that were used (views).
    """
    check_rope(x, cos, sin, offset)
    T, D2 = x.shape[2], x.shape[3] // 2
    c = cos[offset:offset + T]  # (T, D2)
    s = sin[offset:offset + T]  # (T, D2)
    x1, x2 = x[..., :D2], x[..., D2:]  # (B, H, T, D2) each
    out = np.empty(x.shape, dtype=x.dtype)  # (B, H, T, D)
    out[..., :D2] = x1 * c - x2 * s
    out[..., D2:] = x2 * c + x1 * s
    return out, (c, s)


def rope_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dx: the rotation is orthogonal, so its transpose is its inverse, the
    rotation by -angle (sin -> -sin)."""
    c, s = cache
    T, D2 = c.shape
    chk.check_dout("rope_backward", dout, (None, None, T, 2 * D2), c.dtype)
    # out1 = x1 * c - x2 * s,  out2 = x2 * c + x1 * s
    d1, d2 = dout[..., :D2], dout[..., D2:]  # (B, H, T, D2) each
    dx = np.empty(dout.shape, dtype=dout.dtype)  # (B, H, T, D)
    dx[..., :D2] = d1 * c + d2 * s
    dx[..., D2:] = d2 * c - d1 * s
    return dx
