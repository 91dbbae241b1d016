"""The transformer block and a stack of them.

Shapes: x (B, T, C), key_mask (B, T) bool (True for real tokens).

Two orderings of the same pieces:
    post-LN (the original paper, "Transformers from scratch", BERT):
        h = N1(x + Drop(Attn(x)));   out = N2(h + Drop(FFN(h)))
    pre-LN (BERT-from-scratch article, GPT-2, Llama):
        h = x + Drop(Attn(N1(x)));   out = h + Drop(FFN(N2(h)))

N is a LayerNorm or an RMSNorm, FFN a Linear-activation-Linear MLP or
SwiGLU, Attn multi-head or grouped-query attention with optional rotary
positions (see numformer.nn.transformer). The sub-modules keep the names
they have always had (attn, ln1, drop1, ffn, ln2, drop2) whatever their kind.
"""

from __future__ import annotations

import numpy as np

from numformer.nn.layers import Dropout, FeedForward, _rng
from numformer.nn.module import Module, ModuleList


def make_ffn(kind: str, dim: int, d_ff: int, activation: str, bias: bool, rng, init_std,
             dtype) -> Module:
    if kind == "mlp":
        return FeedForward(dim, d_ff, activation, rng=rng, init_std=init_std, dtype=dtype,
                           bias=bias)
    if kind == "swiglu":
        from numformer.nn.modern import SwiGLU
        return SwiGLU(dim, d_ff, rng=rng, init_std=init_std, dtype=dtype)
    raise ValueError(f"ffn: expected 'mlp' or 'swiglu', got {kind!r}")


class EncoderBlock(Module):
    """Self-attention and feed-forward sub-layers, each with a residual, dropout and
    a norm, in post-LN (``norm_first=False``) or pre-LN (``norm_first=True``) order.
    ``causal=True`` makes the attention causal (decoder-only language models).

    Keyword choices (defaults: the classic encoder block): ``norm`` layernorm |
    rmsnorm, ``ffn`` mlp | swiglu, ``n_kv_heads`` (grouped-query attention),
    ``bias`` on the projections, ``rope`` rotary positions on q and k,
    ``attn_dropout`` dropout on the attention probabilities."""

    def __init__(self, dim: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "gelu", causal: bool = False,
                 rng=None, init_std: float = 0.02, eps: float = 1e-5, dtype=np.float32, *,
                 norm: str = "layernorm", ffn: str = "mlp", n_kv_heads: int | None = None,
                 bias: bool = True, rope: bool = False, attn_dropout: float = 0.0):
        super().__init__()
        from numformer.nn.attention import Attention
        from numformer.nn.transformer import make_norm
        rng = _rng(rng)
        self.norm_first = bool(norm_first)
        self.causal = bool(causal)
        self.attn = Attention(dim, n_heads, n_kv_heads, bias=bias, rope=rope, rng=rng,
                              init_std=init_std, dtype=dtype, dropout=attn_dropout)
        self.ln1 = make_norm(norm, dim, eps, dtype)
        self.drop1 = Dropout(dropout, seed=rng.integers(2**32))
        self.ffn = make_ffn(ffn, dim, d_ff, activation, bias, rng, init_std, dtype)
        self.ln2 = make_norm(norm, dim, eps, dtype)
        self.drop2 = Dropout(dropout, seed=rng.integers(2**32))

    def extra_repr(self):
        return f"norm_first={self.norm_first}, causal={self.causal}"

    def forward(self, x, key_mask=None, kv=None, rope_tables=None, offset: int = 0):
        """``kv``: this block's KVCache for incremental decoding; None in training.
        ``rope_tables``/``offset``: the rotary tables and x's first position."""
        def attn(h):
            return self.attn(h, key_mask, self.causal, kv, rope_tables, offset)
        if self.norm_first:
            h = x + self.drop1(attn(self.ln1(x)))  # (B, T, C)
            return h + self.drop2(self.ffn(self.ln2(h)))  # (B, T, C)
        h = self.ln1(x + self.drop1(attn(x)))  # (B, T, C)
        return self.ln2(h + self.drop2(self.ffn(h)))  # (B, T, C)

    def backward(self, dout):
        if self.norm_first:
            # out = h + Drop(FFN(N2(h)))
            dh = dout + self.ln2.backward(self.ffn.backward(self.drop2.backward(dout)))
            # h = x + Drop(Attn(N1(x)))
            return dh + self.ln1.backward(self.attn.backward(self.drop1.backward(dh)))
        # out = N2(h + Drop(FFN(h)))
        d = self.ln2.backward(dout)
        dh = d + self.ffn.backward(self.drop2.backward(d))
        # h = N1(x + Drop(Attn(x)))
        d = self.ln1.backward(dh)
        return d + self.attn.backward(self.drop1.backward(d))


Block = EncoderBlock


class Encoder(Module):
    """``n_layers`` blocks; pre-norm stacks end with a final norm. The keyword
    choices are those of EncoderBlock."""

    def __init__(self, n_layers: int, dim: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "gelu", causal: bool = False,
                 rng=None, init_std: float = 0.02, eps: float = 1e-5, dtype=np.float32, *,
                 norm: str = "layernorm", ffn: str = "mlp", n_kv_heads: int | None = None,
                 bias: bool = True, rope: bool = False, attn_dropout: float = 0.0):
        super().__init__()
        from numformer.nn.transformer import make_norm
        rng = _rng(rng)
        self.blocks = ModuleList(
            EncoderBlock(dim, n_heads, d_ff, dropout, norm_first, activation, causal, rng,
                         init_std, eps, dtype, norm=norm, ffn=ffn, n_kv_heads=n_kv_heads,
                         bias=bias, rope=rope, attn_dropout=attn_dropout)
            for _ in range(n_layers))
        self.final_norm = make_norm(norm, dim, eps, dtype) if norm_first else None

    def forward(self, x, key_mask=None, kv_cache=None, rope_tables=None, offset: int = 0):
        """``kv_cache``: one KVCache per block for incremental decoding."""
        for i, block in enumerate(self.blocks):
            x = block(x, key_mask, None if kv_cache is None else kv_cache[i], rope_tables,
                      offset)  # (B, T, C)
        return x if self.final_norm is None else self.final_norm(x)

    def backward(self, dout):
        if self.final_norm is not None:
            dout = self.final_norm.backward(dout)
        for block in reversed(self.blocks):
            dout = block.backward(dout)
        return dout
