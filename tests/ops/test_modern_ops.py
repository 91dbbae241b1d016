"""The modern decoder ops (RMSNorm, rotary embeddings, SiLU, SwiGLU) and their
layers: float64 gradient checks on odd shapes, properties that a wrong
implementation breaks, and the errors for bad input."""

import numpy as np
import pytest

from numformer import kernels, nn, ops
from numformer.gradcheck import check_module, check_op
from numformer.testing import assert_close

NOISE_FLOOR = 1e-8  # a correct float64 backward lands near 1e-10 (see tests/test_gradcheck.py)


def _ok(report):
    report.assert_ok()
    assert report.rows and report.worst_norm_rel < NOISE_FLOOR, report.table()


# --- RMSNorm -------------------------------------------------------------------

# (C = 1 only with a large eps: with a small one out = sign(x) and dx ~ eps is
# below what a finite difference resolves)
@pytest.mark.parametrize("shape, eps", [((1, 1, 1), 0.5), ((2, 5, 6), 1e-5), ((2, 5, 6), 0.5),
                                        ((3, 1, 5), 1e-5), ((4, 7), 1e-5), ((2, 3, 4, 3), 0.1)])
def test_rmsnorm_gradcheck(rng, shape, eps):
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape[-1])
    _ok(check_op(ops.rmsnorm_forward, ops.rmsnorm_backward, dict(x=x, weight=w),
                 ["x", "weight"], dict(eps=eps)))


def test_rmsnorm_of_a_scaled_input(rng):
    """Scaling a row by a > 0 leaves the output unchanged up to eps: with
    mean square ms, out(a x) = out(x) * sqrt((ms + eps) / (ms + eps / a^2))."""
    x = rng.standard_normal((3, 4, 9))
    w = rng.standard_normal(9)
    eps = 1e-2
    out, _ = ops.rmsnorm_forward(x, w, eps)
    ms = (x * x).mean(-1, keepdims=True)
    for a in (1e-3, 0.5, 7.0, 1e4):
        scaled, _ = ops.rmsnorm_forward(a * x, w, eps)
        expected = out * np.sqrt((ms + eps) / (ms + eps / a**2))
        assert_close(scaled, expected, what=f"rmsnorm({a} x)")
    tiny, _ = ops.rmsnorm_forward(x, w, 1e-300)
    assert_close(ops.rmsnorm_forward(123.0 * x, w, 1e-300)[0], tiny, what="eps -> 0")


def test_rmsnorm_output_rms_and_radial_gradient(rng):
    """mean(xhat^2) = ms / (ms + eps), and the gradient along x itself is
    sum(dx * x) = sum(dxhat * xhat) * eps / (ms + eps): zero as eps -> 0,
    since the normalised output does not change when x is scaled."""
    x = rng.standard_normal((5, 8)) * 2
    w = rng.standard_normal(8)
    eps = 0.3
    out, cache = ops.rmsnorm_forward(x, w, eps)
    xhat, _, rstd = cache
    ms = (x * x).mean(-1)
    assert_close((xhat ** 2).mean(-1), ms / (ms + eps), what="mean(xhat^2)")
    dout = rng.standard_normal(x.shape)
    dx, _ = ops.rmsnorm_backward(dout, cache)
    dxhat = dout * w
    assert_close((dx * x).sum(-1), (dxhat * xhat).sum(-1) * eps / (ms + eps), what="x . dx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsnorm_keeps_the_dtype_and_zero_rows_are_finite(dtype):
    x = np.zeros((2, 3, 4), dtype=dtype)
    x[1] = 2.0
    out, (xhat, _, rstd) = ops.rmsnorm_forward(x, np.ones(4, dtype), 1e-5)
    assert out.dtype == xhat.dtype == rstd.dtype == np.dtype(dtype)
    assert np.all(out[0] == 0) and np.all(np.isfinite(out))
    assert_close(out[1], np.ones((3, 4)), dtype=dtype, rtol=1e-5, what="a constant row")
    dx, dw = ops.rmsnorm_backward(np.ones_like(x), (xhat, np.ones(4, dtype), rstd))
    assert dx.dtype == dw.dtype == np.dtype(dtype) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 3)), np.ones(4), 1e-5), r"weight: expected shape \(3,\)"),
    ((np.ones((2, 3)), np.ones(3, np.float32), 1e-5), "weight: expected dtype float64"),
    ((np.ones((2, 3), np.int64), np.ones(3), 1e-5), "x: expected dtype float32 or float64"),
    ((np.ones((2, 3)), np.ones(3), 0.0), "eps: expected a positive number, got 0.0"),
    ((np.array(1.0), np.ones(1), 1e-5), "x: expected at least 1 dims"),
])
def test_rmsnorm_bad_input(args, message):
    for mod in (ops, kernels.op("rmsnorm", "numba")):
        with pytest.raises(ValueError, match=message):
            mod.rmsnorm_forward(*args)


def test_rmsnorm_backward_refuses_a_promoting_upstream():
    _, cache = ops.rmsnorm_forward(np.ones((2, 3), np.float32), np.ones(3, np.float32))
    for mod in (ops, kernels.op("rmsnorm", "numba")):
        with pytest.raises(ValueError, match="rmsnorm_backward: dout: expected dtype float32"):
            mod.rmsnorm_backward(np.ones((2, 3)), cache)
        with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
            mod.rmsnorm_backward(np.ones((3, 2), np.float32), cache)


# --- rotary embeddings ------------------------------------------------------------

def _rope_check(x, offset, base=100.0, extra=2):
    D = x.shape[-1]
    cos, sin = ops.rope_tables(offset + x.shape[2] + extra, D, base, np.float64)

    def fwd(x):
        return ops.rope_forward(x, cos, sin, offset)
    return check_op(fwd, ops.rope_backward, dict(x=x), ["x"])


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 3, 5, 6), (3, 2, 1, 4), (2, 1, 7, 10)])
@pytest.mark.parametrize("offset", [0, 3, 11])
def test_rope_gradcheck(rng, shape, offset):
    _ok(_rope_check(rng.standard_normal(shape), offset))


def _split_heads_view(qkv, H, D, which):
    B, T, _ = qkv.shape
    return qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)[which]  # (B, H, T, D) view


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rope_on_a_strided_view_equals_on_its_copy(rng, backend):
    f = kernels.op("rope", backend)
    B, T, H, D = 2, 5, 3, 6
    qkv = rng.standard_normal((B, T, 3 * H * D))
    cos, sin = ops.rope_tables(T + 4, D, dtype=np.float64)
    for which in range(3):
        view = _split_heads_view(qkv, H, D, which)
        assert not view.flags.c_contiguous
        out, cache = f.rope_forward(view, cos, sin, 4)
        ref, cache_ref = f.rope_forward(np.ascontiguousarray(view), cos, sin, 4)
        np.testing.assert_array_equal(out, ref)
        dview = _split_heads_view(rng.standard_normal(qkv.shape), H, D, which)
        np.testing.assert_array_equal(f.rope_backward(dview, cache),
                                      f.rope_backward(np.ascontiguousarray(dview), cache_ref))


def test_rope_gradcheck_through_a_strided_view(rng):
    B, T, H, D = 2, 5, 2, 4
    cos, sin = ops.rope_tables(T + 2, D, 100.0, np.float64)

    def fwd(qkv):
        out, cache = ops.rope_forward(_split_heads_view(qkv, H, D, 1), cos, sin, 2)
        return out, (cache, qkv.shape)

    def bwd(dout, cache):
        rope_cache, shape = cache
        dqkv = np.zeros(shape)
        _split_heads_view(dqkv, H, D, 1)[...] = ops.rope_backward(dout, rope_cache)
        return dqkv
    _ok(check_op(fwd, bwd, dict(qkv=rng.standard_normal((B, T, 3 * H * D))), ["qkv"]))


def _rotate(x, pos, cos, sin):
    """x (D,) at absolute position pos."""
    out, _ = ops.rope_forward(x[None, None, None, :], cos, sin, pos)
    return out[0, 0, 0]


def test_rope_scores_depend_only_on_the_position_difference(rng):
    D = 8
    cos, sin = ops.rope_tables(200, D, 10000.0, np.float64)
    q, k = rng.standard_normal(D), rng.standard_normal(D)
    for m, n in [(0, 0), (3, 1), (1, 3), (5, 17)]:
        s = _rotate(q, m, cos, sin) @ _rotate(k, n, cos, sin)
        for shift in (1, 40, 150):
            s2 = _rotate(q, m + shift, cos, sin) @ _rotate(k, n + shift, cos, sin)
            assert abs(s2 - s) < 1e-12 * (1 + abs(s)), (m, n, shift, s, s2)
    # ... and it does depend on it (a rotation that ignored t would pass the above)
    s01 = _rotate(q, 0, cos, sin) @ _rotate(k, 1, cos, sin)
    s03 = _rotate(q, 0, cos, sin) @ _rotate(k, 3, cos, sin)
    assert abs(s01 - s03) > 1e-3


def test_rope_position_zero_is_identity_and_pairs_keep_their_norm(rng):
    x = rng.standard_normal((2, 3, 6, 8))
    cos, sin = ops.rope_tables(10, 8, dtype=np.float64)
    out, _ = ops.rope_forward(x, cos, sin, 0)
    np.testing.assert_array_equal(out[:, :, 0], x[:, :, 0])
    norm = lambda a: a[..., :4] ** 2 + a[..., 4:] ** 2  # noqa: E731 (pair (i, i + D/2))
    assert_close(norm(out), norm(x), what="|pair|^2")
    assert np.abs(out[:, :, 1:] - x[:, :, 1:]).max() > 0.1


@pytest.mark.parametrize("offset", [0, 5])
def test_rope_backward_is_the_inverse_rotation(rng, offset):
    x = rng.standard_normal((2, 2, 4, 6))
    cos, sin = ops.rope_tables(12, 6, dtype=np.float64)
    out, cache = ops.rope_forward(x, cos, sin, offset)
    assert_close(ops.rope_backward(out, cache), x, what="R^T R x")
    d = rng.standard_normal(x.shape)
    assert_close(ops.rope_backward(d, cache), ops.rope_forward(d, cos, -sin, offset)[0],
                 what="backward vs rotation by -angle")


def _ggml_rope(x, theta_pos):
    """GGML's interleaved rope written from its definition: pair (2i, 2i+1)
    rotated by angle theta_pos[..., i]."""
    out = np.empty_like(x)
    c, s = np.cos(theta_pos), np.sin(theta_pos)
    out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return out


def test_interleaved_ggml_layout_is_a_permutation_of_the_half_split_one(rng):
    """Docstring of ops/rope.py: llama.cpp's converter permutes the rows of the
    Q/K weights (reshape (heads, 2, D/2), swap the last two axes); its
    interleaved rope on those projections is Llama's half-split rope permuted,
    and ``w[..., perm]`` per head undoes the converter."""
    B, T, H, D = 1, 5, 3, 8
    C = H * D
    base = 500.0
    cos, sin = ops.rope_tables(T, D, base, np.float64)
    theta = np.arange(T)[:, None] * base ** (-np.arange(0, D, 2) / D)  # (T, D/2)
    W_hf = rng.standard_normal((C, C))  # PyTorch layout (out, in)
    W_gguf = W_hf.reshape(H, 2, D // 2, C).swapaxes(1, 2).reshape(C, C)  # the converter
    x = rng.standard_normal((B, T, C))
    q_hf = (x @ W_hf.T).reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
    q_gguf = (x @ W_gguf.T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
    perm = ops.half_split_permutation(D)
    rot_hf, _ = ops.rope_forward(q_hf, cos, sin)
    assert_close(_ggml_rope(q_gguf, theta)[..., perm], rot_hf, what="ggml rope vs half-split")
    # scores are the same in either layout
    assert_close(_ggml_rope(q_gguf, theta) @ _ggml_rope(q_gguf, theta).swapaxes(-1, -2),
                 rot_hf @ rot_hf.swapaxes(-1, -2), what="q.q scores")
    # undoing the converter on numformer's (C_in, C_out) layout: columns, per head
    Wq_numformer = W_gguf.T.reshape(C, H, D)[..., perm].reshape(C, C)
    assert_close(Wq_numformer, W_hf.T, what="unpermuted Wq")


@pytest.mark.parametrize("D", [3, 7, 0])
def test_rope_odd_head_dim_is_refused(D):
    with pytest.raises(ValueError, match=f"head dimension D must be a positive even integer, "
                                         f"got D={D}"):
        ops.rope_tables(8, D)
    if D:
        cos, sin = ops.rope_tables(8, D + 1)
        for mod in (ops, kernels.op("rope", "numba")):
            with pytest.raises(ValueError, match=f"x: rotary .* got D={D}"):
                mod.rope_forward(np.ones((1, 1, 2, D), np.float32), cos, sin)


@pytest.mark.parametrize("kwargs, message", [
    (dict(offset=7), r"offset: positions 7..9 need tables of at least 10 rows, cos/sin have L=8"),
    (dict(offset=-1), "offset: expected a non-negative integer, got -1"),
    (dict(offset=1.0), "offset: expected a non-negative integer, got 1.0"),
    (dict(cos=np.ones((8, 2))), "cos: expected dtype float32"),
    (dict(cos=np.ones((8, 3), np.float32)), r"cos: expected shape \(\?, 2\)"),
    (dict(sin=np.ones((9, 2), np.float32)), r"sin: expected shape \(8, 2\)"),
    (dict(x=np.ones((2, 3, 4), np.float32)), r"x: expected 4 dims \(B, H, T, D\)"),
])
def test_rope_bad_input(kwargs, message):
    cos, sin = ops.rope_tables(8, 4)
    args = dict(x=np.ones((1, 2, 3, 4), np.float32), cos=cos, sin=sin, offset=0)
    args.update(kwargs)
    for mod in (ops, kernels.op("rope", "numba")):
        with pytest.raises(ValueError, match=message):
            mod.rope_forward(**args)


def test_rope_tables_bad_arguments():
    with pytest.raises(ValueError, match="max_len: expected a positive integer, got 0"):
        ops.rope_tables(0, 4)
    with pytest.raises(ValueError, match="base: expected a positive number"):
        ops.rope_tables(4, 4, base=-1.0)
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        ops.rope_tables(4, 4, dtype=np.int32)


def test_rope_tables_are_float64_rounded_once(rng):
    """float32 tables are the float64 ones rounded (not computed in float32,
    whose angle t * f loses digits at large t)."""
    c32, s32 = ops.rope_tables(4096, 64, dtype=np.float32)
    c64, s64 = ops.rope_tables(4096, 64, dtype=np.float64)
    assert c32.dtype == np.float32 and c64.dtype == np.float64
    np.testing.assert_array_equal(c32, c64.astype(np.float32))
    np.testing.assert_array_equal(s32, s64.astype(np.float32))
    assert_close(c64 ** 2 + s64 ** 2, np.ones_like(c64), what="cos^2 + sin^2")
    assert_close(np.arctan2(s64[1], c64[1]), 10000.0 ** (-np.arange(0, 64, 2) / 64),
                 what="angle of position 1")


# --- SiLU, silu(g) * u, SwiGLU ---------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (2, 5, 6), (3, 1, 7)])
def test_silu_gradcheck(rng, shape):
    _ok(check_op(ops.silu_forward, ops.silu_backward, dict(x=rng.standard_normal(shape) * 4),
                 ["x"]))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_saturates_without_overflow(backend, dtype):
    f = kernels.op("activations", backend)
    x = np.array([-1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        out, cache = f.silu_forward(x)
        dx = f.silu_backward(np.ones_like(x), cache)
    assert out.dtype == dx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out[3:], [0.0, 100.0, 800.0, 1e4])
    assert np.all(np.abs(out[:3]) < 1e-30)
    np.testing.assert_array_equal(dx[4:], [1.0, 1.0, 1.0])
    assert dx[3] == 0.5 and np.all(np.abs(dx[:3]) < 1e-30)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 5, 7), (4, 3)])
def test_silu_mul_gradcheck_and_equals_silu_times_u(rng, shape):
    g, u = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    _ok(check_op(ops.silu_mul_forward, ops.silu_mul_backward, dict(g=g, u=u), ["g", "u"]))
    h, _ = ops.silu_mul_forward(g, u)
    assert_close(h, ops.silu_forward(g)[0] * u, what="silu(g) * u")


@pytest.mark.parametrize("shape, F", [((2, 5, 6), 7), ((3, 1, 4), 5), ((1, 6), 1), ((4, 3), 9)])
def test_swiglu_gradcheck(rng, shape, F):
    C = shape[-1]
    inputs = dict(x=rng.standard_normal(shape), W_gate=rng.standard_normal((C, F)) * 0.7,
                  W_up=rng.standard_normal((C, F)) * 0.7, W_down=rng.standard_normal((F, C)))
    _ok(check_op(ops.swiglu_forward, ops.swiglu_backward, inputs,
                 ["x", "W_gate", "W_up", "W_down"]))


@pytest.mark.parametrize("which, shape, message", [
    ("W_gate", (5, 7), r"W_gate: expected shape \(6, \?\)"),
    ("W_up", (6, 8), r"W_up: expected shape \(6, 7\)"),
    ("W_down", (6, 7), r"W_down: expected shape \(7, 6\)"),
])
def test_swiglu_bad_shapes(which, shape, message):
    args = dict(x=np.ones((2, 3, 6)), W_gate=np.ones((6, 7)), W_up=np.ones((6, 7)),
                W_down=np.ones((7, 6)))
    args[which] = np.ones(shape)
    for mod in (ops, kernels.op("swiglu", "numba")):
        with pytest.raises(ValueError, match=message):
            mod.swiglu_forward(**args)


def test_silu_mul_bad_input():
    for mod in (ops, kernels.op("swiglu", "numba")):
        with pytest.raises(ValueError, match=r"u: expected shape \(2, 3\)"):
            mod.silu_mul_forward(np.ones((2, 3)), np.ones((3, 2)))
        with pytest.raises(ValueError, match="u: expected dtype float64"):
            mod.silu_mul_forward(np.ones((2, 3)), np.ones((2, 3), np.float32))
        _, cache = mod.silu_mul_forward(np.ones((2, 3)), np.ones((2, 3)))
        with pytest.raises(ValueError, match="silu_mul_backward: dh .*expected dtype float64"):
            mod.silu_mul_backward(np.ones((2, 3), np.float32), cache)


# --- layers ------------------------------------------------------------------------

@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    before = kernels.get_backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(before)


def test_layers_gradcheck_on_both_backends(rng, backend):
    x = rng.standard_normal((2, 5, 6))
    norm = nn.RMSNorm(6)
    norm.weight.value[...] = rng.standard_normal(6)  # see gradcheck_suite._rmsnorm_layer
    _ok(check_module(norm, x))
    _ok(check_module(nn.SiLU(), x * 3))
    _ok(check_module(nn.SwiGLU(6, 7, rng=1, init_std=0.5), x))
    _ok(check_module(nn.Rotary(4, 9, base=50.0), rng.standard_normal((2, 3, 5, 4)), offset=3))
    _ok(check_module(nn.Rotary(4, 9, base=50.0), rng.standard_normal((2, 3, 1, 4)), offset=8))


def test_layer_parameters_and_accumulation(rng, backend):
    ff = nn.SwiGLU(6, 7, rng=0)
    assert [n for n, _ in ff.named_parameters()] == ["w_gate", "w_up", "w_down"]
    assert ff.w_gate.shape == ff.w_up.shape == (6, 7) and ff.w_down.shape == (7, 6)
    assert not np.array_equal(ff.w_gate.value, ff.w_up.value)
    assert ff.w_gate.dtype == np.float32
    norm = nn.RMSNorm(6)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(norm.weight.value, np.ones(6, np.float32))
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    d = rng.standard_normal((2, 3, 6)).astype(np.float32)
    for layer in (ff, norm):
        layer.zero_grad()
        layer(x)
        layer.backward(d)
        once = [p.grad.copy() for p in layer.parameters()]
        layer(x)
        layer.backward(d)
        for p, g in zip(layer.parameters(), once):
            assert_close(p.grad, 2 * g, what="grads accumulate")
        with pytest.raises(RuntimeError, match="called without a forward pass"):
            layer.backward(d)


def test_rotary_buffers_follow_astype_and_silu_is_an_activation():
    rot = nn.Rotary(6, 11, base=1e5)
    assert rot.cos.shape == rot.sin.shape == (11, 3) and rot.cos.dtype == np.float32
    assert list(rot.named_parameters()) == []
    rot.astype(np.float64)
    assert rot.cos.dtype == rot.sin.dtype == np.float64
    # the float32 tables converted (a float64 model built as float64 gets float64 tables)
    assert_close(rot.cos, ops.rope_tables(11, 6, 1e5, np.float32)[0], what="cos buffer")
    assert_close(nn.Rotary(6, 11, 1e5, dtype=np.float64).sin,
                 ops.rope_tables(11, 6, 1e5, np.float64)[1], what="float64 sin buffer")
    assert isinstance(nn.make_activation("silu"), nn.SiLU)
    with pytest.raises(ValueError, match="head dimension D must be a positive even integer"):
        nn.Rotary(5, 8)


def test_frozen_parameters_get_no_gradient(rng, backend):
    ff = nn.SwiGLU(6, 5, rng=2)
    norm = nn.RMSNorm(6)
    ff.w_up.requires_grad = False
    norm.weight.requires_grad = False
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    d = rng.standard_normal((2, 3, 6)).astype(np.float32)
    norm(ff(x))
    dx = ff.backward(norm.backward(d))
    assert ff.w_up.grad is None and norm.weight.grad is None
    assert np.abs(ff.w_gate.grad).max() > 0 and np.abs(ff.w_down.grad).max() > 0
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
