"""Models: the embedding front, the encoder stack and the heads.

Shapes: ids (B, T) integer, key_mask (B, T) bool (True for real tokens),
hidden (B, T, C), N masked positions, V vocabulary, K classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from numformer import kernels
from numformer.nn.blocks import Encoder
from numformer.nn.layers import (POOLINGS, Dropout, Embedding, LayerNorm, LearnedPositions,
                                 Linear, SinusoidalPositions, _rng, make_activation)
from numformer.nn.module import Module, Parameter, accumulate
from numformer.ops import _checks as chk
from numformer.ops._alloc import matmul


@dataclass
class ModelConfig:
    """Every size and choice of a model; saved beside its weights."""
    vocab_size: int
    dim: int = 128                  # C
    n_heads: int = 4                # H
    n_layers: int = 2
    d_ff: int = 512                 # F
    max_len: int = 512              # L, the positional table
    dropout: float = 0.1
    norm_first: bool = False        # pre-LN if True, post-LN if False
    activation: str = "gelu"        # relu | gelu | gelu_tanh
    positional: str = "learned"     # learned | sinusoidal
    scale_embedding: bool = False   # multiply token embeddings by sqrt(C)
    embed_norm: bool = False        # LayerNorm after the embeddings (BERT)
    tie_weights: bool = True        # MLM/LM decoder shares the token embedding
    n_classes: int = 2              # K, classifier only
    pooling: str = "mean"           # mean | cls, classifier only
    init_std: float = 0.02
    eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "dim", "n_heads", "n_layers", "d_ff", "max_len", "n_classes"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of dim={self.dim}, got {self.n_heads}")
        if self.positional not in ("learned", "sinusoidal"):
            raise ValueError(f"positional: expected 'learned' or 'sinusoidal', "
                             f"got {self.positional!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {sorted(POOLINGS)}, got {self.pooling!r}")
        chk.probability("dropout", self.dropout)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"ModelConfig: unknown fields {unknown}")
        return cls(**d)


def check_batch(ids, key_mask):
    """ids must be an integer (B, T) array; key_mask None or bool (B, T)."""
    if not isinstance(ids, np.ndarray) or not np.issubdtype(ids.dtype, np.integer):
        got = ids.dtype if isinstance(ids, np.ndarray) else type(ids).__name__
        raise ValueError(f"ids: expected an integer numpy array (B, T), got {got}")
    chk.ndim("ids", ids, 2, "(B, T)")
    if key_mask is not None:
        chk.bool_mask("key_mask", key_mask, ids.shape, "(B, T)")


class TransformerEncoder(Module):
    """ids -> token embedding (+ positions) -> [LayerNorm] -> dropout -> Encoder -> hidden."""

    def __init__(self, cfg: ModelConfig, rng=None, causal: bool = False, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        self.cfg = cfg
        self.tok = Embedding(cfg.vocab_size, cfg.dim, rng=rng, init_std=cfg.init_std, dtype=dtype)
        if cfg.positional == "learned":
            self.pos = LearnedPositions(cfg.max_len, cfg.dim, rng=rng, init_std=cfg.init_std,
                                        dtype=dtype)
        else:
            self.pos = SinusoidalPositions(cfg.max_len, cfg.dim, dtype=dtype)
        self.embed_norm = LayerNorm(cfg.dim, cfg.eps, dtype=dtype) if cfg.embed_norm else None
        self.drop = Dropout(cfg.dropout, seed=rng.integers(2**32))
        self.encoder = Encoder(cfg.n_layers, cfg.dim, cfg.n_heads, cfg.d_ff, cfg.dropout,
                               cfg.norm_first, cfg.activation, causal, rng, cfg.init_std,
                               cfg.eps, dtype)

    def embed(self, ids, offset: int = 0):
        x = self.tok(ids)  # (B, T, C)
        if self.cfg.scale_embedding:
            x = x * x.dtype.type(np.sqrt(self.cfg.dim))
        x = self.pos(x, offset)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.drop(x)  # (B, T, C)

    def embed_backward(self, dx) -> None:
        dx = self.drop.backward(dx)
        if self.embed_norm is not None:
            dx = self.embed_norm.backward(dx)
        dx = self.pos.backward(dx)
        if self.cfg.scale_embedding:
            dx = dx * dx.dtype.type(np.sqrt(self.cfg.dim))
        self.tok.backward(dx)

    def forward(self, ids, key_mask=None, kv_cache=None):
        """Hidden states (B, T, C). With ``kv_cache`` (see CausalLM), ids are the
        tokens that follow those already cached, and take the next positions."""
        check_batch(ids, key_mask)
        offset = 0
        if kv_cache is not None and kv_cache[0][0] is not None:
            offset = kv_cache[0][0].shape[2]
            if key_mask is not None:
                raise ValueError("key_mask: not supported with a key-value cache")
        return self.encoder(self.embed(ids, offset), key_mask, kv_cache)  # (B, T, C)

    def backward(self, dh):
        self.embed_backward(self.encoder.backward(dh))
        return None


class MLMHead(Module):
    """Dense -> activation -> LayerNorm -> decoder to V logits (BERT's head).
    The decoder weight is the token embedding (V, C) when ``tied`` is given."""

    def __init__(self, cfg: ModelConfig, tied: Parameter | None = None, rng=None,
                 dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        self.dense = Linear(cfg.dim, cfg.dim, rng=rng, init_std=cfg.init_std, dtype=dtype)
        self.act = make_activation(cfg.activation)
        self.norm = LayerNorm(cfg.dim, cfg.eps, dtype=dtype)
        if tied is not None:
            self.decoder_weight = tied  # (V, C), shared with the embedding
            self.decoder = None
        else:
            self.decoder = Linear(cfg.dim, cfg.vocab_size, bias=False, rng=rng, init_std=cfg.init_std,
                                  dtype=dtype)
        self.decoder_bias = Parameter(np.zeros(cfg.vocab_size, dtype=dtype))

    def forward(self, h):
        z = self.norm(self.act(self.dense(h)))  # (N, C)
        if self.decoder is not None:
            out = self.decoder(z)  # (N, V)
            out += self.decoder_bias.value
            return out
        out, _ = kernels.op("linear").linear_forward(z, self.decoder_weight.value.T,
                                                     self.decoder_bias.value)  # (N, V)
        self._set_cache(z)  # the backward below needs only z (and E, the Parameter)
        return out

    def backward(self, dlogits):
        if self.decoder is not None:
            dz = self.decoder.backward(dlogits)
            accumulate(self.decoder_bias, dlogits.reshape(-1, dlogits.shape[-1]).sum(axis=0))
        else:
            z = self._pop_cache()  # (N, C)
            # logits = z @ E^T + b; dE comes out in E's (V, C) layout, no transposed add
            E = self.decoder_weight.value
            dz = matmul(dlogits, E)  # (N, C)
            accumulate(self.decoder_weight, matmul(dlogits.T, z))  # (V, C)
            accumulate(self.decoder_bias, dlogits.sum(axis=0))
        return self.dense.backward(self.act.backward(self.norm.backward(dz)))


class MaskedLM(Module):
    """BERT-style masked-LM: vocabulary logits only at the chosen positions.

    ``forward(ids, key_mask, positions)``: positions are flat indices into the
    B*T tokens (``np.flatnonzero`` of the chosen mask); the logits are (N, V).
    With ``positions=None`` every position gets logits, (B, T, V).
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.body = TransformerEncoder(cfg, rng=rng, dtype=dtype)
        self.head = MLMHead(cfg, tied=self.body.tok.weight if cfg.tie_weights else None,
                            rng=rng, dtype=dtype)

    def forward(self, ids, key_mask=None, positions=None):
        h = self.body(ids, key_mask)  # (B, T, C)
        B, T, C = h.shape
        if positions is None:
            self._set_cache(("all", h.shape))
            return self.head(h)  # (B, T, V)
        chk.int_ids("positions", positions, B * T)
        # gather the chosen rows: the embedding op on the flattened activations
        f = kernels.op("embedding")
        g, gcache = f.embedding_forward(positions, h.reshape(B * T, C))  # (N, C)
        self._set_cache((f, gcache, h.shape))
        return self.head(g)  # (N, V)

    def backward(self, dlogits):
        cache = self._pop_cache()
        dg = self.head.backward(dlogits)
        if cache[0] == "all":
            dh = dg
        else:
            f, gcache, hshape = cache
            dh = f.embedding_backward(dg, gcache).reshape(hshape)  # (B, T, C)
        return self.body.backward(dh)


class Classifier(Module):
    """Sequence classifier: encoder -> pooling (mean over real tokens | first token)
    -> dropout -> Linear(C, K) logits."""

    def __init__(self, cfg: ModelConfig, seed: int = 0, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.body = TransformerEncoder(cfg, rng=rng, dtype=dtype)
        self.pool = POOLINGS[cfg.pooling]()
        self.drop = Dropout(cfg.dropout, seed=rng.integers(2**32))
        self.fc = Linear(cfg.dim, cfg.n_classes, rng=rng, init_std=cfg.init_std, dtype=dtype)

    def forward(self, ids, key_mask=None):
        h = self.body(ids, key_mask)  # (B, T, C)
        return self.fc(self.drop(self.pool(h, key_mask)))  # (B, K)

    def backward(self, dlogits):
        return self.body.backward(self.pool.backward(self.drop.backward(self.fc.backward(dlogits))))


class WithLoss(Module):
    """A model followed by a loss: ``forward(*inputs, targets=...) -> scalar loss``,
    ``backward(dloss=1.0)`` runs the model's backward."""

    def __init__(self, model: Module, loss: Module):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *inputs, targets, **kwargs):
        return self.loss(self.model(*inputs, **kwargs), targets)

    def backward(self, dloss=1.0):
        return self.model.backward(self.loss.backward(dloss))
