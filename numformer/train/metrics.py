"""Evaluation metrics: accuracy, per-class accuracy, confusion matrix, perplexity."""

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
