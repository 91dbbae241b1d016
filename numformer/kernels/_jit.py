"""How every kernel is compiled: one place for numba's settings.

- The threading layer is OpenMP (``NUMBA_THREADING_LAYER=omp``, unless the
  user set another): the lowest overhead for entering a parallel region.
- Compiled code is cached on disk (``cache=True``). When the package folder
  is not writable (a system install), the cache goes to
  ``$XDG_CACHE_HOME/numformer/numba`` (default ``~/.cache/numformer/numba``),
  unless ``NUMBA_CACHE_DIR`` is already set.
- ``NUMBA_DISABLE_JIT=1`` makes ``jit`` return the plain Python function, so
  the tests can run every loop body uncompiled.

Kernel modules write each loop body as a plain function ``_name_py`` and bind
``_name = jit(_name_py, ...)`` below it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")


def _choose_cache_dir() -> None:
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    pkg = Path(__file__).resolve().parent
    if os.access(pkg, os.W_OK):
        return  # numba caches next to the sources (__pycache__)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = base / "numformer" / "numba"
    try:
        target.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(target)
    except OSError:  # pragma: no cover - nowhere writable: numba warns and compiles each time
        pass


_choose_cache_dir()

import numba  # noqa: E402
from numba import prange  # noqa: E402,F401

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def jit(fn=None, *, parallel: bool = False, fastmath: bool = False, **kwargs):
    """``numba.njit(cache=True, ...)``; usable bare or with arguments."""
    def wrap(f):
        return numba.njit(cache=True, parallel=parallel, fastmath=fastmath, nogil=True,
                          **kwargs)(f)
    return wrap if fn is None else wrap(fn)


def set_num_threads(n: int) -> None:
    """Threads used by numba's parallel loops (at most NUMBA_NUM_THREADS)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(numba.get_num_threads())
