"""A user's own files: CSV, TSV, JSON lines and folders of class folders
(numformer.data.tabular, numformer.data.user_data), with every error naming the
file, the line and what was expected."""

import gzip
import json

import numpy as np
import pytest

from numformer.data.files import DataError
from numformer.data.tabular import detect_format, read_table
from numformer.data.user_data import (carve, class_names_of, load_labelled, read_folder,
                                      split_folders)


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_by_name_and_quotes(tmp_path):
    p = write(tmp_path / "news.csv", 'id,headline,topic\n1,"Markets fall, again",economy\n'
                                     '2,"He said ""no""\nand left",politics\n3,Rain,weather\n')
    r = read_table(p)
    assert r.texts == ["Markets fall, again", 'He said "no"\nand left', "Rain"]
    assert r.labels == ["economy", "politics", "weather"]
    assert r.lines == [2, 3, 5]  # a quoted line break: the record starts on line 3
    assert "'headline'" in r.columns and "'topic'" in r.columns
    assert any("header row: id, headline, topic" in n for n in r.notes)


def test_columns_by_index_and_header_detection(tmp_path):
    rows = "".join(f"{'good film' if i % 2 else 'bad one'} {i},{i % 2}\n" for i in range(10))
    with_header = write(tmp_path / "a.csv", "sentence,label\n" + rows)
    without = write(tmp_path / "b.csv", rows)
    a = read_table(with_header, text_column="0", label_column="1")
    b = read_table(without, text_column="0", label_column="1")
    assert len(a) == len(b) == 10 and a.texts == b.texts
    assert "no header row (none detected)" in b.notes
    # a header whose names are not known words: detected because 'polarity' is no label
    c = read_table(write(tmp_path / "c.csv", "words,polarity\n" + rows))
    assert len(c) == 10 and c.texts[0] == "bad one 0"
    # declared: the first row is data
    d = read_table(with_header, header="no", text_column="0", label_column="1")
    assert len(d) == 11 and d.texts[0] == "sentence"


def test_default_columns_by_content(tmp_path):
    rows = "".join(f"{i % 3},a rather long text number {i}\n" for i in range(12))
    r = read_table(write(tmp_path / "x.csv", rows))
    assert r.labels[:3] == ["0", "1", "2"] and r.texts[0] == "a rather long text number 0"
    assert "fewest distinct values" in r.columns


def test_regression_score_column_by_content(tmp_path):
    rows = "".join(f"{i:04d}\tsentence {i}\tanother {i}\t{i * 0.37:.3f}\n" for i in range(12))
    r = read_table(write(tmp_path / "s.tsv", rows), kind="regress", pair_column="2")
    assert r.labels[1] == "0.370" and r.pairs[0] == "another 0"


def test_name_without_header_and_missing_column(tmp_path):
    p = write(tmp_path / "n.csv", "text,label\nfine,1\nbad,0\n")
    with pytest.raises(DataError, match=r"n.csv, line 1: --text-column 'review': no such "
                                        r"column; the header has \['text', 'label'\]"):
        read_table(p, text_column="review")
    with pytest.raises(DataError, match="--label-column 5: expected a column index below 2"):
        read_table(p, text_column="0", label_column="5")
    with pytest.raises(DataError, match="a column name needs a header row"):
        read_table(p, header="no", text_column="text")


def test_empty_text_and_empty_label(tmp_path):
    with pytest.raises(DataError, match=r"e.csv, line 3: empty text in column 'text'"):
        read_table(write(tmp_path / "e.csv", "text,label\nfine,1\n  ,0\n"))
    with pytest.raises(DataError, match=r"f.csv, line 2: empty label in column 'label'"):
        read_table(write(tmp_path / "f.csv", "text,label\nfine,\nbad,0\n"))


def test_ragged_rows(tmp_path):
    # CSV: a row with an extra field (an unquoted comma) is an error, with the hint
    with pytest.raises(DataError, match=r"r.csv, line 3: ragged row: 3 fields, expected 2 "
                                        r"\(as the header\); a text holding a comma"):
        read_table(write(tmp_path / "r.csv", "text,label\nfine,1\nbad, bad,0\n"))
    # TSV: fewer fields than the header is an error
    with pytest.raises(DataError, match=r"r.tsv, line 4: ragged row: 2 fields, expected 3"):
        read_table(write(tmp_path / "r.tsv", "id\ttext\tlabel\n1\ta\t0\n2\tb\t1\n3\tc\n"))
    # TSV: extra fields after the header's are read as the file is, and counted
    r = read_table(write(tmp_path / "x.tsv", "id\ttext\tlabel\n1\ta\t0\tsrc\tsrc\n2\tb\t1\n"))
    assert r.texts == ["a", "b"] and r.labels == ["0", "1"]
    assert "1 rows have more than 3 fields; their extra fields are not read" in r.notes


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    p = write(tmp_path / "u.csv", b"text,label\ngood,1\nbad \xff\xfe,0\n", mode="wb")
    with pytest.raises(DataError, match=r"u.csv, line 3: not valid UTF-8: byte 0xff at byte "
                                        r"offset 22 \(column 5\)"):
        read_table(p)


def test_file_not_the_format_its_extension_says(tmp_path):
    with pytest.raises(DataError, match="looks tab-separated .* not CSV as its extension says; "
                                        "give --format tsv"):
        read_table(write(tmp_path / "t.csv", "a\tb\t0\nc\td\t1\n"))
    with pytest.raises(DataError, match="not JSON lines as its extension says"):
        read_table(write(tmp_path / "j.jsonl", "text,label\nfine,1\n"))
    with pytest.raises(DataError, match="looks comma-separated, not TSV"):
        read_table(write(tmp_path / "c.tsv", "text,label\nfine,1\n"))
    with pytest.raises(DataError, match="looks like JSON lines, not CSV"):
        read_table(write(tmp_path / "k.csv", '{"text": "a", "label": 1}\n'))
    with pytest.raises(DataError, match="not a text file"):
        read_table(write(tmp_path / "z.csv", b"PK\x03\x04\x00\x00binary", mode="wb"))
    with pytest.raises(DataError, match=r"cannot tell the format from the extension '\.txt'"):
        detect_format(write(tmp_path / "d.txt", "x"))
    # declared: --format wins over the extension
    r = read_table(tmp_path / "t.csv", fmt="tsv", header="no", text_column="0",
                   label_column="2", pair_column="1")
    assert r.pairs == ["b", "d"]


def test_jsonl_keys_and_errors(tmp_path):
    p = write(tmp_path / "r.jsonl", '{"review": "great", "stars": 5}\n\n'
                                    '{"review": "awful", "stars": 1}\n')
    r = read_table(p, text_column="review", label_column="stars")
    assert r.texts == ["great", "awful"] and r.labels == ["5", "1"] and r.lines == [1, 3]
    with pytest.raises(DataError, match=r"m.jsonl, line 2: missing key 'label' \(the label\)"):
        read_table(write(tmp_path / "m.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n'))
    with pytest.raises(DataError, match=r"b.jsonl, line 2: not valid JSON"):
        read_table(write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n{"text": \n'))
    with pytest.raises(DataError, match="JSON lines name their fields; give a key"):
        read_table(p, text_column="0")
    with pytest.raises(DataError, match=r"line 1: 'text': expected a string text, got int"):
        read_table(write(tmp_path / "i.jsonl", '{"text": 3, "label": 1}\n'))


def test_gzip_is_read_by_its_extension_under_gz(tmp_path):
    p = tmp_path / "g.csv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("text,label\nfine,1\nbad,0\n")
    assert read_table(p).texts == ["fine", "bad"]


def test_class_names_sorted_numerically_when_integers():
    assert class_names_of(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert class_names_of(["pos", "neg", "pos"]) == ["neg", "pos"]


def test_dev_label_not_in_training_labels(tmp_path):
    tr = write(tmp_path / "train.csv", "text,label\n" + "a,x\nb,y\n" * 5)
    dev = write(tmp_path / "dev.csv", "text,label\na,x\nb,z\n")
    with pytest.raises(DataError, match=r"dev.csv, line 3: label 'z' is not one of the training "
                                        r"labels \['x', 'y'\]"):
        load_labelled(tr, dev=dev)


def test_regression_label_must_be_a_number(tmp_path):
    p = write(tmp_path / "s.csv", "text,score\na,1.5\nb,high\n")
    with pytest.raises(DataError, match=r"s.csv, line 3: label 'high': expected a finite number"):
        load_labelled(p, kind="regress")


def test_carved_splits_are_seeded_disjoint_and_cover(tmp_path):
    parts = carve(50, {"dev": 0.1, "test": 0.2}, seed=3)
    assert [len(parts[k]) for k in ("dev", "test", "train")] == [5, 10, 35]
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(50))
    again = carve(50, {"dev": 0.1, "test": 0.2}, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = carve(50, {"dev": 0.1, "test": 0.2}, seed=4)
    assert not np.array_equal(parts["dev"], other["dev"])


def test_load_labelled_counts_and_carving(tmp_path):
    rows = "".join(f"text {i},{'pos' if i % 3 else 'neg'}\n" for i in range(40))
    tr = write(tmp_path / "t.csv", "text,label\n" + rows)
    train, evals, names, report = load_labelled(tr, eval_fraction=0.25, seed=0)
    assert names == ["neg", "pos"]
    assert (len(train), len(evals["dev"]), len(evals["test"])) == (20, 10, 10)
    seen = sorted(train.texts + evals["dev"].texts + evals["test"].texts)
    assert seen == sorted(f"text {i}" for i in range(40))  # nothing dropped, nothing twice
    assert any("dev and test carved from train (seed 0" in line for line in report)
    # the labels follow their texts
    for d in (train, evals["dev"]):
        for t, y in zip(d.texts, d.labels):
            assert names[y] == ("pos" if int(t.split()[1]) % 3 else "neg")


def _folder(root, classes, n=3, extra=None):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            (root / c / f"{i}_{c}.txt").write_text(f"a {c} review {i}", encoding="utf-8")
    for name, text in (extra or {}).items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_folder_of_class_folders(tmp_path):
    root = _folder(tmp_path / "txt_sentoken", ["pos", "neg"], extra={"README": "x"})
    (root / "unsup").mkdir()
    (root / "unsup" / "1_0.txt").write_text("unlabelled", encoding="utf-8")
    (root / "pos" / "notes.md").write_text("not a review", encoding="utf-8")
    r = read_folder(root)
    assert len(r) == 6 and r.labels[:3] == ["neg"] * 3 and r.texts[0] == "a neg review 0"
    assert "sub-folder unsup (unlabelled) not read" in r.notes
    assert "2 files that are not a class folder's *.txt not read" in r.notes


def test_folder_errors(tmp_path):
    root = _folder(tmp_path / "d", ["a", "b"])
    (root / "b" / "bad.txt").write_bytes(b"ok\nbroken \xc3(\n")
    with pytest.raises(DataError, match=r"bad.txt, line 2: not valid UTF-8: byte 0xc3 at byte "
                                        r"offset 10"):
        read_folder(root)
    (root / "b" / "bad.txt").write_text("   ", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt: empty text"):
        read_folder(root)
    (root / "b" / "bad.txt").unlink()
    (root / "c").mkdir()
    with pytest.raises(DataError, match=r"d/c: expected \*.txt files in this class folder"):
        read_folder(root)


def test_folder_with_split_folders(tmp_path):
    root = tmp_path / "aclImdb"
    _folder(root / "train", ["neg", "pos"], n=4)
    _folder(root / "test", ["neg", "pos"], n=2)
    assert set(split_folders(root)) == {"train", "test"}
    train, evals, names, report = load_labelled(root, eval_fraction=0.25)
    assert names == ["neg", "pos"] and len(evals["test"]) == 4
    assert len(train) + len(evals["dev"]) == 8
    assert any(line.startswith("dev carved from train") for line in report)


def test_stsb_read_as_the_tab_separated_file_it_is(data_dir):
    p = data_dir / "stsb" / "sts-train.csv"
    if not p.is_file():
        pytest.skip("STS-B not in the shared data")
    with pytest.raises(DataError, match="give --format tsv"):
        read_table(p, kind="regress")
    r = read_table(p, fmt="tsv", kind="regress", text_column="5", pair_column="6",
                   label_column="4")
    assert len(r) == 5749  # every line, the ragged ones included
    assert (r.texts[0], r.pairs[0], r.labels[0]) == ("A plane is taking off.",
                                                     "An air plane is taking off.", "5.000")
    assert "197 rows have more than 7 fields; their extra fields are not read" in r.notes
    assert "no header row (none detected)" in r.notes


def test_imdb_jsonl(data_dir):
    p = data_dir / "imdb" / "test.jsonl.gz"
    if not p.is_file():
        pytest.skip("IMDb JSON lines not in the shared data")
    r = read_table(p)
    assert len(r) == 25000 and sorted(set(r.labels)) == ["0", "1"]
    first = json.loads(gzip.open(p, "rt", encoding="utf-8").readline())
    assert r.texts[0] == first["text"].strip()
