"""Scaled dot-product attention and multi-head self-attention.

Shapes: B batch, H heads, T sequence (Tq queries, Tk keys), D = C // H head
width, C channels. Attention works on (B, H, T, D); activations are (B, T, C).

Masks: ``key_mask`` is a bool (B, Tk) array, True for real tokens, False for
padding. ``causal=True`` lets query i see keys j <= i + (Tk - Tq) (queries
aligned with the end of the keys, as when generating with a key-value cache).
A masked score is excluded from the softmax by ``MASKED_SCORE``; a query row
whose keys are all masked gets probabilities of zero, hence an output of
zero, never NaN.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops import linear as _linear
from numformer.ops._alloc import matmul

# The one constant for masked scores: the score a masked (query, key) pair
# takes before the softmax. Minus infinity makes exp() exactly zero; rows
# with no key left are detected and zeroed explicitly.
MASKED_SCORE = -np.inf


def allowed_mask(B: int, Tq: int, Tk: int, key_mask: np.ndarray | None, causal: bool):
    """Bool array broadcastable to (B, H, Tq, Tk): True where a query may see a key.
    None when nothing is masked."""
    allowed = None
    if key_mask is not None:
        allowed = key_mask[:, None, None, :]  # (B, 1, 1, Tk)
    if causal:
        q_pos = np.arange(Tq)[:, None] + (Tk - Tq)  # (Tq, 1)
        tri = np.arange(Tk)[None, :] <= q_pos  # (Tq, Tk)
        allowed = tri[None, None] if allowed is None else (allowed & tri[None, None])  # (B, 1, Tq, Tk)
    return allowed


def check_qkv(q, k, v, key_mask):
    """Validate attention inputs; returns (B, H, Tq, Tk, D)."""
    chk.float_array("q", q)
    chk.ndim("q", q, 4, "(B, H, Tq, D)")
    chk.float_array("k", k, like=q)
    chk.ndim("k", k, 4, "(B, H, Tk, D)")
    chk.float_array("v", v, like=q)
    chk.ndim("v", v, 4, "(B, H, Tk, D)")
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    chk.shape("k", k, (B, H, Tk, D), "(B, H, Tk, D)")
    chk.shape("v", v, (B, H, Tk, D), "(B, H, Tk, D)")
    if key_mask is not None:
        chk.bool_mask("key_mask", key_mask, (B, Tk), "(B, Tk)")
    return B, H, Tq, Tk, D


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None):
    """``out = softmax(q @ k^T * scale + mask) @ v``, scale = 1/sqrt(D) by default.

    Returns out (B, H, Tq, D) and ``cache = (q, k, v, p, scale)`` with p the
    attention probabilities (B, H, Tq, Tk).
    """
    B, H, Tq, Tk, D = check_qkv(q, k, v, key_mask)
    dt = q.dtype.type
    scale = dt(1.0 / np.sqrt(D) if scale is None else scale)
    s = matmul(q, k.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    s *= scale
    allowed = allowed_mask(B, Tq, Tk, key_mask, causal)
    if allowed is None:
        e = np.exp(s - s.max(axis=-1, keepdims=True))  # (B, H, Tq, Tk)
        p = e / e.sum(axis=-1, keepdims=True)
    else:
        s = np.where(allowed, s, dt(MASKED_SCORE))  # (B, H, Tq, Tk)
        m = s.max(axis=-1, keepdims=True)  # (B, H, Tq, 1)
        m = np.where(np.isfinite(m), m, dt(0))  # fully masked rows: any finite shift
        e = np.exp(s - m)  # masked entries exp(-inf) = 0
        denom = e.sum(axis=-1, keepdims=True)  # (B, H, Tq, 1)
        p = e / np.where(denom > 0, denom, dt(1))  # fully masked rows stay 0
    out = matmul(p, v)  # (B, H, Tq, D)
    return out, (q, k, v, p, scale)


def attention_backward(dout, cache):
    """(dq, dk, dv)."""
    q, k, v, p, scale = cache
    # out = p @ v
    dv = matmul(p.swapaxes(-1, -2), dout)  # (B, H, Tk, D)
    dp = matmul(dout, v.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    # p = softmax(s)  (masked entries have p = 0, so ds = 0 there)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # (B, H, Tq, Tk)
    # s = q @ k^T * scale
    ds *= scale
    dq = matmul(ds, k)  # (B, H, Tq, D)
    dk = matmul(ds.swapaxes(-1, -2), q)  # (B, H, Tk, D)
    return dq, dk, dv


def split_heads(x: np.ndarray, H: int) -> np.ndarray:
    """(B, T, C) -> (B, H, T, D)."""
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)  # (B, H, T, D)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, T, D) -> (B, T, C), contiguous."""
    B, H, T, D = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(B, T, H * D)  # (B, T, C)


def mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads: int, key_mask=None, causal=False, attention=None):
    """Multi-head self-attention: fused QKV projection, head split, attention,
    head merge, output projection.

    x (B, T, C); Wqkv (C, 3C), bqkv (3C,), Wo (C, C), bo (C,). ``attention``
    is the module providing ``attention_forward/backward`` (the backend's
    kernel or this module; default this module).
    ``cache = (attention, qkv_cache, attn_cache, out_cache, n_heads)``.
    """
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    B, T, C = x.shape
    if n_heads < 1 or C % n_heads:
        raise ValueError(f"n_heads: expected a divisor of C={C}, got {n_heads}")
    attention = _this_module() if attention is None else attention
    qkv, qkv_cache = _linear.linear_forward(x, Wqkv, bqkv)  # (B, T, 3C)
    q, k, v = (split_heads(t, n_heads) for t in np.split(qkv, 3, axis=-1))  # 3 x (B, H, T, D)
    a, attn_cache = attention.attention_forward(q, k, v, key_mask=key_mask, causal=causal)  # (B, H, T, D)
    out, out_cache = _linear.linear_forward(merge_heads(a), Wo, bo)  # (B, T, C)
    return out, (attention, qkv_cache, attn_cache, out_cache, n_heads)


def mha_backward(dout, cache):
    """(dx, dWqkv, dbqkv, dWo, dbo)."""
    attention, qkv_cache, attn_cache, out_cache, n_heads = cache
    # out = merge(a) @ Wo + bo
    dm, dWo, dbo = _linear.linear_backward(dout, out_cache)  # (B, T, C)
    da = split_heads(dm, n_heads)  # (B, H, T, D)
    # a = attention(q, k, v)
    dq, dk, dv = attention.attention_backward(da, attn_cache)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 3C)
    # qkv = x @ Wqkv + bqkv
    dx, dWqkv, dbqkv = _linear.linear_backward(dqkv, qkv_cache)
    return dx, dWqkv, dbqkv, dWo, dbo


def _this_module():
    import sys
    return sys.modules[__name__]
