"""Sampling text from a causal language model, one token at a time.

The context is the last tokens that fit the positional table: when the
window is full, it restarts from the most recent ``max_len // 2`` tokens (so a
key-value cache is rebuilt once per ``max_len // 2`` new tokens, not per
token). The cached and uncached paths follow the same rule, so under one
seed they produce the same tokens.
"""

from __future__ import annotations

import numpy as np

from numformer.nn.causal_lm import CausalLM


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None,
                rng: np.random.Generator) -> np.ndarray:
    """One token per row of ``logits`` (B, V): greedy when temperature == 0,
    else sampled from softmax(logits / temperature) restricted to the top k."""
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k: expected a positive integer, got {top_k}")
    logits = logits.astype(np.float64)
    if temperature == 0:
        return logits.argmax(axis=-1)
    z = logits / temperature  # (B, V)
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]  # (B, 1)
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    u = rng.random(p.shape[0])[:, None]  # (B, 1)
    return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)


def generate(model: CausalLM, prompt: np.ndarray, length: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, use_cache: bool = True) -> np.ndarray:
    """Extend ``prompt`` (T,) or (B, T) integer ids by ``length`` sampled tokens.

    Returns the ids (B, T + length) (or (T + length,) for a 1-D prompt).
    """
    prompt = np.asarray(prompt)
    one_dim = prompt.ndim == 1
    ids = prompt[None, :] if one_dim else prompt
    if ids.ndim != 2 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"prompt: expected a non-empty integer array (T,) or (B, T), got "
                         f"shape {prompt.shape} dtype {prompt.dtype}")
    if length < 0:
        raise ValueError(f"length: expected >= 0, got {length}")
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
            out[:, n] = sample_next(logits, temperature, top_k, rng)
            n += 1
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
    return out[0] if one_dim else out
