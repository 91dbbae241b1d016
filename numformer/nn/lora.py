"""LoRA: rank-r adapters on a model's dense weights, the base weights frozen.

    from numformer.nn.lora import add_lora, merge_lora
    names = add_lora(model, rank=8)          # every attention and MLP projection
    ... train: only the adapters have gradients and optimizer state ...
    merge_lora(model)                        # W += scale * A @ B, adapters removed

An adapter for a weight W (C_in, C_out) of a layer is a sub-module
``lora_<name>`` of that layer holding A (C_in, r) and B (r, C_out); the layer
then computes ``x @ W + b + (alpha / r) * (x @ A) @ B`` with the op pair of
``numformer.ops.lora`` (its own hand-written backward, gradient-checked).
A starts small and random, B at zero, so an adapted model starts as the base
model. The layers that know adapters are Linear (``weight``), Attention
(``Wqkv``, ``Wo``) and SwiGLU (``w_gate``, ``w_up``, ``w_down``); they call
``linear_fwd`` / ``linear_bwd`` below, which pick the plain or the adapted op
and skip the base weight's gradient when it is frozen.

Shapes: N rows, C_in, C_out, r rank.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from numformer import kernels
from numformer.nn.module import Module, Parameter, accumulate
from numformer.ops import lora as _lora
from numformer.ops._alloc import matmul

# which weights of which layers an adapter may sit on (layer class name -> weight names)
ADAPTABLE = {"Attention": ("Wqkv", "Wo"), "SwiGLU": ("w_gate", "w_up", "w_down"),
             "Linear": ("weight",)}
# the default targets: every projection of attention and of the feed-forward
DEFAULT_TARGETS = ("*attn.Wqkv", "*attn.Wo", "*ffn.w_gate", "*ffn.w_up", "*ffn.w_down",
                   "*ffn.fc1.weight", "*ffn.fc2.weight")


class LoRA(Module):
    """The adapter of one weight (C_in, C_out): A (C_in, r) ~ U(-1/sqrt(C_in),
    1/sqrt(C_in)), B (r, C_out) = 0, scale = alpha / r."""

    def __init__(self, c_in: int, c_out: int, rank: int, alpha: float | None = None, rng=None,
                 dtype=np.float32):
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"rank: expected a positive integer, got {rank!r}")
        alpha = float(2 * rank if alpha is None else alpha)
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha: expected a finite positive number, got {alpha!r}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        bound = 1.0 / np.sqrt(c_in)
        self.rank, self.alpha, self.scale = int(rank), alpha, alpha / rank
        self.A = Parameter(rng.uniform(-bound, bound, (c_in, rank)).astype(dtype))  # (C_in, r)
        self.B = Parameter(np.zeros((rank, c_out), dtype=dtype))  # (r, C_out)

    def extra_repr(self):
        return f"{self.A.shape[0]}, {self.B.shape[1]}, rank={self.rank}, alpha={self.alpha:g}"

    def delta(self) -> np.ndarray:
        """scale * A @ B (C_in, C_out)."""
        return self.A.dtype.type(self.scale) * matmul(self.A.value, self.B.value)


def _value(p):
    return None if p is None else p.value


def linear_fwd(module: Module, x, wname: str, bname: str | None):
    """``x @ W + b`` (+ the adapter ``lora_<wname>`` if the module has one) for
    the weight ``wname`` and bias ``bname`` of ``module``; returns (out, cache)."""
    W = getattr(module, wname)
    b = getattr(module, bname) if bname else None
    ad = getattr(module, "lora_" + wname, None)
    if ad is None:
        out, c = kernels.op("linear").linear_forward(x, W.value, _value(b))
        return out, ("plain", c)
    out, c = _lora.lora_linear_forward(x, W.value, _value(b), ad.A.value, ad.B.value, ad.scale)
    return out, ("lora", c)


def linear_bwd(module: Module, dout, cache, wname: str, bname: str | None):
    """The backward of ``linear_fwd``: accumulates into W (unless frozen), b and
    the adapter; returns dx."""
    W = getattr(module, wname)
    b = getattr(module, bname) if bname else None
    kind, c = cache
    if kind == "plain":
        if W.frozen:  # out = x @ W + b: only dx (and db) are needed
            x, Wv, has_bias = c
            d2 = dout.reshape(-1, dout.shape[-1])  # (N, C_out)
            dx = matmul(d2, Wv.T).reshape(x.shape)  # (..., C_in)
            db = d2.sum(axis=0) if has_bias else None
        else:
            dx, dW, db = kernels.op("linear").linear_backward(dout, c)
            accumulate(W, dW)
    else:
        ad = getattr(module, "lora_" + wname)
        dx, dW, db, dA, dB = _lora.lora_linear_backward(dout, c, need_dW=not W.frozen)
        if dW is not None:
            accumulate(W, dW)
        accumulate(ad.A, dA)
        accumulate(ad.B, dB)
    if b is not None and db is not None:
        accumulate(b, db)
    return dx


def has_adapters(module: Module) -> bool:
    return any(getattr(module, "lora_" + w, None) is not None
               for w in ADAPTABLE.get(type(module).__name__, ()))


def add_lora(model: Module, rank: int = 8, alpha: float | None = None,
             targets=DEFAULT_TARGETS, seed: int = 0, freeze: bool = True) -> list[str]:
    """Attach a rank-``rank`` adapter to every weight whose full name matches one
    of the ``targets`` globs, and (``freeze``) freeze every other Parameter of the
    model. Returns the adapted weights' names; an empty match is an error."""
    rng = np.random.default_rng(seed)
    chosen = []
    for prefix, m in list(model.named_modules()):
        for wname in ADAPTABLE.get(type(m).__name__, ()):
            p = getattr(m, wname, None)
            full = f"{prefix}.{wname}" if prefix else wname
            if not isinstance(p, Parameter) or not any(fnmatch.fnmatchcase(full, t)
                                                       for t in targets):
                continue
            if getattr(m, "lora_" + wname, None) is not None:
                raise ValueError(f"add_lora: {full} already has an adapter")
            setattr(m, "lora_" + wname, LoRA(p.shape[0], p.shape[1], rank, alpha, rng, p.dtype))
            chosen.append(full)
    if not chosen:
        raise ValueError(f"add_lora: targets {list(targets)} match no adaptable weight "
                         f"({', '.join(f'{k}.{v}' for k, vs in ADAPTABLE.items() for v in vs)})")
    if freeze:
        model.freeze()
        model.unfreeze("*lora_*")
    return chosen


def merge_lora(model: Module) -> list[str]:
    """Fold every adapter into its weight (W += scale * A @ B) and remove it;
    returns the merged weights' names. The merged model computes what the
    adapted one did, with the plain ops."""
    merged = []
    for prefix, m in list(model.named_modules()):
        for wname in ADAPTABLE.get(type(m).__name__, ()):
            ad = getattr(m, "lora_" + wname, None)
            if ad is None:
                continue
            p = getattr(m, wname)
            p.value[...] = _lora.merge(p.value, ad.A.value, ad.B.value, ad.scale)
            setattr(m, "lora_" + wname, None)
            merged.append(f"{prefix}.{wname}" if prefix else wname)
    return merged


def lora_state_dict(model: Module) -> dict[str, np.ndarray]:
    """The adapters' Parameters alone (what a LoRA fine-tune needs to save)."""
    return {n: v for n, v in model.state_dict().items() if ".lora_" in n or n.startswith("lora_")}
