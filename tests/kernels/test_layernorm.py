"""numformer.kernels.layernorm against numformer.ops.layernorm, forward and backward.

dgamma and dbeta are sums over every row of the batch, so they are compared
with ``reduced=True`` (the table's looser tolerance for batch reductions);
out, the cache and dx use the plain tolerance.
"""

import numpy as np
import pytest

from numformer.kernels import layernorm as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import layernorm as R
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1), (1, 1, 8), (2, 1, 5), (3, 7, 33), (2, 5, 17), (1100, 3)]
if not JIT_DISABLED:
    SHAPES += [(2, 9, 129), (4, 300, 64), (7, 768)]

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Run every test through the serial kernels and through their parallel
    drivers (the threshold that picks one is moved out of the way)."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param



def _inputs(rng, shape, dtype):
    C = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    gamma = rng.standard_normal(C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    return x, gamma, beta


def _check(x, gamma, beta, dout, eps=1e-5):
    out, cache = K.layernorm_forward(x, gamma, beta, eps)
    out_ref, cache_ref = R.layernorm_forward(x, gamma, beta, eps)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert_close(out, out_ref, what="out")
    assert cache[0].shape == cache_ref[0].shape and cache[2].shape == cache_ref[2].shape
    assert cache[0].dtype == x.dtype and cache[2].dtype == x.dtype
    assert_close(cache[0], cache_ref[0], what="cache xhat")
    assert_close(cache[2], cache_ref[2], what="cache rstd")
    assert cache[1] is gamma
    dx, dgamma, dbeta = K.layernorm_backward(dout, cache)
    dx_ref, dgamma_ref, dbeta_ref = R.layernorm_backward(dout, cache_ref)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == x.dtype
    assert_close(dx, dx_ref, what="dx")
    assert_close(dgamma, dgamma_ref, reduced=True, what="dgamma")
    assert_close(dbeta, dbeta_ref, reduced=True, what="dbeta")
    return out, cache


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_reference(rng, shape, dtype):
    x, gamma, beta = _inputs(rng, shape, dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    _check(x, gamma, beta, dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_rows_stay_finite_and_match(rng, dtype):
    x, gamma, beta = _inputs(rng, (6, 37), dtype)
    x[0] = 3.0
    x[1] = -2.5
    x[2] = 1000.0
    x[3] = 0.0
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, cache = _check(x, gamma, beta, dout)
    assert np.isfinite(out).all()
    assert np.array_equal(cache[0][:4], np.zeros((4, 37)))  # xhat of a constant row is 0
    assert_close(out[:4], np.broadcast_to(beta, (4, 37)), what="out of constant rows")


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_and_tiny_scales(rng, dtype):
    x, gamma, beta = _inputs(rng, (5, 19), dtype)
    x[0] *= 1e4
    x[1] *= 1e-3
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, _ = _check(x, gamma, beta, dout, eps=1e-5)
    assert np.isfinite(out).all()


def test_other_eps_and_non_contiguous_input(rng):
    x, gamma, beta = _inputs(rng, (9, 4, 6), np.float64)
    xt = x.transpose(1, 0, 2)  # (4, 9, 6), not C-contiguous
    dout = rng.standard_normal(xt.shape)
    _check(xt, gamma, beta, dout, eps=0.1)


def test_caches_are_interchangeable(rng):
    x, gamma, beta = _inputs(rng, (3, 4, 10), np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    _, cache_k = K.layernorm_forward(x, gamma, beta)
    _, cache_r = R.layernorm_forward(x, gamma, beta)
    for a, e in zip(K.layernorm_backward(dout, cache_r), R.layernorm_backward(dout, cache_k)):
        assert_close(a, e, reduced=True)


def test_upstream_of_other_dtype_is_refused(rng):
    x, gamma, beta = _inputs(rng, (3, 10), np.float32)
    dout = rng.standard_normal(x.shape)  # float64 into a float32 forward
    _, cache = K.layernorm_forward(x, gamma, beta)
    for backward in (K.layernorm_backward, R.layernorm_backward):
        with pytest.raises(ValueError, match="layernorm_backward: dout: expected dtype float32"):
            backward(dout, cache)


@pytest.mark.parametrize("args, message", [
    ((np.ones((2, 3), np.int32), np.ones(3), np.zeros(3)), "x: expected dtype float32 or float64"),
    ((np.ones((2, 3)), np.ones(4), np.zeros(3)), r"gamma: expected shape \(3,\)"),
    ((np.ones((2, 3)), np.ones(3, np.float32), np.zeros(3)), "gamma: expected dtype float64"),
    ((np.ones((2, 3)), np.ones(3), np.zeros((1, 3))), r"beta: expected shape \(3,\)"),
    ((np.array(1.0), np.ones(1), np.zeros(1)), "x: expected at least 1 dims"),
])
def test_bad_input_same_error_as_reference(args, message):
    for fn in (K.layernorm_forward, R.layernorm_forward):
        with pytest.raises(ValueError, match=message):
            fn(*args)


def test_bad_eps_same_error_as_reference():
    for fn in (K.layernorm_forward, R.layernorm_forward):
        with pytest.raises(ValueError, match="eps: expected a positive number, got 0"):
            fn(np.ones((2, 3)), np.ones(3), np.zeros(3), 0)
