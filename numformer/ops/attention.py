"""Scaled dot-product attention and multi-head self-attention, with grouped-query
attention (GQA).

Shapes: B batch, H (query) heads, Hkv key/value heads, G = H // Hkv query
heads per key/value head, T sequence (Tq queries, Tk keys), D = C // H head
width, C channels. Attention works on q (B, H, Tq, D) and k, v (B, Hkv, Tk, D);
activations are (B, T, C).

Grouping (as in Hugging Face Llama): query head h reads key/value head
h // G, so heads g*G .. g*G + G - 1 share kv head g. Hkv = H is ordinary
multi-head attention, Hkv = 1 multi-query attention. K and V are never
repeated: the reference views q as (B, Hkv, G, Tq, D) and broadcasts k, v
over the G axis; in the backward, dk and dv sum over the G query heads of
their group.

Masks: ``key_mask`` is a bool (B, Tk) array, True for real tokens, False for
padding. ``causal=True`` lets query i see keys j <= i + (Tk - Tq) (queries
aligned with the end of the keys, as when generating with a key-value cache).
A masked score is excluded from the softmax by ``MASKED_SCORE``; a query row
whose keys are all masked gets probabilities of zero, hence an output of
zero, never NaN.

Dropout on the probabilities (BERT's ``attention_probs_dropout_prob``):
``out = (p * mask) @ v`` with mask in {0, 1/(1-dropout)} of shape (B, H, Tq,
Tk), the softmax normalised before the drop (rows of p * mask do not sum to
1). The mask is the dropout op's hash (``numformer.ops.dropout``): one key
drawn from ``rng`` per call, element (b, h, i, j) of the (B, H, Tq, Tk)
tensor kept when ``splitmix64(key + (offset + ((b H + h) Tq + i) Tk + j) *
GOLDEN)`` clears the threshold, so the fused kernel decides the same mask
inside its blocks without ever storing it. ``offset``: the index of this
batch's first element in a larger batch (rows ``r0:``: ``r0 * H * Tq * Tk``).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops import dropout as _drop
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
    """Validate attention inputs; returns (B, H, Tq, Tk, D). The number of
    key/value heads is ``k.shape[1]`` (Hkv, a divisor of H)."""
    chk.float_array("q", q)
    chk.ndim("q", q, 4, "(B, H, Tq, D)")
    chk.float_array("k", k, like=q)
    chk.ndim("k", k, 4, "(B, Hkv, Tk, D)")
    chk.float_array("v", v, like=q)
    chk.ndim("v", v, 4, "(B, Hkv, Tk, D)")
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    chk.shape("k", k, (B, Hkv, Tk, D), "(B, Hkv, Tk, D)")
    if Hkv < 1 or H % Hkv:
        raise ValueError(f"k: expected a number of key/value heads Hkv (axis 1 of (B, Hkv, Tk, D)) "
                         f"that divides the H={H} query heads of q {tuple(q.shape)}, "
                         f"got k of shape {tuple(k.shape)} (Hkv={Hkv})")
    chk.shape("v", v, (B, Hkv, Tk, D), "(B, Hkv, Tk, D)")
    if key_mask is not None:
        chk.bool_mask("key_mask", key_mask, (B, Tk), "(B, Tk)")
    return B, H, Tq, Tk, D


def group_queries(q: np.ndarray, Hkv: int) -> np.ndarray:
    """(B, H, T, D) -> (B, Hkv, G, T, D) view: query head h = g_kv * G + i of group g_kv."""
    B, H, T, D = q.shape
    return q.reshape(B, Hkv, H // Hkv, T, D)  # (B, Hkv, G, T, D), splitting an axis: a view


def sum_over_group(x: np.ndarray) -> np.ndarray:
    """(B, Hkv, G, T, D) -> (B, Hkv, T, D): the sum over a group's query heads
    (a view when G = 1, so plain multi-head attention pays no extra pass)."""
    return x[:, :, 0] if x.shape[2] == 1 else x.sum(axis=2)  # (B, Hkv, T, D)


def check_dropout(dropout, rng, offset) -> float | None:
    """The probability of dropping an attention probability, as a float, or None
    when nothing is dropped (dropout == 0); validates rng and offset."""
    p = chk.probability("dropout", dropout)
    offset = _drop.check_offset(offset)
    if p == 0.0:
        return None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator when dropout > 0, "
                         f"got {type(rng).__name__}")
    return p


def drop_key(dropout, rng, offset):
    """(key, threshold, 1/(1-p), offset) of this call's mask, or None without dropout:
    the one draw from ``rng`` both backends make."""
    p = check_dropout(dropout, rng, offset)
    if p is None:
        return None
    return _drop.draw_key(rng), _drop.threshold(p), 1.0 / (1.0 - p), int(offset)


def probs_mask(shape, drop, dtype) -> np.ndarray:
    """The (B, H, Tq, Tk) dropout mask of the probabilities, values 0 and 1/(1-p)."""
    key, thresh, inv_keep, offset = drop
    keep = _drop.keep_mask(key, int(np.prod(shape)), thresh, offset).reshape(shape)  # (B, H, Tq, Tk)
    return keep.astype(dtype) * dtype.type(inv_keep)


def attention_forward(q, k, v, key_mask=None, causal=False, scale=None, dropout=0.0, rng=None,
                      offset=0):
    """``out = dropout(softmax(q @ k^T * scale + mask)) @ v``, scale = 1/sqrt(D) by default.

    q (B, H, Tq, D), k and v (B, Hkv, Tk, D) with Hkv dividing H (query head h
    reads kv head h // (H // Hkv)). ``dropout`` > 0 needs ``rng`` (a
    numpy.random.Generator; one key is drawn from it) and drops probabilities
    as the module docstring says (``offset``: see there); the caller passes
    dropout=0 outside training. Returns out (B, H, Tq, D) and ``cache = (q, k,
    v, p, scale)`` with p the attention probabilities (B, H, Tq, Tk) before the
    drop, and, with dropout, a sixth element: the mask (B, H, Tq, Tk), values 0
    and 1/(1-dropout).
    """
    B, H, Tq, Tk, D = check_qkv(q, k, v, key_mask)
    drop = drop_key(dropout, rng, offset)
    Hkv = k.shape[1]
    dt = q.dtype.type
    scale = dt(1.0 / np.sqrt(D) if scale is None else scale)
    qg = group_queries(q, Hkv)  # (B, Hkv, G, Tq, D)
    s = matmul(qg, k[:, :, None].swapaxes(-1, -2)).reshape(B, H, Tq, Tk)  # (B, H, Tq, Tk)
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
    if drop is None:
        pg = group_queries(p, Hkv)  # (B, Hkv, G, Tq, Tk) view
        out = matmul(pg, v[:, :, None]).reshape(B, H, Tq, D)  # (B, H, Tq, D)
        return out, (q, k, v, p, scale)
    mask = probs_mask(p.shape, drop, q.dtype)  # (B, H, Tq, Tk)
    pg = group_queries(p * mask, Hkv)  # (B, Hkv, G, Tq, Tk)
    out = matmul(pg, v[:, :, None]).reshape(B, H, Tq, D)  # (B, H, Tq, D)
    return out, (q, k, v, p, scale, mask)


def attention_backward(dout, cache):
    """(dq, dk, dv); dk and dv (B, Hkv, Tk, D) sum over the G query heads of their group."""
    q, k, v, p, scale = cache[:5]
    mask = cache[5] if len(cache) > 5 else None  # dropout's (B, H, Tq, Tk), values 0, 1/(1-p)
    chk.check_dout("attention_backward", dout, q.shape, q.dtype)
    B, H, Tq, D = q.shape
    Hkv = k.shape[1]
    pd = p if mask is None else p * mask  # (B, H, Tq, Tk): the probabilities out was made of
    pg, dg, qg = group_queries(pd, Hkv), group_queries(dout, Hkv), group_queries(q, Hkv)
    # out[:, h] = pd[:, h] @ v[:, h // G]  ->  dv sums over the heads of a group
    dv = sum_over_group(matmul(pg.swapaxes(-1, -2), dg))  # (B, Hkv, G, Tk, D) -> (B, Hkv, Tk, D)
    dp = matmul(dg, v[:, :, None].swapaxes(-1, -2)).reshape(p.shape)  # (B, H, Tq, Tk)
    if mask is not None:
        dp *= mask  # pd = p * mask
    # p = softmax(s)  (masked entries have p = 0, so ds = 0 there)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # (B, H, Tq, Tk)
    # s[:, h] = q[:, h] @ k[:, h // G]^T * scale
    ds *= scale
    dsg = group_queries(ds, Hkv)  # (B, Hkv, G, Tq, Tk)
    dq = matmul(dsg, k[:, :, None]).reshape(B, H, Tq, D)  # (B, H, Tq, D)
    dk = sum_over_group(matmul(dsg.swapaxes(-1, -2), qg))  # (B, Hkv, G, Tk, D) -> (B, Hkv, Tk, D)
    return dq, dk, dv


def split_heads(x: np.ndarray, H: int) -> np.ndarray:
    """(B, T, C) -> (B, H, T, D)."""
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)  # (B, H, T, D)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, T, D) -> (B, T, C), contiguous."""
    B, H, T, D = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).reshape(B, T, H * D)  # (B, T, C)


def check_mha(x, Wqkv, n_heads, n_kv_heads):
    """Validate mha inputs; returns (B, T, C, H, Hkv, D)."""
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    B, T, C = x.shape
    if n_heads < 1 or C % n_heads:
        raise ValueError(f"n_heads: expected a divisor of C={C}, got {n_heads}")
    H = n_heads
    Hkv = H if n_kv_heads is None else n_kv_heads
    if isinstance(Hkv, bool) or not isinstance(Hkv, (int, np.integer)) or Hkv < 1 or H % Hkv:
        raise ValueError(f"n_kv_heads: expected a divisor of n_heads={H} (or None for "
                         f"n_heads), got {n_kv_heads!r}")
    D = C // H
    chk.float_array("Wqkv", Wqkv, like=x)
    chk.shape("Wqkv", Wqkv, (C, (H + 2 * Hkv) * D),
              f"(C, (n_heads + 2 * n_kv_heads) * D) with C={C}, n_heads={H}, "
              f"n_kv_heads={Hkv}, D={D}")
    return B, T, C, H, int(Hkv), D


def split_qkv(qkv: np.ndarray, H: int, Hkv: int):
    """(B, T, (H + 2 Hkv) D) -> q (B, H, T, D), k and v (B, Hkv, T, D), strided views."""
    D = qkv.shape[-1] // (H + 2 * Hkv)
    q = split_heads(qkv[..., :H * D], H)  # (B, H, T, D)
    k = split_heads(qkv[..., H * D:(H + Hkv) * D], Hkv)  # (B, Hkv, T, D)
    v = split_heads(qkv[..., (H + Hkv) * D:], Hkv)  # (B, Hkv, T, D)
    return q, k, v


def mha_forward(x, Wqkv, bqkv, Wo, bo, n_heads: int, key_mask=None, causal=False, attention=None,
                n_kv_heads: int | None = None, dropout=0.0, rng=None, offset=0):
    """Multi-head self-attention: fused QKV projection, head split, attention,
    head merge, output projection.

    x (B, T, C); Wqkv (C, (H + 2 Hkv) D) with H = n_heads, Hkv = n_kv_heads
    (None: H, i.e. (C, 3C)), D = C // H, its columns the H query heads, then
    the Hkv key heads, then the Hkv value heads; bqkv ((H + 2 Hkv) D,) or
    None; Wo (C, C), bo (C,) or None. ``attention`` is the module providing
    ``attention_forward/backward`` (the backend's kernel or this module;
    default this module). ``dropout``, ``rng``, ``offset``: the attention
    probabilities' dropout (see ``attention_forward``; 0 outside training).
    ``cache = (attention, qkv_cache, attn_cache, out_cache, n_heads, n_kv_heads)``.
    """
    B, T, C, H, Hkv, D = check_mha(x, Wqkv, n_heads, n_kv_heads)
    attention = _this_module() if attention is None else attention
    qkv, qkv_cache = _linear.linear_forward(x, Wqkv, bqkv)  # (B, T, (H + 2 Hkv) D)
    q, k, v = split_qkv(qkv, H, Hkv)  # (B, H, T, D), 2 x (B, Hkv, T, D)
    kw = dict(dropout=dropout, rng=rng, offset=offset) if dropout else {}
    a, attn_cache = attention.attention_forward(q, k, v, key_mask=key_mask, causal=causal,
                                                **kw)  # (B, H, T, D)
    out, out_cache = _linear.linear_forward(merge_heads(a), Wo, bo)  # (B, T, C)
    return out, (attention, qkv_cache, attn_cache, out_cache, H, Hkv)


def mha_backward(dout, cache):
    """(dx, dWqkv, dbqkv, dWo, dbo); dbqkv and dbo are None for absent biases."""
    attention, qkv_cache, attn_cache, out_cache, n_heads, n_kv_heads = cache
    x_m, Wo = out_cache[0], out_cache[1]
    chk.check_dout("mha_backward", dout, x_m.shape[:-1] + (Wo.shape[1],), Wo.dtype)
    # out = merge(a) @ Wo + bo
    dm, dWo, dbo = _linear.linear_backward(dout, out_cache)  # (B, T, C)
    da = split_heads(dm, n_heads)  # (B, H, T, D)
    # a = attention(q, k, v)
    dq, dk, dv = attention.attention_backward(da, attn_cache)  # (B, H, T, D), 2 x (B, Hkv, T, D)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)],
                          axis=-1)  # (B, T, (H + 2 Hkv) D)
    # qkv = x @ Wqkv + bqkv
    dx, dWqkv, dbqkv = _linear.linear_backward(dqkv, qkv_cache)
    return dx, dWqkv, dbqkv, dWo, dbo


def _this_module():
    import sys
    return sys.modules[__name__]
