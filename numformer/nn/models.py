"""Models: the heads on the configurable Transformer stack (numformer.nn.transformer).

Shapes: ids (B, T) integer, key_mask (B, T) bool (True for real tokens),
hidden (B, T, C), N masked positions, V vocabulary, K classes.
"""

from __future__ import annotations

import numpy as np

from numformer import kernels
from numformer.nn.layers import POOLINGS, Dropout, LayerNorm, Linear, _rng, make_activation
from numformer.nn.module import Module, Parameter, accumulate
from numformer.nn.transformer import ModelConfig, Transformer, TransformerEncoder, check_batch
from numformer.ops import _checks as chk
from numformer.ops._alloc import matmul

__all__ = ["ModelConfig", "Transformer", "TransformerEncoder", "check_batch", "MLMHead",
           "MaskedLM", "Classifier", "WithLoss"]


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
        self.body = Transformer(cfg, rng=rng, dtype=dtype)
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
        self.body = Transformer(cfg, rng=rng, dtype=dtype)
        self.pool = POOLINGS[cfg.pooling]()
        self.drop = Dropout(cfg.dropout, seed=rng.integers(2**32))
        self.fc = Linear(cfg.dim, cfg.n_classes, rng=rng, init_std=cfg.init_std, dtype=dtype)

    def forward(self, ids, key_mask=None, token_type_ids=None):
        """Logits (B, K); ``token_type_ids`` (B, T) for a pair (cfg.type_vocab_size 2)."""
        h = self.body(ids, key_mask, token_type_ids=token_type_ids)  # (B, T, C)
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
