"""BERT as numformer modules: the architecture a Hugging Face ``BertModel`` has,
built from numformer's own layers so that every pass has a hand-written backward.

Shapes: B batch, T sequence, C hidden size, V vocabulary, L positions,
S token types, K classes.

    ids, token_type_ids (B, T) -> word[ids] + token_type[tt] + position[t]   (B, T, C)
        -> LayerNorm -> dropout                                             (B, T, C)
        -> N post-LN EncoderBlocks (attention, GELU feed-forward)           (B, T, C)
    pooler: hidden[:, 0] -> Linear(C, C) -> tanh                            (B, C)

Differences from Hugging Face, both only in training mode: numformer's
attention has no dropout on the attention probabilities, and dropout draws
its own random masks. In eval mode (the default after ``load_bert``) the two
compute the same function.
"""

from __future__ import annotations

import numpy as np

from numformer.nn import (ClsPool, Dropout, Embedding, Encoder, LayerNorm, LearnedPositions,
                          Linear, MeanPool, Module)
from numformer.nn.layers import Tanh, _rng
from numformer.nn.models import check_batch
from numformer.ops import _checks as chk
from numformer.pretrained.config import BertConfig


# the model -----------------------------------------------------------------

class BertEmbeddings(Module):
    """Word + token-type + learned position embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig, rng=None, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        C = cfg.hidden_size
        self.word = Embedding(cfg.vocab_size, C, rng=rng, dtype=dtype)
        self.position = LearnedPositions(cfg.max_position_embeddings, C, rng=rng, dtype=dtype)
        self.token_type = Embedding(cfg.type_vocab_size, C, rng=rng, dtype=dtype)
        self.norm = LayerNorm(C, cfg.layer_norm_eps, dtype=dtype)
        self.drop = Dropout(cfg.hidden_dropout_prob, seed=rng.integers(2**32))

    def forward(self, ids, token_type_ids):
        x = self.word(ids) + self.token_type(token_type_ids)  # (B, T, C)
        x = self.position(x)  # (B, T, C)
        return self.drop(self.norm(x))  # (B, T, C)

    def backward(self, dout):
        # out = Drop(LN(word[ids] + type[tt] + P[:T]))
        dx = self.position.backward(self.norm.backward(self.drop.backward(dout)))  # (B, T, C)
        self.word.backward(dx)
        self.token_type.backward(dx)
        return None  # ids have no gradient


class BertPooler(Module):
    """BERT's pooler: ``tanh(hidden[:, 0] @ W + b)``, (B, T, C) -> (B, C)."""

    def __init__(self, cfg: BertConfig, rng=None, dtype=np.float32):
        super().__init__()
        self.first = ClsPool()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size, rng=rng, dtype=dtype)
        self.act = Tanh()

    def forward(self, hidden, key_mask=None):
        return self.act(self.dense(self.first(hidden)))  # (B, C)

    def backward(self, dout):
        return self.first.backward(self.dense.backward(self.act.backward(dout)))  # (B, T, C)


class BertModel(Module):
    """A BERT encoder: ``forward(ids, key_mask, token_type_ids=None) -> hidden (B, T, C)``,
    ``backward(dhidden) -> None`` (gradients accumulate into the Parameters).

    ``pooler`` is a sub-module (its Parameters are the model's) that a head may
    call on the hidden states; its backward returns a dhidden to pass on to
    ``backward``. Random initialisation (std 0.02) is what ``load_bert``
    overwrites with the checkpoint.
    """

    def __init__(self, cfg: BertConfig, rng=None, dtype=np.float32):
        super().__init__()
        rng = _rng(rng)
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg, rng, dtype)
        self.encoder = Encoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
                               cfg.intermediate_size, dropout=cfg.hidden_dropout_prob,
                               norm_first=False, activation=cfg.activation, rng=rng,
                               eps=cfg.layer_norm_eps, dtype=dtype)
        self.pooler = BertPooler(cfg, rng, dtype)

    def extra_repr(self):
        c = self.cfg
        return (f"layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}, vocab={c.vocab_size}")

    def check_inputs(self, ids, key_mask, token_type_ids):
        """Validate a batch; returns token_type_ids (zeros when None)."""
        check_batch(ids, key_mask)
        V, L, S = self.cfg.vocab_size, self.cfg.max_position_embeddings, self.cfg.type_vocab_size
        chk.int_ids("ids", ids, V)
        if ids.shape[1] > L:
            raise ValueError(f"ids: expected at most {L} tokens per sequence (the position "
                             f"table), got shape {tuple(ids.shape)}")
        if token_type_ids is None:
            return np.zeros(ids.shape, dtype=np.int64)  # (B, T)
        chk.int_ids("token_type_ids", token_type_ids, S)
        chk.shape("token_type_ids", token_type_ids, ids.shape, "(B, T) like ids")
        return token_type_ids

    def forward(self, ids, key_mask=None, token_type_ids=None):
        token_type_ids = self.check_inputs(ids, key_mask, token_type_ids)
        x = self.embeddings(ids, token_type_ids)  # (B, T, C)
        return self.encoder(x, key_mask)  # (B, T, C)

    def backward(self, dhidden):
        self.embeddings.backward(self.encoder.backward(dhidden))
        return None


POOLINGS = ("mean", "cls", "pooler")


class BertClassifier(Module):
    """A classification head on a BERT: pool -> dropout -> Linear(C, K) logits.

    pooling: "mean" (over real tokens, as sentence-transformers pools),
    "cls" (the first token's hidden state) or "pooler" (BERT's tanh pooler on
    the first token). ``forward(ids, key_mask, token_type_ids=None) -> (B, K)``;
    ``backward(dlogits)`` fills every Parameter's grad, the encoder's included.
    """

    def __init__(self, bert: BertModel, n_classes: int, pooling: str = "mean",
                 dropout: float | None = None, seed: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
                or n_classes < 1:
            raise ValueError(f"n_classes: expected a positive integer, got {n_classes!r}")
        rng = np.random.default_rng(seed)
        self.pooling = pooling
        self.bert = bert
        self.pool = {"mean": MeanPool, "cls": ClsPool, "pooler": lambda: None}[pooling]()
        p = bert.cfg.hidden_dropout_prob if dropout is None else dropout
        self.drop = Dropout(chk.probability("dropout", p), seed=rng.integers(2**32))
        self.fc = Linear(bert.cfg.hidden_size, int(n_classes), rng=rng, dtype=bert.dtype)

    def extra_repr(self):
        return f"pooling={self.pooling!r}, classes={self.fc.weight.shape[1]}"

    def forward(self, ids, key_mask=None, token_type_ids=None):
        h = self.bert(ids, key_mask, token_type_ids)  # (B, T, C)
        pooled = self.bert.pooler(h) if self.pooling == "pooler" else self.pool(h, key_mask)  # (B, C)
        return self.fc(self.drop(pooled))  # (B, K)

    def backward(self, dlogits):
        dpooled = self.drop.backward(self.fc.backward(dlogits))  # (B, C)
        pool = self.bert.pooler if self.pooling == "pooler" else self.pool
        return self.bert.backward(pool.backward(dpooled))
