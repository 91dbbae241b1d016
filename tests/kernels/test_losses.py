"""numformer.kernels.losses (fused softmax cross-entropy) against numformer.ops.losses."""

import numpy as np
import pytest

from numformer.kernels import losses as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import losses as R
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# V = 2049 and 4100 span two and three of the kernel's blocks (2048), the last partial.
SHAPES = [(1, 1), (1, 5), (3, 1, 7), (2, 5, 33), (3, 2049), (2, 4100)]
if not JIT_DISABLED:
    SHAPES += [(4, 8, 130), (7, 6001)]

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Run every test through the serial kernels and through their parallel
    drivers (the threshold that picks one is moved out of the way)."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param



def _inputs(rng, shape, dtype, ignore_every=3, ignore_index=-100):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.integers(0, shape[-1], shape[:-1])
    if ignore_every:
        t.reshape(-1)[1::ignore_every] = ignore_index
    return x, t


def _check(x, t, dloss=1.0, **kw):
    loss, cache = K.cross_entropy_forward(x, t, **kw)
    loss_ref, cache_ref = R.cross_entropy_forward(x, t, **kw)
    assert type(loss) is type(loss_ref) is x.dtype.type
    assert_close(loss, loss_ref, what="loss")
    assert_close(cache[0], cache_ref[0], what="cache p")
    assert np.array_equal(cache[1], cache_ref[1]) and np.array_equal(cache[2], cache_ref[2])
    assert cache[3:] == cache_ref[3:]
    dx = K.cross_entropy_backward(dloss, cache)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert_close(dx, R.cross_entropy_backward(dloss, cache_ref), what="dlogits")
    return loss, dx


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_matches_reference(rng, shape, dtype, smoothing):
    x, t = _inputs(rng, shape, dtype)
    _check(x, t, dloss=0.7, label_smoothing=smoothing)


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_ignore_index_and_int32_targets(rng, dtype):
    x, t = _inputs(rng, (4, 6, 11), dtype, ignore_every=4, ignore_index=0)
    t = t.astype(np.int32)
    loss, dx = _check(x, t, ignore_index=0)
    assert np.array_equal(dx[t == 0], np.zeros(((t == 0).sum(), 11)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nothing_counted_gives_zero(rng, dtype):
    x, _ = _inputs(rng, (3, 9), dtype)
    t = np.full(3, -100)
    loss, dx = _check(x, t)
    assert loss == 0.0
    assert not dx.any()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_stay_finite_and_match(rng, dtype, smoothing):
    x, t = _inputs(rng, (5, 2100), dtype, ignore_every=0)
    x[0, ::2] = 1e4
    x[0, 1::2] = -1e4
    x[1] = -1e4  # constant row of huge negatives
    x[2, 2050] = 1e4  # the max in the second block: the first block's sum is rescaled
    x[3, 7] = -1e4  # the target logit far below the rest
    t[3] = 7
    x[4, :2048] = -1e4  # a whole block that contributes nothing
    loss, dx = _check(x, t, label_smoothing=smoothing)
    assert np.isfinite(loss) and np.isfinite(dx).all()


def test_non_contiguous_logits(rng):
    x, t = _inputs(rng, (9, 5), np.float64, ignore_every=0)
    xt = np.ascontiguousarray(x.T).T  # same values, Fortran order
    assert not xt.flags.c_contiguous
    _check(xt, t)


def test_caches_are_interchangeable(rng):
    x, t = _inputs(rng, (4, 3, 12), np.float32)
    _, cache_k = K.cross_entropy_forward(x, t, label_smoothing=0.1)
    _, cache_r = R.cross_entropy_forward(x, t, label_smoothing=0.1)
    assert_close(K.cross_entropy_backward(2.0, cache_r), R.cross_entropy_backward(2.0, cache_k))


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.ones((2, 3), np.int64), np.zeros(2, np.int64)), {},
     "logits: expected dtype float32 or float64"),
    ((np.ones((2, 3)), np.zeros(2)), {}, "targets: expected an integer numpy array, got float64"),
    ((np.ones((2, 3)), [0, 1]), {}, "targets: expected an integer numpy array, got list"),
    ((np.ones((2, 3)), np.zeros(3, np.int64)), {}, r"targets: expected shape \(2,\)"),
    ((np.ones((2, 3)), np.zeros(2, np.int64)), {"label_smoothing": 1.0},
     r"label_smoothing: expected a value in \[0, 1\)"),
    ((np.ones((2, 3)), np.array([0, 3])), {}, r"targets: expected class ids in \[0, 3\).*got 3"),
    ((np.ones((2, 3)), np.array([-1, 2])), {}, "got -1"),
    ((np.array(1.0), np.zeros((), np.int64)), {}, "logits: expected at least 1 dims"),
])
def test_bad_input_same_error_as_reference(args, kwargs, message):
    for fn in (K.cross_entropy_forward, R.cross_entropy_forward):
        with pytest.raises(ValueError, match=message):
            fn(*args, **kwargs)
