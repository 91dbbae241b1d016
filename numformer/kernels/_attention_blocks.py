"""The element-wise pieces of the fused attention kernel (``kernels/attention.py``):
masking, exp2 with its running sums and maxima, the backward's P and dS, on one
score block at a time, in either orientation. Each is a plain Python function
``_name_py`` bound to its jitted twin ``_name`` below it (``NUMBA_DISABLE_JIT=1``
runs the same code uncompiled). The loops that call them are in
``_attention_loops.py``.

Blocks: the *column* orientation is keys x columns (``S^T = K Q^T``): the
per-query max and sum are column reductions along contiguous rows of
columns. The *row* orientation, for blocks with few columns (a decoding
step), is columns x keys (``S = Q K^T``): the loops run along a query's keys.
A column is a (query head, query) pair: column ``g * m + c`` is query
``i0 + c`` of the group's head g.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import JIT_DISABLED, jit
from numformer.ops.dropout import BITS, GOLDEN, MIX1, MIX2

# Inside the kernels a masked score is this finite number rather than the
# reference's MASKED_SCORE = -inf, so no infinity ever enters a vectorised
# loop (its exp underflows to exactly 0 all the same). Real scores are far
# above it; a running maximum still at _NEG means "no visible key yet".
_NEG = -1.0e30
# Scores are kept in base-2 units, s2 = s * log2(e) (folded into the BLAS
# alpha), so the softmax needs exp2, which is cheaper to build than exp.
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# The forward's exponent offset per query is only moved when the running
# max leaves [offset - WINDOW, offset + WINDOW] (base 2): exp2 of anything in
# that window, summed over many keys, stays far inside float32's range.
WINDOW = 50.0
# fast-math without "no NaN / no inf" assumptions: reassociation lets the
# compiler vectorise sums and maxima; NaN inputs still give NaN outputs.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


# -- element-wise pieces ----------------------------------------------------------------

def _exp2f_py(x):
    """float32 2**x: 0 below -126 (and for _NEG), NaN for NaN.

    2**x = 2**k * 2**r with k = round(x), r = x - k in [-1/2, 1/2]; 2**r by a
    degree-5 polynomial (least-squares fit of the relative error, max 7.5e-8,
    2.1e-7 after float32 rounding), 2**k written straight into the exponent
    bits. No branch and no call, so a loop of it vectorises."""
    f32 = np.float32
    v = min(max(x, f32(-126.0)), f32(126.0))
    kf = np.floor(v + f32(0.5))
    r = v - kf
    p = f32(1.3276472055e-3)
    p = p * r + f32(9.6755414641e-3)
    p = p * r + f32(5.5507132744e-2)
    p = p * r + f32(2.4022119721e-1)
    p = p * r + f32(6.9314696706e-1)
    p = p * r + f32(1.0000000717)
    two_k = np.int32((np.int32(kf) + np.int32(127)) << np.int32(23)).view(np.float32)
    # (x - x) is 0, or NaN for NaN: the clamp above may have dropped a NaN
    return f32(0.0) if x < f32(-126.0) else p * two_k + (x - x)


def _exp2(x):
    """2**x for the softmax: float32 by ``_exp2f``, float64 by ``math.exp``
    (the gradient checks run in float64 and want every digit). Compiled code
    picks the implementation by type at compile time (the overload below)."""
    if isinstance(x, np.float32):
        return _exp2f_py(x)
    return math.exp(x * LN2)


_exp2f = jit(_exp2f_py, fastmath=_FASTMATH, inline="always")
if not JIT_DISABLED:
    from numba.core import types as _types
    from numba.extending import overload

    @overload(_exp2, inline="always", jit_options={"fastmath": _FASTMATH})
    def _exp2_by_type(x):
        if x == _types.float32:
            return _exp2f_py
        return lambda x: math.exp(x * LN2)


def _mask_block_py(s, n, nc, m, key_mask, has_mask, causal, b, j0, i0, shift):
    """Set masked scores of the block ``s[:n, :nc]`` (keys x columns, nc = G * m:
    G heads of m queries each) to _NEG: padded keys (whole rows) and, when
    causal, queries i < j - shift (a prefix of each head's m columns in row j)."""
    for r in range(n):
        j = j0 + r
        if has_mask and not key_mask[b, j]:
            for c in range(nc):
                s[r, c] = _NEG
        elif causal:
            stop = min(m, max(0, j - shift - i0))
            for g0 in range(0, nc, m):
                for c in range(stop):
                    s[r, g0 + c] = _NEG


_mask_block = jit(_mask_block_py, fastmath=_FASTMATH)


def _exp2_sum_max_py(s, n, m, off, colsum, colmax):
    """On the block ``s[:n, :m]`` (keys x columns), in place: ``s = 2**(s - off)``
    per column, ``colsum += s.sum(0)``, ``colmax = max(s before)``.

    One pass; the inner loop runs along a row of columns, so max, exp2 and sum
    are vectorised across queries. Blocks are passed whole (C-contiguous,
    rows of NC) with their used size: a sliced view would be typed as
    non-contiguous and the compiler could not vectorise the rows."""
    for c in range(m):
        colmax[c] = _NEG
    for r in range(n):
        for c in range(m):
            x = s[r, c]
            colmax[c] = max(colmax[c], x)
            e = _exp2(x - off[c])
            s[r, c] = e
            colsum[c] += e


_exp2_sum_max = jit(_exp2_sum_max_py, fastmath=_FASTMATH)


def _probs_and_ds_py(s, dp, n, m, off, delta, scale):
    """Backward on a block (keys x columns), one pass, in place:
    ``P = 2**(s - off)`` into s (off = lse in base 2) and
    ``dS = P * (dP - delta) * scale`` into dp."""
    for r in range(n):
        for c in range(m):
            p = _exp2(s[r, c] - off[c])
            s[r, c] = p
            dp[r, c] = p * (dp[r, c] - delta[c]) * scale


_probs_and_ds = jit(_probs_and_ds_py, fastmath=_FASTMATH)


# -- dropout of the probabilities ---------------------------------------------------------
# The mask of ``numformer.ops.dropout`` (splitmix64 of key + index * GOLDEN, top BITS
# bits against a threshold), for element (b, h, i, j) of the (B, H, Tq, Tk)
# probabilities: index = offset + ((b H + h) Tq + i) Tk + j. Decided where it is used,
# in the forward's and the backward's blocks, never stored.
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_TOP = np.uint64(64 - BITS)


def _kept_py(key, index, thresh):
    """True when element ``index`` survives (the reference's ``keep_mask``)."""
    z = key + np.uint64(index) * GOLDEN
    z = (z ^ (z >> _S30)) * MIX1
    z = (z ^ (z >> _S27)) * MIX2
    z = z ^ (z >> _S31)
    return (z >> _TOP) >= thresh


if JIT_DISABLED:  # plain Python: NumPy's uint64 scalars warn when they wrap, as the hash wants
    def _kept(key, index, thresh):
        with np.errstate(over="ignore"):
            return _kept_py(key, index, thresh)
else:
    _kept = jit(_kept_py, inline="always")


def _drop_block_py(s, n, m, G, key, thresh, inv_keep, base, Tq, Tk, i0, j0):
    """``s[:n, :G * m] *= mask`` on a block (keys x columns) of exponentials or
    probabilities: mask 1/(1-p) or 0 for key j0 + r and column g * m + c
    (query i0 + c of the group's head g, whose first element is at ``base +
    g Tq Tk``; ``base = offset + (b H + hk G) Tq Tk``)."""
    zero = s.dtype.type(0.0)
    for r in range(n):
        for g in range(G):
            row0 = base + (g * Tq + i0) * Tk + j0 + r  # index of (g, i0, j0 + r)
            for c in range(m):
                col = g * m + c
                s[r, col] = s[r, col] * inv_keep if _kept(key, row0 + c * Tk, thresh) else zero


_drop_block = jit(_drop_block_py)


def _probs_and_ds_drop_py(s, dp, n, m, G, off, delta, scale, key, thresh, inv_keep, base, Tq,
                          Tk, i0, j0):
    """The backward's pass with dropout: ``P = 2**(s - off)``, ``M`` the mask
    (``_drop_block``'s), into s ``P * M`` (for dV) and into dp ``dS = P * (dP * M -
    delta) * scale`` (dp arrives as d(P * M); delta = rowsum(dO * out) is
    rowsum(d(P * M) * P * M), as without dropout)."""
    zero = s.dtype.type(0.0)
    for r in range(n):
        for g in range(G):
            row0 = base + (g * Tq + i0) * Tk + j0 + r
            for c in range(m):
                col = g * m + c
                p = _exp2(s[r, col] - off[col])
                mk = inv_keep if _kept(key, row0 + c * Tk, thresh) else zero
                s[r, col] = p * mk
                dp[r, col] = p * (dp[r, col] * mk - delta[col]) * scale


_probs_and_ds_drop = jit(_probs_and_ds_drop_py, fastmath=_FASTMATH)


# Row orientation, for blocks with few columns (a decoding step: G heads x 1 query):
# the block is columns x keys (S = Q K^T), so each query's scores are a contiguous
# row and the loops run along the keys, LANES at a time.
LANES = 16


def _mask_rows_py(s, nc, n, m, key_mask, has_mask, causal, b, j0, i0, shift):
    """Set masked scores of the block ``s[:nc, :n]`` (columns x keys; row g*m + c is
    query i0 + c of head g) to _NEG: keys j > i + shift when causal, padded keys."""
    for col in range(nc):
        stop = n
        if causal:
            stop = min(n, max(0, i0 + col % m + shift + 1 - j0))  # keys j0 + stop.. hidden
        for r in range(stop, n):
            s[col, r] = _NEG
        if has_mask:
            for r in range(stop):
                if not key_mask[b, j0 + r]:
                    s[col, r] = _NEG


_mask_rows = jit(_mask_rows_py, fastmath=_FASTMATH)


def _exp2_rows_py(s, nc, n, off, rowsum, rowmax, lmax, lsum):
    """On the block ``s[:nc, :n]`` (columns x keys), in place: ``s = 2**(s - off)``
    per row, ``rowsum += s.sum(1)``, ``rowmax = max(s before)``.

    The keys of a row are taken LANES at a time into per-lane maxima and sums
    (``lmax``, ``lsum``: element-wise across lanes, so the compiler vectorises
    it without assuming away NaNs), reduced once per row."""
    for col in range(nc):
        o = off[col]
        for lane in range(LANES):
            lmax[lane] = _NEG
            lsum[lane] = 0.0
        for r0 in range(0, n, LANES):
            for lane in range(min(LANES, n - r0)):
                x = s[col, r0 + lane]
                lmax[lane] = max(lmax[lane], x)
                e = _exp2(x - o)
                s[col, r0 + lane] = e
                lsum[lane] += e
        mx = lmax[0]
        acc = rowsum[col]
        for lane in range(LANES):
            mx = max(mx, lmax[lane])
            acc += lsum[lane]
        rowsum[col] = acc
        rowmax[col] = mx


_exp2_rows = jit(_exp2_rows_py, fastmath=_FASTMATH)


def _block_has_key_py(key_mask, b, j0, n):
    for j in range(j0, j0 + n):
        if key_mask[b, j]:
            return True
    return False


_block_has_key = jit(_block_has_key_py)
