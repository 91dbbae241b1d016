"""Matrix products into outputs allocated with ``np.empty``.

``a @ b`` lets NumPy's matmul allocate its result through the zeroing
allocator (calloc), and on Linux that memory comes back as fresh pages which
fault on first write: measured here, a (32, 4, 128, 32) @ (32, 4, 32, 128)
product took 15 ms with ``@`` and 2.2 ms into an ``np.empty`` output (about
500 page faults per call against none). Every hot product of the ops goes
through ``matmul`` below instead.

Products with few rows (a decoding step's (1, C) x (C, N) GEMVs) run on one
BLAS thread. OpenBLAS splits even a GEMV across its threads, and each call
then waits for every thread to be scheduled: on this 2-core machine under
load, (1, 576) x (576, 1536) took 15.8 ms on 2 OpenBLAS threads against
0.38 ms on one, and a SmolLM2 decoding step 1-2 s against 57 ms. A product
with at most ``SMALL_ROWS`` rows (of ``a`` against a 2-D ``b``) limits NumPy's
BLAS to one thread for its duration (threadpoolctl, when installed; without it
nothing changes). ``NUMFORMER_SMALL_MATMUL_ONE_THREAD=0`` turns this off.
"""

from __future__ import annotations

import os

import numpy as np

SMALL_ROWS = 16
ENV = "NUMFORMER_SMALL_MATMUL_ONE_THREAD"
_blas = None  # the BLAS libraries' controllers (threadpoolctl), found at the first use


def _blas_controllers() -> list:
    """NumPy's BLAS libraries (threadpoolctl's controllers), or [] when threadpoolctl
    is absent or the switch is off."""
    global _blas
    if _blas is None:
        _blas = []
        if os.environ.get(ENV, "1") != "0":
            from numformer._runtime import blas_controllers
            _blas = blas_controllers()
    return _blas


def set_small_matmul_one_thread(flag: bool) -> None:
    """Run products of at most ``SMALL_ROWS`` rows on one BLAS thread (True, the
    default) or on BLAS's own thread count (False)."""
    global _blas
    os.environ[ENV] = "1" if flag else "0"
    _blas = None


def _one_thread(a, b, out):
    """``np.matmul(a, b, out=out)`` with each BLAS library held to one thread."""
    changed = []
    try:
        for c in _blas_controllers():
            n = c.get_num_threads()
            if n and n > 1:
                c.set_num_threads(1)
                changed.append((c, n))
        return np.matmul(a, b, out=out)
    finally:
        for c, n in changed:
            c.set_num_threads(n)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (NumPy broadcasting rules), written into a fresh ``np.empty`` array;
    few rows against a 2-D ``b``: on one BLAS thread (see the module's docstring)."""
    if a.ndim == 1 or b.ndim == 1:
        return a @ b
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    out = np.empty(shape, dtype=np.result_type(a, b))
    if b.ndim == 2 and a.size <= SMALL_ROWS * a.shape[-1] and _blas_controllers():
        return _one_thread(a, b, out)
    return np.matmul(a, b, out=out)
