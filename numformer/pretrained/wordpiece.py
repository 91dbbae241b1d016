"""BERT's WordPiece tokenizer in pure Python: vocab.txt in, numpy id arrays out.

The pipeline (the same steps, in the same order, as Hugging Face ``tokenizers``
runs for a BERT ``tokenizer.json``: BertNormalizer, BertPreTokenizer, WordPiece,
the [CLS] ... [SEP] template):

1. special tokens written in the text ("[MASK]", "[SEP]", ...) are cut out
   first and kept whole;
2. clean: drop NUL, U+FFFD and control characters (categories Cc, Cf, Co, Cs,
   except tab, newline, carriage return; unassigned code points stay); turn
   every whitespace character into a space;
3. put spaces around CJK ideographs, so each becomes a word;
4. strip accents (NFD, then drop non-spacing marks, category Mn), then
   lower-case character by character (``strip_accents=None`` follows
   ``lowercase``, as in BERT's uncased models);
5. split on whitespace, and cut every punctuation character (ASCII
   punctuation, or a Unicode P* category) into a word of its own;
6. WordPiece each word: greedy longest match first, continuation pieces
   prefixed "##"; a word longer than ``max_input_chars_per_word`` characters
   or with a part that matches nothing becomes a single [UNK];
7. truncate to ``max_length`` tokens *including* [CLS] and [SEP], add them,
   and pad a batch to its longest sequence (or to ``max_length``).

ASCII text takes a fast path (str.translate and a regex) that computes the
same result as the character loop. Shapes: B texts, T tokens.

Unicode tables: this module asks Python's ``unicodedata`` (Unicode 14 in
Python 3.11) for categories; ``tokenizers`` carries older tables (about
Unicode 8). The two agree on every character except about 500 rare ones
added or re-categorised since: some 120 punctuation and format characters
(e.g. U+2E43-U+2E5D, Newa and Mongolian marks, Egyptian hieroglyph
controls) and some 390 combining marks (Mn), which ``tokenizers`` keeps as
letters. On real text (IMDb, Europarl French, WikiText) the ids agree.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

# Unicode White_Space (what Rust's char::is_whitespace tests) outside the C* categories;
# the control characters among White_Space (\x0b, \x0c, \x85, \x1c-\x1f) are dropped
# by the cleaning step before this set is consulted, except tab, newline and return.
_WHITESPACE = frozenset(" \t\n\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# ... and the full White_Space set, for splitting text that was not cleaned
_SPLIT_SPACE = _WHITESPACE | frozenset("\x0b\x0c\x85")
_KEEP_CONTROLS = frozenset("\t\n\r")
_ASCII_PUNCT = frozenset(chr(c) for c in range(33, 127) if not chr(c).isalnum())
# The CJK Unified Ideographs blocks (and their compatibility blocks). Google's BERT
# starts the fifth at U+2B820; ``tokenizers`` (what sentence-transformers runs, hence
# what these models see) at U+2B920, and so does this tokenizer.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# ASCII fast path: controls other than \t\n\r vanish, \t\n\r become spaces.
_ASCII_CLEAN = {c: None for c in list(range(32)) + [127]}
_ASCII_CLEAN.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})
_PUNCT_CLASS = re.escape("".join(sorted(_ASCII_PUNCT)))
_ASCII_WORDS = re.compile("[^ \\t\\n\\r\\x0b\\x0c" + _PUNCT_CLASS + "]+|[" + _PUNCT_CLASS + "]")
PADDINGS = ("longest", "max_length")


def is_control(ch: str) -> bool:
    """A control, format, private-use or surrogate character (Cc, Cf, Co, Cs), not tab,
    newline or return. Unassigned code points (Cn) are kept, as ``tokenizers`` keeps them
    (and one version's unassigned may be the next version's letter)."""
    if ch in _KEEP_CONTROLS:
        return False
    cat = unicodedata.category(ch)
    return cat[0] == "C" and cat != "Cn"


def is_punctuation(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch)[0] == "P"


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class Encoded(NamedTuple):
    """A batch: ids (B, T) int64, key_mask (B, T) bool (True for real tokens),
    token_type_ids (B, T) int64 (zeros: one segment)."""
    ids: np.ndarray
    key_mask: np.ndarray
    token_type_ids: np.ndarray


def read_vocab(path) -> dict[str, int]:
    """vocab.txt: one token a line, its id the line number (a repeated token keeps the last)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"vocab: no file {path}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}


class WordPieceTokenizer:
    """BERT's tokenizer from a vocabulary (token -> id).

    ``encode(text) -> list[int]``; ``encode_batch(texts) -> Encoded`` (numpy
    arrays); ``tokenize(text) -> list[str]`` (the pieces, without [CLS]/[SEP]).
    """

    def __init__(self, vocab: dict[str, int], lowercase: bool = True,
                 strip_accents: bool | None = None, split_cjk: bool = True,
                 clean_text: bool = True, max_length: int = 512,
                 max_input_chars_per_word: int = 100, unk_token: str = "[UNK]",
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 mask_token: str = "[MASK]", prefix: str = "##", cache_size: int = 100_000):
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError(f"vocab: expected a non-empty dict token -> id, "
                             f"got {type(vocab).__name__} of size {len(vocab) if vocab else 0}")
        self.vocab = dict(vocab)
        specials = {"unk_token": unk_token, "cls_token": cls_token, "sep_token": sep_token,
                    "pad_token": pad_token}
        for name, tok in specials.items():
            if tok not in self.vocab:
                raise ValueError(f"{name}: expected a token of the vocabulary, got {tok!r} "
                                 f"(not in the {len(self.vocab)} tokens)")
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token, self.prefix = pad_token, mask_token, prefix
        self.unk_id, self.cls_id = self.vocab[unk_token], self.vocab[cls_token]
        self.sep_id, self.pad_id = self.vocab[sep_token], self.vocab[pad_token]
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.split_cjk = bool(split_cjk)
        self.clean_text = bool(clean_text)
        self.max_length = self._check_max_length(max_length)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        # special tokens written in the text stay whole (longest first, so none shadows another)
        self.special_ids = {t: self.vocab[t] for t in
                            (unk_token, cls_token, sep_token, pad_token, mask_token)
                            if t in self.vocab}
        alternatives = "|".join(re.escape(t) for t in sorted(self.special_ids, key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})")
        self._cache: dict[str, tuple[int, ...]] = {}
        self._cache_size = int(cache_size)

    # construction ----------------------------------------------------------
    @classmethod
    def from_vocab_file(cls, path, **kwargs) -> "WordPieceTokenizer":
        return cls(read_vocab(path), **kwargs)

    @classmethod
    def from_pretrained(cls, folder, **kwargs) -> "WordPieceTokenizer":
        """From a model folder: vocab.txt, plus tokenizer_config.json (lower-casing,
        accents, CJK) and the longest input: sentence_bert_config.json's
        max_seq_length, else tokenizer_config's model_max_length, never more than
        config.json's max_position_embeddings. Keyword arguments override."""
        folder = Path(folder)
        tc = _read_json(folder / "tokenizer_config.json")
        opts = {}
        if "do_lower_case" in tc:
            opts["lowercase"] = bool(tc["do_lower_case"])
        if tc.get("strip_accents") is not None:
            opts["strip_accents"] = bool(tc["strip_accents"])
        if "tokenize_chinese_chars" in tc:
            opts["split_cjk"] = bool(tc["tokenize_chinese_chars"])
        for key, name in (("unk_token", "unk_token"), ("cls_token", "cls_token"),
                          ("sep_token", "sep_token"), ("pad_token", "pad_token"),
                          ("mask_token", "mask_token")):
            if isinstance(tc.get(key), str):
                opts[name] = tc[key]
        limits = [_read_json(folder / "sentence_bert_config.json").get("max_seq_length"),
                  tc.get("model_max_length")]
        max_len = next((int(v) for v in limits if isinstance(v, int) and 0 < v < 10**6), 512)
        positions = _read_json(folder / "config.json").get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            max_len = min(max_len, positions)
        opts["max_length"] = max_len
        opts.update(kwargs)
        return cls.from_vocab_file(folder / "vocab.txt", **opts)

    def settings(self) -> dict:
        """Everything that rebuilds this tokenizer (``WordPieceTokenizer(**settings)``),
        as plain values: a training checkpoint stores it in its metadata."""
        return {"vocab": dict(self.vocab), "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "split_cjk": self.split_cjk,
                "clean_text": self.clean_text, "max_length": self.max_length,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "unk_token": self.unk_token, "cls_token": self.cls_token,
                "sep_token": self.sep_token, "pad_token": self.pad_token,
                "mask_token": self.mask_token, "prefix": self.prefix}

    @staticmethod
    def _check_max_length(max_length) -> int:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) \
                or max_length < 2:
            raise ValueError(f"max_length: expected an integer >= 2 (room for [CLS] and [SEP]), "
                             f"got {max_length!r}")
        return int(max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return (f"WordPieceTokenizer(vocab={len(self.vocab)}, lowercase={self.lowercase}, "
                f"strip_accents={self.strip_accents}, max_length={self.max_length})")

    # the pipeline ---------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Steps 2-4: clean, space out CJK, strip accents, lower-case."""
        if text.isascii():
            if self.clean_text:
                text = text.translate(_ASCII_CLEAN)
            return text.lower() if self.lowercase else text
        out = []
        for ch in text:
            if self.clean_text:
                if ch == "\x00" or ch == "\ufffd" or is_control(ch):
                    continue
                if ch in _WHITESPACE:
                    ch = " "
            if self.split_cjk and is_cjk(ch):
                out.extend((" ", ch, " "))
            else:
                out.append(ch)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = "".join(c.lower() for c in text)  # per character, as Rust's to_lowercase
        return text

    @staticmethod
    def split_words(text: str) -> list[str]:
        """Step 5: whitespace-separated words, every punctuation character on its own."""
        if text.isascii():
            return _ASCII_WORDS.findall(text)
        words, cur = [], []
        for ch in text:
            if ch in _SPLIT_SPACE:
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif is_punctuation(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word: str) -> tuple[int, ...]:
        """Step 6: the ids of one word, greedy longest match first."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        ids = self._wordpiece(word)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        n = len(word)
        if n > self.max_input_chars_per_word:
            return (self.unk_id,)
        vocab, ids, start = self.vocab, [], 0
        while start < n:
            end, found = n, None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk_id,)  # one unmatched part makes the whole word unknown
            ids.append(found)
            start = end
        return tuple(ids)

    def _content_ids(self, text: str) -> list[int]:
        """Steps 1-6: the ids of a text, without [CLS]/[SEP]."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        ids: list[int] = []
        for k, part in enumerate(self._special_re.split(text)):
            if k % 2:  # a special token written in the text
                ids.append(self.special_ids[part])
                continue
            for word in self.split_words(self.normalize(part)):
                ids.extend(self.wordpiece(word))
        return ids

    # public API ------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text`` (no [CLS]/[SEP], no truncation)."""
        return [self.id_to_token[i] for i in self._content_ids(text)]

    def encode(self, text: str, max_length: int | None = None, truncation: bool = True,
               add_special_tokens: bool = True) -> list[int]:
        """The ids of one text: [CLS] pieces [SEP], at most ``max_length`` ids in all
        (default ``self.max_length``) when ``truncation`` is on."""
        ids = self._content_ids(text)
        n_special = 2 if add_special_tokens else 0
        if truncation:
            limit = self.max_length if max_length is None else self._check_max_length(max_length)
            ids = ids[:max(0, limit - n_special)]
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def encode_pair(self, text: str, pair: str, max_length: int | None = None,
                    truncation: bool = True) -> tuple[list[int], list[int]]:
        """ids and token types of two texts as BERT reads a pair:
        ``[CLS] a [SEP] b [SEP]``, types 0 for [CLS], a and its [SEP], 1 for b and
        its [SEP]. Truncation (to ``max_length`` ids in all) cuts the longer text
        first, one piece at a time (Hugging Face's "longest_first")."""
        a, b = self._content_ids(text), self._content_ids(pair)
        if truncation:
            limit = self.max_length if max_length is None else self._check_max_length(max_length)
            while len(a) + len(b) > max(0, limit - 3) and (a or b):
                (a if len(a) > len(b) else b).pop()
        ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
        return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None,
                     padding: str = "longest", truncation: bool = True) -> Encoded:
        """Encode ``texts`` and pad them into numpy arrays (B, T).

        padding: "longest" (to the longest text of the batch) or "max_length".
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"texts: expected a list of str, got {type(texts).__name__}"
                             + (" (wrap a single text in a list)" if isinstance(texts, str) else ""))
        if not texts:
            raise ValueError("texts: expected at least one text, got an empty list")
        if padding not in PADDINGS:
            raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")
        limit = self.max_length if max_length is None else self._check_max_length(max_length)
        seqs = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}]: expected a str, got {type(t).__name__}")
            seqs.append(self.encode(t, limit, truncation))
        T = limit if padding == "max_length" else max(len(s) for s in seqs)
        T = max(T, max(len(s) for s in seqs))  # without truncation a text may exceed max_length
        ids = np.full((len(seqs), T), self.pad_id, dtype=np.int64)  # (B, T)
        key_mask = np.zeros((len(seqs), T), dtype=bool)  # (B, T)
        for b, s in enumerate(seqs):
            ids[b, :len(s)] = s
            key_mask[b, :len(s)] = True
        return Encoded(ids, key_mask, np.zeros_like(ids))

    __call__ = encode_batch

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.id_to_token.get(int(i), self.unk_token) for i in np.asarray(ids).ravel()]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Pieces joined back into words ("##" pieces glued on); special tokens dropped."""
        specials = set(self.special_ids) if skip_special_tokens else set()
        out = ""
        for tok in self.convert_ids_to_tokens(ids):
            if tok in specials:
                continue
            if tok.startswith(self.prefix) and out:
                out += tok[len(self.prefix):]
            else:
                out += (" " if out else "") + tok
        return out


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``, or {} when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return d if isinstance(d, dict) else {}
