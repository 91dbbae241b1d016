"""Self-attention layers: multi-head and grouped-query attention with optional
biases, rotary positions and LoRA adapters, and the key/value cache of
incremental decoding.

Shapes: B batch, T sequence (new tokens), S cached tokens, C channels, H query
heads, Hkv key/value heads (Hkv divides H), D = C // H, W = (H + 2 Hkv) D the
width of the fused projection.
"""

from __future__ import annotations

import numpy as np

from numformer import kernels
from numformer.nn.module import Module, Parameter, accumulate


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# -- key/value cache -------------------------------------------------------------

class KVCache:
    """The keys and values (B, Hkv, S, D) one attention layer has seen, for
    incremental decoding. Grown in place (capacity doubles), so appending a
    token copies that token only, not the S cached ones."""

    def __init__(self):
        self._k = self._v = None
        self.length = 0

    def append(self, k: np.ndarray, v: np.ndarray):
        """Add k, v (B, Hkv, T, D); returns views of all S + T keys and values."""
        B, Hkv, T, D = k.shape
        need = self.length + T
        if self._k is None or self._k.shape[:2] != (B, Hkv) or self._k.shape[3] != D \
                or self._k.dtype != k.dtype:
            if self.length:
                raise ValueError(f"kv cache: expected keys (B, Hkv, T, D) = ({self._k.shape[0]}, "
                                 f"{self._k.shape[1]}, T, {self._k.shape[3]}) {self._k.dtype}, "
                                 f"got {tuple(k.shape)} {k.dtype}")
            self._k = np.empty((B, Hkv, max(need, 16), D), dtype=k.dtype)  # (B, Hkv, cap, D)
            self._v = np.empty_like(self._k)
        elif need > self._k.shape[2]:
            cap = max(need, 2 * self._k.shape[2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = np.empty((B, Hkv, cap, D), dtype=old.dtype)  # (B, Hkv, cap, D)
                new[:, :, :self.length] = old[:, :, :self.length]
                setattr(self, name, new)
        self._k[:, :, self.length:need] = k
        self._v[:, :, self.length:need] = v
        self.length = need
        return self._k[:, :, :need], self._v[:, :, :need]  # (B, Hkv, S + T, D) views


# -- attention ---------------------------------------------------------------------

def _heads(t: np.ndarray, n: int) -> np.ndarray:
    """(B, T, n*D) -> a (B, n, T, D) view."""
    B, T, C = t.shape
    return t.reshape(B, T, n, C // n).transpose(0, 2, 1, 3)  # (B, n, T, D)


class Attention(Module):
    """Self-attention with H query heads and Hkv key/value heads (grouped-query
    when Hkv < H), a fused projection Wqkv (C, (H + 2 Hkv) D) and output Wo
    (C, C), optional biases, optional rotary positions on q and k.

    Without rotary positions the fused ``mha_forward`` op does the whole layer
    (the Numba twin never copies the heads); with them the layer composes
    linear -> split heads -> rope(q), rope(k) -> attention -> merge -> linear,
    and the backward runs the same chain in reverse (rope's backward is the
    inverse rotation).

    ``dropout``: the probability of dropping an attention probability in
    training mode (BERT's attention_probs_dropout_prob; 0 in eval mode). The
    masks come from the layer's own generator ``rng`` (one key per forward),
    which ``Module.seed`` resets as it does nn.Dropout's, and inside
    ``nn.layers.batch_rows_from(r)`` they are those of rows ``r:`` of the
    whole batch, as nn.Dropout's are."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True,
                 rope: bool = False, rng=None, init_std: float = 0.02, dtype=np.float32,
                 dropout: float = 0.0):
        super().__init__()
        from numformer.nn.layers import normal
        from numformer.ops import _checks as chk
        if n_heads < 1 or dim % n_heads:
            raise ValueError(f"n_heads: expected a divisor of dim={dim}, got {n_heads}")
        Hkv = n_kv_heads or n_heads
        if n_heads % Hkv:
            raise ValueError(f"n_kv_heads: expected a divisor of n_heads={n_heads}, got {Hkv}")
        self.dropout = chk.probability("dropout", dropout)
        rng = _rng(rng)
        # the masks' generator: spawned, so the weights drawn below from rng are unchanged
        self.rng = rng.spawn(1)[0]
        D = dim // n_heads
        self.n_heads, self.n_kv_heads, self.rope = n_heads, Hkv, bool(rope)
        self.record_probs = False
        self.last_probs = None
        width = (n_heads + 2 * Hkv) * D
        self.Wqkv = Parameter(normal(rng, (dim, width), init_std, dtype))
        self.bqkv = Parameter(np.zeros(width, dtype=dtype)) if bias else None
        self.Wo = Parameter(normal(rng, (dim, dim), init_std, dtype))
        self.bo = Parameter(np.zeros(dim, dtype=dtype)) if bias else None

    def extra_repr(self):
        kv = f", n_kv_heads={self.n_kv_heads}" if self.n_kv_heads != self.n_heads else ""
        return (f"{self.Wo.shape[0]}, n_heads={self.n_heads}{kv}, bias={self.bqkv is not None}"
                + (", rope" if self.rope else "")
                + (f", dropout={self.dropout}" if self.dropout else ""))

    def _drop_kwargs(self, B: int, T: int, S: int) -> dict:
        """The attention op's dropout arguments for a (B, H, T, S) forward: none in
        eval mode or at p = 0; inside batch_rows_from(r), the offset of row r."""
        if not (self.training and self.dropout):
            return {}
        from numformer.nn.layers import _DROPOUT_ROW
        row = _DROPOUT_ROW.get()  # x's rows are rows row: of a batch (a data-parallel shard)
        return {"dropout": self.dropout, "rng": self.rng,
                "offset": row * self.n_heads * T * S}  # row r's first probability

    @staticmethod
    def _val(p):
        return None if p is None else p.value

    def _split(self, qkv):
        """q (B, H, T, D), k and v (B, Hkv, T, D): views of the projection."""
        H, Hkv = self.n_heads, self.n_kv_heads
        D = self.Wo.shape[0] // H
        q = _heads(qkv[..., :H * D], H)  # (B, H, T, D)
        k = _heads(qkv[..., H * D:(H + Hkv) * D], Hkv)  # (B, Hkv, T, D)
        v = _heads(qkv[..., (H + Hkv) * D:], Hkv)  # (B, Hkv, T, D)
        return q, k, v

    def _project(self, x, rope_tables, offset):
        """qkv projection (with its LoRA adapter if any), heads split, rotary
        positions applied to q and k."""
        from numformer.nn.lora import linear_fwd
        qkv, qkv_cache = linear_fwd(self, x, "Wqkv", "bqkv")  # (B, T, W)
        q, k, v = self._split(qkv)
        rq = rk = None
        if self.rope:
            if rope_tables is None:
                raise ValueError("rope: this attention layer rotates q and k; pass the model's "
                                 "rotary tables (cos, sin)")
            r = kernels.op("rope")
            q, rq = r.rope_forward(q, *rope_tables, offset)  # (B, H, T, D)
            k, rk = r.rope_forward(k, *rope_tables, offset)  # (B, Hkv, T, D)
        return q, k, v, qkv_cache, rq, rk

    def forward(self, x, key_mask=None, causal: bool = False, kv=None, rope_tables=None,
                offset: int = 0):
        """Self-attention over x (B, T, C). ``kv`` (a KVCache) holds the keys and
        values of earlier tokens: the new ones are appended and the queries
        attend to all S + T of them (incremental decoding; no backward).
        ``rope_tables`` (cos, sin) and ``offset`` (the position of x's first
        token) are needed when the layer uses rotary positions."""
        from numformer.nn.lora import has_adapters, linear_fwd
        f = kernels.op("attention")
        if self.record_probs:  # for pictures: keep this call's probabilities (B, H, T, S)
            object.__setattr__(self, "last_probs",
                               self.attention_probs(x, key_mask, causal, rope_tables, offset, kv))
        if kv is None and not self.rope and not has_adapters(self):
            out, cache = f.mha_forward(x, self.Wqkv.value, self._val(self.bqkv), self.Wo.value,
                                       self._val(self.bo), self.n_heads, key_mask, causal,
                                       **self._kv_kwargs(),
                                       **self._drop_kwargs(x.shape[0], x.shape[1], x.shape[1]))
            self._set_cache(("fused", f, cache))
            return out
        q, k, v, qkv_cache, rq, rk = self._project(x, rope_tables, offset)
        if kv is not None:
            self._set_cache(None)
            k, v = kv.append(k, v)  # (B, Hkv, S + T, D)
        o, attn_cache = f.attention_forward(q, k, v, key_mask=key_mask, causal=causal,
                                            **self._drop_kwargs(*q.shape[:1], q.shape[2],
                                                                k.shape[2]))
        B, H, T, D = o.shape
        merged = o.transpose(0, 2, 1, 3).reshape(B, T, H * D)  # (B, T, C)
        out, out_cache = linear_fwd(self, merged, "Wo", "bo")  # (B, T, C)
        if kv is None:
            self._set_cache(("composed", f, qkv_cache, rq, rk, attn_cache, out_cache, x.shape))
        return out

    def _kv_kwargs(self) -> dict:
        return {} if self.n_kv_heads == self.n_heads else {"n_kv_heads": self.n_kv_heads}

    def backward(self, dout):
        from numformer.nn.lora import linear_bwd
        cache = self._pop_cache()
        if cache[0] == "fused":
            _, f, c = cache
            dx, dWqkv, dbqkv, dWo, dbo = f.mha_backward(dout, c)
            accumulate(self.Wqkv, dWqkv)
            accumulate(self.Wo, dWo)
            if self.bqkv is not None:
                accumulate(self.bqkv, dbqkv)
                accumulate(self.bo, dbo)
            return dx
        _, f, qkv_cache, rq, rk, attn_cache, out_cache, xshape = cache
        # out = merge(o) @ Wo + bo
        dm = linear_bwd(self, dout, out_cache, "Wo", "bo")  # (B, T, C)
        do = _heads(dm, self.n_heads)  # (B, H, T, D)
        # o = attention(rope(q), rope(k), v)
        dq, dk, dv = f.attention_backward(do, attn_cache)
        B, T = xshape[0], xshape[1]
        dqkv = np.empty((B, T, self.Wqkv.shape[1]), dtype=dm.dtype)  # (B, T, W)
        gq, gk, gv = self._split(dqkv)
        if self.rope:
            r = kernels.op("rope")
            gq[...] = r.rope_backward(dq, rq)  # q_rot = rope(q)
            gk[...] = r.rope_backward(dk, rk)  # k_rot = rope(k)
        else:
            gq[...] = dq
            gk[...] = dk
        gv[...] = dv
        # qkv = x @ Wqkv + bqkv
        return linear_bwd(self, dqkv, qkv_cache, "Wqkv", "bqkv")

    def attention_probs(self, x, key_mask=None, causal: bool = False, rope_tables=None,
                        offset: int = 0, kv=None) -> np.ndarray:
        """The attention probabilities (B, H, T, S) for x, for pictures (no cache
        kept; with ``kv`` the cached keys come first, and the cache is not changed)."""
        from numformer.ops import attention as _attn
        q, k, v, _, _, _ = self._project(x, rope_tables, offset)
        if kv is not None and kv.length:
            k = np.concatenate([kv._k[:, :, :kv.length], k], axis=2)  # (B, Hkv, S + T, D)
            v = np.concatenate([kv._v[:, :, :kv.length], v], axis=2)
        group = self.n_heads // self.n_kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (B, H, S, D)
        _, (_, _, _, p, _) = _attn.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
        return p  # (B, H, T, S)


def attention_maps(model: Module, *inputs, **kwargs) -> list:
    """The attention probabilities of every attention layer in ``model`` (in
    module order) for one forward pass ``model(*inputs, **kwargs)`` in eval mode:
    a list of (B, H, T, T) arrays, for pictures. Nothing is kept for a backward."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    was = model.training
    model.eval()
    try:
        for m in layers:
            m.record_probs = True
        model(*inputs, **kwargs)
        return [m.last_probs for m in layers]
    finally:
        for m in layers:
            m.record_probs = False
            m.last_probs = None
        model.train(was)
