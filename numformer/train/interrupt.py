"""Ctrl-C and SIGTERM during training: finish the step, save, say which signal.

``StopFlag`` (a context manager the training loop holds) catches SIGINT and
SIGTERM and records the first one's name in ``.set``; the loop reads it after
each step, saves a checkpoint and returns. ``numformer train`` then exits
with ``EXIT_CODES[name]`` (128 + the signal number, as a shell reports a
process killed by it), so a script can tell an interrupted run from a
finished one.
"""

from __future__ import annotations

import os
import signal

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class StopFlag:
    """SIGINT or SIGTERM sets a flag (the signal's name) the loop reads after each
    step; a second SIGINT raises KeyboardInterrupt, a second SIGTERM ends the
    process as SIGTERM does by default."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.set: str | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.set:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.set = name

    def __enter__(self):
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
