"""Embedding gather/scatter and positional encodings.

Shapes: B batch, T sequence, C channels (d_model), V vocabulary, L the length
of a positional table (the longest sequence it covers).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def embedding_forward(ids: np.ndarray, W: np.ndarray):
    """Gather rows of ``W`` (V, C) at integer ``ids`` (any shape, usually (B, T)).

    Returns ``out`` of shape ids.shape + (C,) and ``cache = (ids, W.shape, W.dtype)``.
    """
    chk.float_array("W", W)
    chk.ndim("W", W, 2, "(V, C)")
    chk.int_ids("ids", ids, W.shape[0])
    out = W[ids]  # (B, T, C)
    return out, (ids, W.shape, W.dtype)


def embedding_backward(dout: np.ndarray, cache, out: np.ndarray | None = None) -> np.ndarray:
    """dW: scatter-add of ``dout`` rows into the rows named by ``ids``.

    Repeated ids accumulate (``np.add.at``): fancy-index ``dW[ids] += dout``
    would keep only one of them. With ``out`` (an array of W's shape and
    dtype, e.g. the Parameter's grad) the rows are added into it and it is
    returned: no (V, C) temporary, which for a large vocabulary is most of
    the cost.
    """
    ids, wshape, dtype = cache
    chk.check_dout("embedding_backward", dout, ids.shape + (wshape[1],), dtype)
    # out = W[ids]
    dW = check_out(out, wshape, dtype) if out is not None else np.zeros(wshape, dtype=dtype)  # (V, C)
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, wshape[1]))
    return dW


def check_out(out, shape, dtype) -> np.ndarray:
    if not (isinstance(out, np.ndarray) and out.shape == tuple(shape) and out.dtype == dtype):
        got = (out.shape, out.dtype) if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out: expected an array of shape {tuple(shape)} and dtype {dtype}, "
                         f"got {got}")
    return out


def sinusoidal_table(L: int, C: int, dtype=np.float32, base: float = 10000.0) -> np.ndarray:
    """The fixed table of "Attention is all you need":
    P[t, 2i] = sin(t / base^(2i/C)), P[t, 2i+1] = cos(t / base^(2i/C)). Shape (L, C)."""
    if L < 1 or C < 1:
        raise ValueError(f"sinusoidal_table: expected L >= 1 and C >= 1, got L={L}, C={C}")
    pos = np.arange(L, dtype=np.float64)[:, None]  # (L, 1)
    i2 = np.arange(0, C, 2, dtype=np.float64)[None, :]  # (1, ceil(C/2))
    angle = pos / base ** (i2 / C)  # (L, ceil(C/2))
    P = np.empty((L, C), dtype=np.float64)  # (L, C)
    P[:, 0::2] = np.sin(angle)
    P[:, 1::2] = np.cos(angle[:, : C // 2])
    return P.astype(dtype)


def position_forward(x: np.ndarray, P: np.ndarray, offset: int = 0):
    """Add positions ``P[offset : offset + T]`` (table (L, C)) to ``x`` (B, T, C).

    The same op serves the fixed sinusoidal table (its dP is ignored) and a
    learned table. ``offset`` shifts the positions (used when generating with
    a key-value cache). ``cache = (T, offset, P.shape, P.dtype)``.
    """
    chk.float_array("x", x)
    chk.ndim("x", x, 3, "(B, T, C)")
    chk.float_array("P", P, like=x)
    chk.ndim("P", P, 2, "(L, C)")
    T, C = x.shape[1], x.shape[2]
    if P.shape[1] != C:
        raise ValueError(f"P: expected {C} channels (those of x), got shape {tuple(P.shape)}")
    if offset < 0 or offset + T > P.shape[0]:
        raise ValueError(f"x: sequence of length {T} at offset {offset} is longer than the "
                         f"positional table ({P.shape[0]} positions)")
    out = x + P[offset:offset + T]  # (B, T, C)
    return out, (T, offset, P.shape, P.dtype)


def position_backward(dout: np.ndarray, cache):
    """(dx, dP): dx passes through; dP sums over the batch into the used rows."""
    T, offset, pshape, dtype = cache
    chk.check_dout("position_backward", dout, (None, T, pshape[1]), dtype)
    # out = x + P[offset:offset+T]
    dP = np.zeros(pshape, dtype=dout.dtype)  # (L, C)
    dP[offset:offset + T] = dout.sum(axis=0)
    return dout, dP
