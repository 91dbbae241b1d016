"""`numformer predict -c RUN --file FILE`: every row of a CSV, TSV, JSON-lines file or
every text file of a folder predicted in padded, length-sorted batches, as CSV.
Each prediction is held to the one-text-at-a-time path of `predict TEXT` (no
padding, no batching), so a padding, ordering or type mistake shows."""

import csv
import io
import json

import numpy as np
import pytest

from numformer.cli import main
from numformer.testing import overlap_pairs_tsv
from numformer.train import TrainConfig, train

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, batch_size=16, warmup=2, progress=False,
            max_len=16)
POS, NEG = ["good", "great", "fine", "lovely"], ["bad", "awful", "dull", "poor"]


def quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("pf")
    p = root / "train.csv"
    lines = ["review,sentiment"]
    for i in range(120):
        lab = "pos" if i % 2 else "neg"
        lines.append(f'"{" ".join(rng.choice(POS if lab == "pos" else NEG, 3))} film",{lab}')
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "run"
    train(TrainConfig.for_task("classify", data=str(p), out=str(out), **dict(TINY, epochs=3)),
          log=quiet)
    return out


def _texts(seed, n):
    """Texts of different lengths (1 to 9 words), so batches hold padding."""
    rng = np.random.default_rng(seed)
    words = POS + NEG + ["film", "plot"]
    return [" ".join(rng.choice(words, int(rng.integers(1, 10)))) for _ in range(n)]


def _one_by_one(run, texts, capsys):
    """`predict TEXT...` output: (class, {class: probability}) per text."""
    assert main(["predict", "-c", str(run), *texts]) == 0
    out = []
    for line in capsys.readouterr().out.strip().splitlines():
        head = line.split("|", 1)[0].split()
        probs = {head[i].rstrip(":"): float(head[i + 1]) for i in range(2, len(head), 2)}
        out.append((head[0], probs))
    return out


def _read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def test_a_csv_without_labels_matches_one_text_at_a_time(classify_run, tmp_path, capsys):
    texts = _texts(1, 70)  # more than one batch of 64
    f = tmp_path / "new.csv"
    f.write_text("id,review\n" + "".join(f"{i},\"{t}\"\n" for i, t in enumerate(texts)),
                 encoding="utf-8")
    assert main(["predict", "-c", str(classify_run), "--file", str(f)]) == 0
    cap = capsys.readouterr()
    assert f"{f}: 70 rows; text column 'review' (by its name)" in cap.err
    header, rows = _read_csv(cap.out)
    assert header == ["line", "prediction", "probability", "p_neg", "p_pos"]
    assert [int(r[0]) for r in rows] == list(range(2, 72))  # file lines, header on line 1
    ref = _one_by_one(classify_run, texts, capsys)
    for r, (cls, probs) in zip(rows, ref):
        assert r[1] == cls
        np.testing.assert_allclose([float(r[3]), float(r[4])], [probs["neg"], probs["pos"]],
                                   atol=2e-3)  # the text path prints 3 decimals
        assert float(r[2]) == max(float(r[3]), float(r[4]))
    assert {r[1] for r in rows} == {"neg", "pos"}  # a trained model, not a constant


def test_output_file_is_written_whole_and_never_replaced_unasked(classify_run, tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    texts = _texts(2, 9)
    f.write_text("".join(json.dumps({"n": i, "words": t}) + "\n" for i, t in enumerate(texts)),
                 encoding="utf-8")
    dest = tmp_path / "preds.csv"
    assert main(["predict", "-c", str(classify_run), "--file", str(f), "-o", str(dest)]) == 0
    assert "text key 'words' (longest values)" in capsys.readouterr().err
    header, rows = _read_csv(dest.read_text(encoding="utf-8"))
    assert len(rows) == 9 and [r[0] for r in rows] == [str(i) for i in range(1, 10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "preds.csv"]
    before = dest.read_bytes()
    assert main(["predict", "-c", str(classify_run), "--file", str(f), "-o", str(dest)]) == 2
    assert f"--output {dest}: the file exists; give another path, or --overwrite" in \
        capsys.readouterr().err
    assert dest.read_bytes() == before
    assert main(["predict", "-c", str(classify_run), "--file", str(f), "-o", str(dest),
                 "--overwrite"]) == 0
    assert dest.read_bytes() == before  # the same model, the same file


def test_a_folder_of_text_files(classify_run, tmp_path, capsys):
    texts = _texts(3, 5)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    names = ["a.txt", "b.txt", "sub/c.txt", "sub/d.txt", "z.txt"]
    for n, t in zip(names, texts):
        (tmp_path / "d" / n).write_text(t + "\n", encoding="utf-8")
    (tmp_path / "d" / "notes.md").write_text("not a text to predict", encoding="utf-8")
    assert main(["predict", "-c", str(classify_run), "--file", str(tmp_path / "d")]) == 0
    header, rows = _read_csv(capsys.readouterr().out)
    assert header[0] == "file" and [r[0] for r in rows] == names
    assert [r[1] for r in rows] == [c for c, _ in _one_by_one(classify_run, texts, capsys)]
    (tmp_path / "d" / "empty.txt").write_text("  \n", encoding="utf-8")
    assert main(["predict", "-c", str(classify_run), "--file", str(tmp_path / "d")]) == 2
    assert "empty.txt: empty text" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    """A regression on pairs, trained on both orders (--pair-swap)."""
    root = tmp_path_factory.mktemp("pairs")
    overlap_pairs_tsv(root / "pairs.tsv", [f"w{i}" for i in range(12)], 160, seed=2)
    out = root / "run"
    train(TrainConfig.for_task("regress", data=str(root / "pairs.tsv"), out=str(out),
                               pair_swap=True, **dict(TINY, max_steps=6)), log=quiet)
    return out


def test_pairs_in_both_orders_match_the_text_path(pair_run, tmp_path, capsys):
    pairs = [("w1 w2 w3", "w1 w2 w3"), ("w1 w2 w3", "w7 w8 w9"), ("w7 w8", "w1 w2 w3 w4 w5"),
             ("w1 w2 w3 w4 w5", "w7 w8")]
    f = tmp_path / "p.tsv"
    f.write_text("".join(f"{a}\t{b}\tignored\n" for a, b in pairs), encoding="utf-8")
    # the run read a header (sentence1, sentence2): this file has none, so say it
    args = ["predict", "-c", str(pair_run), "--file", str(f), "--header", "no",
            "--text-column", "0", "--text-pair-column", "1"]
    assert main(args) == 0
    header, rows = _read_csv(capsys.readouterr().out)
    assert header == ["line", "score"]
    scores = [float(r[1]) for r in rows]
    flat = [t for p in pairs for t in p]
    assert main(["predict", "-c", str(pair_run), *flat]) == 0
    ref = [float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    np.testing.assert_allclose(scores, ref, atol=1e-4)  # the text path prints 4 decimals
    assert scores[2] == pytest.approx(scores[3], abs=1e-9)  # both orders, averaged
    named = tmp_path / "named.tsv"  # the run's own layout: its columns found by their names
    named.write_text("sentence2\tsentence1\n" + "".join(f"{b}\t{a}\n" for a, b in pairs),
                     encoding="utf-8")
    assert main(["predict", "-c", str(pair_run), "--file", str(named)]) == 0
    again = [float(r[1]) for r in _read_csv(capsys.readouterr().out)[1]]
    np.testing.assert_allclose(again, scores, atol=1e-12)  # the same pairs, columns swapped
    assert len(set(np.round(scores, 6))) > 1


def test_bad_requests_name_the_flag(classify_run, pair_run, tmp_path, capsys):
    f = tmp_path / "x.csv"
    f.write_text("text\nsome film\n", encoding="utf-8")
    cases = [
        (["-c", str(classify_run), "good film", "--file", str(f)],
         "TEXT: give texts or --file, not both"),
        (["-c", str(classify_run), "good film", "--output", str(tmp_path / "o.csv")],
         "--output: a setting of --file"),
        (["-c", str(classify_run)], "TEXT: expected texts to predict, or --file FILE"),
        (["-c", str(classify_run), "--file", str(tmp_path / "none.csv")],
         "--file: no such file or folder"),
        (["-c", str(classify_run), "--file", str(f), "--batch-size", "0"],
         "--batch-size: expected an integer >= 1, got 0"),
        (["-c", str(classify_run), "--file", str(f), "--text-column", "review"],
         "--text-column 'review': no such column; the header has ['text']"),
        (["-c", str(pair_run), "--file", str(f)],
         "--text-pair-column: this run was trained on text pairs; " + str(f)),
        (["-c", str(pair_run), "--file", str(tmp_path)], "this run was trained on text pairs"),
    ]
    for argv, fragment in cases:
        assert main(["predict", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err, (argv, err)
        assert "Traceback" not in err


def _labelled_csv(path, seed, n):
    rng = np.random.default_rng(seed)
    lines = ["review,sentiment"]
    for i in range(n):
        lab = "pos" if i % 2 else "neg"
        lines.append(f'"{" ".join(rng.choice(POS if lab == "pos" else NEG, 3))} film",{lab}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _metrics(text):
    return json.loads(text.split("}")[0] + "}")


def test_eval_test_file_matches_the_runs_own_evaluation(tmp_path, capsys):
    """`eval RUN --test FILE` on the run's own test file gives the metrics `eval RUN`
    computes through the task (another reader, another batching)."""
    tr, te = _labelled_csv(tmp_path / "tr.csv", 5, 100), _labelled_csv(tmp_path / "te.csv", 6, 41)
    out = tmp_path / "run"
    train(TrainConfig.for_task("classify", train=str(tr), test=str(te), out=str(out),
                               **dict(TINY, epochs=2)), log=quiet)
    assert main(["eval", str(out)]) == 0
    own = _metrics(capsys.readouterr().out)
    assert main(["eval", str(out), "--test", str(te)]) == 0
    cap = capsys.readouterr()
    got = _metrics(cap.out)
    assert got["test_accuracy"] == own["test_accuracy"]
    assert got["test_loss"] == pytest.approx(own["test_loss"], rel=1e-6)
    assert "test per class: neg " in cap.out and f"{te}: 41 rows" in cap.err
    bad = tmp_path / "bad.csv"
    bad.write_text("review,sentiment\ngood film,pos\nfine film,meh\n", encoding="utf-8")
    assert main(["eval", str(out), "--test", str(bad)]) == 2
    assert "bad.csv, line 3: label 'meh' is not one of the training labels ['neg', 'pos']" \
        in capsys.readouterr().err
    assert main(["eval", str(out), "--label-column", "sentiment"]) == 2
    assert "--label-column: a setting of --test FILE" in capsys.readouterr().err
    assert main(["eval", str(out), "--test", str(te), "--data", str(te)]) == 2
    assert "--test: evaluates on one file; give it without --data" in capsys.readouterr().err


def test_eval_test_file_of_pairs_scores_the_regression(pair_run, tmp_path, capsys):
    src = (pair_run.parent / "pairs.tsv").read_text(encoding="utf-8").splitlines()
    f = tmp_path / "held.tsv"
    f.write_text("\n".join(src[:41]) + "\n", encoding="utf-8")  # header + 40 pairs
    assert main(["eval", str(pair_run), "--test", str(f)]) == 0
    got = _metrics(capsys.readouterr().out)
    assert main(["predict", "-c", str(pair_run), "--file", str(f)]) == 0
    pred = np.array([float(r[1]) for r in _read_csv(capsys.readouterr().out)[1]])
    y = np.array([float(line.split("\t")[2]) for line in src[1:41]])
    assert got["test_loss"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-4)
    assert got["test_pearson"] == pytest.approx(np.corrcoef(pred, y)[0, 1], abs=1e-4)


def test_eval_test_folder_of_class_folders(classify_run, tmp_path, capsys):
    rng = np.random.default_rng(7)
    root = tmp_path / "reviews"
    for lab, words in (("neg", NEG), ("pos", POS)):
        (root / lab).mkdir(parents=True)
        for i in range(12):
            n = int(rng.integers(1, 6))
            mixed = list(rng.choice(words, n)) + list(rng.choice(POS + NEG, 2))
            (root / lab / f"{i}.txt").write_text(" ".join(mixed), encoding="utf-8")
    assert main(["eval", str(classify_run), "--test", str(root)]) == 0
    acc = _metrics(capsys.readouterr().out)["test_accuracy"]
    assert main(["predict", "-c", str(classify_run), "--file", str(root)]) == 0
    rows = _read_csv(capsys.readouterr().out)[1]
    assert len(rows) == 24
    assert acc == pytest.approx(np.mean([r[0].split("/")[0] == r[1] for r in rows]))


def test_reading_texts_without_labels_finds_the_text_column(tmp_path):
    """The table reader with need_label=False: by name, else the longest values; a
    label column that is there is not read, and nothing is required of it."""
    from numformer.data.tabular import read_table
    d = tmp_path
    (d / "a.csv").write_text("n,words,label\n1,a long text here,x\n2,another long text,\n",
                             encoding="utf-8")
    r = read_table(d / "a.csv", need_label=False)
    assert r.texts == ["a long text here", "another long text"] and r.labels is None
    assert r.columns == "text column 'words' (longest values)" and r.lines == [2, 3]
    (d / "b.tsv").write_text("7\tshort\tthe longest of the three\n8\tx\tlong enough text\n",
                             encoding="utf-8")
    r = read_table(d / "b.tsv", header="no", need_label=False)
    assert r.texts == ["the longest of the three", "long enough text"]
    r = read_table(d / "b.tsv", header="no", text_column="1", need_label=False)
    assert r.texts == ["short", "x"] and r.columns == "text column 1"
