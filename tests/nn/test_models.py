"""System tests of the models: overfitting one batch, shapes, masks."""

import numpy as np
import pytest

from numformer import nn
from numformer.ops.adam import adam_step


def train_steps(model, loss_fn, steps, lr=3e-3):
    """Adam (the reference op) on every parameter; returns the loss curve."""
    params = model.parameters()
    m = [np.zeros_like(p.value) for p in params]
    v = [np.zeros_like(p.value) for p in params]
    losses = []
    for step in range(1, steps + 1):
        model.zero_grad()
        loss = loss_fn()
        losses.append(float(loss))
        for p, mi, vi in zip(params, m, v):
            adam_step(p.value, p.grad, mi, vi, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.0, step=step, decoupled=True)
    return losses


@pytest.mark.parametrize("norm_first", [False, True])
def test_mlm_overfits_one_batch(rng, norm_first):
    V = 20
    cfg = nn.ModelConfig(vocab_size=V, dim=32, n_heads=4, n_layers=2, d_ff=64, max_len=12,
                         dropout=0.0, norm_first=norm_first)
    model = nn.WithLoss(nn.MaskedLM(cfg, seed=0), nn.CrossEntropyLoss())
    ids = rng.integers(5, V, (4, 10))
    km = np.ones_like(ids, dtype=bool)
    km[1, 7:] = False
    chosen = np.zeros_like(km)
    chosen[:, [2, 5]] = True
    positions = np.flatnonzero(chosen)
    targets = ids.reshape(-1)[positions]
    corrupted = ids.copy()
    corrupted[chosen] = 3  # <mask>

    def loss_fn():
        loss = model(corrupted, km, positions, targets=targets)
        model.backward()
        return loss
    losses = train_steps(model, loss_fn, 150)
    assert losses[0] > 2.5  # about log(20) = 3.0 at the start
    assert losses[-1] < 0.05, losses[::15]
    logits = model.model(corrupted, km, positions)
    assert np.array_equal(logits.argmax(-1), targets)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_classifier_overfits_one_batch(rng, pooling):
    cfg = nn.ModelConfig(vocab_size=30, dim=32, n_heads=4, n_layers=2, d_ff=64, max_len=16,
                         dropout=0.0, n_classes=3, pooling=pooling)
    model = nn.WithLoss(nn.Classifier(cfg, seed=0), nn.CrossEntropyLoss())
    ids = rng.integers(0, 30, (6, 12))
    km = np.ones_like(ids, dtype=bool)
    km[2, 5:] = False
    labels = np.array([0, 1, 2, 0, 1, 2])

    def loss_fn():
        loss = model(ids, km, targets=labels)
        model.backward()
        return loss
    losses = train_steps(model, loss_fn, 120)
    assert losses[-1] < 0.02, losses[::12]
    assert np.array_equal(model.model(ids, km).argmax(-1), labels)


def test_padding_does_not_change_real_tokens(rng):
    """With a key mask, what sits in the padded positions cannot reach the real ones."""
    cfg = nn.ModelConfig(vocab_size=15, dim=16, n_heads=2, n_layers=2, d_ff=16, max_len=8,
                         dropout=0.0)
    enc = nn.TransformerEncoder(cfg, rng=0)
    ids = rng.integers(0, 15, (2, 8))
    km = np.ones_like(ids, dtype=bool)
    km[:, 5:] = False
    a = enc(ids, km)
    ids2 = ids.copy()
    ids2[:, 5:] = rng.integers(0, 15, (2, 3))
    b = enc(ids2, km)
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[:, 5:], b[:, 5:])


def test_mlm_logits_only_at_positions(rng):
    cfg = nn.ModelConfig(vocab_size=15, dim=16, n_heads=2, n_layers=1, d_ff=16, max_len=8,
                         dropout=0.0)
    m = nn.MaskedLM(cfg)
    ids = rng.integers(0, 15, (2, 6))
    with nn.no_grad():  # a forward for comparison only: no cache for the backward below
        full = m(ids)
    assert full.shape == (2, 6, 15)
    positions = np.array([1, 8, 11])
    part = m(ids, None, positions)
    assert part.shape == (3, 15)
    np.testing.assert_allclose(part, full.reshape(12, 15)[positions], rtol=1e-5, atol=1e-6)
    dfull = m.backward(np.ones((3, 15), np.float32))
    assert dfull is None  # ids have no gradient
