"""Layers of the modern (Llama-style) decoder: RMSNorm, rotary embeddings,
SiLU and the SwiGLU feed-forward. Each calls the op pair of the current
backend (``numformer.kernels.op``) and holds one cache, as in ``layers.py``.

Shapes: B batch, T sequence, C channels, H heads, D head dim, F
feed-forward width, L rotary table length.
"""

from __future__ import annotations

import numpy as np

from numformer import kernels
from numformer.nn import layers as _layers
from numformer.nn.module import Module, Parameter, accumulate
from numformer.ops import rope as _rope


class RMSNorm(Module):
    """``x * rsqrt(mean(x^2, -1) + eps) * weight`` over the last axis; weight (C,) = 1."""

    def __init__(self, dim: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=dtype))

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"

    def forward(self, x):
        f = kernels.op("rmsnorm")
        out, cache = f.rmsnorm_forward(x, self.weight.value, self.eps)  # (..., C)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        dx, dweight = f.rmsnorm_backward(dout, cache)
        accumulate(self.weight, dweight)
        return dx


class Rotary(Module):
    """Rotary position embeddings on (B, H, T, D) (Hugging Face Llama's
    half-split layout, see ``numformer.ops.rope``); no parameters, the cos and
    sin tables (L, D // 2) are buffers. ``forward(x, offset)`` rotates position
    t by the angle of position offset + t (a KV cache's decode step)."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0, dtype=np.float32):
        super().__init__()
        self.base = float(base)
        cos, sin = _rope.rope_tables(max_len, head_dim, base, dtype)  # (L, D/2) each
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def extra_repr(self):
        return f"head_dim={2 * self.cos.shape[1]}, max_len={self.cos.shape[0]}, base={self.base:g}"

    def forward(self, x, offset: int = 0):
        f = kernels.op("rope")
        out, cache = f.rope_forward(x, self.cos, self.sin, offset)  # (B, H, T, D)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.rope_backward(dout, cache)


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def forward(self, x):
        f = kernels.op("activations")
        out, cache = f.silu_forward(x)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.silu_backward(dout, cache)


class SwiGLU(Module):
    """Llama's feed-forward ``(silu(x @ w_gate) * (x @ w_up)) @ w_down``, no biases;
    w_gate and w_up (C, F), w_down (F, C), all N(0, init_std^2)."""

    def __init__(self, dim: int, hidden: int, rng=None, init_std: float = 0.02,
                 dtype=np.float32):
        super().__init__()
        r = _layers._rng(rng)  # one generator: the three matrices differ for an int seed
        self.w_gate = Parameter(_layers.normal(r, (dim, hidden), init_std, dtype))
        self.w_up = Parameter(_layers.normal(r, (dim, hidden), init_std, dtype))
        self.w_down = Parameter(_layers.normal(r, (hidden, dim), init_std, dtype))

    def extra_repr(self):
        return f"{self.w_gate.shape[0]}, {self.w_gate.shape[1]}"

    def forward(self, x):
        from numformer.nn import lora
        f = kernels.op("swiglu")
        if lora.has_adapters(self):  # each projection through linear_fwd (LoRA adapters)
            g, cg = lora.linear_fwd(self, x, "w_gate", None)  # (B, T, F)
            u, cu = lora.linear_fwd(self, x, "w_up", None)  # (B, T, F)
            h, ch = f.silu_mul_forward(g, u)  # (B, T, F)
            out, cd = lora.linear_fwd(self, h, "w_down", None)  # (B, T, C)
            self._set_cache(("adapted", f, cg, cu, ch, cd))
            return out
        out, cache = f.swiglu_forward(x, self.w_gate.value, self.w_up.value,
                                      self.w_down.value)  # (B, T, C)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        cache = self._pop_cache()
        if cache[0] == "adapted":
            from numformer.nn import lora
            _, f, cg, cu, ch, cd = cache
            # out = h @ w_down,  h = silu(g) * u,  g = x @ w_gate,  u = x @ w_up
            dh = lora.linear_bwd(self, dout, cd, "w_down", None)
            dg, du = f.silu_mul_backward(dh, ch)
            dx = lora.linear_bwd(self, dg, cg, "w_gate", None)
            dx += lora.linear_bwd(self, du, cu, "w_up", None)
            return dx
        f, cache = cache
        dx, dw_gate, dw_up, dw_down = f.swiglu_backward(dout, cache)
        accumulate(self.w_gate, dw_gate)
        accumulate(self.w_up, dw_up)
        accumulate(self.w_down, dw_down)
        return dx


# make_activation("silu") (FeedForward, ModelConfig.activation) finds SiLU
# without an edit of layers.py's table.
_layers.ACTIVATIONS.setdefault("silu", SiLU)
