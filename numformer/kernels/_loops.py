"""Shared building blocks of the Numba kernels: compiler options, scalar
helpers, and the policy for when a kernel runs in parallel.

This module also holds the scalar helpers the other kernels share:

``fast_exp(x)``
    exp that LLVM can vectorise. numba's ``math.exp`` is a scalar libm call
    (no vector math library is linked), about ten times slower than a
    vectorised loop. ``fast_exp`` is plain arithmetic: x = k ln2 + r with
    |r| <= ln2 / 2 (Cody-Waite, ln2 split in a high and a low part), a Taylor
    polynomial of e^r (degree 7 in float32, 13 in float64, Horner form) and
    2^k built from its bits. Below the smallest normal result it returns 0
    (float32: x < -87.3; float64: x < -708), above the largest it returns inf,
    and NaN stays NaN. Error: about 2 ulp in float32, 1 ulp in float64.
    The split of ln2 only works if the compiler keeps the order of the
    subtractions, so a function that calls ``fast_exp`` must be compiled
    without ``reassoc`` (``EXACT`` below); sums over its results go in a
    separate function compiled with ``FAST`` (which may reorder a sum into
    vector lanes). ``exp_shifted`` is that split.
``maximum(a, b)``
    the larger, NaN if either is NaN (LLVM's ``maximum``); the only form of
    max whose reduction loop LLVM vectorises (about 20 times faster than a
    compare-and-select loop).
``like(v, ref)``
    ``v`` cast to the type of the scalar ``ref``, so float32 kernels stay in
    float32 vector lanes when they combine a float64 statistic with array
    elements.

Without numba's compiler (``NUMBA_DISABLE_JIT=1``) they are plain Python
(``math.exp``, a comparison, ``type(ref)(v)``). numba's on-disk cache of a
kernel in another module does not notice edits to these helpers by itself;
``_jit.refresh_cache`` clears the cache when any kernel source changed.

And the policy every kernel here follows for threads: each is a serial
function over a range of rows (or over whole flat arrays) plus a parallel
driver that runs it on chunks; ``run_rows``/``run_flat`` call the serial one
directly below ``PARALLEL_MIN_WORK`` elements of work (``parallel_chunks``).
A chunk never splits a row, so the order of every row sum is the same on
both paths and for any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from numformer.kernels._jit import get_num_threads, jit

# fastmath flag sets: FAST lets LLVM split a sum into vector lanes; EXACT only
# fuses multiply-adds, which keeps fast_exp's argument reduction in order.
FAST = {"reassoc", "contract", "nsz"}
EXACT = {"contract"}
# numba options of the kernels. error_model="numpy": IEEE arithmetic as in
# NumPy (x / 0 is inf, not a ZeroDivisionError); numba's default checks every
# division, and that check alone keeps a loop from being vectorised.
PLAIN_OPTS = dict(error_model="numpy")
FAST_OPTS = dict(fastmath=FAST, error_model="numpy")
EXACT_OPTS = dict(fastmath=EXACT, error_model="numpy")
PARALLEL_OPTS = dict(parallel=True, error_model="numpy")


# --- fast_exp ----------------------------------------------------------------

@intrinsic
def _pow2_f32(typingctx, k):
    """2.0**k as float32 for an int32 k in [-126, 127], from its bits."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        biased = builder.add(args[0], ir.Constant(ir.IntType(32), 127))
        bits = builder.shl(biased, ir.Constant(ir.IntType(32), 23))
        return builder.bitcast(bits, ir.FloatType())
    return sig, codegen


@intrinsic
def _pow2_f64(typingctx, k):
    """2.0**k as float64 for an int64 k in [-1022, 1023], from its bits."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        biased = builder.add(args[0], ir.Constant(ir.IntType(64), 1023))
        bits = builder.shl(biased, ir.Constant(ir.IntType(64), 52))
        return builder.bitcast(bits, ir.DoubleType())
    return sig, codegen


def fast_exp(x):
    """exp(x); compiled, a vectorisable polynomial (see the module docstring)."""
    return math.inf if x > 709.0 else math.exp(x)


_F32 = np.float32
_LO32, _HI32 = _F32(-87.33), _F32(88.72)
_LOG2E32 = _F32(1.4426950408889634)
_LN2HI32, _LN2LO32 = _F32(0.693359375), _F32(-2.12194440e-4)
_C32 = tuple(_F32(1.0 / math.factorial(i)) for i in range(8))  # 1/i!, i = 0..7
_INF32, _ZERO32 = _F32(np.inf), _F32(0.0)


def _exp32(x):
    xx = _LO32 if x < _LO32 else (_HI32 if x > _HI32 else x)
    k = np.rint(xx * _LOG2E32)
    r = xx - k * _LN2HI32 - k * _LN2LO32  # |r| <= ln2 / 2
    q = _C32[7]
    q = q * r + _C32[6]
    q = q * r + _C32[5]
    q = q * r + _C32[4]
    q = q * r + _C32[3]
    q = q * r + _C32[2]
    q = q * r + _C32[1]
    q = q * r + _C32[0]
    e = q * _pow2_f32(np.int32(k))
    return _ZERO32 if x < _LO32 else (_INF32 if x > _HI32 else e)


_LO64, _HI64 = -708.0, 709.0
_LOG2E64 = 1.4426950408889634
_LN2HI64, _LN2LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_C64 = tuple(1.0 / math.factorial(i) for i in range(14))  # 1/i!, i = 0..13


def _exp64(x):
    xx = _LO64 if x < _LO64 else (_HI64 if x > _HI64 else x)
    k = np.rint(xx * _LOG2E64)
    r = xx - k * _LN2HI64 - k * _LN2LO64  # |r| <= ln2 / 2
    q = _C64[13]
    q = q * r + _C64[12]
    q = q * r + _C64[11]
    q = q * r + _C64[10]
    q = q * r + _C64[9]
    q = q * r + _C64[8]
    q = q * r + _C64[7]
    q = q * r + _C64[6]
    q = q * r + _C64[5]
    q = q * r + _C64[4]
    q = q * r + _C64[3]
    q = q * r + _C64[2]
    q = q * r + _C64[1]
    q = q * r + _C64[0]
    e = q * _pow2_f64(np.int64(k))
    return 0.0 if x < _LO64 else (np.inf if x > _HI64 else e)


@overload(fast_exp, fastmath=EXACT)
def _fast_exp_overload(x):
    if x == types.float32:
        return _exp32
    if x == types.float64:
        return _exp64
    return None


def like(v, ref):
    """``v`` converted to the type of the scalar ``ref``."""
    return type(ref)(v)


@overload(like)
def _like_overload(v, ref):
    if ref == types.float32:
        return lambda v, ref: np.float32(v)
    if ref == types.float64:
        return lambda v, ref: np.float64(v)
    return None


@intrinsic
def _llvm_maximum(typingctx, a, b):
    """LLVM's ``maximum``: NaN if either is NaN; a loop reducing with it vectorises
    without fast-math flags (a compare-and-select max does not)."""
    if not isinstance(a, types.Float) or a != b:
        return None
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        lt = context.get_value_type(signature.return_type)
        suffix = "f32" if signature.return_type == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lt, [lt, lt]),
                                            f"llvm.maximum.{suffix}")
        return builder.call(fn, args)
    return sig, codegen


def maximum(a, b):
    """The larger of two floats, NaN if either is NaN."""
    if a != a or b != b:
        return a + b
    return a if a > b else b


@overload(maximum)
def _maximum_overload(a, b):
    if isinstance(a, types.Float) and a == b:
        return lambda a, b: _llvm_maximum(a, b)
    return None


def _exp_shifted_py(src, shift, dst):
    """dst[j] = exp(src[j] - shift) for 1-D arrays; vectorised, no reordering."""
    for j in range(src.shape[0]):
        dst[j] = fast_exp(src[j] - shift)


exp_shifted = jit(_exp_shifted_py, **EXACT_OPTS)


def _row_max_py(a):
    """Max of a non-empty 1-D array (NaN if it holds a NaN), vectorised."""
    m = a[0]
    for j in range(1, a.shape[0]):
        m = maximum(m, a[j])
    return m


row_max = jit(_row_max_py, **FAST_OPTS)


def _row_sum_py(a):
    """Sum of a 1-D array, accumulated in float64 (vector lanes, reordered)."""
    s = 0.0
    for j in range(a.shape[0]):
        s += a[j]
    return s


row_sum = jit(_row_sum_py, **FAST_OPTS)


# --- when to run in parallel ---------------------------------------------------

# Below this many elements of work a kernel runs on the calling thread: a
# parallel region costs microseconds when both cores are free and can cost
# milliseconds when another process (or a spinning BLAS thread) holds one.
PARALLEL_MIN_WORK = 1 << 17


def parallel_chunks(n_items: int, work: int) -> int:
    """How many chunks of ``n_items`` rows (or elements) the parallel driver of
    a kernel should run for ``work`` elements in all; 1 means run serially."""
    if work < PARALLEL_MIN_WORK or n_items < 2:
        return 1
    return min(n_items, max(2, get_num_threads()))


def _chunk_bounds_py(c, nchunks, n):
    """Rows [lo, hi) of chunk ``c`` out of ``nchunks`` over ``n`` rows."""
    return c * n // nchunks, (c + 1) * n // nchunks


chunk_bounds = jit(_chunk_bounds_py, **PLAIN_OPTS)


def run_rows(serial, parallel, n_rows: int, work: int, *args) -> None:
    """``serial(*args, 0, n_rows)`` for small work, else ``parallel(*args, nchunks)``."""
    nchunks = parallel_chunks(n_rows, work)
    if nchunks == 1:
        serial(*args, 0, n_rows)
    else:
        parallel(*args, nchunks)


def run_flat(serial, parallel, n: int, *args) -> None:
    """``serial(*args)`` on whole flat arrays of n elements for small n, else
    ``parallel(*args, nchunks)``, which runs ``serial`` on slices."""
    nchunks = parallel_chunks(n, n)
    if nchunks == 1:
        serial(*args)
    else:
        parallel(*args, nchunks)
