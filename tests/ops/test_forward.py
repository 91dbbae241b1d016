"""Forward values against independent formulas, dtypes, masks and extreme inputs."""

import math

import numpy as np
import pytest

from numformer import ops
from numformer.ops._erf import erf
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]


def naive_attention(q, k, v, key_mask=None, causal=False):
    """Loop-by-loop attention, written independently of the op."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    out = np.zeros_like(q, dtype=np.float64)
    for b in range(B):
        for h in range(H):
            for i in range(Tq):
                keys = [j for j in range(Tk)
                        if (key_mask is None or key_mask[b, j])
                        and (not causal or j <= i + Tk - Tq)]
                if not keys:
                    continue
                s = np.array([q[b, h, i] @ k[b, h, j] / math.sqrt(D) for j in keys])
                w = np.exp(s - s.max())
                w /= w.sum()
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, keys))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(5, 5), (1, 1), (2, 6)])
def test_attention_matches_loops(rng, dtype, causal, tq, tk):
    B, H, D = 3, 2, 3
    q = rng.standard_normal((B, H, tq, D)).astype(dtype)
    k = rng.standard_normal((B, H, tk, D)).astype(dtype)
    v = rng.standard_normal((B, H, tk, D)).astype(dtype)
    km = np.ones((B, tk), bool)
    km[1, tk // 2:] = False
    km[2] = False
    out, cache = ops.attention_forward(q, k, v, key_mask=km, causal=causal)
    assert out.dtype == dtype
    assert_close(out, naive_attention(q, k, v, km, causal), dtype, what="attention out")
    assert np.all(out[2] == 0)  # fully padded sequence: zeros, not NaN
    for g in ops.attention_backward(np.ones_like(out), cache):
        assert g.dtype == dtype and np.all(np.isfinite(g))


def test_attention_probabilities_sum_to_one_and_respect_masks(rng):
    q, k, v = (rng.standard_normal((2, 2, 4, 3)) for _ in range(3))
    km = np.array([[True, True, False, True], [True, False, False, False]])
    _, (_, _, _, p, _) = ops.attention_forward(q, k, v, key_mask=km, causal=True)
    assert np.all(p[:, :, :, ~km[0]][0] == 0) and np.all(p[1][..., 1:] == 0)
    tri = np.triu(np.ones((4, 4), bool), 1)
    assert np.all(p[:, :, tri] == 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)


def test_attention_large_scores_stay_finite(rng):
    q = rng.standard_normal((1, 1, 4, 2)) * 1e4
    k = rng.standard_normal((1, 1, 4, 2)) * 1e4
    v = rng.standard_normal((1, 1, 4, 2))
    out, cache = ops.attention_forward(q.astype(np.float32), k.astype(np.float32),
                                       v.astype(np.float32))
    assert np.all(np.isfinite(out))
    assert all(np.all(np.isfinite(g)) for g in ops.attention_backward(np.ones_like(out), cache))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax(rng, dtype):
    x = (rng.standard_normal((3, 7)) * 3).astype(dtype)
    p, _ = ops.softmax_forward(x)
    ref = np.exp(x.astype(np.float64)) / np.exp(x.astype(np.float64)).sum(-1, keepdims=True)
    assert p.dtype == dtype
    assert_close(p, ref, dtype)
    lp, _ = ops.log_softmax_forward(x)
    assert_close(lp, np.log(ref), dtype)
    big = np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    p, c = ops.softmax_forward(big)
    assert np.all(np.isfinite(p)) and p[0, 0] == 1
    assert np.all(np.isfinite(ops.log_softmax_forward(big)[0][0, :1]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_normalises_and_constant_rows_stay_finite(rng, dtype):
    x = (rng.standard_normal((2, 3, 8)) * 5 + 2).astype(dtype)
    g = np.ones(8, dtype)
    b = np.zeros(8, dtype)
    out, _ = ops.layernorm_forward(x, g, b)
    assert out.dtype == dtype
    assert_close(out.mean(-1), np.zeros((2, 3)), dtype, atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(out.var(-1), 1.0, rtol=1e-3)  # var/(var+eps)
    const = np.full((2, 8), 3.0, dtype)
    out, cache = ops.layernorm_forward(const, g, b)
    dx, dg, db = ops.layernorm_backward(np.ones_like(out), cache)
    assert np.all(out == 0) and np.all(np.isfinite(dx))
    huge = np.array([[1e4, -1e4, 1e4, 0]], dtype)
    assert np.all(np.isfinite(ops.layernorm_forward(huge, np.ones(4, dtype), np.zeros(4, dtype))[0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_and_matmul(rng, dtype):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    out, _ = ops.linear_forward(x, W, b)
    assert out.dtype == dtype
    assert_close(out, np.einsum("btc,cd->btd", x, W) + b, dtype)
    a = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    bb = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    out, _ = ops.matmul_forward(a, bb)
    assert out.dtype == dtype and out.shape == (2, 3, 4, 6)
    assert_close(out, np.einsum("bhmk,bhkn->bhmn", a, bb), dtype)


def test_erf_against_math_erf():
    """The NumPy fallback erf (used where scipy is missing) and the one GELU uses."""
    from numformer.ops.activations import erf as gelu_erf
    x = np.linspace(-7, 7, 50001)
    ref = np.array([math.erf(t) for t in x])
    np.testing.assert_allclose(erf(x), ref, rtol=0, atol=2e-15)
    np.testing.assert_allclose(gelu_erf(x), ref, rtol=0, atol=2e-15)
    assert erf(np.float32(0.5) * np.ones(3, np.float32)).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_values(dtype):
    x = np.linspace(-5, 5, 41).astype(dtype)
    exact = np.array([0.5 * t * (1 + math.erf(t / math.sqrt(2))) for t in x.astype(float)])
    out, _ = ops.gelu_forward(x)
    assert out.dtype == dtype
    assert_close(out, exact, dtype)
    out, _ = ops.gelu_forward(x, "tanh")
    np.testing.assert_allclose(out, exact, atol=1e-3)  # the approximation's own error
    relu, _ = ops.relu_forward(x)
    assert relu.dtype == dtype and np.array_equal(relu, np.maximum(x, 0))


def test_embedding_scatter_accumulates_repeated_ids(rng):
    W = rng.standard_normal((5, 3))
    ids = np.array([[1, 1, 4], [1, 0, 4]])
    out, cache = ops.embedding_forward(ids, W)
    assert np.array_equal(out, W[ids])
    dout = rng.standard_normal((2, 3, 3))
    dW = ops.embedding_backward(dout, cache)
    expected = np.zeros_like(W)
    for (b, t), i in np.ndenumerate(ids):
        expected[i] += dout[b, t]
    np.testing.assert_allclose(dW, expected, rtol=1e-15)
    assert np.all(dW[[2, 3]] == 0)


def test_sinusoidal_table_formula():
    P = ops.sinusoidal_table(50, 6, np.float64)
    for t in (0, 7, 49):
        for i in range(3):
            w = 1.0 / 10000 ** (2 * i / 6)
            assert P[t, 2 * i] == pytest.approx(math.sin(t * w), abs=1e-12)
            assert P[t, 2 * i + 1] == pytest.approx(math.cos(t * w), abs=1e-12)
    assert ops.sinusoidal_table(4, 5).shape == (4, 5)  # odd C


def test_dropout_is_seeded_scaled_and_identity_in_eval():
    x = np.ones((200, 500), np.float32)
    out, mask = ops.dropout_forward(x, 0.25, np.random.default_rng(0))
    assert out.dtype == np.float32
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    out2, _ = ops.dropout_forward(x, 0.25, np.random.default_rng(0))
    assert np.array_equal(out, out2)
    assert ops.dropout_forward(x, 0.25, None, training=False)[0] is x
    assert np.array_equal(ops.dropout_backward(x, mask), mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_values(rng, dtype):
    logits = rng.standard_normal((4, 6)).astype(dtype)
    t = np.array([0, 5, -100, 2])
    loss, cache = ops.cross_entropy_forward(logits, t)
    lp = logits.astype(float) - np.log(np.exp(logits.astype(float)).sum(-1, keepdims=True))
    expected = -(lp[0, 0] + lp[1, 5] + lp[3, 2]) / 3
    assert np.asarray(loss).dtype == dtype
    assert_close(loss, expected, dtype)
    d = ops.cross_entropy_backward(1.0, cache)
    assert d.dtype == dtype and np.all(d[2] == 0)
    assert_close(d.sum(-1), np.zeros(4), dtype, atol=1e-6)
    ls, _ = ops.cross_entropy_forward(logits, t, label_smoothing=0.2)
    smooth = -lp[[0, 1, 3]].mean(-1).mean()
    assert_close(ls, 0.8 * expected + 0.2 * smooth, dtype)


def test_cross_entropy_extremes_and_nothing_counted():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], np.float32)
    loss, cache = ops.cross_entropy_forward(logits, np.array([1, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4, rel=1e-6)
    assert np.all(np.isfinite(ops.cross_entropy_backward(1.0, cache)))
    loss, cache = ops.cross_entropy_forward(logits, np.array([-100, -100]))
    assert loss == 0 and np.all(ops.cross_entropy_backward(1.0, cache) == 0)


def test_pooling(rng):
    x = rng.standard_normal((3, 4, 2))
    m = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    out, _ = ops.mean_pool_forward(x, m)
    np.testing.assert_allclose(out[0], x[0, :2].mean(0))
    np.testing.assert_allclose(out[1], x[1].mean(0))
    assert np.all(out[2] == 0)
    out, _ = ops.cls_pool_forward(x)
    assert np.array_equal(out, x[:, 0])


def test_position_offset_and_learned_gradient(rng):
    x = rng.standard_normal((2, 3, 4))
    P = rng.standard_normal((6, 4))
    out, cache = ops.position_forward(x, P, offset=2)
    np.testing.assert_allclose(out, x + P[2:5])
    dx, dP = ops.position_backward(np.ones_like(out), cache)
    assert np.all(dP[[0, 1, 5]] == 0) and np.all(dP[2:5] == 2)
