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


SPLITS = ("eval", "dev", "test", "val", "valid", "train")
BOUNDED = ("accuracy", "f1", "precision", "recall")  # fractions: drawn on [0, 1]
CORRELATIONS = ("pearson", "spearman")  # drawn on [-1, 1] (or [0, 1] when all >= 0)
_SERIES_KEYS = ("step", "train_loss", "eval_step", "lr")


def ema(values, span: float) -> np.ndarray:
    """Exponential moving average with bias correction (as Adam's moments and
    TensorBoard's smoothing): ``m_t = b m_{t-1} + (1 - b) x_t``, ``b = 1 - 2 /
    (span + 1)``, reported as ``m_t / (1 - b**t)`` so the first values are not
    pulled towards zero. Non-finite values are skipped (the average carries on)."""
    x = np.asarray(values, dtype=np.float64)  # (N,)
    if span < 1:
        raise ValueError(f"span: expected a number >= 1, got {span}")
    b = 1.0 - 2.0 / (span + 1.0)
    out = np.empty_like(x)
    m, w = 0.0, 0.0
    for i, v in enumerate(x):
        if np.isfinite(v):
            m = b * m + (1.0 - b) * v
            w = b * w + (1.0 - b)
        out[i] = m / w if w > 0 else np.nan
    return out


def smoothing_span(n: int) -> float:
    """The EMA span of the smoothed train loss: a tenth of the run, between 5 and 100 steps."""
    return float(min(100, max(5, n // 10)))


def metric_group(name: str) -> str:
    """The axis a history series goes on: its name without the split prefix
    (``dev_accuracy`` and ``test_accuracy`` share "accuracy"); every loss goes on "loss"."""
    head, _, rest = name.partition("_")
    base = rest if head in SPLITS and rest else name
    return "loss" if "loss" in base else base


def plot_curves(history: dict, path, title: str = "") -> Path:
    """The curves of a run, one panel per kind of quantity, so that no series is
    flattened by another's scale: "loss" (the raw train loss, thin, under its
    smoothed EMA, see ``ema``/``smoothing_span``, and every held-out loss), one
    panel per other metric group (``metric_group``: accuracy on [0, 1],
    perplexity, bits, correlations...), and the learning rate per step when the
    history records it ("lr").

    history: {"step": [...], "train_loss": [...], "eval_step": [...], "lr": [...]
    (optional), <metric>: [...] one value per eval_step}. The figure is written
    to ``path`` (PNG); ``curves_figure`` returns it unsaved."""
    plt = _pyplot()
    fig = curves_figure(history, title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def curves_figure(history: dict, title: str = ""):
    """The matplotlib figure of ``plot_curves`` (the caller closes it). Each axis
    has its group as title: "loss", the metric groups in order of appearance, "learning rate"."""
    plt = _pyplot()
    evals = [k for k in history if k not in _SERIES_KEYS and history[k]]
    groups: dict[str, list[str]] = {"loss": []}
    for k in evals:
        groups.setdefault(metric_group(k), []).append(k)
    lr = list(history.get("lr") or [])
    panels = list(groups) + (["learning rate"] if lr else [])
    cols = 2 if len(panels) == 4 else min(len(panels), 3)  # 4 panels: 2 x 2, no empty slots
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        fig.delaxes(ax)
    steps = np.asarray(history.get("step", []))
    loss = np.asarray(history.get("train_loss", []), dtype=np.float64)
    for ax, name in zip(flat, panels):
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if name == "loss":
            if loss.size:
                span = smoothing_span(loss.size)
                ax.plot(steps, loss, lw=0.6, alpha=0.35, color="C0", label="train loss")
                ax.plot(steps, ema(loss, span), lw=1.6, color="C0",
                        label=f"train loss, EMA over {span:.0f} steps")
            for i, k in enumerate(groups["loss"]):
                ax.plot(history["eval_step"], history[k], "o-", color=f"C{i + 1}", label=k)
            ax.set_ylabel("loss (nats)")
        elif name == "learning rate":
            ax.plot(steps[-len(lr):], lr, color="C0", label="lr")  # (older runs: the tail only)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        else:
            values = []
            for i, k in enumerate(groups[name]):
                ax.plot(history["eval_step"], history[k], "o-", color=f"C{i + 1}", label=k)
                values += [float(v) for v in history[k]]
            if any(w in name for w in BOUNDED):
                ax.set_ylim(0.0, 1.0)
            elif any(w in name for w in CORRELATIONS):
                ax.set_ylim(-1.0 if min(values) < 0 else 0.0, 1.0)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


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
