"""The run folder (``--out``): checked before any data is loaded, locked for
the run's life, cleared of what a killed checkpoint write left behind.

``open_run_folder(out, fresh=..., overwrite=...)`` does it all, in this order:

1. ``--out`` must be a folder or a path where one can be created, and
   writable; else ``RunFolderError`` naming --out.
2. ``RunLock``: an exclusive ``fcntl.flock`` on ``out/train.lock``, which holds
   the pid of the run that took it. The kernel drops a flock when its process
   ends, however it ends (SIGKILL, a power cut of the process), so a crashed
   run never leaves a stale lock: the pid in the file only names the holder
   in the error a second run gets (``RunLocked``). The lock belongs to one
   open file, so two Trainers of one process exclude each other too.
3. A new run (``fresh``) into a folder that holds a run's checkpoint
   (``checkpoint.npz`` or ``best.npz``) is refused, saying to pass --resume
   or --overwrite or a new --out; with ``overwrite`` those files (and the old
   run's history.json and summary.json) are removed.
4. Temporary files of a checkpoint write that was killed
   (``checkpoint.npz.<random>.tmp``, ``best.npz.<random>.tmp``: numformer's own
   names only) are removed; the lock guarantees no live run is writing them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from numformer.train.checkpoint import temporaries

CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"  # the weights where cfg.keep_best's metric was best (no optimizer state)
LOCK = "train.lock"
# what a fresh run with overwrite removes: the files that say which run the folder holds
RUN_FILES = (CHECKPOINT, BEST, "history.json", "summary.json")

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class RunFolderError(ValueError):
    """--out cannot hold this run: not a folder, not writable, or holds another run."""


class RunLocked(RunFolderError):
    """Another live run holds the folder's lock."""


def check_writable(out) -> Path:
    """``out`` as a folder that exists (created if missing) and can be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: is a file, not a folder; give a folder (it is "
                             f"created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"--out {out}: cannot create the folder "
                             f"({e.strerror or type(e).__name__})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out}: the folder is not writable")
    return out


class RunLock:
    """An exclusive lock on ``folder/train.lock`` for as long as it is held."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> "RunLock":
        try:
            f = open(self.path, "a+", encoding="ascii")  # "a+": the holder's pid stays readable
        except OSError as e:
            raise RunFolderError(f"--out {self.folder}: cannot create its lock file {self.path} "
                                 f"({e.strerror or type(e).__name__})") from None
        try:
            _lock(f)
        except OSError as e:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLocked(f"--out {self.folder}: another run (pid {holder or 'unknown'}) "
                                f"is writing to this folder ({self.path}); wait for it to end, "
                                f"stop it, or give another --out") from None
            raise RunFolderError(f"--out {self.folder}: cannot lock {self.path} "
                                 f"({e.strerror or type(e).__name__})") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            _unlock(f)
            f.close()

    def __enter__(self):
        return self.acquire() if not self.held else self

    def __exit__(self, *exc):
        self.release()


def _lock(f) -> None:
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        import msvcrt
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(f) -> None:
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def holds_a_run(out) -> Path | None:
    """The checkpoint file of a previous run in ``out``, if there is one."""
    for name in (CHECKPOINT, BEST):
        if (Path(out) / name).is_file():
            return Path(out) / name
    return None


def remove_temporaries(out) -> list[Path]:
    """Remove the temporaries of killed checkpoint writes in ``out``; returns them."""
    removed = []
    for name in (CHECKPOINT, BEST):
        for p in temporaries(out, name):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def open_run_folder(out, fresh: bool, overwrite: bool = False, log=print) -> RunLock:
    """Check, lock and tidy ``out`` for a run (see the module docstring); returns the
    held lock, which the caller releases when the run ends."""
    out = check_writable(out)
    lock = RunLock(out).acquire()
    try:
        previous = holds_a_run(out)
        if fresh and previous is not None:
            if not overwrite:
                raise RunFolderError(f"--out {out}: holds a previous run's checkpoint "
                                     f"({previous}); pass --resume to continue it, --overwrite "
                                     f"to replace it, or give a new --out")
            gone = [name for name in RUN_FILES if (out / name).is_file()]
            for name in gone:
                (out / name).unlink()
            log(f"--overwrite: removed the previous run's {', '.join(gone)} from {out}")
        removed = remove_temporaries(out)
        if removed:
            log(f"removed {len(removed)} temporary file(s) of an interrupted checkpoint write: "
                + ", ".join(p.name for p in removed))
    except BaseException:
        lock.release()
        raise
    return lock
