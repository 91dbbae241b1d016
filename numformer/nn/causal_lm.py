"""Causal (autoregressive) language model: a causal Transformer and a next-token head.

Shapes: ids (B, T) integer, hidden (B, T, C), logits (B, T, V). A key-value
cache holds, per block, keys and values (B, Hkv, S, D) of the S tokens seen
(``numformer.nn.attention.KVCache``). The GPT-style char LM and a
Llama-style decoder (``ModelConfig.for_arch("llama", ...)``) are both this
class; only the configuration differs.
"""

from __future__ import annotations

import numpy as np

from numformer import kernels
from numformer.nn.layers import Linear
from numformer.nn.transformer import ModelConfig, Transformer
from numformer.nn.module import Module, accumulate
from numformer.ops._alloc import matmul


class CausalLM(Module):
    """Token embeddings (+ positions), causal blocks (pre-norm as in GPT-2 and
    Llama when ``cfg.norm_first``), a next-token head (the token embedding,
    transposed, when ``cfg.tie_weights``). ``forward(ids)`` gives logits at
    every position. The stack is causal whatever ``cfg.causal`` says."""

    def __init__(self, cfg: ModelConfig, seed: int = 0, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.body = Transformer(cfg, rng=rng, causal=True, dtype=dtype)
        self.head = None if cfg.tie_weights else Linear(cfg.dim, cfg.vocab_size, bias=False,
                                                        rng=rng, init_std=cfg.init_std,
                                                        dtype=dtype)

    def _logits(self, h):
        if self.head is not None:
            return self.head(h)  # (B, T, V)
        f = kernels.op("linear")
        out, cache = f.linear_forward(h, self.body.tok.weight.value.T)  # (B, T, V)
        self._set_cache((f, cache))
        return out

    def forward(self, ids, key_mask=None, kv_cache=None):
        """Logits (B, T, V). With ``kv_cache`` (from ``new_cache()``, extended in
        place), ids are new tokens after the cached ones: each costs attention over
        the cached keys instead of a recomputation of the window (eval mode only)."""
        if kv_cache is not None and self.training:
            raise RuntimeError("CausalLM: the key-value cache is for inference; call eval() first")
        return self._logits(self.body(ids, key_mask, kv_cache))  # (B, T, V)

    def backward(self, dlogits):
        if self.head is not None:
            dh = self.head.backward(dlogits)
        else:
            _, (h, _, _) = self._pop_cache()
            # logits = h @ E^T; dE comes out in E's (V, C) layout, no transposed add
            d2 = dlogits.reshape(-1, dlogits.shape[-1])  # (B*T, V)
            dh = matmul(d2, self.body.tok.weight.value).reshape(h.shape)  # (B, T, C)
            E = self.body.tok.weight
            if E.grad is not None:  # frozen (e.g. LoRA): no dE to compute
                accumulate(E, matmul(d2.T, h.reshape(-1, h.shape[-1])))  # (V, C)
        return self.body.backward(dh)

    def new_cache(self) -> list:
        """An empty key-value cache: one KVCache per block."""
        return self.body.new_cache()

    @staticmethod
    def cache_length(kv_cache) -> int:
        return kv_cache[0].length
