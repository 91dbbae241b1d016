"""Sampling text from a causal language model, one token at a time.

The context is the last tokens that fit the positional table: when the
window is full, it restarts from the most recent ``max_len // 2`` tokens (so a
key-value cache is rebuilt once per ``max_len // 2`` new tokens, not per
token). The cached and uncached paths follow the same rule, so under one
seed they produce the same tokens.

The special tokens are never sampled: their logits are set to -inf before
the choice (greedy included). ``never_sampled(tokenizer)`` says which ids:
for the byte tokenizer all five specials (no byte maps to any of them), for a
word tokenizer <pad>, <mask>, <cls> and <sep> (<unk> stays: "a word outside
the vocabulary" can be an honest prediction).
"""

from __future__ import annotations

import math

import numpy as np

from numformer.data.tokenizers import CLS_ID, MASK_ID, PAD_ID, SEP_ID, ByteTokenizer
from numformer.nn.causal_lm import CausalLM

# ids no numformer tokenizer ever means as text (they are shared by both tokenizers)
NEVER_SAMPLED = (PAD_ID, MASK_ID, CLS_ID, SEP_ID)


def never_sampled(tokenizer) -> tuple[int, ...]:
    """The ids generation must not produce with ``tokenizer``. For a pretrained
    byte-level BPE (SmolLM2) its control tokens except the end of sequence (and
    the chat template's end-of-turn, which is that token), so a chat reply can end."""
    if isinstance(tokenizer, ByteTokenizer):
        return tuple(int(i) for i in tokenizer.special_ids)  # every id that is not a byte
    if hasattr(tokenizer, "eos_id") and hasattr(tokenizer, "special_ids"):
        keep = {tokenizer.eos_id, *stop_ids(tokenizer)}
        return tuple(sorted(int(i) for i in tokenizer.special_ids if i not in keep))
    return NEVER_SAMPLED


def stop_ids(tokenizer) -> tuple[int, ...]:
    """The ids that end a generation with ``tokenizer``: its end-of-sequence token
    and, for a chat template, the end-of-turn marker (none for numformer's own)."""
    ids = set()
    if getattr(tokenizer, "eos_id", None) is not None:
        ids.add(int(tokenizer.eos_id))
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, dict) and "<|im_end|>" in vocab:
        ids.add(int(vocab["<|im_end|>"]))
    return tuple(sorted(ids))


def check_sampling(temperature, top_k, top_p=None) -> None:
    """temperature a finite number >= 0, top_k None or an integer >= 1, top_p None
    or a number in (0, 1] (ValueError)."""
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(
            top_p, (int, float, np.floating)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p: expected None or a number in (0, 1], got {top_p!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature: expected a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or top_k < 1):
        raise ValueError(f"top_k: expected None or an integer >= 1, got {top_k!r}")


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None,
                rng: np.random.Generator, exclude=(), top_p: float | None = None) -> np.ndarray:
    """One token per row of ``logits`` (B, V): greedy when temperature == 0,
    else sampled from softmax(logits / temperature) restricted to the top k and
    to the nucleus: the fewest most likely ids whose probabilities sum to at
    least ``top_p``. The ids in ``exclude`` are never chosen (``generate``
    passes the specials)."""
    check_sampling(temperature, top_k, top_p)
    logits = logits.astype(np.float64)  # a copy: the caller's logits are left alone
    V = logits.shape[-1]
    ex = np.asarray([i for i in exclude if 0 <= i < V], dtype=np.int64)
    if ex.size:
        if ex.size >= V:
            raise ValueError(f"exclude: every one of the {V} ids is excluded; nothing to sample")
        logits[:, ex] = -np.inf
    if temperature == 0:
        return logits.argmax(axis=-1)
    z = logits / temperature  # (B, V)
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]  # (B, 1)
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, axis=-1, kind="stable")  # (B, V) most likely first
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the more likely ids
        drop = np.zeros_like(p, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)  # outside the nucleus
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random(p.shape[0])[:, None]  # (B, 1)
    # the first id whose cumulative probability passes u: never one of probability 0
    # (an excluded id), even at u == 0 or when rounding leaves the total below u
    chosen = (np.cumsum(p, axis=-1) <= u).sum(axis=-1)  # (B,)
    last = p.shape[-1] - 1 - np.argmax(p[:, ::-1] > 0, axis=-1)  # (B,) last id with p > 0
    return np.minimum(chosen, last)


def generate(model: CausalLM, prompt: np.ndarray, length: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, use_cache: bool = True,
             exclude=NEVER_SAMPLED, top_p: float | None = None, stop=(),
             on_token=None) -> np.ndarray:
    """Extend ``prompt`` (T,) or (B, T) integer ids by ``length`` sampled tokens,
    never one of ``exclude`` (``never_sampled(tokenizer)`` for a tokenizer's).
    Generation ends early once every row has produced one of the ``stop`` ids
    (kept in the output); ``on_token(ids)`` is called with each new column
    (B,) as it is chosen (streaming).

    Returns the ids (B, T + n) with n <= length new tokens (or (T + n,) for a
    1-D prompt).
    """
    prompt = np.asarray(prompt)
    one_dim = prompt.ndim == 1
    ids = prompt[None, :] if one_dim else prompt
    if ids.ndim != 2 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"prompt: expected a non-empty integer array (T,) or (B, T), got "
                         f"shape {prompt.shape} dtype {prompt.dtype}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"length: expected an integer >= 0, got {length!r}")
    check_sampling(temperature, top_k, top_p)
    stop = np.asarray(sorted(stop), dtype=np.int64)
    done = np.zeros(ids.shape[0], dtype=bool)  # rows that produced a stop id
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    L = model.cfg.max_len
    out = np.empty((ids.shape[0], ids.shape[1] + length), dtype=np.int64)
    out[:, :ids.shape[1]] = ids
    n = ids.shape[1]
    start = max(0, n - L)
    cache = model.new_cache() if use_cache else None
    try:
        logits = model(out[:, start:n], kv_cache=cache)[:, -1]  # (B, V)
        for _ in range(length):
            out[:, n] = sample_next(logits, temperature, top_k, rng, exclude, top_p)
            n += 1
            if on_token is not None:
                on_token(out[:, n - 1])
            if stop.size:
                done |= np.isin(out[:, n - 1], stop)
                if done.all():
                    break
            if n - start > L:  # the window is full: restart from the recent half
                start = n - L // 2
                cache = model.new_cache() if use_cache else None
                logits = model(out[:, start:n], kv_cache=cache)[:, -1]
            elif use_cache:
                logits = model(out[:, n - 1:n], kv_cache=cache)[:, -1]
            else:
                logits = model(out[:, start:n])[:, -1]
    finally:
        model.train(was_training)
    out = out[:, :n]
    return out[0] if one_dim else out
