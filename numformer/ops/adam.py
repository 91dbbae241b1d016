"""The Adam / AdamW update of one parameter array, in place.

Shapes: p, g, m, v all the parameter's shape (any). The optimizer in
``numformer.optim`` owns m and v and the step count; this op is the
arithmetic, so the Numba twin (``numformer.kernels.adam``) can replace it.
"""

from __future__ import annotations

import numpy as np


def adam_step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: float,
              beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
              decoupled: bool) -> None:
    """One Adam step at ``step`` (1-based), updating p, m, v in place.

    decoupled=False (Adam, L2):  g <- g + wd * p
    decoupled=True  (AdamW):     p <- p * (1 - lr * wd)   before the Adam update
    then  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
          p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """
    dt = p.dtype.type
    if weight_decay and not decoupled:
        g = g + dt(weight_decay) * p
    if weight_decay and decoupled:
        p *= dt(1.0 - lr * weight_decay)
    m *= dt(beta1)
    m += dt(1.0 - beta1) * g
    v *= dt(beta2)
    v += dt(1.0 - beta2) * (g * g)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    p -= dt(lr / bc1) * m / (np.sqrt(v / dt(bc2)) + dt(eps))
