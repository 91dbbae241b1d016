"""numformer.kernels.embedding (gather and scatter-add) against numformer.ops.embedding.

The scatter-add sums the rows of repeated ids in the order the ids come, as
``np.add.at`` does, so dW is compared with the reference at the plain
tolerance (only the comparison with an exact float64 sum uses reduced=True).
"""

import numpy as np
import pytest

from numformer.kernels import embedding as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import embedding as R
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# (V, C, ids shape): C = 1, 17 and 33 are not multiples of the 16-column block.
CASES = [(1, 1, (1, 1)), (5, 3, (2, 1)), (11, 17, (3, 7)), (40, 33, (4, 9)), (7, 16, (13,))]
if not JIT_DISABLED:
    CASES += [(1000, 128, (8, 64)), (30, 200, (2, 3, 5))]

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Run every test through the serial kernels and through their parallel
    drivers (the threshold that picks one is moved out of the way)."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V, C, ids_shape", CASES)
def test_embedding_matches_reference(rng, V, C, ids_shape, dtype):
    W = rng.standard_normal((V, C)).astype(dtype)
    ids = rng.integers(0, V, ids_shape)
    ids.reshape(-1)[: max(1, ids.size // 3)] = V - 1  # a third of them repeat one id
    out, cache = K.embedding_forward(ids, W)
    out_ref, cache_ref = R.embedding_forward(ids, W)
    assert out.dtype == dtype and out.shape == ids_shape + (C,)
    assert np.array_equal(out, out_ref)
    assert cache[0] is ids and cache[1:] == cache_ref[1:]
    dout = rng.standard_normal(out.shape).astype(dtype)
    dW = K.embedding_backward(dout, cache)
    assert dW.dtype == dtype and dW.shape == (V, C)
    assert_close(dW, R.embedding_backward(dout, cache_ref), what="dW")


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_ids_equal_accumulate(rng, dtype):
    W = rng.standard_normal((6, 21)).astype(dtype)
    ids = np.full((5, 8), 2)
    _, cache = K.embedding_forward(ids, W)
    dout = rng.standard_normal((5, 8, 21)).astype(dtype)
    dW = K.embedding_backward(dout, cache)
    # a 40-term sum in the input's dtype against the float64 sum: the batch-reduced tolerance
    assert_close(dW[2], dout.reshape(-1, 21).sum(axis=0, dtype=np.float64), dtype=dtype,
                 reduced=True, what="row 2 (40 repeats, against a float64 sum)")
    assert not np.delete(dW, 2, axis=0).any()
    assert_close(dW, R.embedding_backward(dout, cache), what="dW")


def test_int32_ids_and_gather_of_activations(rng):
    h = rng.standard_normal((3 * 7, 10)).astype(np.float32)  # (B*T, C), as MaskedLM gathers
    positions = np.array([0, 5, 5, 20], dtype=np.int32)
    out, cache = K.embedding_forward(positions, h)
    assert np.array_equal(out, h[positions])
    dout = rng.standard_normal((4, 10)).astype(np.float32)
    assert_close(K.embedding_backward(dout, cache), R.embedding_backward(dout, cache))


def test_upstream_of_other_dtype_is_refused(rng):
    W = rng.standard_normal((9, 4)).astype(np.float32)
    ids = rng.integers(0, 9, (2, 5))
    _, cache = K.embedding_forward(ids, W)
    dout = rng.standard_normal((2, 5, 4))  # float64 into a float32 forward
    for backward in (K.embedding_backward, R.embedding_backward):
        with pytest.raises(ValueError, match="embedding_backward: dout: expected dtype float32"):
            backward(dout, cache)


def test_positional_ops_are_the_reference():
    assert K.position_forward is R.position_forward
    assert K.position_backward is R.position_backward
    assert K.sinusoidal_table is R.sinusoidal_table


@pytest.mark.parametrize("ids, W, message", [
    (np.array([0, 5]), np.ones((5, 2)), r"ids: expected ids in \[0, 5\), got 5"),
    (np.array([-1, 2]), np.ones((5, 2)), "ids: expected ids in .*got -1"),
    (np.array([0.0, 1.0]), np.ones((5, 2)), "ids: expected an integer dtype"),
    (np.array([0, 1]), np.ones(5), r"W: expected 2 dims \(V, C\)"),
    (np.array([0, 1]), np.ones((5, 2), np.int64), "W: expected dtype float32 or float64"),
])
def test_bad_input_same_error_as_reference(ids, W, message):
    for fn in (K.embedding_forward, R.embedding_forward):
        with pytest.raises(ValueError, match=message):
            fn(ids, W)


@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_backward_accumulates_into_out(impl):
    """With out=, the scatter-add lands on top of what out holds (a Parameter's grad)."""
    mod = R if impl == "reference" else K
    rng = np.random.default_rng(3)
    W = rng.standard_normal((9, 5)).astype(np.float32)
    ids = np.array([[1, 1, 4], [8, 1, 0]])
    _, cache = mod.embedding_forward(ids, W)
    dout = rng.standard_normal((2, 3, 5)).astype(np.float32)
    before = rng.standard_normal((9, 5)).astype(np.float32)
    out = before.copy()
    got = mod.embedding_backward(dout, cache, out=out)
    assert got is out
    expected = before + R.embedding_backward(dout, cache)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"out: expected an array of shape \(9, 5\) and dtype "
                                         r"float32, got \(\(9, 5\), dtype\('float64'\)\)"):
        mod.embedding_backward(dout, cache, out=np.zeros((9, 5)))
