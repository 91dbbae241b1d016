"""Labelled splits of a user's data: a folder of class folders, class names,
dev/test splits carved from train, and the counts a run prints.

    train, evals, names, report = load_labelled("news.csv", test="news_test.csv")
    rows = read_folder("txt_sentoken")     # one sub-folder per class, *.txt each

The files themselves (CSV, TSV, JSON lines, columns, header) are read by
numformer.data.tabular.

Folders: every ``*.txt`` of each sub-folder is a text, the sub-folder's name
its label (the aclImdb ``pos``/``neg`` and txt_sentoken layouts); a folder
holding ``train/`` (and ``test/``, ``dev/``) sub-folders of class folders
gives those splits (aclImdb/). aclImdb's ``unsup`` folder is not read (said
so in the report), nor are files that are not a class folder's ``*.txt``
(counted).

Class names: the distinct training labels, sorted, numerically when all are
integers (so class ids do not depend on the order of the rows, and a
shuffled copy of a file gives the same model outputs). A dev/test label not
among them is an error naming the file and the line. Regression labels are
finite numbers.

Splits: a dev or test split that no file gives is carved from train
(``eval_fraction`` of it each, seeded by ``seed``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numformer.data.files import DataError, read_bytes
from numformer.data.tabular import Rows, decode, detect_format, read_table


@dataclass
class TabularData:
    """A split ready for a task: texts (N,), pairs (N,) or None, labels (N,) int64
    class ids (classify) or float64 scores (regress), n_classes = K (1 for a
    regression: the model's outputs), class_names (K,)."""
    texts: list
    pairs: list | None
    labels: np.ndarray
    n_classes: int
    class_names: list
    name: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes) if self.labels.dtype.kind \
            == "i" else np.array([len(self.labels)])



def read_folder(path) -> Rows:
    """Every ``*.txt`` of each sub-folder of ``path``, the sub-folder's name its label
    (the aclImdb ``pos``/``neg`` and txt_sentoken layouts). An ``unsup`` sub-folder
    (aclImdb's unlabelled reviews) is skipped, and said so."""
    path = Path(path)
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    notes = []
    if any(p.name == "unsup" for p in classes):
        notes.append("sub-folder unsup (unlabelled) not read")
        classes = [p for p in classes if p.name != "unsup"]
    if len(classes) < 1:
        raise DataError(path, None, "expected one sub-folder per class holding *.txt files, "
                                    "found no sub-folder")
    texts, labels, lines = [], [], []
    other = sum(1 for p in path.iterdir() if p.is_file())
    for c in classes:
        files = sorted(c.glob("*.txt"))
        other += sum(1 for p in c.iterdir() if p.suffix != ".txt")
        if not files:
            raise DataError(c, None, "expected *.txt files in this class folder, found none")
        for f in files:
            texts.append(_text_file(f))
            labels.append(c.name)
            lines.append(1)
    if other:
        notes.append(f"{other} files that are not a class folder's *.txt not read")
    return Rows(str(path), texts, None, labels, lines,
                f"one class a sub-folder: {', '.join(c.name for c in classes)}", notes)


SPLIT_FOLDERS = {"train": ("train",), "dev": ("dev", "valid", "validation"), "test": ("test",)}


def split_folders(path) -> dict:
    """A folder holding train/ (and dev/, test/) sub-folders of class folders -> their
    paths by split; {} when ``path`` is itself one split."""
    path = Path(path)
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for n in names:
            if (path / n).is_dir() and any(p.is_dir() for p in (path / n).iterdir()):
                found[split] = path / n
                break
    return found if "train" in found else {}


def read_any(path, fmt="auto", header="auto", text_column="", label_column="",
             pair_column="", kind="classify") -> Rows:
    if detect_format(path, fmt) == "folder":
        if text_column or label_column or pair_column:
            raise DataError(path, None, "a folder of text files has no columns; "
                                        "--text-column, --label-column and --text-pair-column "
                                        "are for CSV, TSV and JSON lines")
        return read_folder(path)
    return read_table(path, fmt, header, text_column, label_column, pair_column, kind)


# labels ----------------------------------------------------------------------------

def class_names_of(labels) -> list:
    """The distinct labels, sorted: numerically when all are integers."""
    distinct = set(labels)
    if all(re.fullmatch(r"[+-]?\d+", s) for s in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def to_data(rows: Rows, kind: str, class_names: list | None = None) -> TabularData:
    """Rows with labels made class ids (``class_names`` given: a dev/test split, its
    labels must be among them) or scores."""
    if kind == "regress":
        y = np.empty(len(rows), dtype=np.float64)
        for i, (v, line) in enumerate(zip(rows.labels, rows.lines)):
            try:
                y[i] = float(v)
            except ValueError:
                y[i] = np.nan
            if not math.isfinite(y[i]):
                raise DataError(rows.path, line, f"label {v[:30]!r}: expected a finite number "
                                                 f"(a regression score)")
        return TabularData(rows.texts, rows.pairs, y, 1, ["score"], rows.path)
    names = class_names_of(rows.labels) if class_names is None else class_names
    index = {c: k for k, c in enumerate(names)}
    if class_names is not None:
        for v, line in zip(rows.labels, rows.lines):
            if v not in index:
                raise DataError(rows.path, line, f"label {v[:30]!r} is not one of the training "
                                                 f"labels {names[:20]}")
    y = np.array([index[v] for v in rows.labels], dtype=np.int64)
    return TabularData(rows.texts, rows.pairs, y, len(names), list(names), rows.path)


def subset(d: TabularData, idx) -> TabularData:
    idx = np.asarray(idx, dtype=np.int64)
    return TabularData([d.texts[i] for i in idx],
                       None if d.pairs is None else [d.pairs[i] for i in idx],
                       d.labels[idx], d.n_classes, d.class_names, d.name)


def carve(n: int, fractions: dict, seed: int) -> dict:
    """Seeded disjoint index sets: {"train": ..., name: ...} with each named split
    round(n * fraction) (at least 1) of the n rows."""
    order = np.random.default_rng([seed, 991]).permutation(n)
    out, start = {}, 0
    for name, frac in fractions.items():
        k = max(1, int(round(n * frac)))
        out[name] = np.sort(order[start:start + k])
        start += k
    if start >= n:
        raise ValueError(f"eval_fraction: carving {list(fractions)} leaves no training rows "
                         f"out of {n}")
    out["train"] = np.sort(order[start:])
    return out


def load_labelled(train, dev="", test="", kind: str = "classify", fmt: str = "auto",
                  header: str = "auto", text_column: str = "", label_column: str = "",
                  pair_column: str = "", eval_fraction: float = 0.1, seed: int = 0):
    """(train, {"dev": ..., "test": ...}, class_names, report lines) of a user's files.

    ``train`` is a file or a folder (a folder holding train/ and test/ (dev/)
    sub-folders gives those splits); a dev or test split that no file gives
    is carved from train (``eval_fraction`` of it each, seeded)."""
    opts = dict(fmt=fmt, header=header, text_column=text_column, label_column=label_column,
                pair_column=pair_column, kind=kind)
    files = {"train": train, "dev": dev, "test": test}
    if detect_format(train, fmt) == "folder" and split_folders(train):
        found = split_folders(train)
        for s in ("dev", "test"):
            if not files[s] and s in found:
                files[s] = found[s]
        files["train"] = found["train"]
    report = []
    rows = {s: read_any(p, **opts) for s, p in files.items() if p}
    for s, r in rows.items():
        report.append(f"{s}: {r.path}: {len(r)} rows; {r.columns}"
                      + "".join(f"; {n}" for n in r.notes))
    tr = to_data(rows["train"], kind)
    names = tr.class_names
    evals = {s: to_data(rows[s], kind, names if kind == "classify" else None)
             for s in ("dev", "test") if s in rows}
    missing = {s: eval_fraction for s in ("dev", "test") if s not in rows}
    if missing:
        parts = carve(len(tr), missing, seed)
        for s in missing:
            evals[s] = subset(tr, parts[s])
        report.append(f"{' and '.join(missing)} carved from train (seed {seed}, "
                      f"{eval_fraction:g} of it each): "
                      + ", ".join(f"{s} {len(parts[s])}" for s in missing)
                      + f", train {len(parts['train'])}")
        tr = subset(tr, parts["train"])
    evals = {s: evals[s] for s in ("dev", "test")}
    return tr, evals, names, report


def count_lines(data: dict, kind: str) -> list:
    """One line per split: its size and, for classes, the count of each."""
    out = []
    for s, d in data.items():
        if kind == "classify":
            counts = d.class_counts()
            out.append(f"{s}: {len(d)} examples; " +
                       ", ".join(f"{c} {int(k)}" for c, k in zip(d.class_names, counts)))
        else:
            y = d.labels
            out.append(f"{s}: {len(d)} examples; score mean {y.mean():.3f}, std {y.std():.3f}, "
                       f"range [{y.min():g}, {y.max():g}]")
    return out


def read_text_files(path) -> tuple[list, list]:
    """(names, texts) of every ``*.txt`` file under a folder (sorted, recursively;
    names relative to it): one text a file, to predict."""
    path = Path(path)
    files = _txt_files(path)
    return [p.relative_to(path).as_posix() for p in files], [_text_file(f) for f in files]


def _txt_files(path: Path) -> list:
    """Every ``*.txt`` file under a folder, sorted, recursively; DataError when none."""
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(path, None, "expected *.txt files in this folder (or below), found none")
    return files


def _text_file(f: Path) -> str:
    """One text file's text (UTF-8, stripped), or DataError when it is empty."""
    t = decode(f, read_bytes(f)).strip()
    if not t:
        raise DataError(f, None, "empty text; expected a non-empty text file")
    return t


def read_texts(path, text_column: str = "") -> list:
    """Unlabelled texts for a masked-LM: the non-empty lines of a text file, of every
    ``*.txt`` under a folder (sorted, recursively), or the ``text_column`` field
    (default "text") of each object of a JSON-lines file (.jsonl, .ndjson, or .gz)."""
    path = Path(path)
    files = _txt_files(path) if path.is_dir() else [path]
    out = []
    for f in files:
        if _is_jsonl(f):
            out.extend(_jsonl_field(f, text_column or "text"))
            continue
        out.extend(s.strip() for s in decode(f, read_bytes(f)).splitlines() if s.strip())
    if not out:
        raise DataError(path, None, "no text (every line is blank)")
    return out


def _jsonl_field(path: Path, key: str) -> list:
    import json
    out = []
    for n, line in enumerate(decode(path, read_bytes(path)).split("\n"), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, f"not valid JSON ({e.msg} at column {e.colno}); expected "
                                     f"one JSON object a line") from None
        if not isinstance(d, dict) or not isinstance(d.get(key), str):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise DataError(path, n, f"expected an object with a string {key!r} (the text), "
                                     f"got {got}")
        if d[key].strip():
            out.append(d[key].strip())
    return out


def _is_jsonl(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in (".jsonl", ".ndjson")
