"""numformer.kernels.adam against numformer.ops.adam over several steps."""

import numpy as np
import pytest

from numformer.kernels import adam as K
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import adam as R
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (37, 5), (2, 3, 7)]
if not JIT_DISABLED:
    SHAPES += [(3, 70001)]  # large enough for the parallel driver
# (weight_decay, decoupled): none, Adam with L2, AdamW
DECAYS = [(0.0, False), (0.0, True), (0.1, False), (0.1, True)]

@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Run every test through the serial kernels and through their parallel
    drivers (the threshold that picks one is moved out of the way)."""
    from numformer.kernels import _loops as _helpers
    monkeypatch.setattr(_helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param



def _run(rng, shape, dtype, weight_decay, decoupled, steps=5, lr=1e-2):
    p = rng.standard_normal(shape).astype(dtype)
    pk, mk, vk = p.copy(), np.zeros_like(p), np.zeros_like(p)
    pr, mr, vr = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for step in range(1, steps + 1):
        g = rng.standard_normal(shape).astype(dtype)
        kw = dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                  step=step, decoupled=decoupled)
        assert K.adam_step(pk, g, mk, vk, **kw) is None
        R.adam_step(pr, g, mr, vr, **kw)
    return (pk, mk, vk), (pr, mr, vr), p


@pytest.mark.parametrize("weight_decay, decoupled", DECAYS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_adam_matches_reference_over_steps(rng, shape, dtype, weight_decay, decoupled):
    (pk, mk, vk), (pr, mr, vr), p0 = _run(rng, shape, dtype, weight_decay, decoupled)
    assert pk.dtype == mk.dtype == vk.dtype == dtype
    assert not np.array_equal(pk, p0)  # the step did move the parameters
    assert_close(pk, pr, what="p")
    assert_close(mk, mr, what="m")
    assert_close(vk, vr, what="v")


def test_weight_decay_forms_differ(rng):
    """Adam-L2 and AdamW give different parameters, each equal to its reference."""
    l2, _, _ = _run(np.random.default_rng(5), (4, 6), np.float64, 0.5, False)[0]
    w, _, _ = _run(np.random.default_rng(5), (4, 6), np.float64, 0.5, True)[0]
    assert np.abs(l2 - w).max() > 1e-4


def test_updates_in_place(rng):
    p = rng.standard_normal((3, 4))
    m, v = np.zeros_like(p), np.zeros_like(p)
    ids = (id(p), id(m), id(v))
    before = p.copy()
    K.adam_step(p, rng.standard_normal((3, 4)), m, v, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                weight_decay=0.0, step=1, decoupled=True)
    assert (id(p), id(m), id(v)) == ids
    assert not np.array_equal(p, before) and m.any() and v.any()


@pytest.mark.parametrize("case", ["non_contiguous", "float64_grad", "broadcast_grad"])
def test_arrays_the_kernel_does_not_take_fall_back(rng, case):
    base = rng.standard_normal((6, 5))
    if case == "non_contiguous":
        pk, pr = base.copy().T, base.copy().T  # (5, 6) views, not C-contiguous
        g = rng.standard_normal((5, 6))
    elif case == "float64_grad":
        pk, pr = base.astype(np.float32), base.astype(np.float32)
        g = rng.standard_normal((6, 5))  # float64 gradient of a float32 parameter
    else:
        pk, pr = base.copy(), base.copy()
        g = rng.standard_normal(5)  # broadcast over the rows
    mk, vk = np.zeros_like(pk), np.zeros_like(pk)
    mr, vr = np.zeros_like(pr), np.zeros_like(pr)
    kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=1,
              decoupled=False)
    K.adam_step(pk, g, mk, vk, **kw)
    R.adam_step(pr, g, mr, vr, **kw)
    for a, e in ((pk, pr), (mk, mr), (vk, vr)):
        assert a.dtype == e.dtype
        assert_close(a, e)
