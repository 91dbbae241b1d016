"""One configurable transformer: BERT, the char LM and a Llama decoder are configurations.

Shapes: B batch, T sequence (new tokens), S cached tokens, C channels
(d_model), H query heads, Hkv key/value heads (Hkv divides H), D = C // H,
F feed-forward width, V vocabulary, L the positional table (or rotary
table) length.

    ids (B, T) -> tok[ids] [+ type[token_type_ids]] [* sqrt(C)] [+ positions]   (B, T, C)
               -> [embed_norm] -> dropout                                       (B, T, C)
               -> n_layers x Block (attention, feed-forward, norm, residual)    (B, T, C)
               -> [final norm] (pre-norm stacks)                                 (B, T, C)

The choices a family makes are fields of one ``ModelConfig``:

    field        BERT / MiniLM      char LM (GPT-2 style)   Llama / SmolLM2
    norm         layernorm          layernorm               rmsnorm
    positional   learned            learned                 rope (rope_base)
    ffn          mlp (gelu)         mlp (gelu)              swiglu
    n_kv_heads   = n_heads          = n_heads               < n_heads (grouped-query)
    bias         yes                yes                     no
    norm_first   no (post-LN)       yes (pre-LN)            yes (pre-norm)
    causal       no                 yes                     yes
    embed_norm   yes                no                      no
    tie_weights  (MLM decoder)      optional                yes (SmolLM2)
    type_vocab   2                  0                       0

``ARCHITECTURES`` holds these as presets (``ModelConfig.for_arch("llama", ...)``).
The sub-module names (``tok``, ``pos``, ``type``, ``embed_norm``, ``encoder.blocks.i``,
``encoder.final_norm``) are the names every numformer checkpoint has used, so
checkpoints written before this stack existed load into it unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from numformer import kernels
from numformer.nn.module import Module, Parameter, accumulate
from numformer.ops import _checks as chk

NORMS = ("layernorm", "rmsnorm")
POSITIONALS = ("learned", "sinusoidal", "rope", "none")
FFNS = ("mlp", "swiglu")
ACTIVATION_NAMES = ("relu", "gelu", "gelu_tanh", "silu")
POOLING_NAMES = ("mean", "cls")


@dataclass
class ModelConfig:
    """Every size and choice of a model; saved beside its weights."""
    vocab_size: int
    dim: int = 128                  # C
    n_heads: int = 4                # H
    n_layers: int = 2
    d_ff: int = 512                 # F
    max_len: int = 512              # L, the positional (or rotary) table
    dropout: float = 0.1
    norm_first: bool = False        # pre-LN if True, post-LN if False
    activation: str = "gelu"        # relu | gelu | gelu_tanh | silu (the MLP's; swiglu uses SiLU)
    positional: str = "learned"     # learned | sinusoidal | rope | none
    scale_embedding: bool = False   # multiply token embeddings by sqrt(C)
    embed_norm: bool = False        # a norm after the embeddings (BERT)
    tie_weights: bool = True        # MLM/LM decoder shares the token embedding
    n_classes: int = 2              # K, classifier only
    pooling: str = "mean"           # mean | cls, classifier only
    init_std: float = 0.02
    eps: float = 1e-5
    norm: str = "layernorm"         # layernorm | rmsnorm
    ffn: str = "mlp"                # mlp (Linear, activation, Linear) | swiglu
    n_kv_heads: int = 0             # Hkv key/value heads (0 = n_heads); must divide n_heads
    bias: bool = True               # biases in the attention and MLP projections
    rope_base: float = 10000.0      # positional == "rope": angle t * base^(-2i/D)
    causal: bool = False            # causal attention (decoders)
    type_vocab_size: int = 0        # token-type (segment) embeddings, BERT: 2

    def __post_init__(self):
        for name in ("vocab_size", "dim", "n_heads", "n_layers", "d_ff", "max_len", "n_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("n_kv_heads", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of dim={self.dim}, got {self.n_heads}")
        if self.n_kv_heads and self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads: expected a divisor of n_heads={self.n_heads}, "
                             f"got {self.n_kv_heads}")
        for name, allowed in (("norm", NORMS), ("positional", POSITIONALS), ("ffn", FFNS),
                              ("activation", ACTIVATION_NAMES), ("pooling", POOLING_NAMES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.positional == "rope" and (self.dim // self.n_heads) % 2:
            raise ValueError(f"positional: rope needs an even head width dim/n_heads, got "
                             f"{self.dim}/{self.n_heads} = {self.dim // self.n_heads}")
        chk.probability("dropout", self.dropout)
        for name in ("eps", "rope_base", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a finite positive number, got {value!r}")

    @property
    def kv_heads(self) -> int:
        """Hkv: the number of key/value heads."""
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From a saved dict; fields added since it was written take their
        defaults, which reproduce the model it was saved from."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"ModelConfig: unknown fields {unknown} (a checkpoint of a newer "
                             f"numformer?)")
        return cls(**d)

    @classmethod
    def for_arch(cls, arch: str, **fields) -> "ModelConfig":
        """The preset of an architecture family (``ARCHITECTURES``) with ``fields`` on top."""
        if arch not in ARCHITECTURES:
            raise ValueError(f"arch: expected one of {sorted(ARCHITECTURES)}, got {arch!r}")
        return cls(**{**ARCHITECTURES[arch], **fields})


# The choices of each family (sizes come from the caller).
ARCHITECTURES = {
    "bert": dict(norm="layernorm", positional="learned", ffn="mlp", activation="gelu",
                 bias=True, norm_first=False, causal=False, embed_norm=True, type_vocab_size=2,
                 eps=1e-12),
    "gpt": dict(norm="layernorm", positional="learned", ffn="mlp", activation="gelu",
                bias=True, norm_first=True, causal=True),
    "llama": dict(norm="rmsnorm", positional="rope", ffn="swiglu", activation="silu",
                  bias=False, norm_first=True, causal=True, tie_weights=True, dropout=0.0,
                  rope_base=10000.0),
}


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def make_norm(kind: str, dim: int, eps: float, dtype) -> Module:
    if kind == "layernorm":
        from numformer.nn.layers import LayerNorm
        return LayerNorm(dim, eps, dtype=dtype)
    if kind == "rmsnorm":
        from numformer.nn.modern import RMSNorm
        return RMSNorm(dim, eps, dtype=dtype)
    raise ValueError(f"norm: expected one of {list(NORMS)}, got {kind!r}")


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
    inverse rotation)."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True,
                 rope: bool = False, rng=None, init_std: float = 0.02, dtype=np.float32):
        super().__init__()
        from numformer.nn.layers import normal
        if n_heads < 1 or dim % n_heads:
            raise ValueError(f"n_heads: expected a divisor of dim={dim}, got {n_heads}")
        Hkv = n_kv_heads or n_heads
        if n_heads % Hkv:
            raise ValueError(f"n_kv_heads: expected a divisor of n_heads={n_heads}, got {Hkv}")
        rng = _rng(rng)
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
                + (", rope" if self.rope else ""))

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
                                       **self._kv_kwargs())
            self._set_cache(("fused", f, cache))
            return out
        q, k, v, qkv_cache, rq, rk = self._project(x, rope_tables, offset)
        if kv is not None:
            self._set_cache(None)
            k, v = kv.append(k, v)  # (B, Hkv, S + T, D)
        o, attn_cache = f.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
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


# -- the stack -------------------------------------------------------------------------

def check_batch(ids, key_mask):
    """ids must be an integer (B, T) array; key_mask None or bool (B, T)."""
    if not isinstance(ids, np.ndarray) or not np.issubdtype(ids.dtype, np.integer):
        got = ids.dtype if isinstance(ids, np.ndarray) else type(ids).__name__
        raise ValueError(f"ids: expected an integer numpy array (B, T), got {got}")
    chk.ndim("ids", ids, 2, "(B, T)")
    if key_mask is not None:
        chk.bool_mask("key_mask", key_mask, ids.shape, "(B, T)")


class Transformer(Module):
    """ids -> embeddings -> blocks -> hidden states (B, T, C), configured by a ModelConfig.

    ``forward(ids, key_mask=None, kv_cache=None, token_type_ids=None)``;
    ``backward(dhidden)`` fills the Parameters' gradients. With ``kv_cache``
    (``new_cache()``, extended in place) ids are the tokens that follow the
    cached ones and take the next positions (inference only)."""

    def __init__(self, cfg: ModelConfig, rng=None, causal: bool | None = None, dtype=np.float32):
        super().__init__()
        from numformer.nn.blocks import Encoder
        from numformer.nn.layers import (Dropout, Embedding, LearnedPositions,
                                         SinusoidalPositions)
        rng = _rng(rng)
        self.cfg = self.config = cfg
        self.causal = cfg.causal if causal is None else bool(causal)
        self.tok = Embedding(cfg.vocab_size, cfg.dim, rng=rng, init_std=cfg.init_std, dtype=dtype)
        if cfg.positional == "learned":
            self.pos = LearnedPositions(cfg.max_len, cfg.dim, rng=rng, init_std=cfg.init_std,
                                        dtype=dtype)
        elif cfg.positional == "sinusoidal":
            self.pos = SinusoidalPositions(cfg.max_len, cfg.dim, dtype=dtype)
        else:
            self.pos = None
        self.type = (Embedding(cfg.type_vocab_size, cfg.dim, rng=rng, init_std=cfg.init_std,
                               dtype=dtype) if cfg.type_vocab_size else None)
        self.embed_norm = make_norm(cfg.norm, cfg.dim, cfg.eps, dtype) if cfg.embed_norm else None
        self.drop = Dropout(cfg.dropout, seed=rng.integers(2**32))
        self.encoder = Encoder(cfg.n_layers, cfg.dim, cfg.n_heads, cfg.d_ff, cfg.dropout,
                               cfg.norm_first, cfg.activation, self.causal, rng, cfg.init_std,
                               cfg.eps, dtype, norm=cfg.norm, ffn=cfg.ffn,
                               n_kv_heads=cfg.kv_heads, bias=cfg.bias,
                               rope=cfg.positional == "rope")
        if cfg.positional == "rope":
            from numformer.ops.rope import rope_tables
            cos, sin = rope_tables(cfg.max_len, cfg.head_dim, cfg.rope_base, dtype)  # (L, D/2)
            self.register_buffer("rope_cos", cos)
            self.register_buffer("rope_sin", sin)

    def extra_repr(self):
        c = self.config
        return (f"layers={c.n_layers}, dim={c.dim}, heads={c.n_heads}/{c.kv_heads}, "
                f"norm={c.norm}, positional={c.positional}, ffn={c.ffn}, "
                f"{'causal' if self.causal else 'bidirectional'}")

    def rope_tables(self):
        return (self.rope_cos, self.rope_sin) if self.config.positional == "rope" else None

    def embed(self, ids, offset: int = 0, token_type_ids=None):
        x = self.tok(ids)  # (B, T, C)
        if self.type is not None:
            tt = np.zeros(ids.shape, dtype=np.int64) if token_type_ids is None else token_type_ids
            x = x + self.type(tt)  # (B, T, C)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids: this model has no token-type embeddings "
                             "(type_vocab_size 0)")
        if self.config.scale_embedding:
            x = x * x.dtype.type(np.sqrt(self.config.dim))
        if self.pos is not None:
            x = self.pos(x, offset)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.drop(x)  # (B, T, C)

    def embed_backward(self, dx) -> None:
        dx = self.drop.backward(dx)
        if self.embed_norm is not None:
            dx = self.embed_norm.backward(dx)
        if self.pos is not None:
            dx = self.pos.backward(dx)
        if self.config.scale_embedding:
            dx = dx * dx.dtype.type(np.sqrt(self.config.dim))
        self.tok.backward(dx)
        if self.type is not None:
            self.type.backward(dx)

    def new_cache(self) -> list:
        """An empty key-value cache: one KVCache per block."""
        return [KVCache() for _ in self.encoder.blocks]

    def forward(self, ids, key_mask=None, kv_cache=None, token_type_ids=None):
        """Hidden states (B, T, C)."""
        check_batch(ids, key_mask)
        offset = 0
        if kv_cache is not None:
            if self.training:
                raise RuntimeError("kv_cache: the key-value cache is for inference; call "
                                   "eval() first")
            if len(kv_cache) != len(self.encoder.blocks):
                raise ValueError(f"kv_cache: expected {len(self.encoder.blocks)} layer caches "
                                 f"(model.new_cache()), got {len(kv_cache)}")
            offset = kv_cache[0].length
            if key_mask is not None and offset:
                raise ValueError("key_mask: not supported once the key-value cache holds tokens")
        if self.config.positional != "none" and offset + ids.shape[1] > self.config.max_len:
            raise ValueError(f"ids: positions {offset}..{offset + ids.shape[1] - 1} are longer "
                             f"than the positional table ({self.config.max_len} positions)")
        x = self.embed(ids, offset, token_type_ids)  # (B, T, C)
        return self.encoder(x, key_mask, kv_cache, rope_tables=self.rope_tables(),
                            offset=offset)  # (B, T, C)

    def backward(self, dh):
        self.embed_backward(self.encoder.backward(dh))
        return None


TransformerEncoder = Transformer  # the name this stack had before it was configurable
