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

from numformer.nn.attention import Attention, KVCache, attention_maps  # noqa: F401
from numformer.nn.module import Module
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
    attn_dropout: float = 0.0       # dropout on the attention probabilities (BERT: 0.1)

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
        chk.probability("attn_dropout", self.attn_dropout)
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
        d = dataclasses.asdict(self)
        if not d["attn_dropout"]:  # as configs written before the field: their resumes compare equal
            del d["attn_dropout"]
        return d

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
                               rope=cfg.positional == "rope", attn_dropout=cfg.attn_dropout)
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
