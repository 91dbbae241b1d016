"""Module and Parameter mechanics: registration, names, tied weights, state, modes."""

import numpy as np
import pytest

from numformer import nn


def cfg(**kw):
    base = dict(vocab_size=13, dim=8, n_heads=2, n_layers=2, d_ff=12, max_len=10)
    base.update(kw)
    return nn.ModelConfig(**base)


def test_parameters_are_named_and_tied_weight_appears_once():
    m = nn.MaskedLM(cfg(tie_weights=True))
    names = [n for n, _ in m.named_parameters()]
    assert len(names) == len(set(names))
    assert "body.tok.weight" in names and not any("decoder_weight" in n for n in names)
    assert m.head.decoder_weight is m.body.tok.weight
    untied = nn.MaskedLM(cfg(tie_weights=False))
    assert untied.num_parameters() == m.num_parameters() + 13 * 8


def test_tied_weight_gradient_is_the_sum_of_both_uses(rng):
    """A tied model and an untied copy holding the same numbers: the tied embedding's
    gradient equals the untied embedding's plus the untied decoder's (transposed)."""
    tied = nn.MaskedLM(cfg(dropout=0.0, tie_weights=True), seed=1).astype(np.float64)
    untied = nn.MaskedLM(cfg(dropout=0.0, tie_weights=False), seed=1).astype(np.float64)
    sd = tied.state_dict()
    untied.load_state_dict({**sd, "head.decoder.weight": sd["body.tok.weight"].T})
    ids = rng.integers(0, 13, (2, 5))
    positions = np.array([0, 3, 7])
    dlogits = rng.standard_normal((3, 13))
    for m in (tied, untied):
        m.zero_grad()
        m(ids, None, positions)
        m.backward(dlogits)
    np.testing.assert_allclose(tied(ids, None, positions), untied(ids, None, positions),
                               rtol=1e-12)
    emb, dec = untied.body.tok.weight.grad, untied.head.decoder.weight.grad.T
    assert np.any(emb != 0) and np.any(dec != 0)
    np.testing.assert_allclose(tied.body.tok.weight.grad, emb + dec, rtol=1e-10, atol=1e-14)


def test_gradients_accumulate_until_zero_grad(rng):
    lin = nn.Linear(3, 2, rng=0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    g1 = lin.weight.grad.copy()
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    np.testing.assert_allclose(lin.weight.grad, 2 * g1, rtol=1e-6)
    lin.zero_grad()
    assert np.all(lin.weight.grad == 0) and np.all(lin.bias.grad == 0)


def test_backward_without_forward_is_an_error():
    with pytest.raises(RuntimeError, match="without a forward pass"):
        nn.Linear(2, 2).backward(np.zeros((1, 2), np.float32))


def test_state_dict_round_trip_and_errors(rng):
    a = nn.Classifier(cfg(), seed=1)
    b = nn.Classifier(cfg(), seed=2)
    ids = rng.integers(0, 13, (2, 6))
    a.eval(), b.eval()
    assert not np.allclose(a(ids), b(ids))
    sd = a.state_dict()
    b.load_state_dict(sd)
    np.testing.assert_array_equal(a(ids), b(ids))
    sd["body.tok.weight"][0, 0] += 1  # a copy: the model is untouched
    assert a.body.tok.weight.value[0, 0] != sd["body.tok.weight"][0, 0]
    bad = dict(sd)
    del bad["fc.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["fc.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"missing \['fc.bias'\].*unexpected \['extra.weight'\]"
                                         r".*fc.weight: expected \(8, 2\), got \(3, 3\)"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match="expected (a float array|dtype float32 or float64)"):
        b.load_state_dict({**sd, "fc.bias": np.zeros(2, np.int64)})


def test_astype_converts_parameters_buffers_and_tied_weights(rng):
    m = nn.MaskedLM(cfg(positional="sinusoidal"))
    assert m.dtype == np.float32
    m.astype(np.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert m.body.pos.table.dtype == np.float64
    assert m.head.decoder_weight is m.body.tok.weight
    out = m(rng.integers(0, 13, (2, 4)))
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="expected float32 or float64, got int32"):
        m.astype(np.int32)


def test_train_eval_toggles_dropout(rng):
    m = nn.Classifier(cfg(dropout=0.5), seed=0)
    ids = rng.integers(0, 13, (3, 6))
    m.train()
    assert all(mod.training for mod in m.modules())
    assert not np.allclose(m(ids), m(ids))  # fresh dropout masks
    m.eval()
    assert not any(mod.training for mod in m.modules())
    np.testing.assert_array_equal(m(ids), m(ids))


def test_seed_makes_dropout_repeatable(rng):
    m = nn.Classifier(cfg(dropout=0.5), seed=0)
    ids = rng.integers(0, 13, (3, 6))
    a = m.seed(7)(ids)
    b = m.seed(7)(ids)
    c = m.seed(8)(ids)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_same_seed_same_model():
    a, b = nn.MaskedLM(cfg(), seed=3), nn.MaskedLM(cfg(), seed=3)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and np.array_equal(pa.value, pb.value)


def test_parameter_rejects_integer_values():
    with pytest.raises(ValueError, match="Parameter: expected dtype float32 or float64, got int64"):
        nn.Parameter(np.zeros(3, np.int64))


def test_repr_lists_submodules():
    text = repr(nn.EncoderBlock(8, 2, 16))
    assert "Attention(8, n_heads=2, bias=True)" in text and "LayerNorm(8" in text
