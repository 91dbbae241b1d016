"""Batched 4D matmul kernel, and the BLAS call every kernel here uses.

Shapes: a (B, H, M, K), b (B, H, K, N), out (B, H, M, N), as in
``numformer.ops.matmul``: each of the B*H pairs is an independent product.

``gemm(a, b, c, alpha, beta, trans_a, trans_b)`` computes, in row-major
terms, ``c = alpha * op(a) @ op(b) + beta * c`` on 2D views whose last axis
has unit stride (the row stride may be anything: a block of a bigger array,
a head of a (B, T, 3C) buffer). It calls the BLAS ``?gemm`` that numba's own
``np.dot`` uses (SciPy's cython BLAS, through numba's ``numba_xxgemm``
helper), but unlike ``np.dot`` it takes strided views, ``alpha`` and ``beta``,
so kernels can accumulate into blocks of their outputs with no temporaries
and fold a scale into the product for free.

Threads: a kernel that calls ``gemm`` from inside a ``prange`` loop must keep
BLAS on one thread, or BLAS's own pool and numba's fight over the cores. The
kernels do it by size: OpenBLAS (SciPy's BLAS) runs a product with
``M * N * K <= SINGLE_THREAD_MNK`` on the calling thread (its small-matrix
path), so the parallel loops only issue products below that size (attention
picks its block sizes for it); bigger products are issued one at a time from
outside any parallel region and may use BLAS's own threads.

``run_strided(kernel, *args)`` calls a parallel kernel through one compiled
signature per dtype in which every array is strided, so contiguous arrays
and strided views share one compiled kernel (attention uses it too).

With ``NUMBA_DISABLE_JIT=1``, ``gemm`` is a NumPy function with the same
meaning (BLAS can only be called from compiled code), so every kernel still
runs, uncompiled, line by line.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from numformer.kernels._jit import JIT_DISABLED, get_num_threads, jit, prange, set_num_threads
from numformer.ops import matmul as _ref
from numformer.ops._checks import check_dout

# Products at most this size (M * N * K) run on the calling thread in
# OpenBLAS; measured on the team's machines (128 x 128 x 32 stays on one
# thread, 128 x 256 x 32 wakes BLAS's pool).
SINGLE_THREAD_MNK = 1 << 19


# -- the BLAS call ---------------------------------------------------------------

def _gemm_py(a, b, c, alpha, beta, trans_a, trans_b):
    """``c = alpha * op(a) @ op(b) + beta * c`` (op = transpose when the flag is set);
    NumPy version, used when JIT is disabled."""
    A = a.T if trans_a else a
    Bm = b.T if trans_b else b
    if beta == 0:
        c[...] = alpha * (A @ Bm)
    else:
        c[...] = alpha * (A @ Bm) + beta * c


def _make_blas_gemm():
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic
    from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

    ensure_blas()  # SciPy's cython BLAS is what numba_xxgemm calls
    ll_char = ir.IntType(8)
    ll_voidp = ir.IntType(8).as_pointer()

    @intrinsic
    def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        """Column-major BLAS ?gemm on the data pointers of three arrays."""
        if not (isinstance(a, types.Array) and a.dtype == b.dtype == c.dtype
                and a.dtype in (types.float32, types.float64)):
            return None
        dtype = a.dtype
        sig = types.void(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

        def codegen(context, builder, signature, args):
            argtys = signature.args
            intp = context.get_value_type(types.intp)
            fnty = ir.FunctionType(ir.IntType(32), [
                ll_char, ll_char, ll_char, intp, intp, intp,      # kind, transa, transb, m, n, k
                ll_voidp, ll_voidp, intp, ll_voidp, intp,          # alpha, a, lda, b, ldb
                ll_voidp, ll_voidp, intp])                         # beta, c, ldc
            fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

            def as_intp(i):
                return context.cast(builder, args[i], argtys[i], types.intp)

            def as_char(i):
                return builder.trunc(as_intp(i), ll_char)

            def data(i):
                arr = context.make_array(argtys[i])(context, builder, args[i])
                return builder.bitcast(arr.data, ll_voidp)

            def scalar_slot(i):
                val = context.cast(builder, args[i], argtys[i], dtype)
                return builder.bitcast(cgutils.alloca_once_value(builder, val), ll_voidp)

            kind = ir.Constant(ll_char, ord(get_blas_kind(dtype)))
            res = builder.call(fn, (kind, as_char(0), as_char(1), as_intp(2), as_intp(3),
                                    as_intp(4), scalar_slot(5), data(6), as_intp(7), data(8),
                                    as_intp(9), scalar_slot(10), data(11), as_intp(12)))
            check_blas_return(context, builder, res)
            return context.get_dummy_value()

        return sig, codegen

    def _gemm_blas(a, b, c, alpha, beta, trans_a, trans_b):
        """Row-major ``c = alpha op(a) op(b) + beta c`` as the column-major product
        ``c^T = op(b)^T op(a)^T``: a row-major matrix with row stride ld is its own
        transpose in column-major order with leading dimension ld."""
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:
            for i in range(m):
                for j in range(n):
                    c[i, j] = c[i, j] * beta if beta != 0 else 0.0
            return
        isz = c.itemsize
        lda = max(a.strides[0] // isz, a.shape[1], 1)  # one-row views may report any stride
        ldb = max(b.strides[0] // isz, b.shape[1], 1)
        ldc = max(c.strides[0] // isz, n, 1)
        if a.strides[1] != isz and a.shape[1] > 1:
            raise ValueError("gemm: a needs unit stride along its last axis")
        if b.strides[1] != isz and b.shape[1] > 1:
            raise ValueError("gemm: b needs unit stride along its last axis")
        if c.strides[1] != isz and n > 1:
            raise ValueError("gemm: c needs unit stride along its last axis")
        _xxgemm(ord("t") if trans_b else ord("n"), ord("t") if trans_a else ord("n"),
                n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)

    return jit(_gemm_blas)


gemm = _gemm_py if JIT_DISABLED else _make_blas_gemm()


# -- one compiled kernel per dtype, and when to run it in parallel ---------------

# Below this many multiply-adds a kernel runs on the calling thread: a
# parallel region costs microseconds when both cores are free and can cost
# milliseconds when another process holds one (as the team's shared machine
# shows); a decoding step (one query) or a tiny batch gains nothing from it.
PARALLEL_MIN_WORK = 1 << 20

_compile_lock = threading.Lock()
_compiled: set = set()


_kernel_blas = None  # threadpoolctl's controllers of the BLAS libraries the kernels call


class one_blas_thread:
    """While a parallel kernel runs, every BLAS library runs on one thread.

    Each of the kernel's workers calls BLAS on its own blocks; an OpenBLAS that
    also spreads every call over its threads makes the workers' calls queue
    for one shared pool (measured here: the attention backward at 2 threads
    slower than at 1). With threadpoolctl absent, or with
    ``NUMFORMER_KERNEL_BLAS_ONE_THREAD=0``, nothing changes."""

    def __enter__(self):
        global _kernel_blas
        if _kernel_blas is None:
            _kernel_blas = []
            if os.environ.get("NUMFORMER_KERNEL_BLAS_ONE_THREAD", "1") != "0":
                from numformer._runtime import blas_controllers
                _kernel_blas = blas_controllers()
        self.changed = []
        for c in _kernel_blas:
            t = c.get_num_threads()
            if t and t > 1:
                c.set_num_threads(1)
                self.changed.append((c, t))
        return self

    def __exit__(self, *exc):
        for c, t in self.changed:
            c.set_num_threads(t)


def workers(work: int) -> int:
    """How many workers a kernel should use for ``work`` multiply-adds (1: run on
    the calling thread)."""
    return 1 if work < PARALLEL_MIN_WORK else get_num_threads()


def run_strided(kernel, *args, serial: bool = False):
    """Call a kernel through its signature with every array typed as strided
    (layout "A"), compiling that signature on first use.

    Numba would otherwise compile a kernel once per combination of contiguous
    and strided arguments (contiguous arrays from ``attention_forward``, head
    views of a (B, T, 3C) buffer from ``mha_forward``), each time generating
    the whole kernel again. With compilation on call disabled, numba passes a
    contiguous array to the strided signature as it is. Callers pass the same
    Python types every time, so the signature depends on the dtype of the
    first argument only (typing a dozen arguments per call would cost more
    than a small attention). ``serial=True`` runs the kernel's parallel loops
    on the calling thread alone."""
    if JIT_DISABLED:
        return kernel(*args)
    key = (kernel, args[0].dtype)
    if key not in _compiled:
        import numba
        sig = tuple(t.copy(layout="A") if isinstance(t, numba.types.Array) else t
                    for t in (numba.typeof(a) for a in args))
        with _compile_lock:
            if sig not in kernel.overloads:
                kernel.disable_compile(False)
                try:
                    kernel.compile(sig)
                finally:
                    kernel.disable_compile(True)
            _compiled.add(key)
    n = get_num_threads()
    if n > 1 and not serial:
        with one_blas_thread():
            return kernel(*args)
    if not serial or n == 1:
        return kernel(*args)
    set_num_threads(1)  # the prange runs on this thread, no other is woken
    try:
        return kernel(*args)
    finally:
        set_num_threads(n)


# -- batched 4D matmul --------------------------------------------------------

def _bmm_py(a, b, c, trans_a, trans_b, parallel_pairs):
    """``c[i, h] = op(a[i, h]) @ op(b[i, h])`` for every (batch, head) pair.

    Fast because the B*H pairs are spread over threads by a ``prange`` over
    the flattened pair index (when each product is small enough that BLAS
    keeps it on one thread) and each product is one BLAS call on the strided
    view, with no copy of a transposed operand."""
    B, H = c.shape[0], c.shape[1]
    if parallel_pairs:
        for t in prange(B * H):
            i, h = t // H, t % H
            gemm(a[i, h], b[i, h], c[i, h], 1.0, 0.0, trans_a, trans_b)
    else:
        for t in range(B * H):
            i, h = t // H, t % H
            gemm(a[i, h], b[i, h], c[i, h], 1.0, 0.0, trans_a, trans_b)


_bmm = jit(_bmm_py, parallel=True)


def _unit_inner(x: np.ndarray) -> np.ndarray:
    """x itself when its last axis has unit stride (what BLAS needs), else a copy."""
    if x.ndim and x.shape[-1] > 1 and x.strides[-1] != x.itemsize:
        return np.ascontiguousarray(x)
    return x


def batched(a, b, trans_a=False, trans_b=False) -> np.ndarray:
    """``op(a) @ op(b)`` over the leading (B, H) axes of two 4D arrays (shapes checked
    by the caller)."""
    a, b = _unit_inner(a), _unit_inner(b)
    M = a.shape[3] if trans_a else a.shape[2]
    K = a.shape[2] if trans_a else a.shape[3]
    N = b.shape[2] if trans_b else b.shape[3]
    c = np.empty(a.shape[:2] + (M, N), dtype=a.dtype)  # (B, H, M, N)
    if c.size:
        work = c.shape[0] * c.shape[1] * M * N * K
        parallel = M * N * K <= SINGLE_THREAD_MNK and workers(work) > 1
        run_strided(_bmm, a, b, c, bool(trans_a), bool(trans_b), parallel)
    return c


def matmul_forward(a: np.ndarray, b: np.ndarray):
    """``out[i, h] = a[i, h] @ b[i, h]``. ``cache = (a, b)`` (as the reference)."""
    _ref.check_matmul(a, b)
    out = batched(a, b)  # (B, H, M, N)
    return out, (a, b)


def matmul_backward(dout: np.ndarray, cache):
    """(da, db) = (dout @ b^T, a^T @ dout), per batch and head."""
    a, b = cache
    check_dout("matmul_backward", dout, a.shape[:3] + (b.shape[3],), a.dtype)
    # out = a @ b
    da = batched(dout, b, trans_b=True)  # (B, H, M, K)
    db = batched(a, dout, trans_a=True)  # (B, H, K, N)
    return da, db
