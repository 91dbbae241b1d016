"""Elementwise activations: ReLU, tanh, GELU (exact erf form and tanh approximation) and SiLU.

Shapes: any; the output has the input's shape and dtype.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops._erf import erf as _erf_numpy

try:  # scipy (a runtime dependency) has a vectorised erf, 2x faster end to end
    from scipy.special import erf
except ImportError:  # pragma: no cover - the series/continued fraction of _erf
    erf = _erf_numpy

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_INV_SQRT_2 = 1.0 / np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
GELU_APPROXIMATIONS = ("none", "tanh")


def relu_forward(x: np.ndarray):
    """``max(x, 0)``. ``cache = (mask, dtype)``: mask = x > 0 (bool) and x's dtype
    (which the backward checks dout against)."""
    chk.float_array("x", x)
    mask = x > 0
    return x * mask, (mask, x.dtype)


def relu_backward(dout: np.ndarray, cache) -> np.ndarray:
    mask, dtype = cache
    chk.check_dout("relu_backward", dout, mask.shape, dtype)
    # out = max(x, 0)
    return dout * mask


def tanh_forward(x: np.ndarray):
    """``out = tanh(x)``. ``cache = out`` (the derivative is 1 - out^2)."""
    chk.float_array("x", x)
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache) -> np.ndarray:
    out = cache
    chk.check_dout("tanh_backward", dout, out.shape, out.dtype)
    # out = tanh(x)
    return dout * (out.dtype.type(1) - out * out)


def gelu_forward(x: np.ndarray, approximate: str = "none"):
    """GELU: ``x * Phi(x)`` with Phi the normal CDF.

    approximate="none":  Phi(x) = (1 + erf(x / sqrt 2)) / 2            (BERT, exact)
    approximate="tanh":  Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2  (GPT-2)
    ``cache = (x, approximate, phi)`` where phi is the (approximate) Phi(x).
    """
    chk.float_array("x", x)
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate: expected one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    dt = x.dtype.type
    if approximate == "none":
        phi = (dt(0.5) * (dt(1.0) + erf(x * dt(_INV_SQRT_2)))).astype(x.dtype)
        return x * phi, (x, approximate, phi)
    u = dt(_SQRT_2_OVER_PI) * (x + dt(0.044715) * x * x * x)
    th = np.tanh(u)
    phi = dt(0.5) * (dt(1.0) + th)
    return x * phi, (x, approximate, th)


def gelu_backward(dout: np.ndarray, cache) -> np.ndarray:
    x, approximate, saved = cache
    chk.check_dout("gelu_backward", dout, x.shape, x.dtype)
    dt = x.dtype.type
    if approximate == "none":
        phi = saved
        # out = x * Phi(x);  d/dx = Phi(x) + x * pdf(x)
        pdf = dt(_INV_SQRT_2PI) * np.exp(dt(-0.5) * x * x)
        return dout * (phi + x * pdf)
    th = saved
    # out = x * (1 + tanh(u)) / 2,  u = sqrt(2/pi) (x + 0.044715 x^3)
    du = dt(_SQRT_2_OVER_PI) * (dt(1.0) + dt(3 * 0.044715) * x * x)
    return dout * (dt(0.5) * (dt(1.0) + th) + dt(0.5) * x * (dt(1.0) - th * th) * du)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp(-|x|) <= 1, then the side of 0."""
    e = np.exp(-np.abs(x))  # (...)
    one = x.dtype.type(1)
    return np.where(x >= 0, one / (one + e), e / (one + e)).astype(x.dtype, copy=False)


def silu_forward(x: np.ndarray):
    """SiLU (swish): ``out = x * sigmoid(x)``. ``cache = (x, sig)`` with sig = sigmoid(x)."""
    chk.float_array("x", x)
    sig = _sigmoid(x)
    return x * sig, (x, sig)


def silu_backward(dout: np.ndarray, cache) -> np.ndarray:
    x, sig = cache
    chk.check_dout("silu_backward", dout, x.shape, x.dtype)
    # out = x * sig(x);  d/dx = sig + x * sig * (1 - sig)
    return dout * (sig * (x.dtype.type(1) + x * (x.dtype.type(1) - sig)))
