"""WordPiece: the pure-Python tokenizer against the model's own tokenizer.json run
through Hugging Face ``tokenizers`` (padding and truncation off unless a test
turns them on), plus the rules on a tiny vocabulary that need no reference."""

import json

import numpy as np
import pytest

from numformer.pretrained import WordPieceTokenizer, read_vocab

SENTENCES = [
    "",
    "   ",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld! Ünïcode façade, naïve café — crème brûlée.",
    "ÀÉÎÕÜ àéîõü Ñ ñ Çç ß Ø ø Å å Æ æ",
    "Numbers: 3.14159, 1,000,000 and 42nd street; 2023-10-05 at 10:30pm ($19.99).",
    "Punctuation!!! ...what?!? (yes) [no] {maybe} <tag> \"quoted\" 'single' `back` ~tilde ^caret |pipe",
    "email@example.com https://www.example.org/path?x=1&y=2#frag",
    "antidisestablishmentarianism supercalifragilisticexpialidocious floccinaucinihilipilification",
    "qwxzvbnmlkj zzyzx xkcdqwerty",  # pieces no vocabulary word covers well
    "a" * 100 + " " + "b" * 101,  # 100 chars is a word, 101 is [UNK]
    "東京は日本の首都です。北京是中国的首都。",
    "한국어 문장입니다. 日本語と English mixed 文章",
    "ΟΔΟΣ ΣΟΦΙΑΣ and Ελληνικά; İstanbul İIı; Straße",
    "हिन्दी वाक्य और العربية نص مع تشكيل مُحَمَّد",
    "emoji 😀🎉👍🏽 and symbols ©®™ ± × ÷ € £ ¥ ° µ",
    "tabs\tand\nnewlines\r\nand\u00a0no-break\u2003em-space\u3000ideographic space",
    "control\x00chars\x07here\x1b[0m and \ufffd replacement \u200b zero-width \u200d joiner",
    "special tokens in text: [MASK] [SEP][CLS] [UNK] [PAD] and [mask] lower-case",
    "fullwidth ＡＢＣ１２３ and ligature ﬁ ﬂ and superscript ² ³",
    "don't won't can't I'm you're it's o'clock rock'n'roll",
    " ".join(["This is a long text that goes well past one hundred and twenty-eight tokens,"
              " which is where the packaged tokenizer.json would cut it."] * 12),
]


@pytest.fixture(scope="module")
def ref_tokenizer(real_model_dir):
    tokenizers = pytest.importorskip("tokenizers", reason="pip install tokenizers")
    ref = tokenizers.Tokenizer.from_file(str(real_model_dir / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    return ref


@pytest.fixture(scope="module")
def tok(real_model_dir):
    return WordPieceTokenizer.from_pretrained(real_model_dir)


def test_vocab_txt_equals_tokenizer_json_vocab(real_model_dir):
    vocab = read_vocab(real_model_dir / "vocab.txt")
    ref = json.loads((real_model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert vocab == ref["model"]["vocab"]


def test_settings_from_model_folder(tok):
    # tokenizer_config.json: uncased; sentence_bert_config.json: 256 tokens
    assert tok.lowercase and tok.strip_accents and tok.split_cjk
    assert tok.max_length == 256
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.unk_id) == (101, 102, 0, 100)


@pytest.mark.parametrize("text", SENTENCES, ids=range(len(SENTENCES)))
def test_ids_equal_tokenizers_library(tok, ref_tokenizer, text):
    ours = tok.encode(text, truncation=False)
    ref = ref_tokenizer.encode(text).ids
    assert ours == ref, (f"{text[:60]!r}\n ours {tok.convert_ids_to_tokens(ours)[:40]}\n"
                         f" ref  {tok.convert_ids_to_tokens(ref)[:40]}")


def test_long_text_is_longer_than_packaged_limit(tok):
    # the last sentence really exercises "truncation off" (the tokenizer.json cuts at 128)
    assert len(tok.encode(SENTENCES[-1], truncation=False)) > 300


def test_real_sentences_equal_tokenizers_library(tok, ref_tokenizer, data_dir):
    texts = []
    for name, take in (("sst/stsa.fine.dev", 300), ("europarl/europarl-v7.fr-en.fr.head2999", 300)):
        lines = (data_dir / name).read_text(encoding="utf-8").split("\n")[:take]
        texts += [ln.split(" ", 1)[1] if name.startswith("sst") else ln for ln in lines if ln]
    refs = [e.ids for e in ref_tokenizer.encode_batch(texts)]
    bad = [(t, i) for t, r, i in zip(texts, refs, range(len(texts)))
           if tok.encode(t, truncation=False) != r]
    assert not bad, f"{len(bad)}/{len(texts)} texts differ, first: {bad[0][0][:100]!r}"


def test_truncation_and_padding_equal_tokenizers_library(tok, real_model_dir):
    tokenizers = pytest.importorskip("tokenizers", reason="pip install tokenizers")
    ref = tokenizers.Tokenizer.from_file(str(real_model_dir / "tokenizer.json"))
    ref.enable_truncation(max_length=16)
    ref.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest of the batch
    texts = SENTENCES[2:9] + [SENTENCES[-1], ""]
    enc = ref.encode_batch(texts)
    batch = tok.encode_batch(texts, max_length=16)
    assert batch.ids.dtype == np.int64 and batch.key_mask.dtype == np.bool_
    np.testing.assert_array_equal(batch.ids, np.array([e.ids for e in enc]))
    np.testing.assert_array_equal(batch.key_mask, np.array([e.attention_mask for e in enc], bool))
    np.testing.assert_array_equal(batch.token_type_ids, np.array([e.type_ids for e in enc]))


# rules on a tiny vocabulary (no reference needed) --------------------------------

@pytest.fixture
def tiny(tiny_vocab_list):
    return WordPieceTokenizer({t: i for i, t in enumerate(tiny_vocab_list)}, max_length=8)


def test_greedy_longest_match_with_continuation_pieces(tiny):
    # "movie" is one piece although "mov" + "##ie" would also cover it
    assert tiny.tokenize("Unbelievable MOVIES, runs!") == [
        "un", "##believ", "##able", "movie", "##s", ",", "run", "##s", "!"]


def test_unmatched_piece_makes_the_whole_word_unknown(tiny):
    # "running" = "run" + "##ning", and no piece covers "ning": the whole word is [UNK]
    assert tiny.tokenize("cats catz running") == ["cat", "##s", "[UNK]", "[UNK]"]


def test_word_longer_than_limit_is_unknown(tiny):
    tiny.max_input_chars_per_word = 5
    assert tiny.tokenize("cats catscatscats") == ["cat", "##s", "[UNK]"]


def test_batch_arrays_padding_and_truncation(tiny):
    b = tiny.encode_batch(["the cat sat on the mat . good movie", "a dog"])
    assert b.ids.shape == (2, 8) and b.ids.dtype == np.int64  # truncated to max_length 8
    cls, sep, pad = tiny.cls_id, tiny.sep_id, tiny.pad_id
    assert b.ids[0, 0] == cls and b.ids[0, -1] == sep
    assert list(b.ids[1, :4]) == [cls, tiny.vocab["a"], tiny.vocab["dog"], sep]
    assert (b.ids[1, 4:] == pad).all()
    np.testing.assert_array_equal(b.key_mask.sum(axis=1), [8, 4])
    full = tiny.encode_batch(["a dog"], padding="max_length")
    assert full.ids.shape == (1, 8) and full.key_mask.sum() == 4


@pytest.mark.parametrize("call, match", [
    (lambda t: t.encode_batch("one text"), "texts: expected a list of str.*wrap"),
    (lambda t: t.encode_batch([]), "texts: expected at least one"),
    (lambda t: t.encode_batch(["ok", 3]), r"texts\[1\]: expected a str, got int"),
    (lambda t: t.encode_batch(["ok"], max_length=1), "max_length: expected an integer >= 2"),
    (lambda t: t.encode_batch(["ok"], padding="left"), "padding: expected one of"),
    (lambda t: WordPieceTokenizer({"a": 0}), "unk_token: expected a token of the vocabulary"),
])
def test_bad_input_names_the_argument(tiny, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny)
