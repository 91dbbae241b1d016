"""Numba twins of ``numformer.ops.activations``: ReLU, GELU (exact erf form and tanh form)
and SiLU (cache ``(x, sigmoid(x))``).
tanh (used once, in BERT's pooler, on (B, C)) is not a hot loop: the
reference serves it.

Shapes: any; the kernels see the input as a flat C-contiguous array and the
output has the input's shape and dtype. The caches are the reference's:
ReLU ``mask`` (bool), GELU ``(x, approximate, phi)`` for "none" and
``(x, approximate, tanh(u))`` for "tanh".

What makes them fast: each op is one pass over the elements (in parallel
chunks for large inputs) with no temporaries (NumPy's GELU makes about ten
passes, and its float64 erf sums a 36-term series over the whole array).
``math.erf`` and ``math.tanh`` are scalar libm calls, so the GELU forwards
are bound by them; the exact backward's exp(-x^2 / 2) uses the vectorised
``fast_exp``.
"""

from __future__ import annotations

import math

import numpy as np

from numformer.kernels._jit import jit, prange
from numformer.kernels._loops import (EXACT_OPTS, PARALLEL_OPTS, PLAIN_OPTS,
                                      chunk_bounds, fast_exp, run_flat)
from numformer.ops import _checks as chk
from numformer.ops import activations as _ref
from numformer.ops.activations import GELU_APPROXIMATIONS
from numformer.ops.activations import tanh_backward, tanh_forward  # noqa: F401 (no kernel)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_CUBIC = 0.044715


# Each kernel is a serial loop over whole flat arrays plus a parallel driver that
# runs it on slices (chunks) of them; ``run_flat`` picks one by size.

def _relu_py(x, zero, out, mask):
    """out = x * (x > 0) (so NaN stays NaN, as in the reference), mask = x > 0."""
    for i in range(x.shape[0]):
        xi = x[i]
        mk = xi > zero
        mask[i] = mk
        out[i] = xi if mk else xi * zero


_relu = jit(_relu_py, **PLAIN_OPTS)


def _relu_par_py(x, zero, out, mask, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _relu(x[lo:hi], zero, out[lo:hi], mask[lo:hi])


_relu_par = jit(_relu_par_py, **PARALLEL_OPTS)


def _relu_backward_py(dout, mask, zero, dx):
    """dx = dout * mask."""
    for i in range(dout.shape[0]):
        di = dout[i]
        dx[i] = di if mask[i] else di * zero


_relu_backward = jit(_relu_backward_py, **PLAIN_OPTS)


def _relu_backward_par_py(dout, mask, zero, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, dout.shape[0])
        _relu_backward(dout[lo:hi], mask[lo:hi], zero, dx[lo:hi])


_relu_backward_par = jit(_relu_backward_par_py, **PARALLEL_OPTS)


def _gelu_erf_py(x, out, phi):
    """phi = (1 + erf(x / sqrt 2)) / 2 in float64, out = x * phi."""
    for i in range(x.shape[0]):
        xi = x[i]
        phi[i] = 0.5 * (1.0 + math.erf(xi * _INV_SQRT_2))
        out[i] = xi * phi[i]


_gelu_erf = jit(_gelu_erf_py, **EXACT_OPTS)


def _gelu_erf_par_py(x, out, phi, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _gelu_erf(x[lo:hi], out[lo:hi], phi[lo:hi])


_gelu_erf_par = jit(_gelu_erf_par_py, **PARALLEL_OPTS)


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0, with P the degree-9
# polynomial of Numerical Recipes' erfcc (fractional error below 1.2e-7 for
# every z): everything in it vectorises (a division, a polynomial, fast_exp),
# unlike libm's scalar erf. Used for float32 only, where 1.2e-7 is below the
# dtype's own resolution; float64 keeps math.erf for exact gradient checks.
_ERFC_P = tuple(np.float32(c) for c in (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277))
_F32_HALF, _F32_ONE = np.float32(0.5), np.float32(1.0)
_F32_INV_SQRT_2 = np.float32(_INV_SQRT_2)


def _gelu_erf32_py(x, out, phi):
    """float32 phi = Phi(x) via erfc of |x|/sqrt 2 (see above): phi = erfc/2 for
    x < 0 and 1 - erfc/2 otherwise (no cancellation in the left tail); out = x * phi."""
    c = _ERFC_P
    for i in range(x.shape[0]):
        xi = x[i]
        z = abs(xi) * _F32_INV_SQRT_2
        t = _F32_ONE / (_F32_ONE + _F32_HALF * z)
        p = c[9]
        p = p * t + c[8]
        p = p * t + c[7]
        p = p * t + c[6]
        p = p * t + c[5]
        p = p * t + c[4]
        p = p * t + c[3]
        p = p * t + c[2]
        p = p * t + c[1]
        p = p * t + c[0]
        half_erfc = _F32_HALF * t * fast_exp(p - z * z)
        ph = half_erfc if xi < 0 else _F32_ONE - half_erfc
        phi[i] = ph
        out[i] = xi * ph


_gelu_erf32 = jit(_gelu_erf32_py, **EXACT_OPTS)  # calls fast_exp: no reassociation


def _gelu_erf32_par_py(x, out, phi, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _gelu_erf32(x[lo:hi], out[lo:hi], phi[lo:hi])


_gelu_erf32_par = jit(_gelu_erf32_par_py, **PARALLEL_OPTS)


def _gelu_erf_backward_py(dout, x, phi, half, coef, dx):
    """dx = dout * (phi + x * pdf(x)), pdf(x) = coef * exp(-x^2 / 2) (``half`` = -1/2)."""
    for i in range(x.shape[0]):
        xi = x[i]
        pdf = coef * fast_exp(half * xi * xi)
        dx[i] = dout[i] * (phi[i] + xi * pdf)


_gelu_erf_backward = jit(_gelu_erf_backward_py, **EXACT_OPTS)


def _gelu_erf_backward_par_py(dout, x, phi, half, coef, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _gelu_erf_backward(dout[lo:hi], x[lo:hi], phi[lo:hi], half, coef, dx[lo:hi])


_gelu_erf_backward_par = jit(_gelu_erf_backward_par_py, **PARALLEL_OPTS)


def _gelu_tanh_py(x, out, th):
    """th = tanh(sqrt(2/pi) (x + 0.044715 x^3)) in float64, out = x (1 + th) / 2."""
    for i in range(x.shape[0]):
        xi = x[i]
        x64 = 1.0 * xi
        th[i] = math.tanh(_SQRT_2_OVER_PI * (x64 + _GELU_TANH_CUBIC * x64 * x64 * x64))
        out[i] = xi * (0.5 * (1.0 + th[i]))


_gelu_tanh = jit(_gelu_tanh_py, **EXACT_OPTS)


def _gelu_tanh_par_py(x, out, th, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _gelu_tanh(x[lo:hi], out[lo:hi], th[lo:hi])


_gelu_tanh_par = jit(_gelu_tanh_par_py, **PARALLEL_OPTS)


def _gelu_tanh_backward_py(dout, x, th, half, one, k, k3, dx):
    """dx = dout * ((1 + th) / 2 + x (1 - th^2) du / 2), du = k (1 + 3 * 0.044715 x^2)
    (``k3`` = k * 3 * 0.044715), all in the input's dtype."""
    for i in range(x.shape[0]):
        xi = x[i]
        t = th[i]
        du = k + k3 * xi * xi
        dx[i] = dout[i] * (half * (one + t) + half * xi * (one - t * t) * du)


_gelu_tanh_backward = jit(_gelu_tanh_backward_py, **EXACT_OPTS)


def _gelu_tanh_backward_par_py(dout, x, th, half, one, k, k3, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _gelu_tanh_backward(dout[lo:hi], x[lo:hi], th[lo:hi], half, one, k, k3, dx[lo:hi])


_gelu_tanh_backward_par = jit(_gelu_tanh_backward_par_py, **PARALLEL_OPTS)


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1)  # (n,)


def _same(a, ref: np.ndarray) -> bool:
    return (isinstance(a, np.ndarray) and a.shape == ref.shape and a.dtype == ref.dtype
            and a.size > 0)


def relu_forward(x: np.ndarray):
    """``max(x, 0)``. ``cache = (x > 0, x.dtype)`` (the reference's). One pass
    writing out and the mask."""
    chk.float_array("x", x)
    if x.size == 0:
        return _ref.relu_forward(x)
    out = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=np.bool_)
    run_flat(_relu, _relu_par, x.size, _flat(x), x.dtype.type(0), out.reshape(-1),
             mask.reshape(-1))
    return out, (mask, x.dtype)


def relu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dout where the mask is set, 0 elsewhere; one pass."""
    mask, dtype = cache
    chk.check_dout("relu_backward", dout, mask.shape, dtype)
    if dout.size == 0:
        return _ref.relu_backward(dout, cache)
    dx = np.empty(dout.shape, dtype=dout.dtype)
    run_flat(_relu_backward, _relu_backward_par, dout.size, _flat(dout), _flat(mask),
             dout.dtype.type(0), dx.reshape(-1))
    return dx


def gelu_forward(x: np.ndarray, approximate: str = "none"):
    """GELU ``x * Phi(x)`` (see the reference), with the reference's cache.

    One pass writing out and the cached phi (or tanh u). float64 uses libm's
    erf and tanh; float32's exact form uses the vectorised erfc above
    (fractional error below 1.2e-7), tanh form tanh in float64.
    """
    chk.float_array("x", x)
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate: expected one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    if x.size == 0:
        return _ref.gelu_forward(x, approximate)
    out = np.empty(x.shape, dtype=x.dtype)
    saved = np.empty(x.shape, dtype=x.dtype)
    if approximate == "tanh":
        kernels = (_gelu_tanh, _gelu_tanh_par)
    elif x.dtype == np.float32:
        kernels = (_gelu_erf32, _gelu_erf32_par)
    else:
        kernels = (_gelu_erf, _gelu_erf_par)
    run_flat(*kernels, x.size, _flat(x), out.reshape(-1), saved.reshape(-1))
    return out, (x, approximate, saved)


def gelu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dx for either form, one pass in the input's dtype."""
    x, approximate, saved = cache
    chk.check_dout("gelu_backward", dout, x.shape, x.dtype)
    if not (_same(dout, x) and _same(saved, x)):  # empty arrays
        return _ref.gelu_backward(dout, cache)
    dt = x.dtype.type
    dx = np.empty(x.shape, dtype=x.dtype)
    if approximate == "none":
        run_flat(_gelu_erf_backward, _gelu_erf_backward_par, x.size, _flat(dout),
                 _flat(x), _flat(saved), dt(-0.5), dt(_INV_SQRT_2PI), dx.reshape(-1))
    else:
        run_flat(_gelu_tanh_backward, _gelu_tanh_backward_par, x.size, _flat(dout),
                 _flat(x), _flat(saved), dt(0.5), dt(1.0), dt(_SQRT_2_OVER_PI),
                 dt(_SQRT_2_OVER_PI * 3 * _GELU_TANH_CUBIC), dx.reshape(-1))
    return dx


# --- SiLU ----------------------------------------------------------------------

def _silu_py(x, one, out, sig):
    """sig = sigmoid(x) from exp(-|x|) (no overflow), out = x * sig; vectorised
    (``fast_exp``)."""
    for i in range(x.shape[0]):
        xi = x[i]
        e = fast_exp(-abs(xi))
        r = one / (one + e)
        sg = r if xi >= 0 else e * r
        sig[i] = sg
        out[i] = xi * sg


_silu = jit(_silu_py, **EXACT_OPTS)  # calls fast_exp: no reassociation


def _silu_par_py(x, one, out, sig, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _silu(x[lo:hi], one, out[lo:hi], sig[lo:hi])


_silu_par = jit(_silu_par_py, **PARALLEL_OPTS)


def _silu_backward_py(dout, x, sig, one, dx):
    """dx = dout * sig * (1 + x * (1 - sig))."""
    for i in range(x.shape[0]):
        s = sig[i]
        dx[i] = dout[i] * (s * (one + x[i] * (one - s)))


_silu_backward = jit(_silu_backward_py, **EXACT_OPTS)


def _silu_backward_par_py(dout, x, sig, one, dx, nchunks):
    for c in prange(nchunks):
        lo, hi = chunk_bounds(c, nchunks, x.shape[0])
        _silu_backward(dout[lo:hi], x[lo:hi], sig[lo:hi], one, dx[lo:hi])


_silu_backward_par = jit(_silu_backward_par_py, **PARALLEL_OPTS)


def silu_forward(x: np.ndarray):
    """SiLU ``x * sigmoid(x)`` with the reference's cache ``(x, sig)``: one
    pass writing out and sig (NumPy makes about six)."""
    chk.float_array("x", x)
    if x.size == 0:
        return _ref.silu_forward(x)
    out = np.empty(x.shape, dtype=x.dtype)
    sig = np.empty(x.shape, dtype=x.dtype)
    run_flat(_silu, _silu_par, x.size, _flat(x), x.dtype.type(1), out.reshape(-1),
             sig.reshape(-1))
    return out, (x, sig)


def silu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """dx = dout * sig * (1 + x (1 - sig)), one pass."""
    x, sig = cache
    chk.check_dout("silu_backward", dout, x.shape, x.dtype)
    if x.size == 0:
        return _ref.silu_backward(dout, cache)
    dx = np.empty(x.shape, dtype=x.dtype)
    run_flat(_silu_backward, _silu_backward_par, x.size, _flat(dout), _flat(x), _flat(sig),
             x.dtype.type(1), dx.reshape(-1))
    return dx
