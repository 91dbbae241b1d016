"""IMDb, the Large Movie Review Dataset v1.0 (Maas et al., 2011).

Splits: "train" and "test" (25,000 reviews each, 12,500 positive with
rating >= 7 and 12,500 negative with rating <= 4; label 1 = positive) and
"unsup" (50,000 unlabelled reviews, label -1).

Three layouts are read, from any path:

* JSON lines (``{split}.jsonl`` or ``.jsonl.gz``), one review a line:
  ``{"id": int, "rating": 1-10, "label": 0|1, "text": str}``; unsup lines may
  omit rating/label (or give 0 / -1);
* the official archive ``aclImdb_v1.tar.gz``, read without extracting:
  ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` and
  ``aclImdb/train/unsup/<id>_0.txt``;
* the same tree extracted (a directory holding ``aclImdb/`` or being it).

``load_imdb(path, split)`` finds the layout; ``download_imdb(dir)`` fetches
the archive from ai.stanford.edu. Reviews contain ``<br />`` line breaks;
``clean=True`` (the default) turns them into spaces.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np

from numformer.data.datasets import LabelledTexts
from numformer.data.files import DataError, decode_utf8, download, iter_lines, read_bytes

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
SPLITS = ("train", "test", "unsup")
_MEMBER_RE = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
# folder -> (label, allowed ratings)
_FOLDERS = {"neg": (0, range(1, 5)), "pos": (1, range(7, 11)), "unsup": (-1, range(0, 1))}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")


def _clean(text: str, clean: bool) -> str:
    return _BR_RE.sub(" ", text) if clean else text


def _result(rows: list[tuple[int, int, int, str]], name: str) -> LabelledTexts:
    """rows of (label, id, rating, text) -> LabelledTexts with extra id/rating arrays."""
    labels = np.array([r[0] for r in rows], dtype=np.int64)
    ids = np.array([r[1] for r in rows], dtype=np.int64)
    ratings = np.array([r[2] for r in rows], dtype=np.int64)
    return LabelledTexts([r[3] for r in rows], labels, 2, name, {"id": ids, "rating": ratings})


# JSON lines --------------------------------------------------------------------------

def read_imdb_jsonl(path, split: str = "train", clean: bool = True) -> LabelledTexts:
    """Reviews from a JSON-lines file (gzip or not), validated line by line."""
    _check_split(split)
    unsup = split == "unsup"
    rows = []
    for n, line in iter_lines(path):
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(d, dict):
            raise DataError(path, n, f"expected a JSON object, got {type(d).__name__}")
        text = d.get("text")
        if not isinstance(text, str):
            raise DataError(path, n, f"expected a string 'text', got {type(text).__name__}")
        label = d.get("label", -1 if unsup else None)
        rating = d.get("rating", 0 if unsup else None)
        allowed = (-1,) if unsup else (0, 1)
        if type(label) is not int or label not in allowed:
            raise DataError(path, n, f"label {label!r} out of range: expected one of {allowed} "
                                     f"for the {split} split")
        rr = range(0, 1) if unsup else range(1, 11)
        if type(rating) is not int or rating not in rr:
            raise DataError(path, n, f"rating {rating!r} out of range [{rr.start}, {rr.stop - 1}]")
        rid = d.get("id", n - 1)
        if type(rid) is not int:
            raise DataError(path, n, f"expected an integer 'id', got {rid!r}")
        rows.append((label, rid, rating, _clean(text, clean)))
    return _result(rows, f"{path} ({split})")


# the official archive / tree ------------------------------------------------------------

def _member_row(where, name: str, data: bytes, split: str, clean: bool):
    """(label, id, rating, text) of one aclImdb review file, or None if not of ``split``."""
    m = _MEMBER_RE.search(name)
    if m is None:
        return None
    top, folder, rid, rating = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    want_top, folders = ("train", ("unsup",)) if split == "unsup" else (split, ("pos", "neg"))
    if top != want_top or folder not in folders:
        return None
    label, allowed = _FOLDERS[folder]
    if rating not in allowed:
        raise DataError(f"{where}:{name}", None, f"rating {rating} out of range "
                        f"[{allowed.start}, {allowed.stop - 1}] for a {folder} review")
    return label, rid, rating, _clean(decode_utf8(f"{where}:{name}", data), clean)


def _sorted(rows):
    # neg before pos, then by id: the order is the same whatever the archive's order
    return sorted(rows, key=lambda r: (r[0], r[1]))


def read_imdb_archive(path, split: str = "train", clean: bool = True) -> LabelledTexts:
    """Reviews of ``split`` from ``aclImdb_v1.tar.gz`` (read in place, nothing extracted)."""
    _check_split(split)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rows = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or _MEMBER_RE.search(member.name) is None:
                    continue
                f = tar.extractfile(member)
                row = _member_row(path, member.name, f.read(), split, clean)
                if row is not None:
                    rows.append(row)
    except tarfile.TarError as e:
        raise DataError(path, None, f"not a readable tar archive ({e})") from None
    if not rows:
        raise DataError(path, None, f"no aclImdb/.../*.txt review of the {split} split in "
                                    f"the archive")
    return _result(_sorted(rows), f"{path} ({split})")


def read_imdb_tree(root, split: str = "train", clean: bool = True) -> LabelledTexts:
    """Reviews of ``split`` from an extracted ``aclImdb`` directory (``root`` is it or
    holds it)."""
    _check_split(split)
    root = Path(root)
    base = root if (root / "train").is_dir() or (root / "test").is_dir() else root / "aclImdb"
    top = "train" if split == "unsup" else split
    folders = ("unsup",) if split == "unsup" else ("neg", "pos")
    rows = []
    for folder in folders:
        d = base / top / folder
        if not d.is_dir():
            raise FileNotFoundError(f"IMDb {split}: no directory {d}")
        for p in d.glob("*.txt"):
            name = f"aclImdb/{top}/{folder}/{p.name}"
            row = _member_row(d, name, read_bytes(p), split, clean)
            if row is None:
                raise DataError(p, None, "expected a file named <id>_<rating>.txt")
            rows.append(row)
    if not rows:
        raise DataError(base, None, f"no review of the {split} split")
    return _result(_sorted(rows), f"{base} ({split})")


# the one entry point -------------------------------------------------------------------

def load_imdb(path, split: str = "train", clean: bool = True,
              download_missing: bool = False) -> LabelledTexts:
    """IMDb ``split`` ("train", "test", "unsup") from whatever ``path`` holds.

    ``path`` may be a ``.jsonl(.gz)`` file, the ``aclImdb_v1.tar.gz`` archive,
    a directory with ``{split}.jsonl(.gz)``, with the archive, or with (or
    being) an extracted ``aclImdb/`` tree. With ``download_missing`` and none
    of these in the directory ``path``, the archive is downloaded there first.
    Labels: 1 positive, 0 negative, -1 unlabelled; ``extra`` has "id" and "rating".
    """
    _check_split(split)
    path = Path(path)
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return read_imdb_archive(path, split, clean)
        return read_imdb_jsonl(path, split, clean)
    if path.is_dir():
        for n in (f"{split}.jsonl.gz", f"{split}.jsonl"):
            if (path / n).is_file():
                return read_imdb_jsonl(path / n, split, clean)
        if (path / IMDB_ARCHIVE).is_file():
            return read_imdb_archive(path / IMDB_ARCHIVE, split, clean)
        if (path / "aclImdb").is_dir() or (path / "train").is_dir():
            return read_imdb_tree(path, split, clean)
    if download_missing:
        return read_imdb_archive(download_imdb(path), split, clean)
    raise FileNotFoundError(f"IMDb {split}: {path} is not a .jsonl(.gz) file, an "
                            f"{IMDB_ARCHIVE} archive, or a directory holding {split}.jsonl.gz, "
                            f"the archive or an aclImdb/ tree (download_missing=True fetches "
                            f"the archive)")


def download_imdb(dest_dir, url: str = IMDB_URL) -> Path:
    """Fetch ``aclImdb_v1.tar.gz`` (84 MB) into ``dest_dir``; returns its path."""
    return download(url, Path(dest_dir) / IMDB_ARCHIVE, timeout=120.0)


# the star ratings a labelled review can have (5 and 6 are not in the dataset)
RATINGS = (1, 2, 3, 4, 7, 8, 9, 10)


def by_rating(data: LabelledTexts) -> LabelledTexts:
    """The same reviews labelled by their star rating: 8 classes, index into
    ``RATINGS`` (class 0 = 1/10 ... class 7 = 10/10). Finer than positive /
    negative, so a model learns how strong the sentiment is as well."""
    ratings = data.extra.get("rating")
    if ratings is None or len(ratings) != len(data):
        raise ValueError(f"{data.name}: expected a rating for every review, got none")
    index = np.full(11, -1, dtype=np.int64)
    index[list(RATINGS)] = np.arange(len(RATINGS))
    labels = index[np.clip(ratings, 0, 10)]
    if (labels < 0).any():
        i = int(np.flatnonzero(labels < 0)[0])
        raise ValueError(f"{data.name}: review {i} has rating {int(ratings[i])}, expected one "
                         f"of {RATINGS} (the unlabelled split has no ratings)")
    return LabelledTexts(data.texts, labels, len(RATINGS), data.name + " (ratings)", data.extra)
