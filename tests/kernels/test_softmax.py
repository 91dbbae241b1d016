"""numformer.kernels.softmax against numformer.ops.softmax, and its shared helpers
(fast_exp, maximum). Runs compiled and under NUMBA_DISABLE_JIT=1 (smaller grid)."""

import math

import numpy as np
import pytest

from numformer.kernels import _loops as L
from numformer.kernels import softmax as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import softmax as R
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (3, 5), (2, 1, 9), (2, 3, 33), (4, 2049)]
if not JIT_DISABLED:
    SHAPES += [(3, 2, 130), (5, 4100)]

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Run every test through the serial kernels and through their parallel
    drivers (the threshold that picks one is moved out of the way)."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param



def _x(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_matches_reference(rng, shape, dtype):
    x = _x(rng, shape, dtype)
    p, cache = K.softmax_forward(x)
    p_ref, cache_ref = R.softmax_forward(x)
    assert p.dtype == dtype and p.shape == shape
    assert_close(p, p_ref, what="p")
    assert_close(cache, cache_ref, what="cache p")
    dp = rng.standard_normal(shape).astype(dtype)
    dx = K.softmax_backward(dp, cache)
    assert dx.dtype == dtype
    assert_close(dx, R.softmax_backward(dp, cache_ref), what="dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax_matches_reference(rng, shape, dtype):
    x = _x(rng, shape, dtype)
    logp, cache = K.log_softmax_forward(x)
    logp_ref, cache_ref = R.log_softmax_forward(x)
    assert logp.dtype == dtype and cache.dtype == dtype
    assert_close(logp, logp_ref, what="log p")
    assert_close(cache, cache_ref, what="cache p")
    dlogp = rng.standard_normal(shape).astype(dtype)
    dx = K.log_softmax_backward(dlogp, cache)
    assert dx.dtype == dtype
    assert_close(dx, R.log_softmax_backward(dlogp, cache_ref), what="dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_stay_finite_and_match(rng, dtype):
    x = _x(rng, (4, 37), dtype)
    x[0, ::2] = 1e4
    x[0, 1::2] = -1e4
    x[1] = -1e4  # a constant row of huge negatives
    x[2, 5] = 1e4  # one dominant logit
    x[3] = 0.0
    p, cache = K.softmax_forward(x)
    assert np.isfinite(p).all()
    assert_close(p, R.softmax_forward(x)[0], what="p")
    logp, _ = K.log_softmax_forward(x)
    assert np.isfinite(logp).all()
    assert_close(logp, R.log_softmax_forward(x)[0], what="log p")
    dp = rng.standard_normal(x.shape).astype(dtype)
    assert_close(K.softmax_backward(dp, cache), R.softmax_backward(dp, p), what="dx")


def test_non_contiguous_input(rng):
    x = _x(rng, (9, 6), np.float64).T  # (6, 9), not C-contiguous
    assert_close(K.softmax_forward(x)[0], R.softmax_forward(x)[0])
    dp = rng.standard_normal((9, 6)).T
    p = K.softmax_forward(x)[1]
    assert_close(K.softmax_backward(dp, p), R.softmax_backward(dp, p))


def test_backward_with_other_dtype_upstream_is_refused(rng):
    x = _x(rng, (3, 5), np.float32)
    p, cache = K.softmax_forward(x)
    dp = rng.standard_normal((3, 5))  # float64 upstream into a float32 forward
    for backward in (K.softmax_backward, R.softmax_backward):
        with pytest.raises(ValueError, match="softmax_backward: dp .*expected dtype float32"):
            backward(dp, cache)


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 3), dtype=np.int64), "x: expected dtype float32 or float64"),
    (np.float64(1.0), "x: expected a numpy array"),
    (np.array(1.0), "x: expected at least 1 dims"),
])
def test_bad_input_same_error_as_reference(bad, message):
    for fn in (K.softmax_forward, K.log_softmax_forward, R.softmax_forward,
               R.log_softmax_forward):
        with pytest.raises(ValueError, match=message):
            fn(bad)


@pytest.mark.skipif(JIT_DISABLED, reason="fast_exp is a polynomial only when compiled")
@pytest.mark.parametrize("dtype, lo, rtol", [(np.float32, -87.0, 4e-7),
                                             (np.float64, -707.0, 1e-15)])
def test_fast_exp_accuracy(dtype, lo, rtol):
    x = np.linspace(lo, 0.0, 200_001).astype(dtype)
    x = np.concatenate([x, np.linspace(0.0, 80.0, 10_001).astype(dtype)])
    out = np.empty_like(x)
    L.exp_shifted(x, dtype(0.0), out)
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(out.astype(np.float64) - ref) / ref
    worst = int(rel.argmax())
    assert rel[worst] <= rtol, f"relative error {rel[worst]:.3g} at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_exp_edges(dtype):
    x = np.array([-np.inf, -1e30, -800.0, 0.0, 800.0, 1e30, np.inf, np.nan], dtype=dtype)
    out = np.empty_like(x)
    with np.errstate(over="ignore"):
        L.exp_shifted(x, dtype(0.0), out)
    assert np.array_equal(out[:3], [0.0, 0.0, 0.0])
    assert out[3] == 1.0
    assert np.isposinf(out[4:7]).all()
    assert np.isnan(out[7])


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_max_propagates_nan(dtype):
    a = np.arange(40, dtype=dtype)
    assert L.row_max(a) == 39.0
    a[17] = np.nan
    assert math.isnan(L.row_max(a))
    x = _x(np.random.default_rng(0), (2, 20), dtype)
    x[1, 3] = np.nan
    p, _ = K.softmax_forward(x)
    assert np.isnan(p[1]).all() and np.isfinite(p[0]).all()
