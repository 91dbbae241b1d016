"""The one finite-difference gradient checker, used by the tests, the
notebooks and ``numformer gradcheck``.

How it checks: everything runs in float64. A random upstream gradient G (a
standard normal of the output's shape; an all-ones G would hide errors that
cancel across outputs) turns the output into the scalar L = sum(G * out).
The analytic gradient of L is the backward pass fed with G; the numeric one
is the central difference (L(x + h e_i) - L(x - h e_i)) / 2h for every
element i of every checked tensor. Each tensor gets a row: max absolute
error, max relative error (elementwise |a - n| / max(|a| + |n|, tiny)), the
norm-relative error ||a - n|| / max(||a||, ||n||), and the worst index. A
tensor passes when its norm-relative error is at most ``tol`` (1e-7 by
default; correct float64 backward passes land near 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

DEFAULT_H = 1e-5
DEFAULT_TOL = 1e-7
_TINY = 1e-300


@dataclass
class TensorReport:
    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    norm_rel: float
    worst: tuple
    analytic: float  # at the worst index
    numeric: float
    ok: bool


@dataclass
class GradReport:
    """Per-tensor rows of one check; ``ok`` if every row is within tolerance."""
    title: str
    tol: float
    rows: list[TensorReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def worst_norm_rel(self) -> float:
        return max((r.norm_rel for r in self.rows), default=0.0)

    def table(self, header: bool = True) -> str:
        lines = []
        if header:
            lines.append(f"{'check':<34} {'tensor':<44} {'shape':<14} {'max abs':>9} "
                         f"{'max rel':>9} {'norm rel':>9}  {'worst index':<16} result")
        for r in self.rows:
            lines.append(f"{self.title[:34]:<34} {r.name[-44:]:<44} {str(r.shape):<14} "
                         f"{r.max_abs:9.2e} {r.max_rel:9.2e} {r.norm_rel:9.2e}  "
                         f"{str(r.worst):<16} {'ok' if r.ok else 'FAIL'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def assert_ok(self) -> "GradReport":
        """Raise AssertionError with the evidence if any tensor is out of tolerance."""
        if not self.ok:
            bad = [r for r in self.rows if not r.ok]
            details = "; ".join(f"{r.name}: norm rel {r.norm_rel:.3e} > {self.tol:.0e}, worst "
                                f"{r.worst} analytic {r.analytic:.6e} numeric {r.numeric:.6e}"
                                for r in bad)
            raise AssertionError(f"gradient check failed for {self.title}: {details}\n{self.table()}")
        return self


def compare(name: str, analytic: np.ndarray, numeric: np.ndarray, tol: float) -> TensorReport:
    """One row: how far ``analytic`` is from ``numeric``."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise AssertionError(f"{name}: analytic gradient has shape {a.shape}, "
                             f"expected {n.shape}")
    diff = np.abs(a - n)
    rel = diff / np.maximum(np.abs(a) + np.abs(n), _TINY)
    scale = max(np.linalg.norm(a), np.linalg.norm(n))
    norm_rel = float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0
    if not np.all(np.isfinite(a)):
        norm_rel = float("inf")
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    worst = tuple(int(i) for i in worst)
    return TensorReport(name, tuple(a.shape), float(diff.max(initial=0.0)),
                        float(rel.max(initial=0.0)), norm_rel, worst,
                        float(a[worst]) if a.size else 0.0, float(n[worst]) if n.size else 0.0,
                        norm_rel <= tol)


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = DEFAULT_H) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x`` (modified in
    place and restored)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numeric_grad: x must be contiguous (it is perturbed in place)")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        grad.reshape(-1)[i] = (fp - fm) / (2.0 * h)
    return grad


def _to64(x):
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return np.array(x, dtype=np.float64, copy=True, order="C")
    return x


def _out_array(out) -> np.ndarray:
    return np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float64)


def check_op(forward: Callable, backward: Callable, inputs: dict, wrt: Sequence[str],
             kwargs: dict | None = None, *, h: float = DEFAULT_H, tol: float = DEFAULT_TOL,
             seed: int = 0, title: str | None = None) -> GradReport:
    """Check an op pair ``forward(*inputs.values(), **kwargs) -> (out, cache)`` and
    ``backward(dout, cache) -> grads``.

    ``wrt`` names, in order, the inputs the backward returns gradients for (a
    single gradient may be returned bare); a ``None`` gradient is skipped.
    Float inputs are copied to float64; integer inputs (ids, targets) and
    booleans (masks) pass unchanged.
    """
    kwargs = kwargs or {}
    names = list(inputs)
    args = [_to64(inputs[n]) for n in names]
    for n in wrt:
        if n not in inputs:
            raise ValueError(f"wrt: {n!r} is not one of the inputs {names}")
    out, cache = forward(*args, **kwargs)
    out = np.asarray(out)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal(out.shape)
    grads = backward(G if out.shape else np.float64(G), cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(wrt):
        raise ValueError(f"backward returned {len(grads)} gradients, wrt names {len(wrt)}")

    def loss() -> float:
        return float(np.sum(G * _out_array(forward(*args, **kwargs))))

    report = GradReport(title or getattr(forward, "__name__", "op"), tol)
    for name, g in zip(wrt, grads):
        if g is None:
            continue
        x = args[names.index(name)]
        report.rows.append(compare(name, g, numeric_grad(loss, x, h), tol))
    return report


def check_module(module, *inputs, wrt_inputs: Sequence[int] | None = None, h: float = DEFAULT_H,
                 tol: float = DEFAULT_TOL, seed: int = 0, title: str | None = None,
                 **kwargs) -> GradReport:
    """Check a Module: the gradient of every Parameter and of its float inputs.

    The module is converted to float64 in place. Before every forward pass
    the module's random generators are reset (``module.seed(seed)``), so
    dropout draws the same mask each time. ``module.backward(G)`` must return
    the input gradient (or a tuple of them, or None when the inputs are ids);
    ``wrt_inputs`` selects which positional inputs to check (default: every
    float input that gets a gradient).
    """
    if not module.training:
        raise ValueError(f"check_module: {type(module).__name__} is in eval mode, which keeps no "
                         f"cache for a backward; call train() (and set dropout p=0 for a check "
                         f"without dropout)")
    module.astype(np.float64)
    args = [_to64(x) for x in inputs]
    kwargs = {k: _to64(v) for k, v in kwargs.items()}

    def run():
        module.seed(seed)
        return module(*args, **kwargs)

    out = np.asarray(run())
    G = np.random.default_rng(seed).standard_normal(out.shape)
    module.zero_grad()
    dx = module.backward(G if out.shape else np.float64(G))
    dxs = dx if isinstance(dx, tuple) else (dx,)
    # frozen Parameters (no gradient buffer) are not checked
    analytic = {name: p.grad.copy() for name, p in module.named_parameters()
                if p.grad is not None}

    def loss() -> float:
        from numformer.nn.module import no_grad  # the probes keep no cache for a backward
        with no_grad():
            return float(np.sum(G * np.asarray(run(), dtype=np.float64)))

    report = GradReport(title or type(module).__name__, tol)
    if wrt_inputs is None:
        wrt_inputs = [i for i, x in enumerate(args)
                      if isinstance(x, np.ndarray) and x.dtype.kind == "f" and i < len(dxs)
                      and dxs[i] is not None]
    for i in wrt_inputs:
        report.rows.append(compare(f"input[{i}]", dxs[i], numeric_grad(loss, args[i], h), tol))
    for name, p in module.named_parameters():
        if name in analytic:
            report.rows.append(compare(name, analytic[name], numeric_grad(loss, p.value, h), tol))
    return report
