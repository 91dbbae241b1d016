"""How every kernel is compiled: one place for numba's settings.

- The threading layer is OpenMP (``NUMBA_THREADING_LAYER=omp``, unless the
  user set another): the lowest overhead for entering a parallel region.
- Compiled code is cached on disk (``cache=True``). When the package folder
  is not writable (a system install), the cache goes to
  ``$XDG_CACHE_HOME/numformer/numba`` (default ``~/.cache/numformer/numba``),
  unless ``NUMBA_CACHE_DIR`` is already set. A fingerprint of every kernel
  source is kept there; when it changes, the cached kernels are deleted
  (numba alone would miss edits of helpers inlined from ``_loops.py``).
- ``NUMBA_DISABLE_JIT=1`` makes ``jit`` return the plain Python function, so
  the tests can run every loop body uncompiled.

Kernel modules write each loop body as a plain function ``_name_py`` and bind
``_name = jit(_name_py, ...)`` below it.
"""

from __future__ import annotations

import hashlib
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

STAMP = "numformer-sources.sha1"


def sources_fingerprint() -> str:
    """sha1 of every kernel source file and of numba's version."""
    h = hashlib.sha1(numba.__version__.encode())
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cache_folder() -> Path:
    """Where numba keeps the compiled kernels of this package."""
    pkg = Path(__file__).resolve().parent
    if os.environ.get("NUMBA_CACHE_DIR"):
        from numba.core.caching import UserProvidedCacheLocator
        sub = UserProvidedCacheLocator.get_suitable_cache_subpath(str(pkg / "_jit.py"))
        return Path(os.environ["NUMBA_CACHE_DIR"]) / sub
    return pkg / "__pycache__"


def refresh_cache(folder: Path, fingerprint: str) -> bool:
    """Delete the compiled kernels in ``folder`` unless its stamp matches
    ``fingerprint``, then write the stamp. True if it deleted (a stale cache).

    numba keys a cached function on the timestamp of its own file only, so an
    edit of a helper that other kernels inline (``_loops.py``, say) would
    leave their old machine code in use; with the stamp any edit of any
    kernel source recompiles them all once."""
    stamp = folder / STAMP
    try:
        if stamp.read_text().strip() == fingerprint:
            return False
    except OSError:
        pass
    stale = False
    try:
        for f in list(folder.glob("*.nbi")) + list(folder.glob("*.nbc")):
            f.unlink(missing_ok=True)
            stale = True
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{STAMP}.{os.getpid()}.tmp"
        tmp.write_text(fingerprint + "\n")
        os.replace(tmp, stamp)
    except OSError:  # pragma: no cover - read-only cache: numba recompiles in memory
        pass
    return stale


JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
if not JIT_DISABLED:
    refresh_cache(cache_folder(), sources_fingerprint())


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
