"""Cosine similarity of paired rows, with its backward (a bi-encoder's score).

    c_i = u_i . v_i / (|u_i| |v_i|)                         u, v (N, C) -> c (N,)
    dc_i/du_i = v_i / (|u_i| |v_i|) - c_i u_i / |u_i|^2
    dc_i/dv_i = u_i / (|u_i| |v_i|) - c_i v_i / |v_i|^2

A row of zeros has no direction: its norm is clamped to ``eps`` (the cosine is
then 0 and its gradient finite). No Numba twin: two (N, C) row sums.
"""

from __future__ import annotations

import numpy as np

from numformer.ops import _checks as chk


def cosine_forward(u: np.ndarray, v: np.ndarray, eps: float = 1e-8):
    """(c (N,), cache) for rows u, v (N, C) of one float dtype."""
    chk.float_array("u", u)
    chk.ndim("u", u, 2, "(N, C)")
    chk.float_array("v", v, like=u)
    chk.shape("v", v, u.shape, "(N, C) like u")
    nu = np.maximum(np.sqrt((u * u).sum(-1)), eps)  # (N,)
    nv = np.maximum(np.sqrt((v * v).sum(-1)), eps)  # (N,)
    c = (u * v).sum(-1) / (nu * nv)  # (N,)
    return c.astype(u.dtype, copy=False), (u, v, nu, nv, c)


def cosine_backward(dc: np.ndarray, cache):
    """(du, dv) (N, C) of the upstream gradient dc (N,)."""
    u, v, nu, nv, c = cache
    chk.check_dout("cosine_backward", dc, c.shape, u.dtype, arg="dc")
    g = (dc / (nu * nv))[:, None]  # (N, 1)
    du = g * v - (dc * c / (nu * nu))[:, None] * u  # (N, C)
    dv = g * u - (dc * c / (nv * nv))[:, None] * v  # (N, C)
    return du.astype(u.dtype, copy=False), dv.astype(u.dtype, copy=False)
