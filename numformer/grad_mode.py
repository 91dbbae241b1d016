"""Inference mode: ``with numformer.no_grad():`` forwards keep no cache.

A Module's ``_set_cache`` reads the flag below; eval mode (``model.eval()``)
keeps no cache either. The flag is a context variable, so each thread (and
each asyncio task) has its own: one thread's ``no_grad`` never stops another's
training forward from keeping its caches.
"""

from __future__ import annotations

import contextlib
import contextvars

# per thread (and per asyncio task): False inside ``no_grad()``
_GRAD_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("numformer_grad_enabled",
                                                                     default=True)


class no_grad(contextlib.ContextDecorator):
    """``with numformer.no_grad():`` (or ``@numformer.no_grad()``): forwards inside
    keep no cache for a backward, in any mode (dropout still follows
    ``train()``/``eval()``). Nests; each thread has its own setting."""

    def __init__(self):
        self._tokens: list = []

    def _recreate_cm(self):  # as a decorator: a fresh context manager per call (and thread)
        return type(self)()

    def __enter__(self):
        self._tokens.append(_GRAD_ENABLED.set(False))
        return self

    def __exit__(self, *exc):
        _GRAD_ENABLED.reset(self._tokens.pop())
        return False


def is_grad_enabled() -> bool:
    """False inside ``no_grad()``."""
    return _GRAD_ENABLED.get()
