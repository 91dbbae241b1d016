"""BERT as a configuration of numformer's one Transformer stack: the architecture a
Hugging Face ``BertModel`` has, so that every pass has a hand-written backward.

Shapes: B batch, T sequence, C hidden size, V vocabulary, L positions,
S token types, K classes.

    ids, token_type_ids (B, T) -> tok[ids] + type[tt] + pos[t]               (B, T, C)
        -> LayerNorm (embed_norm) -> dropout                                (B, T, C)
        -> N post-LN blocks (attention, GELU feed-forward)                  (B, T, C)
    pooler: hidden[:, 0] -> Linear(C, C) -> tanh                            (B, C)

``bert_model_config(cfg)`` is the ``ModelConfig`` of a BertConfig (the "bert"
preset of numformer.nn.transformer.ARCHITECTURES with the file's sizes).

In training mode the attention probabilities are dropped with the file's
``attention_probs_dropout_prob`` (0.1 for all-MiniLM-L6-v2), as Hugging Face
does, and the hidden states with ``hidden_dropout_prob``; the one difference
is that numformer draws its own random masks. In eval mode (the default
after ``load_bert``) the two compute the same function.

Checkpoints written before BERT became a Transformer configuration named the
embeddings ``embeddings.{word,position,token_type,norm}``; ``load_state_dict``
still reads them (``LEGACY_NAMES``).
"""

from __future__ import annotations

import numpy as np

from numformer.nn import ClsPool, Dropout, Linear, MeanPool, Module
from numformer.nn.layers import Tanh
from numformer.nn.transformer import ModelConfig, Transformer, check_batch
from numformer.ops import _checks as chk
from numformer.ops.similarity import cosine_backward, cosine_forward
from numformer.pretrained.config import BertConfig

# old sub-module name -> name in the Transformer stack
LEGACY_NAMES = {"embeddings.word.": "tok.", "embeddings.position.": "pos.",
                "embeddings.token_type.": "type.", "embeddings.norm.": "embed_norm."}


def rename_legacy(state: dict) -> dict:
    """A state dict with the pre-Transformer BERT embedding names mapped to today's."""
    out = {}
    for name, value in state.items():
        for old, new in LEGACY_NAMES.items():
            if old in name:
                name = name.replace(old, new, 1)
                break
        out[name] = value
    return out


def bert_model_config(cfg: BertConfig) -> ModelConfig:
    """The Transformer configuration of a BERT."""
    return ModelConfig.for_arch(
        "bert", vocab_size=cfg.vocab_size, dim=cfg.hidden_size, n_heads=cfg.num_attention_heads,
        n_layers=cfg.num_hidden_layers, d_ff=cfg.intermediate_size,
        max_len=cfg.max_position_embeddings, dropout=cfg.hidden_dropout_prob,
        activation=cfg.activation, type_vocab_size=cfg.type_vocab_size, eps=cfg.layer_norm_eps,
        attn_dropout=cfg.attention_probs_dropout_prob)


# the model -----------------------------------------------------------------

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


class BertModel(Transformer):
    """A BERT encoder: ``forward(ids, key_mask, token_type_ids=None) -> hidden (B, T, C)``,
    ``backward(dhidden) -> None`` (gradients accumulate into the Parameters).

    A ``Transformer`` configured by ``bert_model_config``; ``cfg`` is the
    BertConfig (Hugging Face's fields), ``config`` the ModelConfig.
    ``pooler`` is a sub-module (its Parameters are the model's) that a head may
    call on the hidden states; its backward returns a dhidden to pass on to
    ``backward``. Random initialisation (std 0.02) is what ``load_bert``
    overwrites with the checkpoint.
    """

    def __init__(self, cfg: BertConfig, rng=None, dtype=np.float32):
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        super().__init__(bert_model_config(cfg), rng=rng, dtype=dtype)
        self.cfg = cfg
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
        return super().forward(ids, key_mask, token_type_ids=token_type_ids)  # (B, T, C)

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        super().load_state_dict(rename_legacy(state), strict)


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

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        super().load_state_dict(rename_legacy(state), strict)

    def backward(self, dlogits):
        dpooled = self.drop.backward(self.fc.backward(dlogits))  # (B, C)
        pool = self.bert.pooler if self.pooling == "pooler" else self.pool
        return self.bert.backward(pool.backward(dpooled))


def pair_inputs(bert: BertModel, ids, key_mask, token_type_ids, what: str):
    """(key_mask, token_type_ids) of a batch of text pairs checked for ``what`` (a
    model that scores pairs): token types given, each row with a second text."""
    if token_type_ids is None:
        raise ValueError(f"token_type_ids: {what} reads text pairs ([CLS] a [SEP] b [SEP], "
                         f"types 0 then 1), got None")
    if key_mask is None:
        key_mask = np.ones(np.shape(ids), dtype=bool)
    token_type_ids = bert.check_inputs(ids, key_mask, token_type_ids)
    empty = np.flatnonzero(~(key_mask & (token_type_ids == 1)).any(axis=1))
    if empty.size:
        raise ValueError(f"token_type_ids: row {empty[0]} has no second text (no token of "
                         f"type 1); {what} scores pairs")
    return key_mask, token_type_ids


class BertBiEncoder(Module):
    """A bi-encoder on a BERT: each text of a pair encoded alone, pooled, and the
    pair scored by the cosine of its two vectors (sentence-transformers'
    bi-encoder; pooling "mean" is its default).

    It reads a pair as a cross-encoder's input does, ``[CLS] a [SEP] b [SEP]``
    with token types 0 up to the first ``[SEP]`` and 1 after (so batches,
    evaluation and ``numformer predict`` are the cross-encoder's), and splits
    each row into ``[CLS] a [SEP]`` (its type-0 tokens) and ``[CLS] b [SEP]``
    (its first token, then its type-1 tokens), encoded with token type 0 in one
    batch of 2B rows.

        forward(ids, key_mask, token_type_ids)  (B, T) -> cosines (B, 1)
        backward(dcos (B, 1))                   fills every Parameter's grad
    """

    def __init__(self, bert: BertModel, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.bert = bert
        self.pool = {"mean": MeanPool, "cls": ClsPool, "pooler": lambda: None}[pooling]()

    def extra_repr(self):
        return f"pooling={self.pooling!r}, score=cosine"

    def split(self, ids, key_mask, token_type_ids):
        """(ids (2B, T2), key_mask (2B, T2)): the B first texts, then the B second (a
        batch pair_inputs has checked)."""
        B = ids.shape[0]
        parts = []
        for i in range(B):
            real = key_mask[i]
            parts.append((ids[i][real & (token_type_ids[i] == 0)],
                          ids[i][real & (token_type_ids[i] == 1)]))
        seqs = [a for a, _ in parts] + [np.concatenate([ids[i, :1], b])
                                        for i, (_, b) in enumerate(parts)]
        T2 = max(len(s) for s in seqs)
        out = np.zeros((2 * B, T2), dtype=np.int64)
        mask = np.zeros((2 * B, T2), dtype=bool)
        for r, s in enumerate(seqs):
            out[r, :len(s)], mask[r, :len(s)] = s, True
        return out, mask

    def forward(self, ids, key_mask=None, token_type_ids=None):
        key_mask, token_type_ids = pair_inputs(self.bert, ids, key_mask, token_type_ids,
                                               "a bi-encoder")
        x, km = self.split(ids, key_mask, token_type_ids)
        h = self.bert(x, km)  # (2B, T2, C)
        pooled = self.bert.pooler(h) if self.pooling == "pooler" else self.pool(h, km)  # (2B, C)
        B = ids.shape[0]
        c, cache = cosine_forward(pooled[:B], pooled[B:])  # (B,)
        self._set_cache(cache)
        return c[:, None]  # (B, 1)

    def backward(self, dcos):
        du, dv = cosine_backward(np.ascontiguousarray(dcos[:, 0]), self._pop_cache())  # (B, C)
        pool = self.bert.pooler if self.pooling == "pooler" else self.pool
        return self.bert.backward(pool.backward(np.concatenate([du, dv])))  # (2B, C) in

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        super().load_state_dict(rename_legacy(state), strict)


class BertCrossCosine(Module):
    """A cross-encoder scored by a cosine: the pair read as one sequence, ``[CLS] a
    [SEP] b [SEP]`` with token types 0/1 (each text attends to the other, as in a
    cross-encoder), then each text's own tokens mean-pooled from that joint
    encoding (type 0: ``[CLS] a [SEP]``; type 1: ``b [SEP]``) and the pair scored
    by the cosine of the two vectors, as a bi-encoder scores it. The head has no
    weights: the score starts from the pretrained geometry of a sentence encoder
    (all-MiniLM-L6-v2) rather than from a random linear layer.

        forward(ids, key_mask, token_type_ids)  (B, T) -> cosines (B, 1)
        backward(dcos (B, 1))                   fills every Parameter's grad
    """

    def __init__(self, bert: BertModel):
        super().__init__()
        self.bert = bert
        self.pool = MeanPool()

    def extra_repr(self):
        return "pooling='mean' per text, score=cosine"

    def forward(self, ids, key_mask=None, token_type_ids=None):
        key_mask, token_type_ids = pair_inputs(self.bert, ids, key_mask, token_type_ids,
                                               "a cross-encoder with a cosine")
        h = self.bert(ids, key_mask, token_type_ids)  # (B, T, C)
        B = ids.shape[0]
        masks = np.concatenate([key_mask & (token_type_ids == 0),
                                key_mask & (token_type_ids == 1)])  # (2B, T)
        pooled = self.pool(np.concatenate([h, h]), masks)  # (2B, C)
        c, cache = cosine_forward(pooled[:B], pooled[B:])  # (B,)
        self._set_cache(cache)
        return c[:, None]  # (B, 1)

    def backward(self, dcos):
        du, dv = cosine_backward(np.ascontiguousarray(dcos[:, 0]), self._pop_cache())  # (B, C)
        dh2 = self.pool.backward(np.concatenate([du, dv]))  # (2B, T, C)
        B = du.shape[0]
        return self.bert.backward(dh2[:B] + dh2[B:])  # (B, T, C): both texts' share

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        super().load_state_dict(rename_legacy(state), strict)

