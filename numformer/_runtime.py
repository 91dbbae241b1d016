"""Process settings numformer applies once, at import, for speed on the CPU.

- ``OMP_WAIT_POLICY=PASSIVE`` (unless set): idle OpenMP workers of the Numba
  kernels sleep instead of spinning, so they do not steal the cores from the
  BLAS threads of the next matrix product. Measured on 2 cores: a training
  step at 2 threads went from 138 ms to 52 ms (``article`` configuration of
  benchmarks/train_step.py).
- glibc's allocator keeps freed memory for reuse (``mallopt``: trim threshold
  1 GiB, top pad 64 MiB, mmap threshold at its 32 MiB maximum) instead of
  returning it to the system after every large temporary: touching fresh
  pages from several threads at once is slow (a 2-thread GELU over 34 MB of
  new memory took 62 ms against 3 ms on reused memory). The resident size then
  stays near the peak of a training step, as with PyTorch's caching allocator.

``NUMFORMER_TUNE_RUNTIME=0`` turns both off. Only Linux with glibc is tuned.
"""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
applied: dict = {}


def tune() -> dict:
    if os.environ.get("NUMFORMER_TUNE_RUNTIME", "1") == "0" or applied:
        return applied
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
