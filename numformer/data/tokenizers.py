"""Tokenizers: word level (the BERT-from-scratch article's) and bytes (UTF-8).

Both share the five special tokens and their ids:

    <pad> 0   <unk> 1   <mask> 2   <cls> 3   <sep> 4

so batching and masking code never asks which tokenizer it has. Both
``encode`` to a 1-D int64 array, ``decode`` back to a str, and ``save`` a
vocabulary file: UTF-8 text, one token a line, the line number (from 0) is
the id, the five specials first. ``load_tokenizer(path)`` reads either kind.

WordTokenizer: lower-case, then a token is a run of word characters
(letters, digits, underscore, any script) or a single punctuation
character; whitespace separates and is dropped. A special written in the
text ("<mask>", "<unk>", as in WikiText) is one token. The vocabulary is the
specials then the most frequent tokens (ties by alphabetical order).
``decode`` joins tokens with single spaces, so it restores the tokenized
text, not the original spacing.

ByteTokenizer: the UTF-8 bytes of the text, byte b has id b + 5; 261 ids in
all. ``decode`` replaces an incomplete or invalid UTF-8 sequence (a sampled
text may end mid-character) with U+FFFD.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import numpy as np

from numformer.data.files import DataError, read_lines, write_text_atomic

SPECIALS = ("<pad>", "<unk>", "<mask>", "<cls>", "<sep>")
PAD_ID, UNK_ID, MASK_ID, CLS_ID, SEP_ID = range(len(SPECIALS))
N_SPECIAL = len(SPECIALS)
SPECIAL_IDS = np.arange(N_SPECIAL, dtype=np.int64)

_WORD_RE = re.compile(r"<(?:pad|unk|mask|cls|sep)>|\w+|[^\w\s]")
_BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))


class Tokenizer:
    """What both tokenizers share: the special ids, decode checks, save."""

    pad_id, unk_id, mask_id, cls_id, sep_id = PAD_ID, UNK_ID, MASK_ID, CLS_ID, SEP_ID
    n_special = N_SPECIAL
    special_ids = SPECIAL_IDS

    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def tokens(self) -> list[str]:  # pragma: no cover - abstract
        """Every token, by id (what ``save`` writes)."""
        raise NotImplementedError

    def encode(self, text: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_batch(self, texts: Iterable[str]) -> list[np.ndarray]:
        """``encode`` of each text (a list of 1-D int64 arrays of varying length)."""
        return [self.encode(t) for t in texts]

    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids: expected a 1-D sequence of integers, got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"ids: expected ids in [0, {self.vocab_size}), got {bad}")
        return ids

    def save(self, path) -> None:
        """Write the vocabulary file (one token a line), atomically."""
        write_text_atomic(path, "".join(t + "\n" for t in self.tokens()))


class WordTokenizer(Tokenizer):
    """Word-level tokenizer over a fixed vocabulary (specials first).

    Build one with ``WordTokenizer.build(texts, max_size=..., min_freq=...)``
    or ``WordTokenizer.load(path)``; ``WordTokenizer(tokens)`` takes the full
    token list (the five specials, in order, then the words).
    """

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        if tuple(tokens[:N_SPECIAL]) != SPECIALS:
            raise ValueError(f"tokens: expected the specials {list(SPECIALS)} first, "
                             f"got {tokens[:N_SPECIAL]}")
        index: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if not isinstance(t, str) or not t or any(c.isspace() for c in t):
                raise ValueError(f"tokens[{i}]: expected a non-empty str without whitespace, "
                                 f"got {t!r}")
            if t in index:
                raise ValueError(f"tokens[{i}]: duplicate token {t!r} (first at {index[t]})")
            index[t] = i
        self._tokens = tokens
        self._index = index

    # vocabulary -----------------------------------------------------------
    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Lower-case; words and single punctuation characters; whitespace dropped."""
        return _WORD_RE.findall(text.lower())

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int | None = None,
              min_freq: int = 1) -> "WordTokenizer":
        """Vocabulary from texts: the specials, then tokens seen at least
        ``min_freq`` times, most frequent first (ties alphabetical), at most
        ``max_size`` tokens in all (specials included: ``max_size`` is the
        model's vocab_size)."""
        if max_size is not None and (int(max_size) != max_size or max_size < N_SPECIAL):
            raise ValueError(f"max_size: expected an integer >= {N_SPECIAL} (the specials), "
                             f"got {max_size}")
        if int(min_freq) != min_freq or min_freq < 1:
            raise ValueError(f"min_freq: expected an integer >= 1, got {min_freq}")
        if isinstance(texts, str):
            raise ValueError("texts: expected an iterable of str, got a single str")
        counts: Counter = Counter()
        for text in texts:
            counts.update(cls.tokenize(text))
        for s in SPECIALS:
            counts.pop(s, None)
        words = sorted((w for w, c in counts.items() if c >= min_freq),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size - N_SPECIAL]
        return cls(list(SPECIALS) + words)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or <unk>'s."""
        return self._index.get(token, UNK_ID)

    def id_to_token(self, i: int) -> str:
        if not 0 <= int(i) < len(self._tokens):
            raise ValueError(f"id: expected an id in [0, {len(self._tokens)}), got {i}")
        return self._tokens[int(i)]

    def __contains__(self, token: str) -> bool:
        return token in self._index

    # encode / decode -------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (out-of-vocabulary tokens -> <unk>), a 1-D int64 array."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        get = self._index.get
        return np.array([get(t, UNK_ID) for t in self.tokenize(text)], dtype=np.int64)

    def decode(self, ids, skip_special: bool = False) -> str:
        """Tokens joined by single spaces. <pad> is always dropped; ``skip_special``
        also drops <unk>, <mask>, <cls> and <sep>."""
        ids = self._check_ids(ids)
        keep = (lambda i: i >= N_SPECIAL) if skip_special else (lambda i: i != PAD_ID)
        return " ".join(self._tokens[i] for i in ids.tolist() if keep(i))

    # files ------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "WordTokenizer":
        """Read a vocabulary file written by ``save``. A missing file raises
        FileNotFoundError; an empty file, a missing or misplaced special, an
        empty line, whitespace inside a token or a duplicate token raises
        DataError naming the file and the line."""
        lines = read_lines(path)
        _check_specials(path, lines)
        seen: dict[str, int] = {}
        for n, t in enumerate(lines, 1):
            if not t:
                raise DataError(path, n, "empty line (expected one token a line)")
            if any(c.isspace() for c in t):
                raise DataError(path, n, f"token {t!r} contains whitespace")
            if t in seen:
                raise DataError(path, n, f"duplicate token {t!r} (first on line {seen[t]})")
            seen[t] = n
        if lines[N_SPECIAL:] == list(_BYTE_TOKENS):
            raise DataError(path, None, "this is a byte tokenizer's vocabulary; use "
                                        "ByteTokenizer.load or load_tokenizer")
        return cls(lines)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"


def _check_specials(path, lines: list[str]) -> None:
    for n, want in enumerate(SPECIALS, 1):
        if n > len(lines):
            raise DataError(path, n, f"file ends before the special token {want!r} (the "
                                     f"{N_SPECIAL} specials {list(SPECIALS)} come first)")
        if lines[n - 1] != want:
            raise DataError(path, n, f"expected the special token {want!r} (the {N_SPECIAL} "
                                     f"specials {list(SPECIALS)} come first), got "
                                     f"{lines[n - 1]!r}")


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: byte b -> id b + 5 (after the specials); vocab_size 261."""

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + 256

    def tokens(self) -> list[str]:
        return list(SPECIALS) + list(_BYTE_TOKENS)

    def encode(self, text: str) -> np.ndarray:
        """Ids of the UTF-8 bytes of ``text``, a 1-D int64 array."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        return self.encode_bytes(text.encode("utf-8"))

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + N_SPECIAL  # (n,)

    def decode(self, ids, skip_special: bool = False) -> str:
        """The text of the byte ids (invalid UTF-8 -> U+FFFD). <pad> is always
        dropped; other specials appear as "<mask>" etc. unless ``skip_special``."""
        ids = self._check_ids(ids)
        out: list[str] = []
        run: list[int] = []
        for i in ids.tolist():
            if i >= N_SPECIAL:
                run.append(i - N_SPECIAL)
                continue
            if run:
                out.append(bytes(run).decode("utf-8", errors="replace"))
                run = []
            if i != PAD_ID and not skip_special:
                out.append(SPECIALS[i])
        if run:
            out.append(bytes(run).decode("utf-8", errors="replace"))
        return "".join(out)

    @classmethod
    def load(cls, path) -> "ByteTokenizer":
        """Check that ``path`` is a byte tokenizer's vocabulary file (as ``save`` wrote)."""
        lines = read_lines(path)
        _check_specials(path, lines)
        for n, want in enumerate(_BYTE_TOKENS, N_SPECIAL + 1):
            got = lines[n - 1] if n <= len(lines) else None
            if got != want:
                raise DataError(path, n, f"expected the byte token {want!r}, got "
                                         f"{'end of file' if got is None else repr(got)}")
        if len(lines) > N_SPECIAL + 256:
            raise DataError(path, N_SPECIAL + 257, "unexpected line after the 256 byte tokens")
        return cls()

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=261)"


def load_tokenizer(path) -> WordTokenizer | ByteTokenizer:
    """A vocabulary file of either kind (a byte tokenizer's lists <0x00> ... <0xFF>)."""
    lines = read_lines(path)
    _check_specials(path, lines)
    if len(lines) > N_SPECIAL and lines[N_SPECIAL] == _BYTE_TOKENS[0]:
        return ByteTokenizer.load(path)
    return WordTokenizer.load(path)
