"""A user's own labelled data: CSV, TSV, JSON lines, or a folder of text files.

    rows = read_table("news.csv", text_column="headline", label_column="topic")
    rows.texts, rows.pairs, rows.labels, rows.lines    # the labels as read (str)

Folders of class folders, class names and splits: numformer.data.user_data.

Formats (``fmt``, else by extension, a final ``.gz`` ignored):
  csv    .csv: RFC 4180 (quoted fields may hold commas, quotes and line breaks)
  tsv    .tsv/.tab: one record a line, fields split on tabs, no quoting (the
         IANA text/tab-separated-values rule: a field holds no tab). A row
         with MORE fields than the header (or the first row) is read, its
         extra fields are not (STS-B's files carry optional source columns
         after the two sentences); how many rows did so is reported. A row
         with fewer fields is an error.
  jsonl  .jsonl/.ndjson: one JSON object a line; columns are keys.
In CSV a row whose field count differs from the header's is an error (an
unquoted comma in a text would shift the columns after it).

Columns: a name (a header row is then required) or a 0-based index; the
default is found by name (text, sentence, review, ...; label, class,
score, ...), else by content (the label column has the fewest distinct
values, the text column the longest values). A header row is detected
(``header="auto"``: a column is named, or the first row holds a known column
name such as text or label, or its label is not a number while the others'
are, or it is a value seen nowhere else in a label column that repeats its
values) or declared (``"yes"``/``"no"``).

Every problem is a DataError naming the file, the line and what was
expected; invalid UTF-8 also gives the byte offset. Nothing is dropped
silently: blank lines and extra fields are counted in the notes of the Rows,
and the per-split, per-class counts are printed by the task.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from numformer.data.columns import (LABEL_NAMES, SCAN, TEXT_NAMES, as_index, by_name,
                                    column_name, first_is_header, infer_columns, longest_column,
                                    pick_columns)
from numformer.data.files import DataError, read_bytes

FORMATS = ("auto", "csv", "tsv", "jsonl")
HEADERS = ("auto", "yes", "no")
KINDS = ("classify", "regress")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
              ".ndjson": "jsonl"}


@dataclass
class Rows:
    """What one file (or folder) gave: texts, the second texts of pairs (or None),
    the raw labels (str; None for texts read to predict), the 1-based line of each
    row, and notes for the report."""
    path: str
    texts: list
    pairs: list | None
    labels: list
    lines: list
    columns: str = ""      # how the columns were chosen, for the report
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


# formats ---------------------------------------------------------------------------

def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def detect_format(path, fmt: str = "auto") -> str:
    """"folder", or the format of a file: ``fmt`` unless "auto", else by extension."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")
    if path.is_dir():
        return "folder"
    if fmt != "auto":
        return fmt
    ext = _suffix(path)
    if ext not in EXTENSIONS:
        raise DataError(path, None, f"cannot tell the format from the extension {ext or '(none)'!r}"
                                    f"; expected one of {sorted(EXTENSIONS)} (or .gz of them), "
                                    f"or give format (--format csv|tsv|jsonl)")
    return EXTENSIONS[ext]


def decode(path, data: bytes) -> str:
    """Strict UTF-8 (a leading BOM removed); the error names the line, the column and
    the byte offset in the file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = 1 + data.count(b"\n", 0, e.start)
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(path, line, f"not valid UTF-8: byte 0x{data[e.start]:02x} at byte "
                                    f"offset {e.start} (column {col}): {e.reason}; expected "
                                    f"UTF-8 text") from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_extension(path, fmt: str, declared: bool, text: str) -> None:
    """A file that is not what its extension (or --format) says is an error naming both."""
    if "\x00" in text[:65536]:
        raise DataError(path, None, f"not a text file (NUL bytes); expected {fmt.upper()}")
    lines = [ln for ln in text.split("\n")[:20] if ln.strip()]
    if not lines:
        raise DataError(path, None, "no rows (the file is empty or blank)")
    said = "--format" if declared else "its extension"
    first = lines[0].lstrip()
    if fmt != "jsonl" and first.startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                raise DataError(path, 1, f"looks like JSON lines, not {fmt.upper()} as {said} "
                                         f"says; give --format jsonl")
        except json.JSONDecodeError:
            pass
    if fmt == "jsonl":
        try:
            ok = isinstance(json.loads(first), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            guess = "TSV" if "\t" in first else "CSV" if "," in first else "plain text"
            raise DataError(path, 1, f"not JSON lines as {said} says (expected a JSON object "
                                     f"a line, got {first[:50]!r}; it looks like {guess})")
    elif fmt == "csv":
        if all("\t" in ln for ln in lines) and all(ln.count("\t") >= ln.count(",")
                                                   for ln in lines[:1]):
            raise DataError(path, 1, f"looks tab-separated ({lines[0].count(chr(9)) + 1} "
                                     f"tab-separated fields in line 1), not CSV as {said} "
                                     f"says; give --format tsv")
    elif fmt == "tsv":
        if not any("\t" in ln for ln in lines) and any("," in ln for ln in lines):
            raise DataError(path, 1, f"no tab in the first {len(lines)} rows: looks "
                                     f"comma-separated, not TSV as {said} says; give "
                                     f"--format csv")


def _records(path, fmt: str, text: str):
    """(line, fields) of every non-blank record of a CSV/TSV text; blank lines counted."""
    out, blank = [], 0
    if fmt == "tsv":
        for n, line in enumerate(text.split("\n"), 1):
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip():
                blank += 1
                continue
            out.append((n, line.split("\t")))
        if text.endswith("\n"):
            blank -= 1  # the final line end is no blank line
        return out, blank
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                blank += 1
            else:
                out.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(path, start, f"not valid CSV ({e}); expected comma-separated fields, "
                                     f"text with commas or quotes inside double quotes") from None
    return out, blank


# readers ---------------------------------------------------------------------------

def _cell(path, line, fields, j, names, what, allow_empty=False) -> str:
    v = fields[j]
    if not allow_empty and not v.strip():
        raise DataError(path, line, f"empty {what} in column {column_name(names, j)}; expected a "
                                    f"non-empty {what}")
    return v.strip()


def read_table(path, fmt: str = "auto", header: str = "auto", text_column: str = "",
               label_column: str = "", pair_column: str = "", kind: str = "classify",
               need_label: bool = True) -> Rows:
    """The rows of a CSV, TSV or JSON-lines file (gzip or not); see the module doc.
    ``need_label`` False (texts to predict): no label column is looked for, and
    ``labels`` is None."""
    path = Path(path)
    declared = fmt != "auto"
    fmt = detect_format(path, fmt)
    if header not in HEADERS:
        raise ValueError(f"header: expected one of {HEADERS}, got {header!r}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    text = decode(path, read_bytes(path))
    _check_extension(path, fmt, declared, text)
    if fmt == "jsonl":
        return _read_jsonl(path, text, text_column, label_column, pair_column, kind,
                           need_label)
    records, blank = _records(path, fmt, text)
    if not records:
        raise DataError(path, None, "no rows")
    rows = [f for _, f in records]
    n = len(rows[0])
    named = any(s and as_index(s) is None for s in (text_column, label_column, pair_column))
    if header == "auto":
        if named:
            has_header = True
        else:
            lab = as_index(label_column) if label_column else None
            if lab is None and need_label:
                try:
                    lab = infer_columns(path, rows[1:SCAN], n, kind, set())[1]
                except DataError:
                    lab = None
            has_header = first_is_header(rows, lab, kind)
    else:
        has_header = header == "yes"
    names = rows[0] if has_header else None
    body = records[1:] if has_header else records
    if not body:
        raise DataError(path, None, "no rows after the header")
    t, lab, pair, how = pick_columns(path, names, [f for _, f in body[:SCAN]], n, kind,
                                     text_column, "" if not need_label else label_column,
                                     pair_column, need_label)
    need = max(j for j in (t, lab, pair) if j is not None) + 1
    texts, pairs, lines = [], [] if pair is not None else None, []
    labels = [] if lab is not None else None
    extra = 0
    ref = "the header" if has_header else f"line {records[0][0]}"
    for line, fields in body:
        if len(fields) != n:
            if len(fields) < n or fmt == "csv":
                hint = ("; a text holding a comma must be inside double quotes"
                        if fmt == "csv" and len(fields) > n else "")
                raise DataError(path, line, f"ragged row: {len(fields)} fields, expected {n} "
                                            f"(as {ref}){hint}")
            extra += 1
        if len(fields) < need:  # pragma: no cover - caught above
            raise DataError(path, line, f"expected at least {need} fields, got {len(fields)}")
        texts.append(_cell(path, line, fields, t, names, "text"))
        if pairs is not None:
            pairs.append(_cell(path, line, fields, pair, names, "text"))
        if labels is not None:
            labels.append(_cell(path, line, fields, lab, names, "label"))
        lines.append(line)
    notes = []
    if has_header:
        notes.append(f"header row: {', '.join(map(str, names))}"
                     + (" (detected)" if header == "auto" else ""))
    else:
        notes.append("no header row" + (" (none detected)" if header == "auto" else ""))
    if extra:
        notes.append(f"{extra} rows have more than {n} fields; their extra fields are not read")
    if blank > 0:
        notes.append(f"{blank} blank lines skipped")
    cols = [f"text column {column_name(names, t)}"]
    if lab is not None:
        cols.append(f"label column {column_name(names, lab)}")
    if pair is not None:
        cols.insert(1, f"text-pair column {column_name(names, pair)}")
    return Rows(str(path), texts, pairs, labels, lines,
                "; ".join(how) if how else ", ".join(cols), notes)


def _read_jsonl(path, text, text_column, label_column, pair_column, kind,
                need_label=True) -> Rows:
    objs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, f"not valid JSON ({e.msg} at column {e.colno}); expected "
                                     f"one JSON object a line") from None
        if not isinstance(d, dict):
            raise DataError(path, n, f"expected a JSON object, got {type(d).__name__}")
        objs.append((n, d))
    for spec, flag in ((text_column, "--text-column"), (label_column, "--label-column"),
                       (pair_column, "--text-pair-column")):
        if spec and as_index(spec) is not None:
            raise DataError(path, None, f"{flag} {spec}: JSON lines name their fields; give a "
                                        f"key (the first object has {sorted(objs[0][1])})")
    keys = list(objs[0][1])
    how = []
    tkey, lkey, pkey = text_column or None, label_column or None, pair_column or None
    if tkey is None:
        j = by_name(keys, TEXT_NAMES)
        tkey = keys[j] if j is not None else None
    if not need_label:
        lkey = None
    elif lkey is None:
        j = by_name(keys, LABEL_NAMES)
        lkey = keys[j] if j is not None else None
    if tkey is None or (lkey is None and need_label):  # chosen by content
        rows = [[str(d.get(k, "")) for k in keys] for _, d in objs[:SCAN]]
        if not need_label:
            tkey = keys[longest_column(path, rows, len(keys),
                                       {keys.index(pkey)} if pkey in keys else set())]
            how.append(f"text key {tkey!r} (longest values)")
        else:
            taken = {keys.index(k) for k in (tkey, lkey, pkey) if k in keys}
            t, lab = infer_columns(path, rows, len(keys), kind, taken)
            if lkey is None:
                lkey = keys[lab]
                how.append(f"label key {lkey!r} (by content)")
            if tkey is None:
                tkey = keys[t]
                how.append(f"text key {tkey!r} (by content)")
    texts, pairs, lines = [], [] if pkey else None, []
    labels = [] if lkey is not None else None
    for n, d in objs:
        for k, what in ((tkey, "text"), (pkey, "text"), (lkey, "label")):
            if k is None:
                continue
            if k not in d:
                raise DataError(path, n, f"missing key {k!r} (the {what}); the object has "
                                         f"{sorted(d)}")
            v = d[k]
            if what == "text" and not isinstance(v, str):
                raise DataError(path, n, f"{k!r}: expected a string text, got "
                                         f"{type(v).__name__}")
            if what == "label" and (isinstance(v, (dict, list)) or v is None):
                raise DataError(path, n, f"{k!r}: expected a label (a string or a number), got "
                                         f"{json.dumps(v)[:40]}")
            if not str(v).strip():
                raise DataError(path, n, f"empty {what} in key {k!r}; expected a non-empty "
                                         f"{what}")
        texts.append(d[tkey].strip())
        if pairs is not None:
            pairs.append(d[pkey].strip())
        if labels is not None:
            v = d[lkey]
            labels.append(str(v).strip() if not isinstance(v, bool) else str(v).lower())
        lines.append(n)
    cols = f"text key {tkey!r}" + (f", text-pair key {pkey!r}" if pkey else "") + \
        (f", label key {lkey!r}" if lkey else "")
    return Rows(str(path), texts, pairs, labels, lines, "; ".join(how) or cols, [])
