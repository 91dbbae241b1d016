"""Dropout on the attention probabilities in the reference op
(``attention_forward(..., dropout=p, rng=..., offset=...)``): gradients in float64
with the mask fixed, the mask's meaning (out = (p * mask) @ v, rows of p still
the undropped softmax), its rate, its offset convention, and bad input."""

import numpy as np
import pytest

from numformer.gradcheck import check_op
from numformer.ops import attention as ref


def _qkv(rng, B, H, Hkv, Tq, Tk, D, dtype=np.float64):
    return (rng.standard_normal((B, H, Tq, D)).astype(dtype),
            rng.standard_normal((B, Hkv, Tk, D)).astype(dtype),
            rng.standard_normal((B, Hkv, Tk, D)).astype(dtype))


def _fixed(seed, p):
    """attention_forward with the same key on every call (a fresh generator each time),
    as a finite-difference check needs."""
    def forward(q, k, v, key_mask=None, causal=False):
        return ref.attention_forward(q, k, v, key_mask, causal, dropout=p,
                                     rng=np.random.default_rng(seed))
    return forward


@pytest.mark.parametrize("H,Hkv,Tq,Tk,causal,masked", [
    (2, 2, 5, 5, False, False), (2, 2, 5, 5, True, True), (6, 2, 5, 7, False, True),
    (4, 1, 3, 6, True, True), (6, 3, 1, 5, True, False)])
def test_gradcheck_with_dropout(rng, H, Hkv, Tq, Tk, causal, masked):
    B, D = 3, 3
    q, k, v = _qkv(rng, B, H, Hkv, Tq, Tk, D)
    km = None
    if masked:
        km = np.ones((B, Tk), bool)
        km[1, Tk - 2:] = False
        km[2, :] = False  # a fully padded sequence
    forward = _fixed(7, 0.3)
    _, cache = forward(q, k, v, km, causal)
    assert len(cache) == 6 and 0 < (cache[5] == 0).mean() < 1  # some dropped, some kept
    report = check_op(forward, ref.attention_backward, dict(q=q, k=k, v=v, key_mask=km),
                      ["q", "k", "v"], dict(causal=causal), title="attention dropout")
    report.assert_ok()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_is_the_dropped_probabilities_times_v(rng, dtype):
    """With v the identity (D = Tk) the output is p * mask itself: kept entries are
    p / (1 - dropout), dropped ones exactly 0, and p (the cache) is the softmax
    without the drop, rows summing to 1."""
    B, H, T, p = 2, 3, 6, 0.4
    q = rng.standard_normal((B, H, T, T)).astype(dtype)
    k = rng.standard_normal((B, H, T, T)).astype(dtype)
    v = np.broadcast_to(np.eye(T, dtype=dtype), (B, H, T, T)).copy()
    out, cache = ref.attention_forward(q, k, v, dropout=p, rng=np.random.default_rng(3))
    plain, pcache = ref.attention_forward(q, k, v)
    probs, mask = cache[3], cache[5]
    np.testing.assert_array_equal(probs, pcache[3])
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert out.dtype == dtype and mask.dtype == dtype
    assert set(np.unique(mask)) == {dtype(0), dtype(1 / (1 - p))}
    np.testing.assert_allclose(out, np.where(mask > 0, plain / dtype(1 - p), 0),
                               rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_rate_and_expectation(rng):
    """About p of the probabilities are dropped; over many keys the mean output is the
    undropped one (inverted dropout is unbiased)."""
    B, H, T, D, p = 2, 2, 8, 4, 0.25
    q, k, v = _qkv(rng, B, H, H, T, T, D)
    plain, _ = ref.attention_forward(q, k, v)
    g = np.random.default_rng(11)
    outs, dropped = [], []
    for _ in range(400):
        o, c = ref.attention_forward(q, k, v, dropout=p, rng=g)
        outs.append(o)
        dropped.append((c[5] == 0).mean())
    assert abs(np.mean(dropped) - p) < 0.01
    mean = np.mean(outs, axis=0)
    spread = np.std(outs, axis=0) / np.sqrt(len(outs))
    assert np.all(np.abs(mean - plain) < 5 * spread + 1e-12)
    assert not np.allclose(outs[0], outs[1])  # each call draws a new key


def test_offset_gives_the_whole_batchs_mask_for_a_part(rng):
    """Rows 2: of a batch with offset = 2 * H * Tq * Tk draw the masks the whole
    batch draws for those rows (a data-parallel shard)."""
    B, H, Hkv, Tq, Tk, D = 5, 4, 2, 3, 7, 3
    q, k, v = _qkv(rng, B, H, Hkv, Tq, Tk, D)
    whole, cw = ref.attention_forward(q, k, v, causal=True, dropout=0.5,
                                      rng=np.random.default_rng(4))
    part, cp = ref.attention_forward(q[2:], k[2:], v[2:], causal=True, dropout=0.5,
                                     rng=np.random.default_rng(4), offset=2 * H * Tq * Tk)
    np.testing.assert_array_equal(cp[5], cw[5][2:])
    np.testing.assert_array_equal(part, whole[2:])
    other, co = ref.attention_forward(q[2:], k[2:], v[2:], causal=True, dropout=0.5,
                                      rng=np.random.default_rng(4))
    assert not np.array_equal(co[5], cw[5][2:])  # without the offset: rows 0: masks


def test_dropout_zero_is_the_plain_op(rng):
    q, k, v = _qkv(rng, 2, 2, 2, 4, 4, 3)
    a, ca = ref.attention_forward(q, k, v, dropout=0.0, rng=None)
    b, cb = ref.attention_forward(q, k, v)
    np.testing.assert_array_equal(a, b)
    assert len(ca) == len(cb) == 5


def test_mha_forward_passes_dropout(rng):
    B, T, H, D = 2, 5, 2, 3
    C = H * D
    x = rng.standard_normal((B, T, C))
    W = [rng.standard_normal(s) * 0.5 for s in ((C, 3 * C), (3 * C,), (C, C), (C,))]

    def forward(x, Wqkv, bqkv, Wo, bo):
        return ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, causal=True, dropout=0.3,
                               rng=np.random.default_rng(2))
    out, cache = forward(x, *W)
    plain, _ = ref.mha_forward(x, *W, H, causal=True)
    assert not np.allclose(out, plain)
    check_op(forward, ref.mha_backward, dict(x=x, Wqkv=W[0], bqkv=W[1], Wo=W[2], bo=W[3]),
             ["x", "Wqkv", "bqkv", "Wo", "bo"], title="mha dropout").assert_ok()


@pytest.mark.parametrize("kw,match", [
    (dict(dropout=1.0, rng=np.random.default_rng(0)), r"dropout: expected a probability in \[0, 1\), got 1.0"),
    (dict(dropout=-0.1, rng=np.random.default_rng(0)), r"dropout: expected a probability"),
    (dict(dropout=0.1), r"rng: expected a numpy.random.Generator when dropout > 0, got NoneType"),
    (dict(dropout=0.1, rng=3), r"rng: expected a numpy.random.Generator when dropout > 0, got int"),
    (dict(dropout=0.1, rng=np.random.default_rng(0), offset=-1), r"offset: expected an integer >= 0"),
])
def test_bad_dropout_arguments(rng, kw, match):
    q, k, v = _qkv(rng, 1, 2, 2, 3, 3, 2)
    with pytest.raises(ValueError, match=match):
        ref.attention_forward(q, k, v, **kw)
