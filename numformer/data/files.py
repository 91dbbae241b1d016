"""Reading text files strictly, and the one error type for bad data.

Every reader here decodes UTF-8 strictly and reads gzip transparently (by
its magic bytes, whatever the file's name). A problem in the data raises
``DataError`` (a ValueError) whose message starts with the file and the
line number: ``data/sst/stsa.binary.dev, line 17: label 7 out of range [0, 2)``.
A missing file raises FileNotFoundError naming it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator

GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """Bad data in a file: ``path`` and ``line`` (1-based, or None) are attributes
    and begin the message."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {message}")


def _check_exists(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a file, got a directory: {path}")
    return path


def is_gzip(path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_bytes(path) -> bytes:
    """The file's bytes, gunzipped if it is gzip. Missing -> FileNotFoundError;
    a corrupt gzip stream -> DataError."""
    path = _check_exists(path)
    if not is_gzip(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, None, f"not a valid gzip file ({e})") from None


def _utf8_error(path, data: bytes, e: UnicodeDecodeError, first_line: int = 1) -> DataError:
    line_start = data.rfind(b"\n", 0, e.start) + 1
    line = first_line + data.count(b"\n", 0, e.start)
    return DataError(path, line, f"not valid UTF-8: byte 0x{data[e.start]:02x} at column "
                                 f"{e.start - line_start + 1} ({e.reason})")


def decode_utf8(path, data: bytes) -> str:
    """Decode strictly; the error names the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, data, e) from None


def read_text(path, allow_empty: bool = False) -> str:
    """The whole file as a str (UTF-8, gzip transparent); an empty file is a DataError
    unless ``allow_empty``."""
    data = read_bytes(path)
    if not data and not allow_empty:
        raise DataError(path, None, "empty file")
    return decode_utf8(path, data)


def read_lines(path, allow_empty: bool = False) -> list[str]:
    """The file's lines without their line ends ("\\n" or "\\r\\n"); a final line end
    adds no empty line. Empty file -> DataError unless ``allow_empty``."""
    text = read_text(path, allow_empty)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


def iter_lines(path) -> Iterator[tuple[int, str]]:
    """(line number, line) pairs, streamed (for large files such as IMDb's JSON
    lines); the line end is removed. An empty file is a DataError."""
    path = _check_exists(path)
    opener = gzip.open if is_gzip(path) else open
    n = 0
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise _utf8_error(path, raw, e, first_line=n) from None
                yield n, line.rstrip("\r\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, n + 1 if n else None, f"not a valid gzip file ({e})") from None
    if n == 0:
        raise DataError(path, None, "empty file")


def write_text_atomic(path, text: str) -> None:
    """Write UTF-8 text to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def download(url: str, dest, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (through a temporary file, renamed when complete).

    Raises ConnectionError naming the URL when the network (or the server)
    says no, with the hint to pass a local path instead.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, out, length=1 << 20)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConnectionError(f"could not download {url} to {dest}: {e}; download it by hand "
                              f"and pass its local path instead") from e
    return dest
