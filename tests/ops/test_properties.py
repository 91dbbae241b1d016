"""Property-based tests (hypothesis) over random shapes and masks."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from numformer import ops
from numformer.gradcheck import check_op

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def attention_inputs(draw):
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 2))
    Tq = draw(st.integers(1, 5))
    Tk = draw(st.integers(Tq, 6))
    D = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, Tq, D))
    k = rng.standard_normal((B, H, Tk, D))
    v = rng.standard_normal((B, H, Tk, D))
    km = draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=B * Tk, max_size=B * Tk)))
    km = None if km is None else np.array(km).reshape(B, Tk)
    causal = draw(st.booleans())
    return q, k, v, km, causal


@SETTINGS
@given(attention_inputs())
def test_attention_rows_are_convex_mixes_or_zero(inp):
    q, k, v, km, causal = inp
    out, (_, _, _, p, _) = ops.attention_forward(q, k, v, key_mask=km, causal=causal)
    assert np.all(np.isfinite(out)) and np.all(p >= 0)
    allowed = ops.attention.allowed_mask(q.shape[0], q.shape[2], k.shape[2], km, causal)
    if allowed is None:
        allowed = np.ones(p.shape, bool)
    allowed = np.broadcast_to(allowed, p.shape)
    assert np.all(p[~allowed] == 0)
    rows = allowed.any(-1)
    np.testing.assert_allclose(p.sum(-1)[rows], 1.0, rtol=1e-12)
    assert np.all(out[~rows] == 0)


@SETTINGS
@given(attention_inputs())
def test_attention_gradients_match_finite_differences(inp):
    q, k, v, km, causal = inp
    report = check_op(ops.attention_forward, ops.attention_backward,
                      dict(q=q, k=k, v=v, key_mask=km), ["q", "k", "v"], dict(causal=causal))
    report.assert_ok()


@SETTINGS
@given(attention_inputs())
def test_attention_key_shift_invariance(inp):
    """Adding one vector c to every key adds q.c to every score of a row, which the
    softmax ignores, so the key gradients of each head sum to zero."""
    q, k, v, km, causal = inp
    out, cache = ops.attention_forward(q, k, v, key_mask=km, causal=causal)
    G = np.random.default_rng(0).standard_normal(out.shape)
    _, dk, _ = ops.attention_backward(G, cache)
    np.testing.assert_allclose(dk.sum(axis=2), 0, atol=1e-10)


@st.composite
def rows(draw, min_c=1):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(min_c, 9)))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    return np.random.default_rng(seed).standard_normal(shape) * scale


@SETTINGS
@given(rows(min_c=2))
def test_layernorm_backward_rows_sum_to_zero(x):
    C = x.shape[-1]
    out, cache = ops.layernorm_forward(x, np.ones(C), np.zeros(C))
    G = np.random.default_rng(1).standard_normal(out.shape)
    dx, _, dbeta = ops.layernorm_backward(G, cache)
    # out is invariant to adding a constant to a row, so dx sums to zero along it
    np.testing.assert_allclose(dx.sum(-1), 0, atol=1e-9 * (1 + np.abs(dx).max()))
    np.testing.assert_allclose(dbeta, G.reshape(-1, C).sum(0), rtol=1e-12)


@SETTINGS
@given(rows())
def test_softmax_backward_rows_sum_to_zero(x):
    p, cache = ops.softmax_forward(x)
    G = np.random.default_rng(2).standard_normal(p.shape)
    np.testing.assert_allclose(ops.softmax_backward(G, cache).sum(-1), 0, atol=1e-12)


@SETTINGS
@given(rows(), st.floats(0.0, 0.5))
def test_cross_entropy_gradient_rows_sum_to_zero_and_loss_nonnegative(x, smoothing):
    V = x.shape[-1]
    targets = np.random.default_rng(3).integers(-1, V, x.shape[:-1])
    targets[targets < 0] = -100
    loss, cache = ops.cross_entropy_forward(x, targets, label_smoothing=smoothing)
    d = ops.cross_entropy_backward(1.0, cache)
    assert loss >= -1e-12 and np.isfinite(loss)
    np.testing.assert_allclose(d.sum(-1), 0, atol=1e-12)
    assert np.all(d[targets == -100] == 0)
