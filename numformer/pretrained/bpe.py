"""Byte-level BPE (GPT-2 style), built from a GGUF file's tokenizer metadata, with
the special tokens and the chat template of SmolLM2:

    tok = BPETokenizer.from_gguf()                  # or from_gguf(read_gguf(path))
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Hi"}]))
    text = tok.decode(ids, skip_special_tokens=True)

Encoding, in the order of the Hugging Face tokenizer of the model:
1. special tokens (control and user-defined ones, e.g. ``<|im_start|>``) are cut
   out of the text whole, longest first; the text between them goes on alone;
2. pre-tokenization: SmolLM2's ``smollm`` splitter is a digit split (each \\p{N}
   character alone) then GPT-2's regex ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+|
   ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``; ``gpt2`` is the regex alone;
3. each piece's UTF-8 bytes are spelled in GPT-2's byte alphabet (a printable
   character per byte) and merged by BPE, lowest merge rank first. A byte that has
   no token (SmolLM2 lacks 21 of the 256) is dropped, as the Hugging Face
   tokenizer does, so such text does not round-trip.

Python's ``re`` has no \\p{...}, so the classes are built once from ``unicodedata``
(L = Lu Ll Lt Lm Lo, N = Nd Nl No, \\s = Unicode White_Space, which is what the
Rust tokenizer's Oniguruma means by \\s; Python's own \\s would add U+001C..1F).
That makes ``re`` express the pattern exactly, so no ``regex`` dependency.
"""

from __future__ import annotations

import codecs
import functools
import heapq
import numbers
import re
import unicodedata

__all__ = ["BPETokenizer", "StreamDecoder", "bytes_to_unicode"]

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER, TOKEN_UNUSED, TOKEN_BYTE = range(1, 7)
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
               (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
               (0x3000, 0x3000)]
_HEAP_FROM = 48  # pieces this long merge with a heap (linear-log) instead of the n^2 loop


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte alphabet: byte -> a printable character (printable Latin-1 bytes
    stand for themselves, the 68 others for U+0100 onwards, in byte order)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _ranges(pred) -> list[tuple[int, int]]:
    out, start = [], None
    for c in range(0x110000):
        if pred(c):
            if start is None:
                start = c
        elif start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def _cls(ranges) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.lru_cache(maxsize=None)
def _classes() -> tuple[str, str, str]:
    """(L, N, WS) as the inside of a ``re`` character class."""
    cat = [unicodedata.category(chr(c))[0] for c in range(0x110000)]
    return (_cls(_ranges(lambda c: cat[c] == "L")), _cls(_ranges(lambda c: cat[c] == "N")),
            _cls(WHITE_SPACE))


@functools.lru_cache(maxsize=None)
def pretokenizer_pattern(pre: str) -> re.Pattern:
    """The compiled split for a GGUF ``tokenizer.ggml.pre`` value ('smollm' or 'gpt2').

    'smollm' isolates every digit before the GPT-2 regex runs. Done in one pass: the
    digit is an alternative of its own, ' ?\\p{N}+' can then never match, and
    '\\s+(?!\\S)' must see a digit as the end of its piece: '\\s+(?![^\\s\\p{N}])'."""
    L, N, S = _classes()
    contractions = "'s|'t|'re|'ve|'m|'ll|'d"
    if pre == "gpt2":
        return re.compile(f"{contractions}| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])"
                          f"|[{S}]+")
    if pre == "smollm":
        return re.compile(f"[{N}]|{contractions}| ?[{L}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}{N}])"
                          f"|[{S}]+")
    raise ValueError(f"tokenizer.ggml.pre: pre-tokenizer {pre!r} is not supported "
                     f"(supported: 'smollm', 'gpt2')")


# ---------------------------------------------------------------- chat template

_DEFAULT_SYSTEM = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
_CHATML_TURN = ("{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
                " + '\n'}}")
_CHATML_START = "{% for message in messages %}"
_CHATML_END = ("{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
               "{% endif %}")


def _parse_chat_template(template: str | None):
    """``("chatml", default_system_or_None)`` for SmolLM2's ChatML template (with or
    without its default system prompt), else a ValueError: numformer renders known
    templates in Python rather than running Jinja."""
    if template is None:
        raise ValueError("this tokenizer has no chat template (tokenizer.chat_template is absent)")
    if template == _CHATML_START + _CHATML_TURN + _CHATML_END:
        return None
    m = re.fullmatch(re.escape(_CHATML_START + _DEFAULT_SYSTEM) + r"([^'\\{}]*)"
                     + re.escape("<|im_end|>\n' }}{% endif %}" + _CHATML_TURN + _CHATML_END),
                     template)
    if m is None:
        raise ValueError("tokenizer.chat_template: not a template numformer recognises (it "
                         "renders SmolLM2's ChatML template, with or without a default system "
                         f"prompt); got {template[:120]!r}...")
    return m.group(1)


# ---------------------------------------------------------------- the tokenizer

class BPETokenizer:
    """Byte-level BPE with special tokens. ``tokens[i]`` is token i spelled in GPT-2's
    byte alphabet; ``merges`` are "left right" strings, best first; ``token_types``
    llama.cpp's (1 normal, 3 control, 4 user-defined, ...); control and user-defined
    tokens are matched whole in the text, and control ones are ``special_ids``."""

    def __init__(self, tokens, merges, token_types=None, *, pre="smollm", bos_id=None,
                 eos_id=None, pad_id=None, unk_id=None, add_bos=False, add_eos=False,
                 chat_template=None):
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens: the vocabulary has duplicate tokens")
        types = [TOKEN_NORMAL] * len(tokens) if token_types is None else list(token_types)
        if len(types) != len(tokens):
            raise ValueError(f"token_types: expected {len(tokens)} entries, got {len(types)}")
        self.tokens, self.token_types = tokens, types
        self.vocab = {t: i for i, t in enumerate(tokens)}
        for name, v in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id),
                        ("unk_id", unk_id)):
            if v is not None and not 0 <= v < len(tokens):
                raise ValueError(f"{name}: expected an id in [0, {len(tokens)}), got {v}")
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = bos_id, eos_id, pad_id, unk_id
        self.add_bos, self.add_eos, self.pre = add_bos, add_eos, pre
        self.chat_template = chat_template
        self._pattern = pretokenizer_pattern(pre)
        self.merges = list(merges)
        self._merges = {}  # (left, right) -> (rank, merged)
        for rank, m in enumerate(self.merges):
            parts = m.split(" ")
            if len(parts) != 2:
                raise ValueError(f"merges[{rank}]: expected 'left right', got {m!r}")
            a, b = parts
            if a + b not in self.vocab:
                raise ValueError(f"merges[{rank}]: {m!r} makes {a + b!r}, not in the vocabulary")
            self._merges.setdefault((a, b), (rank, a + b))
        enc = bytes_to_unicode()
        self._translate = str.maketrans({chr(b): c for b, c in enc.items()})
        dec = {c: b for b, c in enc.items()}
        self._id_bytes = [bytes(dec[c] for c in t) if all(c in dec for c in t)
                          else t.encode("utf-8") for t in tokens]
        self.special_ids = frozenset(i for i, k in enumerate(types) if k == TOKEN_CONTROL)
        whole = sorted((t for t, k in zip(tokens, types) if k in (TOKEN_CONTROL, TOKEN_USER)),
                       key=len, reverse=True)
        self._split_special = (re.compile("(" + "|".join(map(re.escape, whole)) + ")")
                               if whole else None)
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_gguf(cls, source=None) -> BPETokenizer:
        """From a ``GGUFModel`` (``read_gguf``), a path, or the installed SmolLM2 file.
        A path reads the metadata only (no tensor is dequantized)."""
        from numformer.pretrained import gguf as g
        md = source.metadata if isinstance(source, g.GGUFModel) else _read_metadata(source)

        def key(k, default=KeyError):
            if k in md:
                return md[k]
            if default is KeyError:
                raise g.GGUFError(f"tokenizer: metadata key {k!r} is missing")
            return default

        if key("tokenizer.ggml.model") != "gpt2":
            raise g.GGUFError(f"tokenizer.ggml.model is {md['tokenizer.ggml.model']!r}: only "
                              f"byte-level BPE ('gpt2') is supported")
        return cls(key("tokenizer.ggml.tokens"), key("tokenizer.ggml.merges"),
                   key("tokenizer.ggml.token_type", None), pre=key("tokenizer.ggml.pre", "gpt2"),
                   bos_id=key("tokenizer.ggml.bos_token_id", None),
                   eos_id=key("tokenizer.ggml.eos_token_id", None),
                   pad_id=key("tokenizer.ggml.padding_token_id", None),
                   unk_id=key("tokenizer.ggml.unknown_token_id", None),
                   add_bos=bool(key("tokenizer.ggml.add_bos_token", False)),
                   add_eos=bool(key("tokenizer.ggml.add_eos_token", False)),
                   chat_template=key("tokenizer.chat_template", None))

    def settings(self) -> dict:
        """Everything the tokenizer is made of, as plain JSON values (a checkpoint
        carries it, so a fine-tuned model loads without the GGUF file)."""
        return {"tokens": self.tokens, "merges": self.merges, "token_types": self.token_types,
                "pre": self.pre, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "pad_id": self.pad_id, "unk_id": self.unk_id, "add_bos": self.add_bos,
                "add_eos": self.add_eos, "chat_template": self.chat_template}

    @classmethod
    def from_settings(cls, d: dict) -> "BPETokenizer":
        d = dict(d)
        return cls(d.pop("tokens"), d.pop("merges"), d.pop("token_types"), **d)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # ------------------------------------------------------------ encode

    def _bpe(self, word: str) -> tuple[int, ...]:
        """Merge one piece (spelled in the byte alphabet) into token ids."""
        merges = self._merges
        if len(word) >= _HEAP_FROM:
            syms = self._bpe_heap(word)
        else:
            syms = list(word)
            while len(syms) > 1:
                best, at = None, -1
                for i in range(len(syms) - 1):
                    r = merges.get((syms[i], syms[i + 1]))
                    if r is not None and (best is None or r[0] < best[0]):
                        best, at = r, i
                if best is None:
                    break
                a, b = syms[at], syms[at + 1]
                out, i = syms[:at], at  # merge every (a, b), left to right
                while i < len(syms):
                    if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                        out.append(best[1])
                        i += 2
                    else:
                        out.append(syms[i])
                        i += 1
                syms = out
        # a byte with no token of its own is dropped, as the Hugging Face tokenizer does
        # (SmolLM2 has none for 21 bytes, e.g. 0x04, 0x1D and 0xF5..0xFF)
        vocab = self.vocab
        return tuple(vocab[s] for s in syms if s in vocab)

    def _bpe_heap(self, word: str) -> list[str]:
        """The same merges with a heap of (rank, position): the lowest rank first, the
        leftmost among equals; stale entries are skipped when popped."""
        merges = self._merges
        syms, nxt = list(word), list(range(1, len(word) + 1))
        prv = list(range(-1, len(word) - 1))
        heap = [(merges[(syms[i], syms[i + 1])][0], i, syms[i], syms[i + 1])
                for i in range(len(word) - 1) if (syms[i], syms[i + 1]) in merges]
        heapq.heapify(heap)
        n = len(word)
        while heap:
            rank, i, a, b = heapq.heappop(heap)
            j = nxt[i]
            if syms[i] != a or j >= n or syms[j] != b:
                continue  # stale: one side was merged away since this was pushed
            syms[i], syms[j] = a + b, None
            nxt[i] = nxt[j]
            if nxt[i] < n:
                prv[nxt[i]] = i
            for left in (prv[i], i):
                if left >= 0 and nxt[left] < n:
                    pair = (syms[left], syms[nxt[left]])
                    if pair in merges:
                        heapq.heappush(heap, (merges[pair][0], left, *pair))
        return [s for s in syms if s is not None]

    def _encode_ordinary(self, text: str, out: list) -> None:
        cache, tr = self._cache, self._translate
        for piece in self._pattern.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = self._bpe(piece.encode("utf-8").decode("latin-1").translate(tr))
                if len(cache) > 500_000:
                    cache.clear()
                cache[piece] = ids
            out.extend(ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``; special tokens written in the text become their ids.
        ``add_special_tokens`` adds BOS/EOS where the file asks for them
        (tokenizer.ggml.add_bos_token / add_eos_token: neither, for SmolLM2)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        out: list[int] = []
        if add_special_tokens and self.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        if self._split_special is None:
            self._encode_ordinary(text, out)
        else:
            for k, part in enumerate(self._split_special.split(text)):
                if k % 2:
                    out.append(self.vocab[part])
                elif part:
                    self._encode_ordinary(part, out)
        if add_special_tokens and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    # ------------------------------------------------------------ decode

    def token_bytes(self, ids, skip_special_tokens: bool = False) -> bytes:
        n = len(self.tokens)
        parts = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"ids: expected ids in [0, {n}), got {i}")
            if not (skip_special_tokens and i in self.special_ids):
                parts.append(self._id_bytes[i])
        return b"".join(parts)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        return self.token_bytes(ids, skip_special_tokens).decode("utf-8", errors="replace")

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens)

    # ------------------------------------------------------------ chat

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt text of a conversation (a list of {"role", "content"} dicts), as
        the model's Jinja chat template renders it (SmolLM2: ChatML, with a default
        system turn when the first message is not a system one)."""
        system = _parse_chat_template(self.chat_template)
        parts = []
        for k, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) \
                    or not isinstance(msg.get("content"), str):
                raise ValueError(f"messages[{k}]: expected a dict with str 'role' and "
                                 f"'content', got {msg!r}")
            if k == 0 and system is not None and msg["role"] != "system":
                parts.append(f"<|im_start|>system\n{system}<|im_end|>\n")
            parts.append(f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)


class StreamDecoder:
    """Decoding ids as they come (generation): ``feed(ids)`` returns only complete
    characters, keeping the bytes of a character split across tokens until the rest
    arrives; ``flush()`` returns what is left (U+FFFD for an unfinished character).
    The pieces joined equal ``tokenizer.decode(all_ids)``."""

    def __init__(self, tokenizer: BPETokenizer, skip_special_tokens: bool = False):
        self.tokenizer, self.skip = tokenizer, skip_special_tokens
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids) -> str:
        ids = [ids] if isinstance(ids, numbers.Integral) else ids
        return self._dec.decode(self.tokenizer.token_bytes(ids, self.skip))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


def _read_metadata(path) -> dict:
    """The metadata of a GGUF file without dequantizing its tensors."""
    from numformer.pretrained import gguf as g
    p = g.find_smollm2(path)
    reader = g._reader(p)
    return {n: g._contents(f) for n, f in reader.fields.items() if not n.startswith("GGUF.")}
