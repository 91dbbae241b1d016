"""Backend switch: which implementation of each op the layers call.

Two backends exist:
    "numpy"  the reference pairs in ``numformer.ops``
    "numba"  the Numba twins in ``numformer.kernels.<op>`` where one exists;
             ops without a kernel (or shapes a kernel does not handle) use the
             reference.

The backend is chosen by ``set_backend(name)`` or, at import, by the
environment variable ``NUMFORMER_BACKEND``. The default is "numba" when numba
can be imported; otherwise numformer says so once and uses "numpy".
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings
from types import ModuleType

BACKENDS = ("numba", "numpy")
ENV_VAR = "NUMFORMER_BACKEND"

_backend: str | None = None
_numba_ok: bool | None = None
_warned = False
_registry: dict[tuple[str, str], ModuleType] = {}


def numba_available() -> bool:
    """True if numba can be imported (checked once)."""
    global _numba_ok
    if _numba_ok is None:
        try:
            import numba  # noqa: F401
            _numba_ok = True
        except Exception:  # pragma: no cover - depends on the machine
            _numba_ok = False
    return _numba_ok


def _resolve(name: str) -> str:
    global _warned
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name == "numba" and not numba_available():
        if not _warned:
            warnings.warn("numformer: numba cannot be imported; using the NumPy backend",
                          RuntimeWarning, stacklevel=3)
            _warned = True
        return "numpy"
    return name


def set_backend(name: str) -> str:
    """Select the backend for every layer: "numba" or "numpy". Returns the one in effect."""
    global _backend
    _backend = _resolve(name)
    return _backend


def get_backend() -> str:
    """The backend in effect ("numba" or "numpy")."""
    global _backend
    if _backend is None:
        _backend = _resolve(os.environ.get(ENV_VAR, "numba").strip().lower() or "numba")
    return _backend


def _kernel_families() -> set[str]:
    """The op families with a Numba twin: every module of this package whose name
    does not start with "_" (``kernels/<name>.py`` mirrors ``ops/<name>.py``).
    Found from the file names, without importing numba or the kernels."""
    folder = os.path.dirname(os.path.abspath(__file__))
    return {m.name for m in pkgutil.iter_modules([folder])
            if not m.name.startswith("_") and not m.ispkg}


# Op families that have a Numba twin in this package, registered by adding
# the file (no list to edit); an op family without one always uses the reference.
KERNEL_OPS: set[str] = _kernel_families()


def op(name: str, backend: str | None = None) -> ModuleType:
    """The module implementing op family ``name`` (e.g. "attention") for a backend.

    The returned module has the same ``<op>_forward`` / ``<op>_backward``
    functions as ``numformer.ops.<name>``.
    """
    backend = get_backend() if backend is None else _resolve(backend)
    key = (name, backend)
    mod = _registry.get(key)
    if mod is None:
        if backend == "numba" and name in KERNEL_OPS:
            mod = importlib.import_module(f"numformer.kernels.{name}")
        else:
            mod = importlib.import_module(f"numformer.ops.{name}")
        _registry[key] = mod
    return mod
