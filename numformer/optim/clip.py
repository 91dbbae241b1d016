"""Gradient clipping by the global norm of all gradients."""

from __future__ import annotations

import math

import numpy as np

from numformer.nn.module import Module, Parameter


def _params(params) -> list[Parameter]:
    """Parameters from a Module, an Optimizer (its ``params``) or an iterable of Parameter."""
    if isinstance(params, Module):
        return params.parameters()
    if hasattr(params, "groups") and hasattr(params, "params"):  # an Optimizer
        return params.params
    if isinstance(params, Parameter):
        return [params]
    out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise ValueError(f"params[{i}]: expected a Parameter, got {type(p).__name__}")
    return out


def grad_norm(params) -> float:
    """sqrt(sum over Parameters of sum(grad^2)), accumulated in float64."""
    total = 0.0
    for p in _params(params):
        if p.grad is None:  # frozen
            continue
        g = p.grad.ravel().astype(np.float64, copy=False)  # (n,)
        total += float(np.dot(g, g))
    return math.sqrt(total)


def clip_grad_norm(params, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale every gradient by ``max_norm / (norm + 1e-6)`` when the global norm
    exceeds ``max_norm`` (in place); return the norm *before* clipping.

    ``params``: a Module, an Optimizer or an iterable of Parameter. A
    non-finite norm (inf/NaN) leaves the gradients untouched and is returned,
    so the caller can skip the step, or raises FloatingPointError with
    ``error_if_nonfinite=True``. The 1e-6 is torch's, so results match
    ``torch.nn.utils.clip_grad_norm_``.
    """
    if not float(max_norm) > 0:
        raise ValueError(f"max_norm: expected a number > 0, got {max_norm}")
    ps = _params(params)
    norm = grad_norm(ps)
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(f"clip_grad_norm: the gradient norm is {norm}")
        return norm
    if norm > max_norm:
        coef = max_norm / (norm + 1e-6)
        for p in ps:
            if p.grad is not None:  # frozen ones have none
                p.grad *= p.grad.dtype.type(coef)
    return norm


def first_nonfinite(named_params) -> tuple[str, int, int] | None:
    """The first ``(name, count, size)`` whose gradient holds NaN or inf, from
    ``(name, Parameter)`` pairs (``model.named_parameters()``); None if all are
    finite. A second pass over the gradients, meant for after ``grad_norm`` (or
    ``clip_grad_norm``) returned a non-finite norm, to say where."""
    for name, p in named_params:
        if p.grad is None:  # frozen
            continue
        bad = p.grad.size - int(np.count_nonzero(np.isfinite(p.grad)))
        if bad:
            return name, bad, p.grad.size
    return None
