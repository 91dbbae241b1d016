"""What a user looks at after a run: curves, confusion matrix and attention maps
(PNG, matplotlib), the embedding matrix for the TensorFlow projector (TSV),
and cosine nearest neighbours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_curves(history: dict, path, title: str = "") -> Path:
    """history: {"step": [...], "train_loss": [...], "eval_step": [...], <metric>: [...]};
    the loss on the left axis, every other eval series (accuracy...) on the right panel."""
    plt = _pyplot()
    evals = [k for k in history if k not in ("step", "train_loss", "eval_step") and history[k]]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(history["step"], history["train_loss"], lw=0.8, alpha=0.7, label="train loss")
    if "eval_loss" in evals:
        ax.plot(history["eval_step"], history["eval_loss"], "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    others = [k for k in evals if k != "eval_loss"]
    if others:
        ax2 = axes[0, 1]
        for k in others:
            ax2.plot(history["eval_step"], history[k], "o-", label=k)
        ax2.set_xlabel("step")
        ax2.legend()
        ax2.grid(alpha=0.3)
    fig.suptitle(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_confusion(cm: np.ndarray, labels, path, title: str = "confusion matrix") -> Path:
    plt = _pyplot()
    K = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 * K + 2, 1.2 * K + 1.5))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(K), labels)
    ax.set_yticks(range(K), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_attention(probs: np.ndarray, tokens: list[str], path, title: str = "") -> Path:
    """probs (H, T, T) of one sentence: one heat map per head."""
    plt = _pyplot()
    H, T, _ = probs.shape
    cols = min(H, 4)
    rows = (H + cols - 1) // cols
    size = max(3.0, 0.35 * T)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols, h % cols]
        if h >= H:
            ax.axis("off")
            continue
        ax.imshow(probs[h], cmap="viridis", vmin=0, vmax=max(float(probs[h].max()), 1e-9))
        ax.set_xticks(range(T), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(T), tokens, fontsize=7)
        ax.set_title(f"head {h}")
    fig.suptitle(title or "attention (rows: queries, columns: keys)")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def save_projector(embedding: np.ndarray, words: list[str], directory, prefix: str = "") -> tuple:
    """The TensorFlow projector's files: ``vectors.tsv`` (one row of tab-separated
    floats per word) and ``metadata.tsv`` (one word a line, same order), as the
    BERT-from-scratch article exports them. Returns both paths."""
    if embedding.shape[0] != len(words):
        raise ValueError(f"words: expected {embedding.shape[0]} (rows of the embedding), "
                         f"got {len(words)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vec = directory / f"{prefix}vectors.tsv"
    meta = directory / f"{prefix}metadata.tsv"
    tmp = vec.with_name(vec.name + ".tmp")
    np.savetxt(tmp, embedding, delimiter="\t", fmt="%.6g")
    os.replace(tmp, vec)
    tmp = meta.with_name(meta.name + ".tmp")
    # the projector splits metadata on tabs and newlines: keep each word on one cell
    tmp.write_text("".join(w.replace("\t", " ").replace("\n", " ") + "\n" for w in words),
                   encoding="utf-8")
    os.replace(tmp, meta)
    return vec, meta


def nearest_neighbors(embedding: np.ndarray, words: list[str], query: str, k: int = 8,
                      exclude=()) -> list[tuple[str, float]]:
    """The k words whose embedding rows have the highest cosine similarity to ``query``'s."""
    index = {w: i for i, w in enumerate(words)}
    if query not in index:
        raise KeyError(f"{query!r} is not in the vocabulary ({len(words)} words)")
    E = embedding.astype(np.float64)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)  # (V, C)
    sims = E @ E[index[query]]  # (V,)
    sims[index[query]] = -np.inf
    for w in exclude:
        if w in index:
            sims[index[w]] = -np.inf
    k = min(k, int(np.isfinite(sims).sum()))
    best = np.argsort(-sims, kind="stable")[:k]
    return [(words[i], float(sims[i])) for i in best]
