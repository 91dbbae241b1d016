"""Input validation shared by the ops: clear errors naming the argument,
what was expected and what came."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def float_array(name: str, x, like: np.ndarray | None = None) -> np.ndarray:
    """``x`` must be a float32/float64 ndarray; with ``like``, of the same dtype."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    if like is not None and x.dtype != like.dtype:
        raise ValueError(f"{name}: expected dtype {like.dtype} (the dtype of the input), "
                         f"got {x.dtype}")
    return x


def ndim(name: str, x: np.ndarray, n: int, letters: str) -> None:
    """``x`` must have ``n`` dimensions, named by ``letters`` (e.g. "(B, H, T, D)")."""
    if x.ndim != n:
        raise ValueError(f"{name}: expected {n} dims {letters}, got shape {tuple(x.shape)}")


def min_ndim(name: str, x: np.ndarray, n: int, letters: str) -> None:
    if x.ndim < n:
        raise ValueError(f"{name}: expected at least {n} dims {letters}, "
                         f"got shape {tuple(x.shape)}")


def shape(name: str, x: np.ndarray, expected: tuple, letters: str = "") -> None:
    """``x.shape`` must equal ``expected`` (``None`` entries match anything)."""
    ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        if len(expected) == 1:
            want = want[:-1] + ",)"
        extra = f" {letters}" if letters else ""
        raise ValueError(f"{name}: expected shape {want}{extra}, got {tuple(x.shape)}")


def int_ids(name: str, ids, high: int) -> np.ndarray:
    """Integer ids in [0, high)."""
    if not isinstance(ids, np.ndarray):
        raise ValueError(f"{name}: expected a numpy integer array, got {type(ids).__name__}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer dtype, got {ids.dtype}")
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= high:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: expected ids in [0, {high}), got {bad}")
    return ids


def bool_mask(name: str, mask, expected: tuple, letters: str) -> np.ndarray:
    """A boolean mask of the given shape."""
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"{name}: expected a numpy bool array, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise ValueError(f"{name}: expected dtype bool, got {mask.dtype}")
    shape(name, mask, expected, letters)
    return mask


def probability(name: str, p: float) -> float:
    if not (0.0 <= float(p) < 1.0):
        raise ValueError(f"{name}: expected a probability in [0, 1), got {p}")
    return float(p)


def check_dout(name: str, dout, expected_shape, expected_dtype, arg: str = "dout") -> np.ndarray:
    """The upstream gradient of ``name`` (an op's backward, e.g. "linear_backward").

    ``dout`` must be an ndarray of the forward's dtype (``expected_dtype``: no
    silent promotion of a float32 cache by a float64 gradient, nor the
    reverse) and of the forward output's shape (``expected_shape``, a tuple
    whose ``None`` entries match anything; ``None`` skips the shape check).
    Call it on the first line after unpacking the cache, in the reference and
    in the kernel alike, so that a kernel never falls back to the reference
    over a dtype mismatch. ``arg`` names the argument when the backward calls
    it something else (the message still says it is the upstream gradient).
    """
    label = arg if arg == "dout" else f"{arg} (dout, the upstream gradient)"
    if not isinstance(dout, np.ndarray):
        raise ValueError(f"{name}: {label}: expected a numpy array, got {type(dout).__name__}")
    expected_dtype = np.dtype(expected_dtype)
    if dout.dtype != expected_dtype:
        raise ValueError(
            f"{name}: {label}: expected dtype {expected_dtype} (the dtype of the forward pass), "
            f"got {dout.dtype}; cast it (dout.astype(np.{expected_dtype.name})) instead of "
            f"letting the backward promote the gradients")
    if expected_shape is not None:
        expected_shape = tuple(expected_shape)
        ok = dout.ndim == len(expected_shape) and all(
            e is None or e == s for e, s in zip(expected_shape, dout.shape))
        if not ok:
            want = "(" + ", ".join("?" if e is None else str(e) for e in expected_shape) + ")"
            if len(expected_shape) == 1:
                want = want[:-1] + ",)"
            raise ValueError(f"{name}: {label}: expected shape {want} (the shape of the forward's "
                             f"output), got {tuple(dout.shape)}")
    return dout


def check_dloss(name: str, dloss, expected_dtype):
    """The upstream gradient of a scalar loss: a Python number (it adopts the
    loss's dtype), or a 0-d array / NumPy scalar of the loss's dtype."""
    if isinstance(dloss, np.generic):  # before the number test: np.float64 is a float
        dloss = np.asarray(dloss)
    elif isinstance(dloss, (int, float)) and not isinstance(dloss, bool):
        return dloss
    check_dout(name, dloss, (), expected_dtype, arg="dloss")
    return dloss
