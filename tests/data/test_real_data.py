"""Each dataset of the shared data folder loads with the counts its README states
(skipped where the folder is absent). IMDb is read once per session."""

import functools

import pytest

from numformer.data import (UNK_ID, WordTokenizer, load_europarl, load_imdb, load_sst2,
                            load_sst5, load_tinyshakespeare, load_wikitext2)


@functools.lru_cache(maxsize=None)
def imdb(root: str, split: str):
    return load_imdb(root, split)


@pytest.mark.parametrize("split", ["train", "test"])
def test_imdb_labelled(data_dir, split):
    d = imdb(str(data_dir / "imdb"), split)
    assert len(d) == 25_000
    assert d.class_counts().tolist() == [12_500, 12_500]
    r = d.extra["rating"]
    assert set(r[d.labels == 1].tolist()) <= {7, 8, 9, 10}
    assert set(r[d.labels == 0].tolist()) <= {1, 2, 3, 4}
    assert all(isinstance(t, str) and t for t in d.texts[:100])
    assert not any("<br />" in t for t in d.texts)  # clean=True


def test_imdb_by_rating(data_dir):
    """The 8 star classes (ratings 1-4 and 7-10) split the 12,500 of each label."""
    from numformer.data import by_rating
    d = by_rating(imdb(str(data_dir / "imdb"), "train"))
    counts = d.class_counts()
    assert d.n_classes == 8 and counts.sum() == 25_000
    assert counts[:4].sum() == counts[4:].sum() == 12_500
    assert counts.min() > 1_000  # every rating is well represented


def test_imdb_unsup(data_dir):
    d = imdb(str(data_dir / "imdb"), "unsup")
    assert len(d) == 50_000
    assert (d.labels == -1).all() and (d.extra["rating"] == 0).all()
    assert d.class_counts().tolist() == [0, 0]


def test_imdb_raw_keeps_line_breaks(data_dir):
    """The file given directly, with clean=False, reads the same reviews, <br /> kept."""
    d = imdb(str(data_dir / "imdb"), "unsup")
    raw = load_imdb(data_dir / "imdb" / "unsup.jsonl.gz", "unsup", clean=False)
    assert len(raw) == len(d) == 50_000
    i = next(i for i, t in enumerate(raw.texts) if "<br />" in t)
    assert "<br />" not in d.texts[i] and raw.texts[i].replace("<br />", " ") == d.texts[i]


@pytest.mark.parametrize("split,n", [("train", 6_920), ("dev", 872), ("test", 1_821)])
def test_sst2(data_dir, split, n):
    d = load_sst2(data_dir / "sst", split)
    assert len(d) == n and d.n_classes == 2
    counts = d.class_counts()
    assert counts.sum() == n and counts.min() > 0.4 * n  # both classes, roughly balanced
    assert d.texts[0] == d.texts[0].lower()


@pytest.mark.parametrize("split,n", [("train", 8_544), ("dev", 1_101), ("test", 2_210)])
def test_sst5(data_dir, split, n):
    d = load_sst5(data_dir / "sst", split)
    assert len(d) == n and d.n_classes == 5
    assert (d.class_counts() > 0).all() and set(d.labels.tolist()) == {0, 1, 2, 3, 4}


def test_sst_known_first_line(data_dir):
    d = load_sst2(data_dir / "sst" / "stsa.binary.train")
    assert d[0] == ("a stirring , funny and finally transporting re-imagining of beauty and the "
                    "beast and 1930s horror films", 1)


@pytest.mark.parametrize("lang,first", [("fr", "Reprise de la session"),
                                        ("en", "Resumption of the session")])
def test_europarl(data_dir, lang, first):
    s = load_europarl(data_dir / "europarl", lang)
    # The README says 2,999 sentences (the files are named head2999), but each file has
    # 2,999 line ends and a final line without one: 3,000 lines, the last a full sentence.
    path = next((data_dir / "europarl").glob(f"*.{lang}.head2999"))
    raw = path.read_bytes()
    assert raw.count(b"\n") == 2_999 and not raw.endswith(b"\n")
    assert len(s) == 3_000
    assert s[0] == first and s[-1].endswith(".")
    n_empty = sum(1 for x in s if not x.strip())
    assert len(load_europarl(path, skip_empty=True)) == 3_000 - n_empty
    assert n_empty == (6 if lang == "fr" else 0)


def test_tinyshakespeare(data_dir):
    text = load_tinyshakespeare(data_dir / "english_lm")
    assert len(text) == 1_115_394  # the 1.1 MB of the README (ASCII: one byte a character)
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert text.count("\n") == 40_000


@pytest.mark.parametrize("split", ["valid", "test"])
def test_wikitext2(data_dir, split):
    text = load_wikitext2(data_dir / "english_lm", split)
    assert len(text) > 1_000_000 and " = " in text
    tok = WordTokenizer.build([text[:200_000]], max_size=2_000)
    assert (tok.encode(" the <unk> of ") == [tok.token_to_id("the"), UNK_ID,
                                             tok.token_to_id("of")]).all()
