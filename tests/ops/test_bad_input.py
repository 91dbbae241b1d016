"""Bad input: a ValueError naming the argument, what was expected and what came."""

import numpy as np
import pytest

from numformer import nn, ops

f32 = np.float32


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("call,pattern", [
    (lambda: ops.attention_forward(z(2, 3, 4), z(2, 1, 3, 4), z(2, 1, 3, 4)),
     r"q: expected 4 dims \(B, H, Tq, D\), got shape \(2, 3, 4\)"),
    (lambda: ops.attention_forward(z(2, 1, 3, 4), z(2, 1, 3, 5), z(2, 1, 3, 4)),
     r"k: expected shape \(2, 1, 3, 4\).*got \(2, 1, 3, 5\)"),
    (lambda: ops.attention_forward(z(2, 1, 3, 4), z(2, 1, 3, 4, dtype=np.float64), z(2, 1, 3, 4)),
     r"k: expected dtype float32.*got float64"),
    (lambda: ops.attention_forward(z(2, 1, 3, 4), z(2, 1, 3, 4), z(2, 1, 3, 4),
                                   key_mask=np.ones((2, 4), bool)),
     r"key_mask: expected shape \(2, 3\).*got \(2, 4\)"),
    (lambda: ops.attention_forward(z(2, 1, 3, 4), z(2, 1, 3, 4), z(2, 1, 3, 4),
                                   key_mask=np.ones((2, 3))),
     r"key_mask: expected dtype bool, got float64"),
    (lambda: ops.attention_forward(z(2, 1, 3, 4, dtype=np.int64), z(2, 1, 3, 4), z(2, 1, 3, 4)),
     r"q: expected dtype float32 or float64, got int64"),
    (lambda: ops.embedding_forward(np.array([[0, 7]]), z(5, 3)),
     r"ids: expected ids in \[0, 5\), got 7"),
    (lambda: ops.embedding_forward(np.array([[0, -1]]), z(5, 3)),
     r"ids: expected ids in \[0, 5\), got -1"),
    (lambda: ops.embedding_forward(np.array([[0.0, 1.0]]), z(5, 3)),
     r"ids: expected an integer dtype, got float64"),
    (lambda: ops.linear_forward(z(2, 3), z(4, 5)),
     r"W: expected shape \(3, C_out\).*got \(4, 5\)"),
    (lambda: ops.linear_forward(z(2, 3), z(3, 5), z(4)),
     r"b: expected shape \(5,\) \(C_out,\), got \(4,\)"),
    (lambda: ops.matmul_forward(z(1, 2, 3, 4), z(1, 2, 5, 6)),
     r"b: expected shape \(1, 2, 4, N\).*got \(1, 2, 5, 6\)"),
    (lambda: ops.layernorm_forward(z(2, 3), z(4), z(3)),
     r"gamma: expected shape \(3,\) \(C,\), got \(4,\)"),
    (lambda: ops.position_forward(z(1, 9, 4), z(8, 4)),
     r"x: sequence of length 9 at offset 0 is longer than the positional table \(8 positions\)"),
    (lambda: ops.cross_entropy_forward(z(3, 4), np.array([0, 4, 1])),
     r"targets: expected class ids in \[0, 4\) or ignore_index=-100, got 4"),
    (lambda: ops.cross_entropy_forward(z(3, 4), np.array([0, 1])),
     r"targets: expected shape \(3,\).*got \(2,\)"),
    (lambda: ops.cross_entropy_forward(z(3, 4), np.array([0.0, 1.0, 2.0])),
     r"targets: expected an integer numpy array, got float64"),
    (lambda: ops.dropout_forward(z(3), 1.0, np.random.default_rng()),
     r"p: expected a probability in \[0, 1\), got 1.0"),
    (lambda: ops.gelu_forward(z(3), "sigmoid"),
     r"approximate: expected one of \('none', 'tanh'\), got 'sigmoid'"),
    (lambda: ops.mean_pool_forward(z(2, 3, 4), np.ones((2, 4), bool)),
     r"mask: expected shape \(2, 3\)"),
    (lambda: ops.mha_forward(z(1, 2, 6), z(6, 18), z(18), z(6, 6), z(6), 4),
     r"n_heads: expected a divisor of C=6, got 4"),
    (lambda: ops.softmax_forward([1.0, 2.0]),
     r"x: expected a numpy array, got list"),
])
def test_ops_reject_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def _tiny():
    return nn.MaskedLM(nn.ModelConfig(vocab_size=10, dim=8, n_heads=2, n_layers=1, d_ff=8,
                                      max_len=6))


@pytest.mark.parametrize("call,pattern", [
    (lambda m: m(np.zeros((2, 7), np.int64)), r"longer than the positional table \(6 positions\)"),
    (lambda m: m(np.zeros((2, 3), np.int64), np.ones((3, 2), bool)),
     r"key_mask: expected shape \(2, 3\)"),
    (lambda m: m(np.zeros((2, 3), np.float32)), r"ids: expected an integer numpy array"),
    (lambda m: m(np.zeros(3, np.int64)), r"ids: expected 2 dims \(B, T\), got shape \(3,\)"),
    (lambda m: m(np.full((1, 3), 10)), r"ids: expected ids in \[0, 10\), got 10"),
    (lambda m: m(np.zeros((1, 3), np.int64), None, np.array([3])),
     r"positions: expected ids in \[0, 3\), got 3"),  # a masked position beyond B*T
])
def test_models_reject_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(_tiny())


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(dim=10, n_heads=4), r"n_heads: expected a divisor of dim=10, got 4"),
    (dict(positional="rotary"),
     r"positional: expected one of \['learned', 'sinusoidal', 'rope', 'none'\], got 'rotary'"),
    (dict(dropout=1.5), r"dropout: expected a probability"),
    (dict(n_layers=0), r"n_layers: expected a positive integer, got 0"),
    (dict(pooling="max"), r"pooling: expected one of"),
])
def test_config_rejects_bad_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nn.ModelConfig(vocab_size=10, **kwargs)
