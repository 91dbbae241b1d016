"""Batching token sequences: padding, key masks, length bucketing; LM windows.

Shapes: B batch, T sequence (padded length), N examples.

    ids, key_mask = collate(seqs, pad_id=0, max_len=128, cls_id=3)
    for batch in iterate_batches(seqs, 32, pad_id=0, labels=y, max_len=128, rng=rng):
        batch.ids (B, T) int64, batch.key_mask (B, T) bool, batch.labels (B,), batch.index (B,)

Bucketing: the (seeded) shuffled examples are cut into windows of
``bucket_window`` batches; each window is sorted by length and cut into
batches, and the batches are shuffled. Batches then hold sequences of
similar length (little padding) while the order stays random. Pass one
``np.random.Generator`` through every epoch for a new, reproducible order each
epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


def as_rng(rng) -> np.random.Generator:
    """A Generator from a Generator or an integer seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng: expected a numpy.random.Generator or an integer seed, "
                     f"got {type(rng).__name__}")


def _seq(i: int, s) -> np.ndarray:
    a = np.asarray(s)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"seqs[{i}]: expected a 1-D integer sequence, got shape {a.shape} and "
                         f"dtype {a.dtype}")
    return a


def collate(seqs: Sequence, pad_id: int, max_len: int | None = None, cls_id: int | None = None,
            fixed_length: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad sequences of ids into one batch.

    Each sequence gets ``cls_id`` in front (if given), is cut to ``max_len``
    tokens (the <cls> included), and is padded with ``pad_id`` to the longest
    one, or to ``max_len`` with ``fixed_length=True``.
    Returns ids (B, T) int64 and key_mask (B, T) bool, True for real tokens.
    """
    if len(seqs) == 0:
        raise ValueError("seqs: expected at least one sequence, got none")
    if max_len is not None and (int(max_len) != max_len or max_len < 1):
        raise ValueError(f"max_len: expected an integer >= 1, got {max_len}")
    if fixed_length and max_len is None:
        raise ValueError("fixed_length: expected max_len with fixed_length=True, got None")
    arrs = [_seq(i, s) for i, s in enumerate(seqs)]
    extra = 0 if cls_id is None else 1
    lens = [len(a) + extra for a in arrs]
    if max_len is not None:
        lens = [min(n, max_len) for n in lens]
    T = max_len if fixed_length else max(max(lens), 1)
    B = len(arrs)
    ids = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
    if cls_id is not None:
        ids[:, 0] = cls_id
    for b, (a, n) in enumerate(zip(arrs, lens)):
        ids[b, extra:n] = a[:n - extra]
    key_mask = np.arange(T)[None, :] < np.array(lens)[:, None]  # (B, T)
    return ids, key_mask


def plan_batches(lengths: Sequence[int], batch_size: int, rng=0, shuffle: bool = True,
                 bucket_window: int | None = 50, drop_last: bool = False) -> list[np.ndarray]:
    """The example indices of each batch, for one epoch.

    ``shuffle=False`` keeps the data order (and does no bucketing, so
    evaluation sees every example once, in order). ``bucket_window=None`` or 0
    turns bucketing off. ``drop_last`` drops batches smaller than ``batch_size``.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    N = len(lengths)
    if shuffle:
        rng = as_rng(rng)
        order = rng.permutation(N)
        if bucket_window:
            w = int(bucket_window) * batch_size
            order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(w, N, w))]) \
                if N else order
    else:
        order = np.arange(N)
    batches = [order[i:i + batch_size] for i in range(0, N, batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@dataclass
class Batch:
    """ids (B, T) int64, key_mask (B, T) bool, labels (B,) or None, index (B,) of the examples."""
    ids: np.ndarray
    key_mask: np.ndarray
    labels: np.ndarray | None
    index: np.ndarray


def iterate_batches(seqs: Sequence, batch_size: int, pad_id: int, labels=None,
                    max_len: int | None = None, cls_id: int | None = None,
                    fixed_length: bool = False, shuffle: bool = True,
                    bucket_window: int | None = 50, drop_last: bool = False,
                    rng=0) -> Iterator[Batch]:
    """One epoch of padded batches (see ``plan_batches`` and ``collate``)."""
    N = len(seqs)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (N,):
            raise ValueError(f"labels: expected shape ({N},) (one per sequence), "
                             f"got {labels.shape}")
    extra = 0 if cls_id is None else 1
    lengths = [len(s) + extra for s in seqs]
    if max_len is not None:
        lengths = [min(n, max_len) for n in lengths]
    for idx in plan_batches(lengths, batch_size, rng, shuffle, bucket_window, drop_last):
        ids, mask = collate([seqs[i] for i in idx], pad_id, max_len, cls_id, fixed_length)
        yield Batch(ids, mask, None if labels is None else labels[idx], idx)


# causal language modelling on one long stream -------------------------------------------

def random_lm_batch(data: np.ndarray, block_size: int, batch_size: int,
                    rng) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` windows at random offsets of a 1-D id stream: inputs x (B, T)
    and next-token targets y (B, T) = x shifted by one, T = ``block_size``."""
    data = _seq(0, data)
    if len(data) < block_size + 1:
        raise ValueError(f"data: expected at least block_size + 1 = {block_size + 1} ids, "
                         f"got {len(data)}")
    starts = as_rng(rng).integers(0, len(data) - block_size, size=batch_size)  # (B,)
    offs = starts[:, None] + np.arange(block_size)[None, :]  # (B, T)
    return data[offs].astype(np.int64), data[offs + 1].astype(np.int64)


def sequential_lm_batches(data: np.ndarray, block_size: int,
                          batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive non-overlapping windows covering the stream once (evaluation);
    the last batch may be smaller, the tail shorter than a window is left out."""
    data = _seq(0, data)
    n = (len(data) - 1) // block_size
    if n < 1:
        raise ValueError(f"data: expected at least block_size + 1 = {block_size + 1} ids, "
                         f"got {len(data)}")
    x = data[:n * block_size].reshape(n, block_size).astype(np.int64)  # (n, T)
    y = data[1:n * block_size + 1].reshape(n, block_size).astype(np.int64)  # (n, T)
    for i in range(0, n, batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]
