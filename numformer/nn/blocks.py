"""The transformer encoder block and a stack of them.

Shapes: x (B, T, C), key_mask (B, T) bool (True for real tokens).

Two orderings of the same pieces:
    post-LN (the original paper, "Transformers from scratch"):
        h = LN1(x + Drop(Attn(x)));   out = LN2(h + Drop(FFN(h)))
    pre-LN (BERT-from-scratch article, GPT-2):
        h = x + Drop(Attn(LN1(x)));   out = h + Drop(FFN(LN2(h)))
"""

from __future__ import annotations

import numpy as np

from numformer.nn.layers import Dropout, FeedForward, LayerNorm, MultiHeadAttention, _rng
from numformer.nn.module import Module, ModuleList


class EncoderBlock(Module):
    """Self-attention and feed-forward sub-layers, each with a residual, dropout and
    layer norm, in post-LN (``norm_first=False``) or pre-LN (``norm_first=True``) order.
    ``causal=True`` makes the attention causal (decoder-only language models)."""

    def __init__(self, dim: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "gelu", causal: bool = False,
                 rng=None, init_std: float = 0.02, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        self.norm_first = bool(norm_first)
        self.causal = bool(causal)
        self.attn = MultiHeadAttention(dim, n_heads, rng=rng, init_std=init_std, dtype=dtype)
        self.ln1 = LayerNorm(dim, eps, dtype=dtype)
        self.drop1 = Dropout(dropout, seed=rng.integers(2**32))
        self.ffn = FeedForward(dim, d_ff, activation, rng=rng, init_std=init_std, dtype=dtype)
        self.ln2 = LayerNorm(dim, eps, dtype=dtype)
        self.drop2 = Dropout(dropout, seed=rng.integers(2**32))

    def extra_repr(self):
        return f"norm_first={self.norm_first}, causal={self.causal}"

    def forward(self, x, key_mask=None, kv=None):
        """``kv``: this block's key-value cache for incremental decoding (see
        MultiHeadAttention.forward); None in training."""
        if self.norm_first:
            h = x + self.drop1(self.attn(self.ln1(x), key_mask, self.causal, kv))  # (B, T, C)
            return h + self.drop2(self.ffn(self.ln2(h)))  # (B, T, C)
        h = self.ln1(x + self.drop1(self.attn(x, key_mask, self.causal, kv)))  # (B, T, C)
        return self.ln2(h + self.drop2(self.ffn(h)))  # (B, T, C)

    def backward(self, dout):
        if self.norm_first:
            # out = h + Drop(FFN(LN2(h)))
            dh = dout + self.ln2.backward(self.ffn.backward(self.drop2.backward(dout)))
            # h = x + Drop(Attn(LN1(x)))
            return dh + self.ln1.backward(self.attn.backward(self.drop1.backward(dh)))
        # out = LN2(h + Drop(FFN(h)))
        d = self.ln2.backward(dout)
        dh = d + self.ffn.backward(self.drop2.backward(d))
        # h = LN1(x + Drop(Attn(x)))
        d = self.ln1.backward(dh)
        return d + self.attn.backward(self.drop1.backward(d))


class Encoder(Module):
    """``n_layers`` EncoderBlocks; pre-LN stacks end with a final LayerNorm."""

    def __init__(self, n_layers: int, dim: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "gelu", causal: bool = False,
                 rng=None, init_std: float = 0.02, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        self.blocks = ModuleList(
            EncoderBlock(dim, n_heads, d_ff, dropout, norm_first, activation, causal, rng,
                         init_std, eps, dtype) for _ in range(n_layers))
        self.final_norm = LayerNorm(dim, eps, dtype=dtype) if norm_first else None

    def forward(self, x, key_mask=None, kv_cache=None):
        """``kv_cache``: one [keys, values] pair per block for incremental decoding."""
        for i, block in enumerate(self.blocks):
            x = block(x, key_mask, None if kv_cache is None else kv_cache[i])  # (B, T, C)
        return x if self.final_norm is None else self.final_norm(x)

    def backward(self, dout):
        if self.final_norm is not None:
            dout = self.final_norm.backward(dout)
        for block in reversed(self.blocks):
            dout = block.backward(dout)
        return dout
