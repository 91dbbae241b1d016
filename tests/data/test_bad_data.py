"""Bad data: missing or empty files, malformed lines, labels out of range, bytes that
are not UTF-8, corrupt gzip -> a clear exception naming the file and the line."""

import gzip
import json

import pytest

from numformer.data import (DataError, load_europarl, load_imdb, load_sst2, load_sst5,
                            load_text, load_tinyshakespeare, load_wikitext2)


def raises_at(path, line, what, fn, *args, **kw):
    with pytest.raises(DataError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    where = str(path) if line is None else f"{path}, line {line}"
    assert msg.startswith(where + ": "), msg
    assert what in msg, msg
    assert e.value.line == line
    return msg


def jsonl(path, rows, gz=True):
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_bytes(gzip.compress(data.encode()) if gz else data.encode())
    return path


GOOD = {"id": 0, "rating": 9, "label": 1, "text": "Great."}


# missing and empty files ----------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda p: load_sst2(p / "stsa.binary.train"),
    lambda p: load_sst2(p, "dev"),
    lambda p: load_europarl(p / "europarl.fr"),
    lambda p: load_imdb(p / "train.jsonl.gz"),
    lambda p: load_tinyshakespeare(p / "tinyshakespeare.txt"),
    lambda p: load_wikitext2(p, "valid"),
    lambda p: load_text(p / "x.txt"),
])
def test_missing_file(tmp_path, fn):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        fn(tmp_path)


@pytest.mark.parametrize("name,fn", [
    ("stsa.binary.train", load_sst2),
    ("europarl-v7.fr-en.fr", load_europarl),
    ("train.jsonl", load_imdb),
    ("tinyshakespeare.txt", load_tinyshakespeare),
    ("notes.txt", load_text),
])
def test_empty_file(tmp_path, name, fn):
    path = tmp_path / name
    path.write_bytes(b"")
    raises_at(path, None, "empty file", fn, path)


def test_empty_gzip_and_blank_europarl(tmp_path):
    path = tmp_path / "stsa.binary.dev.gz"
    path.write_bytes(gzip.compress(b""))
    raises_at(path, None, "empty file", load_sst2, path)
    blank = tmp_path / "europarl.fr"
    blank.write_text("\n  \n\n")
    raises_at(blank, None, "no non-empty sentence", load_europarl, blank)


# malformed lines and labels -----------------------------------------------------------

@pytest.mark.parametrize("bad,what", [
    ("1", "expected 'LABEL TEXT'"),
    ("1    ", "expected 'LABEL TEXT'"),
    ("", "expected 'LABEL TEXT'"),
    ("pos a fine film", "label 'pos' is not a non-negative integer"),
    ("-1 a fine film", "label '-1' is not a non-negative integer"),
    ("2 a fine film", "label 2 out of range [0, 2)"),
])
def test_sst2_bad_line(tmp_path, bad, what):
    path = tmp_path / "stsa.binary.train"
    path.write_text(f"1 good .\n0 bad .\n{bad}\n1 fine .\n", encoding="utf-8")
    raises_at(path, 3, what, load_sst2, path)


def test_sst5_label_out_of_range_in_gzip(tmp_path):
    path = tmp_path / "stsa.fine.dev.gz"
    path.write_bytes(gzip.compress(b"4 great .\n0 awful .\n3 good .\n5 too good .\n"))
    raises_at(path, 4, "label 5 out of range [0, 5)", load_sst5, tmp_path, "dev")


@pytest.mark.parametrize("row,split,what", [
    ("{not json", "train", "not valid JSON"),
    ("[1, 2]", "train", "expected a JSON object, got list"),
    (dict(GOOD, text=None), "train", "expected a string 'text'"),
    (dict(GOOD, label=2), "train", "label 2 out of range"),
    (dict(GOOD, label=-1), "test", "label -1 out of range"),
    ({"id": 1, "rating": 9, "text": "no label"}, "train", "label None out of range"),
    (dict(GOOD, label=True), "train", "label True out of range"),
    (dict(GOOD, rating=11), "train", "rating 11 out of range [1, 10]"),
    (dict(GOOD, label=1), "unsup", "label 1 out of range: expected one of (-1,)"),
    (dict(GOOD, id="x"), "train", "expected an integer 'id'"),
])
def test_imdb_bad_line(tmp_path, row, split, what):
    ok = {"id": 0, "text": "Unrated."} if split == "unsup" else GOOD
    path = jsonl(tmp_path / f"{split}.jsonl.gz", [ok, ok, row, ok])
    raises_at(path, 3, what, load_imdb, tmp_path, split)


# encodings ------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name,fn,good", [
    ("stsa.binary.test", load_sst2, b"1 good .\n"),
    ("europarl-v7.fr-en.fr", load_europarl, "Déjà vu .\n".encode()),
    ("tinyshakespeare.txt", load_tinyshakespeare, b"First Citizen:\n"),
    ("test.jsonl", lambda p: load_imdb(p, "test"), json.dumps(GOOD).encode() + b"\n"),
])
def test_not_utf8(tmp_path, gz, name, fn, good):
    # line 3 holds a Latin-1 e-acute (0xe9) where UTF-8 needs two bytes
    bad = good.replace(b".", b"\xe9.", 1) if b"." in good else b"caf\xe9\n"
    data = good + good + bad + good
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    raises_at(path, 3, "not valid UTF-8: byte 0xe9", fn, path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "stsa.binary.train.gz"
    path.write_bytes(gzip.compress(b"1 good .\n" * 1000)[:-40])  # truncated stream
    raises_at(path, None, "not a valid gzip file", load_sst2, path)
    jpath = tmp_path / "train.jsonl.gz"
    jpath.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode() * 5000)[:300])
    with pytest.raises(DataError, match=r"train\.jsonl\.gz.*not a valid gzip file"):
        load_imdb(jpath)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
    e = DataError("a/b.txt", 7, "bad")
    assert str(e) == "a/b.txt, line 7: bad" and e.path == "a/b.txt" and e.reason == "bad"


@pytest.mark.parametrize("fn,match", [
    (lambda p: load_sst2(p, "validation"), "split"),
    (lambda p: load_imdb(p, "dev"), "split"),
    (lambda p: load_wikitext2(p, "dev"), "split"),
])
def test_bad_split(tmp_path, fn, match):
    with pytest.raises(ValueError, match=match):
        fn(tmp_path)
