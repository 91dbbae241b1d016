"""Word and byte tokenizers: known sentences, specials, unknown words, vocabulary files."""

import numpy as np
import pytest

from numformer.data import (CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIALS, UNK_ID, ByteTokenizer,
                            DataError, WordTokenizer, load_tokenizer)

TEXTS = ["The cat sat on the mat.", "The dog sat, and the cat ran!", "A cat? A DOG."]


def test_special_ids_are_fixed_and_shared():
    assert SPECIALS == ("<pad>", "<unk>", "<mask>", "<cls>", "<sep>")
    assert (PAD_ID, UNK_ID, MASK_ID, CLS_ID, SEP_ID) == (0, 1, 2, 3, 4)
    for tok in (WordTokenizer.build(TEXTS), ByteTokenizer()):
        assert (tok.pad_id, tok.unk_id, tok.mask_id, tok.cls_id, tok.sep_id) == (0, 1, 2, 3, 4)
        assert tok.tokens()[:5] == list(SPECIALS)
        assert tok.special_ids.tolist() == [0, 1, 2, 3, 4]


def test_tokenize_words_and_punctuation():
    t = WordTokenizer.tokenize
    assert t("Hello, World! It's 2024.") == ["hello", ",", "world", "!", "it", "'", "s",
                                            "2024", "."]
    assert t("  L'été   dernier\n(à Paris)") == ["l", "'", "été", "dernier", "(", "à", "paris",
                                                 ")"]
    assert t("a <mask> b <UNK> <x>") == ["a", "<mask>", "b", "<unk>", "<", "x", ">"]
    assert t("") == [] and t(" \t\n") == []


def test_build_orders_by_frequency_then_alphabet():
    tok = WordTokenizer.build(TEXTS)
    # counts: the 4, cat 3, . 2, a 2, dog 2, sat 2, ! , ? and mat on ran 1
    assert tok.tokens() == list(SPECIALS) + ["the", "cat", ".", "a", "dog", "sat", "!", ",",
                                             "?", "and", "mat", "on", "ran"]
    assert WordTokenizer.build(TEXTS, min_freq=2).tokens()[5:] == ["the", "cat", ".", "a", "dog",
                                                                   "sat"]
    small = WordTokenizer.build(TEXTS, max_size=8)
    assert small.vocab_size == 8 and small.tokens()[5:] == ["the", "cat", "."]
    assert WordTokenizer.build(TEXTS, max_size=5).tokens() == list(SPECIALS)


def test_encode_decode_round_trip_and_unknown_words():
    tok = WordTokenizer.build(TEXTS)
    ids = tok.encode("The cat ran on the mat!")
    assert ids.dtype == np.int64
    v = {t: i for i, t in enumerate(tok.tokens())}
    assert ids.tolist() == [v["the"], v["cat"], v["ran"], v["on"], v["the"], v["mat"], v["!"]]
    assert tok.decode(ids) == "the cat ran on the mat !"
    for s in TEXTS:
        assert tok.decode(tok.encode(s)) == " ".join(WordTokenizer.tokenize(s))
    unk = tok.encode("The zebra sat.")
    assert unk.tolist() == [v["the"], UNK_ID, v["sat"], v["."]]
    assert tok.decode(unk) == "the <unk> sat ."
    assert tok.token_to_id("zebra") == UNK_ID and "zebra" not in tok and "cat" in tok


def test_decode_specials():
    tok = WordTokenizer.build(TEXTS)
    ids = [CLS_ID, tok.token_to_id("cat"), MASK_ID, SEP_ID, PAD_ID, PAD_ID]
    assert tok.decode(ids) == "<cls> cat <mask> <sep>"
    assert tok.decode(ids, skip_special=True) == "cat"
    assert tok.encode("<cls> cat <mask>").tolist() == [CLS_ID, tok.token_to_id("cat"), MASK_ID]
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 18\), got 18"):
        tok.decode([18])


def test_vocab_file_round_trip(tmp_path):
    tok = WordTokenizer.build(TEXTS + ["Ça coûte 3 €."])
    path = tmp_path / "vocab.txt"
    tok.save(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[:5] == list(SPECIALS) and lines[-1] == "" and len(lines) == tok.vocab_size + 1
    again = WordTokenizer.load(path)
    assert again.tokens() == tok.tokens()
    s = "Ça coûte 3 € : the cat."
    np.testing.assert_array_equal(again.encode(s), tok.encode(s))
    assert isinstance(load_tokenizer(path), WordTokenizer)


def test_byte_tokenizer():
    tok = ByteTokenizer()
    assert tok.vocab_size == 261
    assert tok.encode("A").tolist() == [65 + 5]
    s = "Héllo, wörld ✓ 🙂\n"
    ids = tok.encode(s)
    assert ids.tolist() == [b + 5 for b in s.encode("utf-8")]
    assert tok.decode(ids) == s
    assert tok.decode([CLS_ID, 70, MASK_ID, 71, PAD_ID]) == "<cls>A<mask>B"
    assert tok.decode([CLS_ID, 70, MASK_ID, 71], skip_special=True) == "AB"
    # a cut multi-byte character (a sample may end mid-character) -> U+FFFD
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"
    assert tok.encode("<mask>").tolist() == [b + 5 for b in b"<mask>"]  # bytes, not a special


def test_byte_vocab_file(tmp_path):
    path = tmp_path / "bytes.txt"
    ByteTokenizer().save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 261 and lines[5] == "<0x00>" and lines[260] == "<0xFF>"
    assert isinstance(load_tokenizer(path), ByteTokenizer)
    assert isinstance(ByteTokenizer.load(path), ByteTokenizer)
    with pytest.raises(DataError, match="byte tokenizer"):
        WordTokenizer.load(path)
    lines[100] = "<0xZZ>"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bytes\.txt, line 101: expected the byte token '<0x5F>'"):
        load_tokenizer(path)


@pytest.mark.parametrize("content,line,what", [
    ("", None, "empty file"),
    ("<pad>\n<unk>\n<mask>\n<cls>\n", 5, "file ends before the special token '<sep>'"),
    ("<pad>\n<mask>\n<unk>\n<cls>\n<sep>\n", 2, "expected the special token '<unk>'"),
    ("<pad>\n<unk>\n<mask>\n<cls>\n<sep>\nthe\n\ncat\n", 7, "empty line"),
    ("<pad>\n<unk>\n<mask>\n<cls>\n<sep>\nthe\nthe cat\n", 7, "contains whitespace"),
    ("<pad>\n<unk>\n<mask>\n<cls>\n<sep>\nthe\ncat\nthe\n", 8,
     "duplicate token 'the' (first on line 6)"),
])
def test_malformed_vocab_file(tmp_path, content, line, what):
    path = tmp_path / "vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as e:
        WordTokenizer.load(path)
    where = str(path) if line is None else f"{path}, line {line}"
    assert str(e.value).startswith(f"{where}: "), str(e.value)
    assert what in str(e.value)
    assert e.value.line == line and e.value.path == str(path)


def test_vocab_file_not_utf8_and_missing(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"<pad>\n<unk>\n<mask>\n<cls>\n<sep>\nthe\nca\xfft\n")
    with pytest.raises(DataError, match=r"vocab\.txt, line 7: not valid UTF-8: byte 0xff at "
                                        r"column 3"):
        WordTokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_tokenizer(tmp_path / "nope.txt")


@pytest.mark.parametrize("bad,match", [
    (lambda: WordTokenizer.build(TEXTS, max_size=4), "max_size"),
    (lambda: WordTokenizer.build(TEXTS, min_freq=0), "min_freq"),
    (lambda: WordTokenizer.build("one text"), "texts"),
    (lambda: WordTokenizer(["a", "b"]), "specials"),
    (lambda: WordTokenizer(list(SPECIALS) + ["a", "a"]), "duplicate"),
    (lambda: WordTokenizer.build(TEXTS).encode(["a"]), "text"),
    (lambda: ByteTokenizer().decode([[1, 2]]), "1-D"),
    (lambda: ByteTokenizer().decode([-1]), r"\[0, 261\)"),
])
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
