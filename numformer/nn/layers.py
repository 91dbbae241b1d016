"""Layer classes: each holds its Parameters and one cache, and calls the op
pair of the current backend (``numformer.kernels.op``).

Shapes: B batch, T sequence, C channels, H heads, F feed-forward width,
V vocabulary, L positional table length.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from numformer import kernels
from numformer.nn.module import Module, Parameter, accumulate
from numformer.ops import embedding as _emb
from numformer.ops import losses as _losses
from numformer.ops import pooling


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def normal(rng, shape, std: float, dtype) -> np.ndarray:
    return (_rng(rng).standard_normal(shape) * std).astype(dtype)


class Linear(Module):
    """``y = x @ W + b`` with W (C_in, C_out); weights N(0, init_std^2), bias 0."""

    def __init__(self, c_in: int, c_out: int, bias: bool = True, rng=None,
                 init_std: float = 0.02, dtype=np.float32):
        super().__init__()
        self.weight = Parameter(normal(rng, (c_in, c_out), init_std, dtype))
        self.bias = Parameter(np.zeros(c_out, dtype=dtype)) if bias else None

    def extra_repr(self):
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, bias={self.bias is not None}"

    def forward(self, x):
        from numformer.nn.lora import linear_fwd
        out, cache = linear_fwd(self, x, "weight", "bias")  # (..., C_out), + a LoRA adapter if any
        self._set_cache(cache)
        return out

    def backward(self, dout):
        from numformer.nn.lora import linear_bwd
        return linear_bwd(self, dout, self._pop_cache(), "weight", "bias")


class Embedding(Module):
    """Token embedding: rows of W (V, C) gathered at ids; backward scatter-adds."""

    def __init__(self, vocab_size: int, dim: int, rng=None, init_std: float = 0.02,
                 dtype=np.float32):
        super().__init__()
        self.weight = Parameter(normal(rng, (vocab_size, dim), init_std, dtype))

    def extra_repr(self):
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"

    def forward(self, ids):
        f = kernels.op("embedding")
        out, cache = f.embedding_forward(ids, self.weight.value)  # (B, T, C)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        if self.weight.grad is not None:  # frozen: no buffer to scatter into
            f.embedding_backward(dout, cache, out=self.weight.grad)  # scatter-add into grad
        return None  # ids have no gradient


class SinusoidalPositions(Module):
    """Adds the fixed sinusoidal table (no parameters) to x (B, T, C)."""

    def __init__(self, max_len: int, dim: int, dtype=np.float32):
        super().__init__()
        self.register_buffer("table", _emb.sinusoidal_table(max_len, dim, dtype))  # (L, C)

    def extra_repr(self):
        return f"max_len={self.table.shape[0]}, dim={self.table.shape[1]}"

    def forward(self, x, offset: int = 0):
        out, cache = _emb.position_forward(x, self.table, offset)
        self._set_cache(cache)
        return out

    def backward(self, dout):
        dx, _ = _emb.position_backward(dout, self._pop_cache())
        return dx


class LearnedPositions(Module):
    """Adds a learned table P (L, C) to x (B, T, C)."""

    def __init__(self, max_len: int, dim: int, rng=None, init_std: float = 0.02,
                 dtype=np.float32):
        super().__init__()
        self.weight = Parameter(normal(rng, (max_len, dim), init_std, dtype))

    def extra_repr(self):
        return f"max_len={self.weight.shape[0]}, dim={self.weight.shape[1]}"

    def forward(self, x, offset: int = 0):
        out, cache = _emb.position_forward(x, self.weight.value, offset)
        self._set_cache(cache)
        return out

    def backward(self, dout):
        dx, dP = _emb.position_backward(dout, self._pop_cache())
        accumulate(self.weight, dP)
        return dx


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.eps = eps
        self.gamma = Parameter(np.ones(dim, dtype=dtype))
        self.beta = Parameter(np.zeros(dim, dtype=dtype))

    def extra_repr(self):
        return f"{self.gamma.shape[0]}, eps={self.eps}"

    def forward(self, x):
        f = kernels.op("layernorm")
        out, cache = f.layernorm_forward(x, self.gamma.value, self.beta.value, self.eps)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        dx, dgamma, dbeta = f.layernorm_backward(dout, cache)
        accumulate(self.gamma, dgamma)
        accumulate(self.beta, dbeta)
        return dx


class ReLU(Module):
    def forward(self, x):
        f = kernels.op("activations")
        out, cache = f.relu_forward(x)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.relu_backward(dout, cache)


class Tanh(Module):
    def forward(self, x):
        f = kernels.op("activations")
        out, cache = f.tanh_forward(x)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.tanh_backward(dout, cache)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, x):
        f = kernels.op("activations")
        out, cache = f.gelu_forward(x, self.approximate)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.gelu_backward(dout, cache)


ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "gelu_tanh": lambda: GELU("tanh")}


def make_activation(name: str) -> Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


# the batch row of the first row a forward sees (a data-parallel shard or micro-batch):
# dropout masks are then those of the whole batch's rows (numformer.distributed)
_DROPOUT_ROW: contextvars.ContextVar[int] = contextvars.ContextVar("numformer_dropout_row",
                                                                   default=0)


@contextlib.contextmanager
def batch_rows_from(row: int):
    """Inside, a forward's inputs are the rows ``row:`` of a larger batch: Dropout draws
    the masks the whole batch draws for those rows (x's first axis is the batch)."""
    token = _DROPOUT_ROW.set(int(row))
    try:
        yield
    finally:
        _DROPOUT_ROW.reset(token)


class Dropout(Module):
    """Inverted dropout with its own seeded generator; identity in eval mode. Inside
    ``batch_rows_from(r)`` its input is taken as rows ``r:`` of a batch."""

    def __init__(self, p: float = 0.1, seed=None):
        super().__init__()
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        f = kernels.op("dropout")
        row = _DROPOUT_ROW.get()  # x's rows are rows row: of a batch (a data-parallel shard)
        kw = {"offset": row * (x.size // x.shape[0])} if row and x.ndim and x.shape[0] else {}
        out, cache = f.dropout_forward(x, self.p, self.rng, self.training, **kw)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.dropout_backward(dout, cache)


class Softmax(Module):
    """Softmax over the last axis."""

    def forward(self, x):
        f = kernels.op("softmax")
        out, cache = f.softmax_forward(x)
        self._set_cache((f, cache))
        return out

    def backward(self, dout):
        f, cache = self._pop_cache()
        return f.softmax_backward(dout, cache)


# Multi-head (and grouped-query) self-attention: numformer.nn.attention.Attention,
# under the name it has always had here. Imported at the end of this module.


class FeedForward(Module):
    """Position-wise ``Linear(C, F) -> activation -> Linear(F, C)``."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu", rng=None,
                 init_std: float = 0.02, dtype=np.float32, bias: bool = True):
        super().__init__()
        rng = _rng(rng)
        self.fc1 = Linear(dim, hidden, bias=bias, rng=rng, init_std=init_std, dtype=dtype)
        self.act = make_activation(activation)
        self.fc2 = Linear(hidden, dim, bias=bias, rng=rng, init_std=init_std, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))  # (B, T, C)

    def backward(self, dout):
        return self.fc1.backward(self.act.backward(self.fc2.backward(dout)))


class MeanPool(Module):
    """Mean over the real tokens: (B, T, C), mask (B, T) -> (B, C)."""

    def forward(self, x, mask=None):
        out, cache = pooling.mean_pool_forward(x, mask)
        self._set_cache(cache)
        return out

    def backward(self, dout):
        return pooling.mean_pool_backward(dout, self._pop_cache())


class ClsPool(Module):
    """The first token's vector: (B, T, C) -> (B, C)."""

    def forward(self, x, mask=None):
        out, cache = pooling.cls_pool_forward(x)
        self._set_cache(cache)
        return out

    def backward(self, dout):
        return pooling.cls_pool_backward(dout, self._pop_cache())


POOLINGS = {"mean": MeanPool, "cls": ClsPool}


class CrossEntropyLoss(Module):
    """Softmax cross-entropy, mean over counted positions; backward returns dlogits."""

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        f = kernels.op("losses")
        loss, cache = f.cross_entropy_forward(logits, targets, self.ignore_index,
                                              self.label_smoothing)
        self._set_cache((f, cache))
        return loss

    def backward(self, dloss=1.0):
        f, cache = self._pop_cache()
        return f.cross_entropy_backward(dloss, cache)


class MSELoss(Module):
    """Mean squared error over all elements (regression); backward returns dpred."""

    def forward(self, pred, targets):
        loss, cache = _losses.mse_forward(pred, targets)
        self._set_cache(cache)
        return loss

    def backward(self, dloss=1.0):
        return _losses.mse_backward(dloss, self._pop_cache())


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], the mean over
    all elements (a score rescaled to [0, 1]); backward returns dlogits."""

    def forward(self, logits, targets):
        loss, cache = _losses.bce_logits_forward(logits, targets)
        self._set_cache(cache)
        return loss

    def backward(self, dloss=1.0):
        return _losses.bce_logits_backward(dloss, self._pop_cache())


class CoSENTLoss(Module):
    """The CoSENT ranking loss of a batch of scores (cosines) against the order of
    their targets (numformer.ops.losses.cosent_forward); backward returns dscores."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = float(scale)

    def extra_repr(self):
        return f"scale={self.scale:g}"

    def forward(self, scores, targets):
        loss, cache = _losses.cosent_forward(scores, targets, self.scale)
        self._set_cache(cache)
        return loss

    def backward(self, dloss=1.0):
        return _losses.cosent_backward(dloss, self._pop_cache())


from numformer.nn.attention import Attention as MultiHeadAttention  # noqa: E402
from numformer.nn.attention import attention_maps  # noqa: E402,F401
