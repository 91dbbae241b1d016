"""No silent dtype promotion in a backward: a float64 upstream gradient into a
float32 forward is refused, naming ``dout``, by the reference op and by its
Numba kernel alike (a kernel never falls back to the reference over it).
Attention has its own test beside its op."""

import numpy as np
import pytest

from numformer import kernels

B, T, C, V = 2, 5, 3, 7


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _case(name, rng):
    """(family, forward args builder) -> forward name, backward name, args, kwargs."""
    ids = rng.integers(0, V, (B, T))
    return {
        "linear": ("linear", "linear", (_f32(rng, B, T, C), _f32(rng, C, 4), _f32(rng, 4)), {}),
        "layernorm": ("layernorm", "layernorm",
                      (_f32(rng, B, T, C), np.ones(C, np.float32), np.zeros(C, np.float32)), {}),
        "softmax": ("softmax", "softmax", (_f32(rng, B, T, C),), {}),
        "log_softmax": ("softmax", "log_softmax", (_f32(rng, B, T, C),), {}),
        "relu": ("activations", "relu", (_f32(rng, B, T, C),), {}),
        "tanh": ("activations", "tanh", (_f32(rng, B, T, C),), {}),
        "gelu": ("activations", "gelu", (_f32(rng, B, T, C),), {}),
        "gelu_tanh": ("activations", "gelu", (_f32(rng, B, T, C), "tanh"), {}),
        "dropout": ("dropout", "dropout", (_f32(rng, B, T, C), 0.5, np.random.default_rng(0)), {}),
        "embedding": ("embedding", "embedding", (ids, _f32(rng, V, C)), {}),
        "position": ("embedding", "position", (_f32(rng, B, T, C), _f32(rng, 9, C)), {}),
        "matmul": ("matmul", "matmul", (_f32(rng, B, 2, T, C), _f32(rng, B, 2, C, 4)), {}),
        "mean_pool": ("pooling", "mean_pool", (_f32(rng, B, T, C),), {}),
        "cls_pool": ("pooling", "cls_pool", (_f32(rng, B, T, C),), {}),
    }[name]


CASES = ["linear", "layernorm", "softmax", "log_softmax", "relu", "tanh", "gelu", "gelu_tanh",
         "dropout", "embedding", "position", "matmul", "mean_pool", "cls_pool"]


def _grads(g):
    return [a for a in (g if isinstance(g, tuple) else (g,)) if a is not None]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", CASES)
def test_float64_dout_into_float32_forward_is_refused(rng, name, backend):
    family, op, args, kwargs = _case(name, rng)
    mod = kernels.op(family, backend)
    out, cache = getattr(mod, f"{op}_forward")(*args, **kwargs)
    backward = getattr(mod, f"{op}_backward")
    assert out.dtype == np.float32
    # the control: the forward's own dtype and shape are accepted, and keep float32
    for g in _grads(backward(rng.standard_normal(out.shape).astype(np.float32), cache)):
        assert g.dtype == np.float32
    with pytest.raises(ValueError, match=rf"{op}_backward: .*dout.*expected dtype float32.*"
                                         rf"got float64"):
        backward(rng.standard_normal(out.shape), cache)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["linear", "layernorm", "softmax", "relu", "gelu", "embedding",
                                  "matmul", "cls_pool"])
def test_wrong_shape_dout_is_refused(rng, name, backend):
    """A dout that would broadcast (one row short of the output) is an error too."""
    family, op, args, kwargs = _case(name, rng)
    mod = kernels.op(family, backend)
    out, cache = getattr(mod, f"{op}_forward")(*args, **kwargs)
    bad = np.ones((1,) + out.shape[1:], np.float32)
    with pytest.raises(ValueError, match=rf"{op}_backward: .*dout.*expected shape"):
        getattr(mod, f"{op}_backward")(bad, cache)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_cross_entropy_dloss(rng, backend):
    mod = kernels.op("losses", backend)
    logits = _f32(rng, B, T, V)
    _, cache = mod.cross_entropy_forward(logits, rng.integers(0, V, (B, T)))
    for dloss in (1.0, 2, np.float32(0.5), np.array(1.0, np.float32)):  # numbers adopt float32
        assert mod.cross_entropy_backward(dloss, cache).dtype == np.float32
    for dloss in (np.float64(1.0), np.array(1.0)):
        with pytest.raises(ValueError, match="cross_entropy_backward: dloss .*dout.*"
                                             "expected dtype float32.*got float64"):
            mod.cross_entropy_backward(dloss, cache)
    with pytest.raises(ValueError, match="dloss .*expected shape"):
        mod.cross_entropy_backward(np.ones(2, np.float32), cache)


def test_float64_forward_accepts_float64_dout(rng):
    """The check follows the forward's dtype: float64 end to end is fine."""
    from numformer.ops import linear
    x = rng.standard_normal((B, T, C))
    out, cache = linear.linear_forward(x, rng.standard_normal((C, 4)))
    dx, dW, _ = linear.linear_backward(rng.standard_normal(out.shape), cache)
    assert dx.dtype == dW.dtype == np.float64
    with pytest.raises(ValueError, match="expected dtype float64.*got float32"):
        linear.linear_backward(np.ones(out.shape, np.float32), cache)
