"""Process settings numformer applies for speed on the CPU, lazily: importing
``numformer`` (or ``numformer.bench.harness``) changes nothing in the
process. ``tune()`` runs when the Numba kernels are first loaded
(``numformer.kernels._jit``, which is what starts OpenMP) and when training
starts (``numformer.train.train``); a process that never does either, such
as a benchmark child timing PyTorch, keeps its runtime as it was.

- ``OMP_WAIT_POLICY=PASSIVE`` (unless already set): idle OpenMP workers of the
  Numba kernels sleep instead of spinning, so they do not steal the cores
  from the BLAS threads of the next matrix product. It has to be set before
  OpenMP starts, hence the tuning at the kernels' first load. To re-measure
  the effect, run the train-step benchmark with and without
  ``--no-tune-runtime`` (which sets ``NUMFORMER_TUNE_RUNTIME=0`` in the
  numformer child), e.g. ``python benchmarks/train_step.py --config article
  --threads 2`` against the same with ``--no-tune-runtime``.
- glibc's allocator keeps freed memory for reuse (``mallopt``: trim threshold
  1 GiB, top pad 64 MiB, mmap threshold at its 32 MiB maximum) instead of
  returning it to the system after every large temporary: touching fresh
  pages from several threads at once is slow. The resident size then stays
  near the peak of a training step, as with PyTorch's caching allocator.

``NUMFORMER_TUNE_RUNTIME=0`` turns both off. Only Linux with glibc gets the
allocator settings. ``applied`` holds what was changed (empty until then).
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
ENV_VAR = "NUMFORMER_TUNE_RUNTIME"
applied: dict = {}
_done = False


def enabled() -> bool:
    """False when ``NUMFORMER_TUNE_RUNTIME=0``."""
    return os.environ.get(ENV_VAR, "1").strip() != "0"


def tune() -> dict:
    """Apply the settings once per process (no-op when disabled); returns ``applied``."""
    global _done
    if _done or not enabled():
        return applied
    _done = True
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        applied["OMP_WAIT_POLICY"] = "PASSIVE"
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            for name, key, value in (("trim_threshold", M_TRIM_THRESHOLD, 1 << 30),
                                     ("top_pad", M_TOP_PAD, 64 << 20),
                                     ("mmap_threshold", M_MMAP_THRESHOLD, 32 << 20)):
                if libc.mallopt(key, value) == 1:
                    applied[name] = value
        except (OSError, AttributeError):  # not glibc
            pass
    return applied


def blas_controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process
    (NumPy's and SciPy's OpenBLAS, MKL, ...), looked up now; [] when threadpoolctl
    is absent or cannot inspect the process."""
    try:
        from threadpoolctl import ThreadpoolController
        return [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    except Exception:  # threadpoolctl absent or unable to inspect: nothing to control
        return []


def limit_blas_threads(n: int) -> list:
    """Hold every BLAS library loaded in this process to ``n`` threads from now on
    (``blas_controllers``). A run's ``--threads`` sets this beside Numba's thread
    count: NumPy's matrix products are most of a step's work, and without the
    limit OpenBLAS would use every core whatever ``--threads`` says. Returns the
    libraries changed, as ``(filepath, threads before)`` pairs; [] when
    threadpoolctl is absent."""
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    changed = []
    for c in blas_controllers():
        before = c.get_num_threads()
        if before != n:
            c.set_num_threads(n)
            changed.append((c.filepath, before))
    return changed
