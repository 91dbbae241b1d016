"""SwiGLU feed-forward (Llama's MLP): ``(silu(x @ W_gate) * (x @ W_up)) @ W_down``.

Shapes: x (..., C) (usually (B, T, C)), seen as N rows; W_gate and W_up
(C, F), W_down (F, C); the gate g, the up projection u and the hidden
h = silu(g) * u are (..., F). No biases (Llama has none).

Two op pairs: ``silu_mul`` is the elementwise middle ``silu(g) * u`` (its
kernel twin fuses it into one pass), ``swiglu`` the whole block, three
dense products around it (``ops.linear``, one BLAS GEMM each).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops import linear as _lin
from numformer.ops.activations import _sigmoid


def check_silu_mul(g, u) -> None:
    chk.float_array("g", g)
    chk.float_array("u", u, like=g)
    chk.shape("u", u, g.shape, "(..., F), the shape of g")


def silu_mul_forward(g: np.ndarray, u: np.ndarray):
    """``h = silu(g) * u = g * sigmoid(g) * u``. ``cache = (g, u)``: sigmoid(g)
    is recomputed in the backward (one exp) rather than kept, which saves an
    (..., F) array per block for the whole backward pass."""
    check_silu_mul(g, u)
    h = g * _sigmoid(g) * u  # (..., F)
    return h, (g, u)


def silu_mul_backward(dh: np.ndarray, cache):
    """(dg, du)."""
    g, u = cache
    chk.check_dout("silu_mul_backward", dh, g.shape, g.dtype, arg="dh")
    one = g.dtype.type(1)
    sig = _sigmoid(g)  # (..., F)
    # h = g * sig(g) * u
    du = dh * g * sig  # (..., F)
    dg = dh * u * (sig * (one + g * (one - sig)))  # (..., F)
    return dg, du


def check_swiglu(x, W_gate, W_up, W_down) -> None:
    """The checks of ``swiglu_forward``'s inputs (shared with its kernel)."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., C)")
    C = x.shape[-1]
    chk.float_array("W_gate", W_gate, like=x)
    chk.shape("W_gate", W_gate, (C, None), f"(C, F) with C={C}, x's last axis")
    F = W_gate.shape[1]
    chk.float_array("W_up", W_up, like=x)
    chk.shape("W_up", W_up, (C, F), "(C, F), the shape of W_gate")
    chk.float_array("W_down", W_down, like=x)
    chk.shape("W_down", W_down, (F, C), "(F, C), W_gate transposed")


def _forward_with(x, W_gate, W_up, W_down, middle_forward):
    """The block around any implementation of the middle (the reference's or a
    kernel's ``silu_mul_forward``): the shared body of ``swiglu_forward``."""
    check_swiglu(x, W_gate, W_up, W_down)
    g, cache_g = _lin.linear_forward(x, W_gate)  # (..., F)
    u, cache_u = _lin.linear_forward(x, W_up)  # (..., F)
    h, cache_m = middle_forward(g, u)  # (..., F)
    out, cache_d = _lin.linear_forward(h, W_down)  # (..., C)
    return out, (cache_g, cache_u, cache_m, cache_d)


def _backward_with(dout, cache, middle_backward):
    """The shared body of ``swiglu_backward`` (the middle's backward passed in)."""
    cache_g, cache_u, cache_m, cache_d = cache
    h = cache_d[0]
    chk.check_dout("swiglu_backward", dout, h.shape[:-1] + (cache_d[1].shape[1],), h.dtype)
    # out = h @ W_down
    dh, dW_down, _ = _lin.linear_backward(dout, cache_d)  # (..., F), (F, C)
    # h = silu(g) * u
    dg, du = middle_backward(dh, cache_m)  # (..., F) each
    # g = x @ W_gate,  u = x @ W_up  (x feeds both: its gradients add)
    dx, dW_gate, _ = _lin.linear_backward(dg, cache_g)  # (..., C), (C, F)
    dx_u, dW_up, _ = _lin.linear_backward(du, cache_u)  # (..., C), (C, F)
    dx += dx_u
    return dx, dW_gate, dW_up, dW_down


def swiglu_forward(x: np.ndarray, W_gate: np.ndarray, W_up: np.ndarray, W_down: np.ndarray):
    """``out = (silu(x @ W_gate) * (x @ W_up)) @ W_down`` (..., C).

    ``cache = (cache_g, cache_u, cache_m, cache_d)``: the caches of the two
    input projections ``(x, W, False)``, of the middle ``(g, u)`` and of the
    output projection ``(h, W_down, False)``.
    """
    return _forward_with(x, W_gate, W_up, W_down, silu_mul_forward)


def swiglu_backward(dout: np.ndarray, cache):
    """(dx, dW_gate, dW_up, dW_down)."""
    return _backward_with(dout, cache, silu_mul_backward)
