"""BERT masking for the masked-LM objective.

Shapes: B batch, T sequence, N chosen tokens, V vocabulary.

Of the candidate tokens of each sequence (real tokens, key_mask True, that
are not special: <pad> <unk> <mask> <cls> <sep> are never chosen), a share
``prob`` (15%) is chosen uniformly without replacement. The count per
sequence is ``prob * n`` rounded up or down at random (up with probability
its fractional part), so its expectation is exactly ``prob * n``; with
``at_least_one`` a sequence with candidates gets at least one. Of the chosen
tokens, 80% become <mask>, 10% a random non-special token (which may by
chance be the original) and 10% stay unchanged (BERT, Devlin et al. 2019).

The result gives the flat positions of the chosen tokens
(``np.flatnonzero`` over B*T, what ``numformer.nn.MaskedLM.forward(ids,
key_mask, positions)`` takes) and their original ids as the targets, so the
vocabulary logits and the loss are computed only there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from numformer.data.batching import as_rng, iterate_batches
from numformer.data.tokenizers import MASK_ID, SPECIAL_IDS


@dataclass
class MLMBatch:
    """ids (B, T) int64 corrupted input; key_mask (B, T) bool; positions (N,) int64
    flat indices into B*T (ascending); targets (N,) int64 original ids there;
    index (B,) the examples (from ``mlm_batches``; None from ``mask_tokens``)."""
    ids: np.ndarray
    key_mask: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    index: np.ndarray | None = None


def mask_tokens(ids: np.ndarray, key_mask: np.ndarray | None, rng, *, vocab_size: int,
                mask_id: int = MASK_ID, special_ids=SPECIAL_IDS, prob: float = 0.15,
                p_mask: float = 0.8, p_random: float = 0.1,
                at_least_one: bool = True) -> MLMBatch:
    """Choose and corrupt tokens of a padded batch (see the module docstring).

    ids (B, T) integer in [0, vocab_size); key_mask (B, T) bool or None (all
    real); rng a Generator or an integer seed. ``ids`` is not modified.
    """
    if not isinstance(ids, np.ndarray) or ids.ndim != 2 or not np.issubdtype(ids.dtype,
                                                                             np.integer):
        got = (f"shape {ids.shape}, dtype {ids.dtype}" if isinstance(ids, np.ndarray)
               else type(ids).__name__)
        raise ValueError(f"ids: expected a 2-D integer array (B, T), got {got}")
    B, T = ids.shape
    if key_mask is None:
        key_mask = np.ones((B, T), dtype=bool)
    if (not isinstance(key_mask, np.ndarray) or key_mask.dtype != np.bool_
            or key_mask.shape != ids.shape):
        got = (f"shape {key_mask.shape}, dtype {key_mask.dtype}"
               if isinstance(key_mask, np.ndarray) else type(key_mask).__name__)
        raise ValueError(f"key_mask: expected a bool array of shape {ids.shape} (B, T), got {got}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise ValueError(f"ids: expected ids in [0, {vocab_size}) (vocab_size), got {bad}")
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob: expected a probability in (0, 1], got {prob}")
    if p_mask < 0 or p_random < 0 or p_mask + p_random > 1.0:
        raise ValueError(f"p_mask, p_random: expected non-negative with a sum <= 1, "
                         f"got {p_mask} and {p_random}")
    special_ids = np.asarray(special_ids, dtype=np.int64)
    specials_in = np.unique(special_ids[(special_ids >= 0) & (special_ids < vocab_size)])
    n_plain = vocab_size - specials_in.size  # the number of non-special ids
    if p_random > 0 and n_plain == 0:
        raise ValueError(f"vocab_size: expected non-special ids for random replacement, "
                         f"got vocab_size={vocab_size} with specials {special_ids.tolist()}")
    rng = as_rng(rng)

    cand = key_mask & ~np.isin(ids, special_ids)  # (B, T)
    n = cand.sum(axis=1)  # (B,)
    k = np.floor(prob * n + rng.random(B)).astype(np.int64)  # (B,) stochastic rounding
    if at_least_one:
        k = np.where(n > 0, np.maximum(k, 1), 0)
    k = np.minimum(k, n)
    # a uniform random order of each row's candidates: non-candidates sort last
    scores = np.where(cand, rng.random((B, T)), 2.0)  # (B, T)
    order = np.argsort(scores, axis=1, kind="stable")  # (B, T)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(T), (B, T)), axis=1)  # (B, T)
    chosen = rank < k[:, None]  # (B, T)

    positions = np.flatnonzero(chosen)  # (N,)
    targets = ids.ravel()[positions].astype(np.int64)  # (N,)
    out = ids.astype(np.int64, copy=True)  # (B, T)
    flat = out.reshape(-1)  # (B*T,) view
    r = rng.random(positions.size)  # (N,)
    to_mask = r < p_mask
    to_random = (r >= p_mask) & (r < p_mask + p_random)
    flat[positions[to_mask]] = mask_id
    if to_random.any():
        r = rng.integers(0, n_plain, size=int(to_random.sum()))  # rank among non-special ids
        # the r-th non-special id: r plus the specials at or below it; with the specials
        # sorted, s_j - j counts the non-special ids below s_j
        flat[positions[to_random]] = r + np.searchsorted(
            specials_in - np.arange(specials_in.size), r, side="right")
    return MLMBatch(out, key_mask, positions.astype(np.int64), targets)


class MLMMasker:
    """``mask_tokens`` with a tokenizer's ids and fixed probabilities:
    ``MLMMasker(tok)(ids, key_mask, rng) -> MLMBatch``."""

    def __init__(self, tokenizer, prob: float = 0.15, p_mask: float = 0.8,
                 p_random: float = 0.1, at_least_one: bool = True):
        self.vocab_size = tokenizer.vocab_size
        self.mask_id = tokenizer.mask_id
        self.special_ids = np.asarray(tokenizer.special_ids)
        self.prob, self.p_mask, self.p_random = prob, p_mask, p_random
        self.at_least_one = at_least_one

    def __call__(self, ids, key_mask, rng) -> MLMBatch:
        return mask_tokens(ids, key_mask, rng, vocab_size=self.vocab_size, mask_id=self.mask_id,
                           special_ids=self.special_ids, prob=self.prob, p_mask=self.p_mask,
                           p_random=self.p_random, at_least_one=self.at_least_one)


def mlm_batches(seqs: Sequence, tokenizer, batch_size: int, rng, max_len: int | None = None,
                add_cls: bool = False, fixed_length: bool = False, shuffle: bool = True,
                bucket_window: int | None = 50, drop_last: bool = False,
                **mask_kw) -> Iterator[MLMBatch]:
    """One epoch of masked batches of encoded sequences: ``iterate_batches`` (padding
    with the tokenizer's <pad>, optional <cls> prefix, truncation to ``max_len``)
    then ``mask_tokens`` (``mask_kw``: prob, p_mask, p_random, at_least_one).
    ``rng`` (a Generator or a seed) drives both. A batch in which no token
    was chosen (only empty sequences) is skipped."""
    rng = as_rng(rng)
    masker = MLMMasker(tokenizer, **mask_kw)
    for b in iterate_batches(seqs, batch_size, tokenizer.pad_id, max_len=max_len,
                             cls_id=tokenizer.cls_id if add_cls else None,
                             fixed_length=fixed_length, shuffle=shuffle,
                             bucket_window=bucket_window, drop_last=drop_last, rng=rng):
        m = masker(b.ids, b.key_mask, rng)
        if m.positions.size:
            m.index = b.index
            yield m


def word_dropout(ids: np.ndarray, key_mask: np.ndarray, prob: float, unk_id: int,
                 special_ids, rng) -> np.ndarray:
    """A copy of ``ids`` (B, T) with each real token that is not special replaced by
    ``unk_id`` with probability ``prob``, independently (word dropout: the
    classifier may not lean on any one word, a rare name most of all). Padding
    and the ``special_ids`` (<cls>, <sep>, ...) are never replaced."""
    if not 0.0 <= prob < 1.0:
        raise ValueError(f"prob: expected a probability in [0, 1), got {prob}")
    ids = np.asarray(ids)
    key_mask = np.asarray(key_mask, dtype=bool)
    if ids.shape != key_mask.shape:
        raise ValueError(f"key_mask: expected the shape of ids {ids.shape}, got "
                         f"{key_mask.shape}")
    out = ids.copy()  # (B, T)
    if prob == 0.0:
        return out
    drop = key_mask & ~np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))  # (B, T)
    drop &= as_rng(rng).random(ids.shape) < prob  # (B, T)
    out[drop] = unk_id
    return out
