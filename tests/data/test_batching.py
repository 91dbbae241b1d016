"""Padding, key masks, <cls> and truncation; length bucketing; LM windows."""

import numpy as np
import pytest

from numformer.data import (collate, iterate_batches, plan_batches, random_lm_batch,
                            sequential_lm_batches)

SEQS = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10, 11, 12, 13])]


def test_collate_pads_to_longest():
    ids, km = collate(SEQS, pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7, 0, 0], [8, 0, 0, 0, 0], [9, 10, 11, 12, 13]])
    np.testing.assert_array_equal(km, [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert ids.dtype == np.int64 and km.dtype == np.bool_


def test_collate_cls_truncation_fixed_length():
    ids, km = collate(SEQS, pad_id=0, max_len=4, cls_id=3)
    np.testing.assert_array_equal(ids, [[3, 5, 6, 7], [3, 8, 0, 0], [3, 9, 10, 11]])
    np.testing.assert_array_equal(km, [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]])
    ids, km = collate(SEQS[:2], pad_id=0, max_len=6, fixed_length=True)
    assert ids.shape == (2, 6)
    np.testing.assert_array_equal(km.sum(1), [3, 1])
    ids, km = collate([np.array([], np.int64)], pad_id=0)
    assert ids.shape == (1, 1) and not km.any()


@pytest.mark.parametrize("kw,match", [
    (dict(seqs=[]), "at least one"),
    (dict(max_len=0), "max_len"),
    (dict(fixed_length=True), "fixed_length"),
    (dict(seqs=[np.zeros((2, 2), np.int64)]), r"seqs\[0\]"),
    (dict(seqs=[np.array([1.5])]), r"seqs\[0\]"),
])
def test_collate_bad_arguments(kw, match):
    args = dict(seqs=SEQS, pad_id=0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        collate(**args)


def lengths(rng, n=1000):
    return rng.integers(1, 200, size=n)


def test_plan_covers_every_example_once(rng):
    L = lengths(rng, 1003)
    for window in (None, 4):
        batches = plan_batches(L, 32, rng=1, bucket_window=window)
        allidx = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(allidx), np.arange(1003))
        assert sorted(len(b) for b in batches) == [1003 - 31 * 32] + [32] * 31  # one short
    dropped = plan_batches(L, 32, rng=1, drop_last=True)
    assert len(dropped) == 31 and all(len(b) == 32 for b in dropped)


def test_bucketing_reduces_padding_and_stays_random(rng):
    L = lengths(rng)

    def padding(batches):
        return sum(len(b) * L[b].max() - L[b].sum() for b in batches)

    plain = plan_batches(L, 16, rng=0, bucket_window=None)
    bucketed = plan_batches(L, 16, rng=0, bucket_window=8)
    assert padding(bucketed) < 0.5 * padding(plain), (padding(bucketed), padding(plain))
    # the batch order is shuffled: batch lengths are not sorted across windows
    maxes = [L[b].max() for b in bucketed]
    assert maxes != sorted(maxes)
    # within a window (8 batches of 16 = 128 examples) lengths come sorted: the batches of
    # one window do not overlap in length range
    w = np.argsort(np.random.default_rng(0).permutation(len(L)))  # position in the shuffle
    win = [set((w[b] // 128).tolist()) for b in bucketed]
    assert all(len(s) == 1 for s in win)


def test_plan_is_seeded_and_epochs_differ(rng):
    L = lengths(rng)
    a = plan_batches(L, 10, rng=3)
    b = plan_batches(L, 10, rng=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    g = np.random.default_rng(3)
    e1, e2 = plan_batches(L, 10, rng=g), plan_batches(L, 10, rng=g)
    assert not all(np.array_equal(x, y) for x, y in zip(e1, e2))
    ordered = plan_batches(L, 10, shuffle=False)
    np.testing.assert_array_equal(np.concatenate(ordered), np.arange(len(L)))


def test_iterate_batches_keeps_labels_with_examples(rng):
    seqs = [np.full(int(n), i % 50 + 5) for i, n in enumerate(rng.integers(1, 30, size=101))]
    labels = np.arange(101)
    seen = []
    for b in iterate_batches(seqs, 8, pad_id=0, labels=labels, max_len=20, cls_id=3, rng=2):
        np.testing.assert_array_equal(b.labels, labels[b.index])
        for row, i in enumerate(b.index):
            n = min(len(seqs[i]) + 1, 20)
            assert b.key_mask[row].sum() == n and b.ids[row, 0] == 3
            np.testing.assert_array_equal(b.ids[row, 1:n], seqs[i][:n - 1])
        seen.extend(b.index.tolist())
    assert sorted(seen) == list(range(101))
    with pytest.raises(ValueError, match=r"labels: expected shape \(101,\)"):
        next(iterate_batches(seqs, 8, pad_id=0, labels=labels[:-1]))


def test_lm_windows():
    data = np.arange(100) + 5
    x, y = random_lm_batch(data, 10, 6, np.random.default_rng(0))
    assert x.shape == y.shape == (6, 10)
    np.testing.assert_array_equal(y, x + 1)  # next token of an increasing stream
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous windows
    assert x.min() >= 5 and y.max() <= 104
    batches = list(sequential_lm_batches(data, 7, 4))
    xs = np.concatenate([b[0] for b in batches])
    assert xs.shape == (14, 7)  # (100 - 1) // 7 windows
    np.testing.assert_array_equal(xs.ravel(), data[:98])
    with pytest.raises(ValueError, match="block_size"):
        random_lm_batch(data[:5], 10, 2, 0)
