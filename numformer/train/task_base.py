"""What the three training tasks share: the model configuration from a
TrainConfig, tokenizers saved in and restored from checkpoints, how a
classifier encodes one text, seeded splits and lazily built epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numformer import nn
from numformer.data.tokenizers import ByteTokenizer, WordTokenizer
from numformer.train.config import TrainConfig

EVAL_BATCH = 64


def model_config(cfg: TrainConfig, vocab_size: int, n_classes: int = 2) -> nn.ModelConfig:
    return nn.ModelConfig(vocab_size=vocab_size, dim=cfg.dim, n_heads=cfg.n_heads,
                          n_layers=cfg.n_layers, d_ff=cfg.d_ff, max_len=cfg.max_len,
                          dropout=cfg.dropout, norm_first=cfg.norm_first,
                          activation=cfg.activation, positional=cfg.positional,
                          tie_weights=cfg.tie_weights, n_classes=n_classes, pooling=cfg.pooling)


def tokenizer_meta(tok) -> dict:
    if isinstance(tok, ByteTokenizer):
        return {"kind": "byte"}
    if isinstance(tok, WordTokenizer):
        return {"kind": "word", "tokens": tok.tokens()}
    return {"kind": "wordpiece", "settings": tok.settings()}


def tokenizer_from_meta(d: dict):
    if d.get("kind") == "byte":
        return ByteTokenizer()
    if d.get("kind") == "word":
        return WordTokenizer(d["tokens"])
    if d.get("kind") == "wordpiece":
        from numformer.pretrained.wordpiece import WordPieceTokenizer
        return WordPieceTokenizer(**d["settings"])
    raise ValueError(f"checkpoint: unknown tokenizer {d.get('kind')!r}")


def encode_example(tok, text: str, max_len: int, add_cls: bool) -> np.ndarray:
    """One text's ids as a classifier reads them: WordPiece's [CLS] pieces [SEP]
    (a pretrained BERT), else <cls> and the tokens; at most max_len ids."""
    if hasattr(tok, "settings"):  # WordPiece
        return np.asarray(tok.encode(text, max_length=max_len), dtype=np.int64)
    ids = tok.encode(text)
    if add_cls:
        ids = np.concatenate([np.array([tok.cls_id], dtype=np.int64), ids])
    return ids[:max_len]


def need_data(cfg: TrainConfig) -> Path:
    if not cfg.data:
        raise ValueError(f"--data: the {cfg.dataset!r} dataset is read from a path; give --data PATH")
    return Path(cfg.data)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded train / held-out split."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"eval_fraction: expected a value in (0, 1), got {fraction}")
    order = np.random.default_rng([seed, 991]).permutation(n)
    k = max(1, int(round(n * fraction)))
    return np.sort(order[k:]), np.sort(order[:k])


class LazyEpoch:
    """A sequence of batches built on access (so a resumed epoch skips cheaply)."""

    def __init__(self, plan, build):
        self.plan = plan
        self.build = build

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, i):
        return self.build(i, self.plan[i])
