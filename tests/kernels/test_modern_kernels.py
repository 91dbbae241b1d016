"""The Numba kernels of the modern decoder ops against their NumPy references,
forward and backward, float32 and float64: rmsnorm, rope, silu, silu_mul
and swiglu.

Tolerances come from ``numformer.testing`` (the suite's one table). Sums
over every row of the batch (RMSNorm's dweight, SwiGLU's dW_*) are compared
with ``reduced=True``, the table's looser tolerance for batch reductions;
everything else uses the plain tolerance.
"""

import numpy as np
import pytest

from numformer.kernels import activations as KA
from numformer.kernels import rmsnorm as KR
from numformer.kernels import rope as KP
from numformer.kernels import swiglu as KS
from numformer.kernels._jit import JIT_DISABLED
from numformer.ops import activations as RA
from numformer.ops import rmsnorm as RR
from numformer.ops import rope as RP
from numformer.ops import swiglu as RS
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def run_path(request, monkeypatch):
    """Every test through the serial kernels and through their parallel drivers."""
    from numformer.kernels import _loops as helpers
    monkeypatch.setattr(helpers, "PARALLEL_MIN_WORK", 1 << 62 if request.param == "serial" else 0)
    return request.param


# --- rmsnorm ------------------------------------------------------------------------

RMS_SHAPES = [(1, 1, 1), (1, 1, 8), (2, 1, 5), (3, 7, 33), (2, 5, 17), (1100, 3)]
if not JIT_DISABLED:
    RMS_SHAPES += [(2, 9, 129), (4, 300, 64), (7, 576)]


def _rms_check(x, w, dout, eps=1e-5):
    out, cache = KR.rmsnorm_forward(x, w, eps)
    out_ref, cache_ref = RR.rmsnorm_forward(x, w, eps)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert_close(out, out_ref, what="out")
    assert cache[0].dtype == cache[2].dtype == x.dtype
    assert cache[2].shape == cache_ref[2].shape == x.shape[:-1] + (1,)
    assert_close(cache[0], cache_ref[0], what="cache xhat")
    assert_close(cache[2], cache_ref[2], what="cache rstd")
    assert cache[1] is w
    dx, dw = KR.rmsnorm_backward(dout, cache)
    dx_ref, dw_ref = RR.rmsnorm_backward(dout, cache_ref)
    assert dx.dtype == dw.dtype == x.dtype
    assert_close(dx, dx_ref, what="dx")
    assert_close(dw, dw_ref, reduced=True, what="dweight")
    return out, cache


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", RMS_SHAPES)
def test_rmsnorm_matches_reference(rng, shape, dtype):
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w = rng.standard_normal(shape[-1]).astype(dtype)
    _rms_check(x, w, rng.standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_zero_large_and_tiny_rows(rng, dtype):
    x = rng.standard_normal((6, 37)).astype(dtype)
    x[0] = 0.0
    x[1] *= 1e4
    x[2] *= 1e-3
    w = rng.standard_normal(37).astype(dtype)
    out, cache = _rms_check(x, w, rng.standard_normal(x.shape).astype(dtype), eps=1e-6)
    assert np.all(np.isfinite(out)) and np.all(out[0] == 0)


def test_rmsnorm_non_contiguous_input_and_interchangeable_caches(rng):
    x = rng.standard_normal((9, 4, 6)).transpose(1, 0, 2)  # (4, 9, 6), not C-contiguous
    w = rng.standard_normal(6)
    _rms_check(x, w, rng.standard_normal(x.shape), eps=0.1)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    d = rng.standard_normal(x.shape).astype(np.float32)
    _, ck = KR.rmsnorm_forward(x32, w32)
    _, cr = RR.rmsnorm_forward(x32, w32)
    for a, e in zip(KR.rmsnorm_backward(d, cr), RR.rmsnorm_backward(d, ck)):
        assert_close(a, e, reduced=True)


# --- rope ----------------------------------------------------------------------------

ROPE_SHAPES = [(1, 1, 1, 2), (2, 3, 1, 6), (2, 3, 5, 6), (3, 2, 17, 10), (1, 3, 33, 64)]
if not JIT_DISABLED:
    ROPE_SHAPES += [(2, 9, 130, 64), (1, 4, 257, 128)]


def _rope_check(x, offset, dtype, rng, dout=None):
    D, T = x.shape[-1], x.shape[2]
    cos, sin = RP.rope_tables(offset + T + 3, D, 10000.0, dtype)
    out, cache = KP.rope_forward(x, cos, sin, offset)
    out_ref, cache_ref = RP.rope_forward(x, cos, sin, offset)
    assert out.dtype == x.dtype and out.shape == x.shape and out.flags.c_contiguous
    assert_close(out, out_ref, what="out")
    for a, e in zip(cache, cache_ref):
        np.testing.assert_array_equal(a, e)
    if dout is None:
        dout = rng.standard_normal(x.shape).astype(dtype)
    dx = KP.rope_backward(dout, cache)
    assert dx.dtype == x.dtype
    assert_close(dx, RP.rope_backward(dout, cache_ref), what="dx")
    assert_close(KP.rope_backward(dout, cache_ref), dx, what="dx from the reference's cache")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1, 29])
@pytest.mark.parametrize("shape", ROPE_SHAPES)
def test_rope_matches_reference(rng, shape, offset, dtype):
    _rope_check(rng.standard_normal(shape).astype(dtype), offset, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_on_strided_views(rng, dtype):
    B, T, H, D = 2, 7, 3, 10
    qkv = rng.standard_normal((B, T, 3 * H * D)).astype(dtype)
    heads = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
    dqkv = rng.standard_normal(qkv.shape).astype(dtype)
    dheads = dqkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)
    for which in (0, 1):
        _rope_check(heads[which], 5, dtype, rng, dout=dheads[which])
    swapped = rng.standard_normal((2, 5, 3, 8)).astype(dtype).swapaxes(1, 2)  # (2, 3, 5, 8)
    _rope_check(swapped, 2, dtype, rng, dout=swapped[::-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_kernel_forward_then_backward_is_identity(rng, dtype):
    x = rng.standard_normal((2, 3, 11, 12)).astype(dtype)
    cos, sin = RP.rope_tables(40, 12, 1e5, dtype)
    out, cache = KP.rope_forward(x, cos, sin, 27)
    assert_close(KP.rope_backward(out, cache), x, what="R^T R x")


# --- silu, silu_mul, swiglu ------------------------------------------------------------

FLAT_SHAPES = [(1,), (7,), (3, 5, 17), (1100, 3), (2, 1, 33)]
if not JIT_DISABLED:
    FLAT_SHAPES += [(4, 300, 64), (70001,)]


def _wide(rng, shape, dtype):
    """Values across the range where sigmoid saturates, including both tails."""
    x = rng.standard_normal(shape) * 4
    x.reshape(-1)[:4] = [-120.0, -30.0, 30.0, 120.0][: x.size]
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_silu_matches_reference(rng, shape, dtype):
    x = _wide(rng, shape, dtype)
    out, cache = KA.silu_forward(x)
    out_ref, cache_ref = RA.silu_forward(x)
    assert out.dtype == cache[1].dtype == x.dtype and cache[0] is x
    assert_close(out, out_ref, what="out")
    assert_close(cache[1], cache_ref[1], what="cache sigmoid")
    dout = rng.standard_normal(shape).astype(dtype)
    dx = KA.silu_backward(dout, cache)
    assert dx.dtype == x.dtype
    assert_close(dx, RA.silu_backward(dout, cache_ref), what="dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_silu_mul_matches_reference(rng, shape, dtype):
    g = _wide(rng, shape, dtype)
    u = rng.standard_normal(shape).astype(dtype)
    h, cache = KS.silu_mul_forward(g, u)
    h_ref, cache_ref = RS.silu_mul_forward(g, u)
    assert h.dtype == dtype
    assert_close(h, h_ref, what="h")
    dh = rng.standard_normal(shape).astype(dtype)
    dg, du = KS.silu_mul_backward(dh, cache)
    dg_ref, du_ref = RS.silu_mul_backward(dh, cache_ref)
    assert dg.dtype == du.dtype == dtype
    assert_close(dg, dg_ref, what="dg")
    assert_close(du, du_ref, what="du")


SWIGLU_SHAPES = [((1, 1, 4), 3), ((2, 5, 6), 7), ((3, 17, 12), 33)]
if not JIT_DISABLED:
    SWIGLU_SHAPES += [((2, 64, 96), 256)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, F", SWIGLU_SHAPES)
def test_swiglu_matches_reference(rng, shape, F, dtype):
    C = shape[-1]
    x = rng.standard_normal(shape).astype(dtype)
    Ws = [(rng.standard_normal(s) / np.sqrt(s[0])).astype(dtype) for s in ((C, F), (C, F), (F, C))]
    out, cache = KS.swiglu_forward(x, *Ws)
    out_ref, cache_ref = RS.swiglu_forward(x, *Ws)
    assert out.dtype == dtype
    assert_close(out, out_ref, what="out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = KS.swiglu_backward(dout, cache)
    for g, e, name in zip(grads, RS.swiglu_backward(dout, cache_ref),
                          ("dx", "dW_gate", "dW_up", "dW_down")):
        assert g.dtype == dtype and g.shape == e.shape
        assert_close(g, e, reduced=name != "dx", what=name)


def test_kernel_families_register_themselves():
    """kernels/<op>.py is found by its file name (no list to edit); private
    modules (_jit, _loops, ...) are not op families."""
    from pathlib import Path

    from numformer import kernels
    files = {p.stem for p in Path(kernels.__file__).parent.glob("*.py")}
    assert kernels.KERNEL_OPS == {f for f in files if not f.startswith("_")}
    assert {"rmsnorm", "rope", "swiglu", "activations"} <= kernels.KERNEL_OPS
    assert not {"_jit", "_loops", "__init__"} & kernels.KERNEL_OPS
    assert kernels.op("rope", "numba") is KP and kernels.op("rope", "numpy") is RP
    assert kernels.op("swiglu", "numba") is KS and kernels.op("rmsnorm", "numba") is KR
