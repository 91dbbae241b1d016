"""How every kernel is compiled: one place for numba's settings.

- The threading layer is OpenMP (``NUMBA_THREADING_LAYER=omp``, unless the
  user set another): the lowest overhead for entering a parallel region.
- Compiled code is cached on disk (``cache=True``), never inside the
  installed package: numformer's kernels go to a per-user folder,
  ``$NUMFORMER_CACHE_DIR`` or else ``$XDG_CACHE_HOME/numformer`` (default
  ``~/.cache/numformer``), in a sub-folder named by numformer's, Python's and
  numba's versions and keyed by the path of the kernel sources, so two
  installs (a wheel and an editable checkout, or two versions) never share or
  shadow each other's machine code. ``NUMBA_CACHE_DIR``, when the user sets
  it, wins (numba's own rule, for every numba function of the process).
  Only numformer's kernel files are redirected: other numba code in the
  process caches where numba puts it by default. A fingerprint of every
  kernel source is kept beside the cache; when it changes, the cached kernels
  are deleted (numba alone would miss edits of helpers inlined from
  ``_loops.py``).
- ``NUMBA_DISABLE_JIT=1`` makes ``jit`` return the plain Python function, so
  the tests can run every loop body uncompiled.

Kernel modules write each loop body as a plain function ``_name_py`` and bind
``_name = jit(_name_py, ...)`` below it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")


KERNELS_DIR = Path(__file__).resolve().parent


def cache_root() -> Path:
    """The per-user folder under which numformer keeps compiled kernels."""
    if os.environ.get("NUMFORMER_CACHE_DIR"):
        return Path(os.environ["NUMFORMER_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "numformer"


def _own_cache_path() -> Path:
    """Where this install's kernels go when NUMBA_CACHE_DIR is not set: a
    folder per (numformer, Python, numba) version and per source location."""
    from numformer import __version__
    version = (f"numformer-{__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
               f"-numba-{numba.__version__}")
    where = hashlib.sha1(str(KERNELS_DIR).encode()).hexdigest()[:16]
    return cache_root() / version / f"kernels_{where}"


from numformer import _runtime  # noqa: E402

_runtime.tune()  # OMP_WAIT_POLICY before numba starts OpenMP (see numformer/_runtime.py)

import numba  # noqa: E402
from numba import prange  # noqa: E402,F401
from numba.core import caching as _caching  # noqa: E402


class NumformerCacheLocator(_caching._SourceFileBackedLocatorMixin, _caching._CacheLocator):
    """numba cache locator for the files of numformer/kernels only: their
    machine code goes to ``_own_cache_path()``; every other function (and
    every function when NUMBA_CACHE_DIR is set) is left to numba's locators."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(_own_cache_path())

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if numba.config.CACHE_DIR or Path(py_file).resolve().parent != KERNELS_DIR:
            return None
        return super().from_function(py_func, py_file)


def _install_locator() -> bool:
    """Put NumformerCacheLocator first in numba's list of cache locators.
    False when numba's private list is not where this numba version keeps it;
    then NUMBA_CACHE_DIR is pointed at the per-user folder instead."""
    classes = getattr(getattr(_caching, "CacheImpl", None), "_locator_classes", None)
    if not isinstance(classes, list):
        return False
    if NumformerCacheLocator not in classes:
        classes.insert(0, NumformerCacheLocator)
    return True


if not os.environ.get("NUMBA_CACHE_DIR") and not _install_locator():  # pragma: no cover
    os.environ["NUMBA_CACHE_DIR"] = str(cache_root() / "numba")
    numba.config.reload_config()

STAMP = "numformer-sources.sha1"


def sources_fingerprint() -> str:
    """sha1 of every kernel source file and of numba's version."""
    h = hashlib.sha1(numba.__version__.encode())
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cache_folder() -> Path:
    """Where numba keeps the compiled kernels of this package."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        sub = _caching.UserProvidedCacheLocator.get_suitable_cache_subpath(
            str(KERNELS_DIR / "_jit.py"))
        return Path(os.environ["NUMBA_CACHE_DIR"]) / sub
    return _own_cache_path()


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
