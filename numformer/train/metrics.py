"""Evaluation metrics: accuracy, per-class accuracy, confusion matrix, perplexity;
Pearson and Spearman correlation (regression)."""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (K, K): row = true class, column = predicted class."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: expected shape {y_true.shape} (that of y_true), "
                         f"got {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name}: expected classes in [0, {n_classes}), got "
                             f"{int(y.min()) if y.min() < 0 else int(y.max())}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy_from_confusion(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class: the fraction of its examples predicted right (NaN if none)."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def perplexity(mean_nll: float) -> float:
    """exp of the mean negative log-likelihood in nats (inf beyond float range)."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def bits(mean_nll: float) -> float:
    """Nats to bits (per token: bits per character for a character model)."""
    return mean_nll / math.log(2.0)


def format_confusion(cm: np.ndarray, labels=None) -> str:
    """The confusion matrix as aligned text, rows true, columns predicted."""
    K = cm.shape[0]
    labels = [str(i) for i in range(K)] if labels is None else [str(x) for x in labels]
    w = max(max(len(x) for x in labels), len(str(int(cm.max(initial=0)))), 4)
    head = " " * (w + 2) + " ".join(f"{x:>{w}}" for x in labels) + "   <- predicted"
    rows = [f"{labels[i]:>{w}}  " + " ".join(f"{int(c):>{w}}" for c in cm[i]) for i in range(K)]
    return "\n".join([head, *rows])


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {x.shape}, got {y.shape}")
    if x.size < 2:
        raise ValueError(f"x: expected at least 2 values for a correlation, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x, y: expected finite values (a correlation of NaN or inf is none)")
    return x, y


def pearson(x, y) -> float:
    """Pearson's r: cov(x, y) / (std x std y); NaN when either is constant."""
    x, y = _paired(x, y)
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def rankdata(x) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first index of each tie group
    ends = np.r_[starts[1:], x.size]  # one past the last
    avg = (starts + ends + 1) / 2.0  # mean of the ranks start+1 .. end
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho: Pearson's r of the ranks (average ranks for ties)."""
    x, y = _paired(x, y)
    return pearson(rankdata(x), rankdata(y))


def classification_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean negative log-likelihood, accuracy, confusion matrix) of class
    probabilities (N, K) against labels (N,)."""
    nll = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)).mean()
    cm = confusion_matrix(labels, probs.argmax(-1), probs.shape[1])
    return float(nll), accuracy_from_confusion(cm), cm


def regression_scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """{"loss": the mean squared error, "pearson", "spearman"} of scores against labels."""
    return {"loss": float(np.mean((pred - y) ** 2)), "pearson": pearson(pred, y),
            "spearman": spearman(pred, y)}


def standard_error(metric: str, value: float, n: int) -> float | None:
    """The sampling standard error of an evaluation ``metric`` (its name's last part:
    accuracy, pearson or spearman) of ``value`` on ``n`` examples, or None for a
    metric without one here (losses, perplexity).

    accuracy: ``sqrt(a (1 - a) / n)`` (a binomial share); Pearson's r:
    ``(1 - r^2) / sqrt(n - 3)`` (Fisher's z has standard error 1 / sqrt(n - 3));
    Spearman's rho: ``(1 - rho^2) sqrt((1 + rho^2 / 2) / (n - 3))`` (Bonett and
    Wright, 2000).
    """
    kind = metric.rsplit("_", 1)[-1]
    if kind == "accuracy" and n > 0:
        return math.sqrt(max(value * (1.0 - value), 0.0) / n)
    if kind in ("pearson", "spearman") and n > 3 and math.isfinite(value):
        r2 = min(value * value, 1.0)
        z_var = (1.0 + r2 / 2 if kind == "spearman" else 1.0) / (n - 3)  # of Fisher's z
        return (1.0 - r2) * math.sqrt(z_var)
    return None

