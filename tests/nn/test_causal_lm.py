"""The causal language model: the mask, the key-value cache."""

import numpy as np
import pytest

from numformer import nn


def make(norm_first=True, **kw):
    cfg = nn.ModelConfig(vocab_size=17, dim=16, n_heads=2, n_layers=2, d_ff=24, max_len=12,
                         dropout=0.0, norm_first=norm_first, **kw)
    return nn.CausalLM(cfg, seed=2).astype(np.float64).eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_changing_a_later_token_never_changes_an_earlier_prediction(rng, norm_first):
    m = make(norm_first)
    ids = rng.integers(0, 17, (3, 10))
    base = m(ids)
    for t in (0, 4, 9):
        changed = ids.copy()
        changed[:, t] = (changed[:, t] + 1 + rng.integers(0, 15, 3)) % 17
        out = m(changed)
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert not np.allclose(out[:, t], base[:, t])


def test_gradient_of_early_logits_does_not_reach_later_tokens(rng):
    m = make(positional="learned")
    m.train()
    ids = rng.integers(0, 17, (2, 8))
    out = m(ids)
    d = np.zeros_like(out)
    d[:, :3] = rng.standard_normal((2, 3, 17))
    m.zero_grad()
    m.backward(d)
    pos_grad = m.body.pos.weight.grad
    assert np.any(pos_grad[:3] != 0) and np.all(pos_grad[3:] == 0)


@pytest.mark.parametrize("tied", [True, False])
def test_key_value_cache_gives_the_same_logits(rng, tied):
    m = make(tie_weights=tied)
    ids = rng.integers(0, 17, (2, 11))
    full = m(ids)
    cache = m.new_cache()
    parts = [m(ids[:, :5], kv_cache=cache)]
    parts += [m(ids[:, t:t + 1], kv_cache=cache) for t in range(5, 11)]
    assert nn.CausalLM.cache_length(cache) == 11
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-10, atol=1e-12)


def test_cache_refuses_training_mode_and_overflow(rng):
    m = make()
    cache = m.new_cache()
    m(rng.integers(0, 17, (1, 12)), kv_cache=cache)
    with pytest.raises(ValueError, match="longer than the positional table"):
        m(rng.integers(0, 17, (1, 1)), kv_cache=cache)
    m.train()
    with pytest.raises(RuntimeError, match="call eval"):
        m(rng.integers(0, 17, (1, 1)), kv_cache=m.new_cache())


def test_overfits_a_short_string_and_then_generates_it():
    from numformer.data.tokenizers import ByteTokenizer
    from numformer.optim import Adam
    from numformer.train.generate import generate
    tok = ByteTokenizer()
    text = "to be or not to be, that is the question."
    ids = tok.encode(text)[None, :]  # (1, T)
    cfg = nn.ModelConfig(vocab_size=tok.vocab_size, dim=32, n_heads=4, n_layers=2, d_ff=64,
                         max_len=64, dropout=0.0, norm_first=True)
    model = nn.CausalLM(cfg, seed=0)
    loss_fn = nn.CrossEntropyLoss()
    opt = Adam(model, lr=3e-3)
    x, y = ids[:, :-1], ids[:, 1:]
    for _ in range(250):
        model.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
    assert loss < 0.02
    out = generate(model, ids[0, :3], ids.shape[1] - 3, temperature=0.0)
    assert tok.decode(out) == text
