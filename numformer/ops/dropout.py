"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

Shapes: any. The RNG is explicit (a ``numpy.random.Generator``), so a seed
fixes the mask.

How the mask is drawn: one 63-bit ``key`` from the generator per call, then
element i (C order) is dropped when the top 24 bits of
``splitmix64(key + i * 0x9E3779B97F4A7C15)`` fall below ``round(p * 2**24)``.
A hash of (key, index) rather than a stream of draws: the Numba twin
computes the same mask in parallel chunks, in any order, with no generator
state shared between threads, and both backends give identical masks for
the same seed. splitmix64 is the output function of the SplitMix generator
(Steele, Lea and Flood, 2014), whose consecutive outputs pass BigCrush.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk

# splitmix64 constants: the golden-ratio increment and the two multipliers of its finaliser
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
BITS = 24  # uniform bits compared with the threshold: p is resolved to 2**-24
_CHUNK = 1 << 16  # elements hashed at a time (the uint64 temporaries stay in cache)


def draw_key(rng: np.random.Generator) -> np.uint64:
    """The per-call key: one draw from ``rng``."""
    return np.uint64(rng.integers(0, 1 << 63))


def threshold(p: float) -> np.uint64:
    """Elements whose 24-bit uniform value is below this are dropped."""
    return np.uint64(round(p * (1 << BITS)))


def keep_mask(key: np.uint64, n: int, thresh: np.uint64, offset: int = 0) -> np.ndarray:
    """(n,) bool: element i (index ``offset + i``) is kept (see the module docstring)."""
    keep = np.empty(n, dtype=np.bool_)
    for lo in range(0, n, _CHUNK):
        z = np.arange(offset + lo, offset + min(n, lo + _CHUNK), dtype=np.uint64)
        z *= GOLDEN  # uint64 arithmetic wraps modulo 2**64, as the hash wants
        z += key
        z ^= z >> np.uint64(30)
        z *= MIX1
        z ^= z >> np.uint64(27)
        z *= MIX2
        z ^= z >> np.uint64(31)
        keep[lo:lo + len(z)] = (z >> np.uint64(64 - BITS)) >= thresh
    return keep


def check_dropout(x: np.ndarray, p: float, rng, training: bool) -> float | None:
    """Validate the inputs (for both backends); p as a float when elements are to be
    dropped, None when the op is the identity (not training, or p == 0)."""
    chk.float_array("x", x)
    p = chk.probability("p", p)
    if not training or p == 0.0:
        return None
    if rng is None:
        raise ValueError("rng: expected a numpy.random.Generator when training with p > 0, "
                         "got None")
    return p


def check_offset(offset) -> int:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise ValueError(f"offset: expected an integer >= 0 (the index of x's first element "
                         f"in the whole tensor), got {offset!r}")
    return int(offset)


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator | None = None,
                    training: bool = True, offset: int = 0):
    """``out = x * mask`` with ``mask`` in {0, 1/(1-p)}. ``cache = mask`` (None when
    not training or p == 0: the op is then the identity).

    ``offset``: the index of x's first element in a larger tensor x is a part of
    (rows ``r0:`` of a batch, as a data-parallel rank holds them: ``r0 *
    x[0].size``), so that the part draws the mask the whole would draw there."""
    p = check_dropout(x, p, rng, training)
    offset = check_offset(offset)
    if p is None:
        return x, None
    keep = keep_mask(draw_key(rng), x.size, threshold(p), offset).reshape(x.shape)
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))  # x.shape
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache) -> np.ndarray:
    mask = cache
    if mask is not None:  # the identity (None) computes nothing, so it cannot promote
        chk.check_dout("dropout_backward", dout, mask.shape, mask.dtype)
    # out = x * mask
    return dout if mask is None else dout * mask
