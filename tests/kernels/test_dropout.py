"""numformer.kernels.dropout against numformer.ops.dropout: the same mask bit for
bit, and masks that behave like independent draws with probability p."""

import numpy as np
import pytest

from numformer.kernels import dropout as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import dropout as R

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (3, 5), (2, 7, 33)]
if not JIT_DISABLED:
    SHAPES += [(32, 64, 40)]


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Every test through the serial kernel and through its parallel driver."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_same_mask_and_output_as_reference(rng, shape, dtype, p):
    x = rng.standard_normal(shape).astype(dtype)
    out, mask = K.dropout_forward(x, p, np.random.default_rng(7))
    out_ref, mask_ref = R.dropout_forward(x, p, np.random.default_rng(7))
    assert out.dtype == dtype and mask.dtype == dtype and out.shape == shape
    assert np.array_equal(mask, mask_ref)
    assert np.array_equal(out, out_ref)
    dout = rng.standard_normal(shape).astype(dtype)
    assert np.array_equal(K.dropout_backward(dout, mask), R.dropout_backward(dout, mask_ref))


def test_non_contiguous_input(rng):
    x = rng.standard_normal((40, 30)).astype(np.float32).T  # (30, 40) view
    out, mask = K.dropout_forward(x, 0.2, np.random.default_rng(1))
    out_ref, mask_ref = R.dropout_forward(x, 0.2, np.random.default_rng(1))
    assert np.array_equal(out, out_ref) and np.array_equal(mask, mask_ref)
    assert np.array_equal(out, x * mask)


def test_identity_when_not_training_or_p_zero(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    assert K.dropout_forward(x, 0.5, None, training=False) == (x, None)
    assert K.dropout_forward(x, 0.0, np.random.default_rng(0)) == (x, None)
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator"):
        K.dropout_forward(x, 0.5, None)
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\), got 1.0"):
        K.dropout_forward(x, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.9])
def test_masks_look_like_independent_draws(p):
    """Over 2**20 elements the kept fraction is within 5 standard deviations of
    1 - p, each pair of neighbours (i, i + 1) and (i, i + 128) falls into the
    four keep/drop cells as independent draws would, and successive calls on
    one generator give different masks (their overlap is also independent)."""
    rng = np.random.default_rng(123)
    x = np.ones((1024, 1024), np.float32)
    keep = K.dropout_forward(x, p, rng)[1].reshape(-1) != 0
    n, q = keep.size, 1.0 - p
    assert abs(keep.mean() - q) < 5 * np.sqrt(p * q / n)
    for lag in (1, 128):
        a, b = keep[:-lag], keep[lag:]
        cells = np.array([(a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()])
        expected = len(a) * np.array([q * q, q * p, p * q, p * p])
        chi2 = ((cells - expected) ** 2 / expected).sum()
        assert chi2 < 20.0, (lag, cells, expected)  # 3 degrees of freedom: P(chi2 > 20) ~ 2e-4
    keep2 = K.dropout_forward(x, p, rng)[1].reshape(-1) != 0
    assert not np.array_equal(keep, keep2)
    both = (keep & keep2).mean()
    assert abs(both - q * q) < 5 * np.sqrt(q * q * (1 - q * q) / n)


def test_probability_resolution():
    """p is resolved to 2**-24: the threshold is round(p * 2**24)."""
    assert R.threshold(0.5) == 1 << 23
    assert R.threshold(0.1) == round(0.1 * (1 << 24))
    assert R.threshold(1e-9) == 0  # keeps everything, as p = 1e-9 would almost surely
