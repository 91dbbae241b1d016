"""The backend switch: set_backend/get_backend, NUMFORMER_BACKEND, kernels.op(),
that every kernel module mirrors its reference, and that a small model trains
to the same losses on both backends (whatever KERNEL_OPS holds)."""

import importlib
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import numformer
from numformer import kernels, nn
from numformer.testing import assert_close


@pytest.fixture
def restore_backend():
    before = kernels.get_backend()
    yield
    kernels.set_backend(before)


def test_set_and_get_backend(restore_backend):
    assert numformer.set_backend("numpy") == "numpy"
    assert numformer.get_backend() == "numpy"
    assert numformer.set_backend("numba") == "numba"
    assert kernels.get_backend() == "numba"


@pytest.mark.parametrize("name", ["torch", "Numba", "", None])
def test_bad_backend_name(restore_backend, name):
    before = kernels.get_backend()
    with pytest.raises(ValueError, match="backend: expected one of"):
        kernels.set_backend(name)
    assert kernels.get_backend() == before  # a refused name changes nothing


def _backend_in_subprocess(value):
    env = {k: v for k, v in os.environ.items() if k != kernels.ENV_VAR}
    if value is not None:
        env[kernels.ENV_VAR] = value
    code = ("import numformer, numformer.kernels as k; "
            "print(numformer.get_backend(), k.op('layernorm').__name__)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("value, expected", [
    ("numpy", "numpy numformer.ops.layernorm"),
    (" NumPy ", "numpy numformer.ops.layernorm"),
    ("numba", "numba numformer.kernels.layernorm"),
    (None, "numba numformer.kernels.layernorm"),  # the default
])
def test_environment_variable(value, expected):
    run = _backend_in_subprocess(value)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


def test_bad_environment_variable():
    run = _backend_in_subprocess("cuda")
    assert run.returncode != 0
    assert "ValueError: backend: expected one of ('numba', 'numpy'), got 'cuda'" in run.stderr


def test_op_picks_the_module_of_the_backend(restore_backend):
    assert kernels.KERNEL_OPS, "no kernel registered"
    for name in sorted(kernels.KERNEL_OPS):
        kernel = importlib.import_module(f"numformer.kernels.{name}")
        ref = importlib.import_module(f"numformer.ops.{name}")
        assert kernels.op(name, "numba") is kernel
        assert kernels.op(name, "numpy") is ref
        kernels.set_backend("numba")
        assert kernels.op(name) is kernel
        kernels.set_backend("numpy")
        assert kernels.op(name) is ref
    # an op family without a kernel is the reference on both backends
    assert "pooling" not in kernels.KERNEL_OPS
    assert kernels.op("pooling", "numba") is kernels.op("pooling", "numpy")


def _op_functions(module):
    """The op functions a layer may call: ``*_forward``, ``*_backward``, ``*_step``."""
    return {name: fn for name, fn in vars(module).items()
            if inspect.isfunction(fn) and fn.__module__ == module.__name__
            and not name.startswith("_") and name.endswith(("_forward", "_backward", "_step"))}


@pytest.mark.parametrize("name", sorted(kernels.KERNEL_OPS))
def test_kernel_module_mirrors_reference(name):
    """Every op function of ops/<name>.py exists in kernels/<name>.py with the
    same signature."""
    kernel = importlib.import_module(f"numformer.kernels.{name}")
    ref = importlib.import_module(f"numformer.ops.{name}")
    functions = _op_functions(ref)
    assert functions, f"numformer.ops.{name} has no op function"
    for fname, fn in functions.items():
        assert hasattr(kernel, fname), f"numformer.kernels.{name} lacks {fname}"
        assert inspect.signature(getattr(kernel, fname)) == inspect.signature(fn), fname


def _train_losses(backend, model_name, steps=4, lr=0.5):
    """A few steps of plain SGD (p -= lr * grad) on one batch; the loss curve."""
    kernels.set_backend(backend)
    rng = np.random.default_rng(7)
    V = 23
    cfg = nn.ModelConfig(vocab_size=V, dim=16, n_heads=2, n_layers=2, d_ff=24, max_len=9,
                         dropout=0.0, n_classes=3, activation="gelu", embed_norm=True)
    ids = rng.integers(4, V, (3, 9))
    key_mask = np.ones(ids.shape, dtype=bool)
    key_mask[1, 6:] = False
    if model_name == "mlm":
        model = nn.WithLoss(nn.MaskedLM(cfg, seed=0), nn.CrossEntropyLoss())
        positions = np.array([1, 4, 4 + 9, 2 * 9 + 3, 2 * 9 + 8])
        targets = ids.reshape(-1)[positions]
        corrupted = ids.copy()
        corrupted.reshape(-1)[positions] = 3
        inputs, kwargs = (corrupted, key_mask, positions), {}
    else:
        model = nn.WithLoss(nn.Classifier(cfg, seed=0), nn.CrossEntropyLoss())
        targets = np.array([0, 2, 1])
        inputs, kwargs = (ids, key_mask), {}
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = model(*inputs, targets=targets, **kwargs)
        model.backward()
        assert loss.dtype == np.float32
        losses.append(float(loss))
        for p in model.parameters():
            p.value -= np.float32(lr) * p.grad
    return np.array(losses)


@pytest.mark.parametrize("model_name", ["mlm", "classifier"])
def test_model_trains_the_same_on_both_backends(restore_backend, model_name):
    numpy_losses = _train_losses("numpy", model_name)
    numba_losses = _train_losses("numba", model_name)
    assert numpy_losses[-1] < numpy_losses[0]  # training did something
    assert_close(numba_losses, numpy_losses, dtype=np.float32, what=f"{model_name} losses")


def _kernel_calls(rng):
    """op name -> a function running that kernel family forward and backward on
    fixed inputs, returning every array it produced."""
    from numformer.kernels import activations, adam, embedding, layernorm, losses, softmax
    x = rng.standard_normal((67, 45)).astype(np.float32)  # 67 rows: chunks of unequal size
    d = rng.standard_normal((67, 45)).astype(np.float32)
    ids = rng.integers(0, 9, 67)
    ids[::3] = 4

    def ln():
        out, c = layernorm.layernorm_forward(x, d[0], d[1])
        return (out, *c[::2], *layernorm.layernorm_backward(d, c))

    def sm():
        p, c = softmax.softmax_forward(x)
        logp, c2 = softmax.log_softmax_forward(x)
        return p, softmax.softmax_backward(d, c), logp, softmax.log_softmax_backward(d, c2)

    def ce():
        t = ids.copy()
        t[5] = -100
        loss, c = losses.cross_entropy_forward(x, t, label_smoothing=0.1)
        return np.array(loss), c[0], losses.cross_entropy_backward(1.0, c)

    def emb():
        out, c = embedding.embedding_forward(ids, x)
        return out, embedding.embedding_backward(d, c)

    def opt():
        p, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
        for step in (1, 2):
            adam.adam_step(p, d, m, v, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                           weight_decay=0.1, step=step, decoupled=step == 2)
        return p, m, v

    def act():
        y, c = activations.gelu_forward(x)
        r, mask = activations.relu_forward(x)
        return y, activations.gelu_backward(d, c), r, activations.relu_backward(d, mask)
    return {"layernorm": ln, "softmax": sm, "losses": ce, "embedding": emb, "adam": opt,
            "activations": act}


@pytest.mark.parametrize("name", ["layernorm", "softmax", "losses", "embedding", "adam",
                                  "activations"])
def test_serial_and_parallel_paths_agree(monkeypatch, name):
    """The chunking never splits a sum across threads (layernorm's dgamma/dbeta
    partials are chunked by rows alone), so the parallel drivers agree with the
    serial kernels whatever the thread count: bit for bit where no fast-math
    flag lets the compiler reorder (Adam, the embedding), within the table's
    plain tolerance elsewhere (the inlined copy may pair operations
    differently)."""
    from numformer.kernels import _loops as helpers
    results = {}
    for path, threshold in (("serial", 1 << 62), ("parallel", 0)):
        monkeypatch.setattr(helpers, "PARALLEL_MIN_WORK", threshold)
        results[path] = _kernel_calls(np.random.default_rng(3))[name]()
    for a, b in zip(results["serial"], results["parallel"]):
        assert a.dtype == b.dtype
        if name in ("adam", "embedding"):
            assert np.array_equal(a, b), name
        else:
            assert_close(b, a, what=name)
