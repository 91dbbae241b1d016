"""The suite's one tolerance table and the comparison that prints evidence.

Used by the tests (reference vs kernel, numformer vs PyTorch) and the
benchmarks (each implementation is checked before it is timed).

Tolerances (``rtol``, ``atol``) by dtype:
    float64  1e-10, 1e-12   same math in a different order
    float32  1e-5,  1e-5    same math in a different order
Reductions over the batch (dW, db, dgamma, dbeta, an embedding's dW) sum
many more terms, so they get ``REDUCED_FACTOR`` times the tolerance; the
tests say where they use it.
"""

from __future__ import annotations

import numpy as np

TOLERANCES = {
    np.dtype(np.float64): (1e-10, 1e-12),
    np.dtype(np.float32): (1e-5, 1e-5),
}
REDUCED_FACTOR = 10.0


def tolerance(dtype, reduced: bool = False) -> tuple[float, float]:
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    k = REDUCED_FACTOR if reduced else 1.0
    return rtol * k, atol * k


def describe_difference(actual, expected, rtol: float, atol: float, n_pairs: int = 5) -> str:
    """Max abs difference, where, how many elements fail, and a few (actual, expected) pairs."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return f"shape {a.shape} != expected {e.shape}"
    diff = np.abs(a - e)
    bad = ~(diff <= atol + rtol * np.abs(e))
    bad |= np.isnan(a) != np.isnan(e)
    if a.size == 0:
        return "empty arrays"
    where = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), a.shape)
    idx = np.argwhere(bad)[:n_pairs]
    pairs = ", ".join(f"{tuple(int(j) for j in i)}: {a[tuple(i)]:.9g} vs {e[tuple(i)]:.9g}"
                      for i in idx)
    return (f"max abs diff {np.nanmax(diff):.3e} at {tuple(int(i) for i in where)}; "
            f"{int(bad.sum())}/{a.size} elements outside rtol={rtol:g} atol={atol:g}; "
            f"first pairs (actual vs expected): {pairs}")


def assert_close(actual, expected, dtype=None, reduced: bool = False, what: str = "",
                 rtol: float | None = None, atol: float | None = None) -> None:
    """Assert ``actual`` matches ``expected`` within the table's tolerance for ``dtype``
    (default: actual's dtype); on failure the message carries the evidence."""
    dtype = np.asarray(actual).dtype if dtype is None else dtype
    r, a = tolerance(dtype, reduced)
    r = r if rtol is None else rtol
    a = a if atol is None else atol
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    ok = act.shape == exp.shape and np.allclose(act, exp, rtol=r, atol=a, equal_nan=True)
    if not ok:
        raise AssertionError(f"{what or 'arrays'} differ: {describe_difference(act, exp, r, a)}")


def attention_inputs(rng, shape, dtype, masked: bool):
    """q, k, v and a key mask (or None) for the attention tests: ``shape`` is
    (B, H, Tq, Tk, D), or (B, H, Hkv, Tq, Tk, D) for grouped-query attention.
    The mask pads about 30% of the keys, keeps each sequence's last key, pads
    the first sequence entirely and the front half of the second (its early
    causal rows see nothing)."""
    if len(shape) == 5:
        B, H, Tq, Tk, D = shape
        Hkv = H
    else:
        B, H, Hkv, Tq, Tk, D = shape
    q = rng.standard_normal((B, H, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Tk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Tk, D)).astype(dtype)
    key_mask = None
    if masked:
        key_mask = rng.random((B, Tk)) < 0.7
        key_mask[:, -1] = True
        key_mask[0] = False  # a fully padded sequence
        if B > 1:
            key_mask[1, : (Tk + 1) // 2] = False  # padding in front
    return q, k, v, key_mask


def overlap_pairs_tsv(path, words, n: int, seed: int):
    """Write a TSV of n text pairs (header sentence1, sentence2, score): a is 3 of
    ``words``, b shares k of them (k in 0..3, seeded) and the score is k * 5 / 3,
    a similarity to learn. Returns ``path``."""
    rng = np.random.default_rng(seed)
    lines = ["sentence1\tsentence2\tscore"]
    for _ in range(n):
        a = list(rng.choice(words, 3, replace=False))
        k = int(rng.integers(0, 4))
        rest = [w for w in words if w not in a]
        b = a[:k] + list(rng.choice(rest, 3 - k, replace=False))
        lines.append(f"{' '.join(a)}\t{' '.join(b)}\t{k * 5 / 3:.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
