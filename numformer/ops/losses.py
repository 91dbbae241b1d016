"""Softmax cross-entropy, fused with log-softmax; mean squared error (mse_*); binary
cross-entropy on logits, fused with the sigmoid (bce_logits_*); the CoSENT ranking
loss of a batch of scores (cosent_*).

Shapes: logits (..., V) (usually (N, V) or (B, T, V)), targets (...) integer
class ids; positions whose target equals ``ignore_index`` are not counted.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk
from numformer.ops.activations import _sigmoid


def check_cross_entropy(logits, targets, ignore_index: int, label_smoothing: float):
    """The checks of the inputs of ``cross_entropy_forward`` (shared with its
    kernel); returns the flat targets (N,) and the mask of counted positions (N,)."""
    chk.float_array("logits", logits)
    chk.min_ndim("logits", logits, 1, "(..., V)")
    V = logits.shape[-1]
    if not isinstance(targets, np.ndarray) or not np.issubdtype(targets.dtype, np.integer):
        got = targets.dtype if isinstance(targets, np.ndarray) else type(targets).__name__
        raise ValueError(f"targets: expected an integer numpy array, got {got}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets: expected shape {tuple(logits.shape[:-1])} (logits without "
                         f"its last axis), got {tuple(targets.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
    t = targets.reshape(-1)  # (N,)
    counted = t != ignore_index  # (N,)
    tc = t[counted]
    if tc.size and (tc.min() < 0 or tc.max() >= V):
        bad = int(tc.min()) if tc.min() < 0 else int(tc.max())
        raise ValueError(f"targets: expected class ids in [0, {V}) or ignore_index="
                         f"{ignore_index}, got {bad}")
    return t, counted


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100,
                          label_smoothing: float = 0.0):
    """Mean over counted positions of ``-sum_c q_c log p_c``, where p = softmax(logits)
    and q = (1 - eps) onehot(target) + eps / V (eps = label_smoothing).

    Returns the loss (a scalar of the logits' dtype) and
    ``cache = (p, targets, counted, n, eps, shape)`` with p (N, V) the
    probabilities, targets (N,), counted (N,) bool, n the number of counted
    positions and shape the logits' shape.
    With no counted position the loss is 0 and so is its gradient.
    """
    t, counted = check_cross_entropy(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    x = logits.reshape(-1, V)  # (N, V)
    tc = t[counted]
    n = int(counted.sum())
    dt = logits.dtype.type
    z = x - x.max(axis=-1, keepdims=True)  # (N, V)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)  # (N, 1)
    p = e / s  # (N, V)
    if n == 0:
        return dt(0.0), (p, t, counted, 0, label_smoothing, logits.shape)
    logp_rows = z[counted] - np.log(s[counted])  # (n, V)
    nll = -logp_rows[np.arange(n), tc]  # (n,)
    if label_smoothing:
        smooth = -logp_rows.mean(axis=-1)  # (n,)
        per = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    else:
        per = nll
    loss = dt(per.sum() / n)
    return loss, (p, t, counted, n, label_smoothing, logits.shape)


def cross_entropy_backward(dloss, cache) -> np.ndarray:
    """dlogits = dloss * (p - q) / n on counted positions, 0 elsewhere (logits' shape)."""
    p, t, counted, n, eps, shape = cache
    chk.check_dloss("cross_entropy_backward", dloss, p.dtype)
    dx = np.zeros_like(p)  # (N, V)
    if n == 0:
        return dx.reshape(shape)
    V = p.shape[-1]
    # loss = mean(-sum q log softmax(logits))
    rows = np.flatnonzero(counted)
    g = p[rows]  # (n, V)
    g[np.arange(rows.size), t[rows]] -= (1.0 - eps)
    if eps:
        g -= eps / V
    dx[rows] = g * (p.dtype.type(dloss) / n)
    return dx.reshape(shape)  # (..., V)


# mean squared error (regression) ---------------------------------------------------

def _check_float_targets(targets, name: str, like: np.ndarray) -> None:
    """Targets of a regression loss: a numeric numpy array of the shape of ``like``
    (the argument called ``name``)."""
    if not isinstance(targets, np.ndarray) or not (np.issubdtype(targets.dtype, np.floating)
                                                   or np.issubdtype(targets.dtype, np.integer)):
        got = targets.dtype if isinstance(targets, np.ndarray) else type(targets).__name__
        raise ValueError(f"targets: expected a numeric numpy array, got {got}")
    if targets.shape != like.shape:
        raise ValueError(f"targets: expected the shape of {name} {tuple(like.shape)}, got "
                         f"{tuple(targets.shape)}")


def mse_forward(pred: np.ndarray, targets: np.ndarray):
    """Mean over all N elements of ``(pred - targets) ** 2``; pred (...) float, targets
    of the same shape (any float or integer dtype, read in pred's dtype).

    Returns the loss (a scalar of pred's dtype) and ``cache = (diff, n)`` with diff
    = pred - targets (pred's shape) and n the element count.
    """
    chk.float_array("pred", pred)
    _check_float_targets(targets, "pred", pred)
    n = pred.size
    if n == 0:
        return pred.dtype.type(0.0), (np.zeros_like(pred), 0)
    diff = pred - targets.astype(pred.dtype, copy=False)  # (...)
    return pred.dtype.type((diff * diff).sum() / n), (diff, n)


def mse_backward(dloss, cache) -> np.ndarray:
    """dpred = dloss * 2 (pred - targets) / n (pred's shape)."""
    diff, n = cache
    chk.check_dloss("mse_backward", dloss, diff.dtype)
    if n == 0:
        return np.zeros_like(diff)
    # loss = sum((pred - targets) ** 2) / n
    return diff * diff.dtype.type(2.0 * float(dloss) / n)


# binary cross-entropy on logits (a score in [0, 1]) --------------------------------

def bce_logits_forward(logits: np.ndarray, targets: np.ndarray):
    """Mean over all N elements of ``-(t log s + (1 - t) log(1 - s))`` with s =
    sigmoid(logits); logits (...) float, targets of the same shape, each in [0, 1]
    (soft targets: a score rescaled to [0, 1], read in logits' dtype).

    Computed as ``max(x, 0) - x t + log1p(exp(-|x|))`` (no overflow for any x).
    Returns the loss (a scalar of logits' dtype) and ``cache = (x, t, n)``.
    """
    chk.float_array("logits", logits)
    _check_float_targets(targets, "logits", logits)
    t = targets.astype(logits.dtype, copy=False)
    if t.size and not (np.all(t >= 0) and np.all(t <= 1)):
        raise ValueError(f"targets: expected values in [0, 1], got [{float(np.min(t)):g}, "
                         f"{float(np.max(t)):g}]")
    n = logits.size
    if n == 0:
        return logits.dtype.type(0.0), (logits, t, 0)
    x = logits
    per = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))  # (...)
    return logits.dtype.type(per.sum() / n), (x, t, n)


def bce_logits_backward(dloss, cache) -> np.ndarray:
    """dlogits = dloss * (sigmoid(x) - t) / n (logits' shape)."""
    x, t, n = cache
    chk.check_dloss("bce_logits_backward", dloss, x.dtype)
    if n == 0:
        return np.zeros_like(x)
    # d/dx [max(x,0) - x t + log(1 + exp(-|x|))] = sigmoid(x) - t
    return (_sigmoid(x) - t) * x.dtype.type(float(dloss) / n)


# CoSENT: a ranking loss on a batch of scores (cosines) -----------------------------

def cosent_forward(scores: np.ndarray, targets: np.ndarray, scale: float = 20.0):
    """The CoSENT loss of one batch of scores: every element of ``scores`` (any
    shape, usually (B,) or (B, 1): a pair's cosine) is one example, and every two
    examples whose ``targets`` differ are a pair that the scores should order as
    the targets do::

        loss = log(1 + sum over (i, j) with t_i > t_j of exp(scale (s_j - s_i)))

    A pair ordered right by a wide margin adds almost nothing, one ordered wrong
    adds about ``scale`` times its score gap; only the order of the targets
    counts, not their values, and a batch whose targets are all equal has no
    pair and a loss of 0. Computed as a log-sum-exp that includes the 1 (no
    overflow for any scores). ``targets`` has scores' shape (any float or
    integer dtype, read in scores' dtype). The loss of a batch is not the mean
    of its parts' losses: pairs are only formed within the batch given.

    Returns the loss (a scalar of scores' dtype) and ``cache = (w, scale,
    shape)``, w (B, B) the softmax weight of each pair's term (0 for a non-pair).
    """
    chk.float_array("scores", scores)
    _check_float_targets(targets, "scores", scores)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: expected a finite number > 0, got {scale}")
    s = scores.reshape(-1)  # (B,)
    t = targets.reshape(-1).astype(scores.dtype, copy=False)  # (B,)
    pair = t[:, None] > t[None, :]  # (B, B): i's target above j's
    z = scale * (s[None, :] - s[:, None])  # (B, B): z[i, j] = scale (s_j - s_i)
    zp = z[pair]  # (P,)
    m = max(0.0, float(zp.max())) if zp.size else 0.0  # the largest term, 0 for the 1
    e = np.exp(zp - m)  # (P,)
    total = np.exp(-m) + e.sum()
    w = np.zeros_like(z)  # (B, B)
    w[pair] = e / total
    return scores.dtype.type(m + np.log(total)), (w, scale, scores.shape)


def cosent_backward(dloss, cache) -> np.ndarray:
    """dscores (scores' shape): each pair's weight w_ij = d loss / d z_ij, with
    z_ij = scale (s_j - s_i), pushes s_i up and s_j down by scale w_ij."""
    w, scale, shape = cache
    chk.check_dloss("cosent_backward", dloss, w.dtype)
    # d loss / d s_k = scale (sum_i w_ik - sum_j w_kj)
    ds = (w.sum(axis=0) - w.sum(axis=1)) * w.dtype.type(scale * float(dloss))  # (B,)
    return ds.reshape(shape)
