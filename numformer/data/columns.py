"""Which columns of a user's table hold the text, the second text of a pair and the
label: named (a header row is then required) or 0-based indices; by default
found by the header's names (text, sentence, review, ...; label, class, score,
...), else by content (a class column has the fewest distinct values, the
score column of a regression is the one numeric column that is not integers,
the text column has the longest values). And whether the first row is a
header (numformer.data.tabular reads the files)."""

from __future__ import annotations

import math
import re

from numformer.data.files import DataError

TEXT_NAMES = ("text", "sentence", "sentence1", "text_a", "text1", "review", "content",
              "document", "body", "comment", "headline", "title", "question", "question1",
              "premise", "tweet", "utterance")
PAIR_NAMES = ("sentence2", "text_b", "text2", "question2", "hypothesis")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "score",
               "rating", "gold_label", "similarity", "topic")
SCAN = 2000  # rows looked at to choose default columns and detect a header


def as_index(spec: str):
    return int(spec) if re.fullmatch(r"\d+", spec.strip()) else None


def is_number(s) -> bool:
    if isinstance(s, bool):
        return False
    if isinstance(s, (int, float)):
        return math.isfinite(s)
    try:
        return math.isfinite(float(s))
    except (TypeError, ValueError):
        return False


def by_name(names: list, wanted: tuple):
    low = [str(n).strip().lower() for n in names]
    for w in wanted:
        if w in low:
            return low.index(w)
    return None


def infer_columns(path, rows: list, n: int, kind: str, taken: set):
    """Default (text, label) column indices from the content of ``rows`` (lists of n)."""
    cols = [[r[j] for r in rows if j < len(r)] for j in range(n)]
    free = [j for j in range(n) if j not in taken]
    if len(free) < 2:
        raise DataError(path, None, f"expected at least two columns (a text and a label), "
                                    f"got {n}")
    if kind == "regress":
        numeric = [j for j in free if cols[j] and all(is_number(v) for v in cols[j])
                   and len(set(cols[j])) > 2]
        if len(numeric) > 1:  # prefer the one column that is not integers (ids, years)
            real = [j for j in numeric if any(not re.fullmatch(r"[+-]?\d+", str(v).strip())
                                              for v in cols[j])]
            numeric = real if len(real) == 1 else numeric
        if len(numeric) != 1:
            raise DataError(path, None, f"cannot tell the score column ({len(numeric)} "
                                        f"numeric columns); give --label-column")
        label = numeric[0]
    else:
        label = min(free, key=lambda j: (len(set(cols[j])), -j))
    return longest_column(path, rows, n, taken | {label}), label


def longest_column(path, rows: list, n: int, taken: set) -> int:
    """The column (not in ``taken``) whose values are longest on average: the text."""
    free = [j for j in range(n) if j not in taken]
    if not free:
        raise DataError(path, None, f"no column left for the text ({n} columns, all taken)")

    def mean_len(j):
        col = [r[j] for r in rows if j < len(r)]
        return sum(len(str(v)) for v in col) / max(1, len(col))
    return max(free, key=mean_len)


def first_is_header(rows: list, label: int | None, kind: str) -> bool:
    """The first row is a header: a known column name in it, or its label is not a
    number while the others are, or its label is seen nowhere else in its column
    while the column repeats its values (a class column)."""
    first, rest = rows[0], rows[1:SCAN]
    known = set(TEXT_NAMES + PAIR_NAMES + LABEL_NAMES)
    if any(str(v).strip().lower() in known for v in first):
        return True
    if label is None or label >= len(first) or not rest:
        return False
    col = [r[label] for r in rest if label < len(r)]
    if col and all(is_number(v) for v in col) and not is_number(first[label]):
        return True
    if kind == "classify" and col:
        distinct = set(col)
        return first[label] not in distinct and len(distinct) <= max(2, len(col) // 2)
    return False


def resolve(path, spec: str, names: list | None, n: int, flag: str):
    """A column spec (a name or a 0-based index) -> its index."""
    idx = as_index(spec)
    if idx is not None:
        if idx >= n:
            raise DataError(path, 1, f"{flag} {idx}: expected a column index below {n} (the "
                                     f"first row has {n} fields)")
        return idx
    if names is None:
        raise DataError(path, 1, f"{flag} {spec!r}: a column name needs a header row, and "
                                 f"this file has none (header no); give a 0-based index")
    low = [str(x).strip().lower() for x in names]
    if spec.strip().lower() not in low:
        raise DataError(path, 1, f"{flag} {spec!r}: no such column; the header has "
                                 f"{names}")
    return low.index(spec.strip().lower())


def pick_columns(path, names, rows, n, kind, text_column, label_column, pair_column,
                 need_label: bool = True):
    """(text, label, pair or None) column indices and how they were chosen; with
    ``need_label`` False (texts to predict) the label is None unless named."""
    how = []
    text = resolve(path, text_column, names, n, "--text-column") if text_column else None
    label = resolve(path, label_column, names, n, "--label-column") if label_column else None
    pair = resolve(path, pair_column, names, n, "--text-pair-column") if pair_column else None
    if names is not None:
        if text is None:
            text = by_name(names, TEXT_NAMES)
            how += [] if text is None else [f"text column {names[text]!r} (by its name)"]
        if label is None and need_label:
            label = by_name(names, LABEL_NAMES)
            how += [] if label is None else [f"label column {names[label]!r} (by its name)"]
        if pair is None and not text_column and text is not None \
                and names[text].strip().lower() in ("sentence1", "text_a", "text1", "question1",
                                                    "premise"):
            pair = by_name(names, PAIR_NAMES)
            how += [] if pair is None else [f"text-pair column {names[pair]!r} (by its name)"]
    if text is None and not need_label:
        text = longest_column(path, rows, n, {j for j in (label, pair) if j is not None})
        how.append(f"text column {column_name(names, text)} (longest values)")
    if text is None or (label is None and need_label):
        taken = {j for j in (text, label, pair) if j is not None}
        t, lab = infer_columns(path, rows, n, kind, taken)
        if label is None:
            label = lab
            how.append(f"label column {column_name(names, label)} (fewest distinct values)"
                       if kind == "classify" else
                       f"score column {column_name(names, label)} (the numeric one)")
        if text is None:
            text = t if t != label else next(j for j in range(n) if j not in (label, pair))
            how.append(f"text column {column_name(names, text)} (longest values)")
    for a, b, fa, fb in ((text, label, "--text-column", "--label-column"),
                         (pair, label, "--text-pair-column", "--label-column"),
                         (text, pair, "--text-column", "--text-pair-column")):
        if a is not None and a == b:
            raise DataError(path, None, f"{fa} and {fb} are the same column ({column_name(names, a)})")
    return text, label, pair, how


def column_name(names, j) -> str:
    return f"{names[j]!r}" if names is not None else f"{j}"
