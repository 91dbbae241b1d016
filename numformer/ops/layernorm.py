"""Layer normalisation over the last axis.

Shapes: x (..., C) (usually (B, T, C)), gamma and beta (C,).
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def check_layernorm(x, gamma, beta, eps) -> None:
    """The checks of ``layernorm_forward``'s inputs (shared with its kernel)."""
    chk.float_array("x", x)
    chk.min_ndim("x", x, 1, "(..., C)")
    C = x.shape[-1]
    chk.float_array("gamma", gamma, like=x)
    chk.shape("gamma", gamma, (C,), "(C,)")
    chk.float_array("beta", beta, like=x)
    chk.shape("beta", beta, (C,), "(C,)")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive number, got {eps}")


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
    """``out = (x - mean) * rstd * gamma + beta``, rstd = 1/sqrt(var + eps), var biased.

    ``cache = (xhat, gamma, rstd)`` with xhat the normalised input (..., C)
    and rstd (..., 1). A constant row gives xhat = 0 and stays finite.
    """
    check_layernorm(x, gamma, beta, eps)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., C)
    var = (xc * xc).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = (1.0 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)  # (..., 1)
    xhat = xc * rstd  # (..., C)
    out = xhat * gamma + beta  # (..., C)
    return out, (xhat, gamma, rstd)


def layernorm_backward(dout: np.ndarray, cache):
    """(dx, dgamma, dbeta).

    dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), the three
    terms being the direct path, the mean path and the variance path.
    """
    xhat, gamma, rstd = cache
    chk.check_dout("layernorm_backward", dout, xhat.shape, xhat.dtype)
    # out = xhat * gamma + beta
    C = xhat.shape[-1]
    dgamma = (dout * xhat).reshape(-1, C).sum(axis=0)  # (C,)
    dbeta = dout.reshape(-1, C).sum(axis=0)  # (C,)
    dxhat = dout * gamma  # (..., C)
    # xhat = (x - mean) * rstd
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta
