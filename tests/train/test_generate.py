"""Sampling from a causal LM: the cache changes nothing, greedy is deterministic."""

import numpy as np
import pytest

from numformer import nn
from numformer.train.generate import generate, sample_next


def model(max_len=10):
    cfg = nn.ModelConfig(vocab_size=13, dim=16, n_heads=2, n_layers=2, d_ff=24, max_len=max_len,
                         dropout=0.1, norm_first=True, init_std=0.3)
    return nn.CausalLM(cfg, seed=1).astype(np.float64)


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.8, 4)])
def test_cache_and_no_cache_give_the_same_tokens(temperature, top_k):
    m = model()
    prompt = np.array([1, 5, 2])
    # 25 new tokens with max_len 10: the window restarts several times
    a = generate(m, prompt, 25, temperature, top_k, seed=3, use_cache=True)
    b = generate(m, prompt, 25, temperature, top_k, seed=3, use_cache=False)
    assert a.shape == (28,) and np.array_equal(a[:3], prompt)
    np.testing.assert_array_equal(a, b)
    assert m.training  # mode restored


def test_greedy_is_deterministic_and_seed_matters_when_sampling():
    m = model()
    prompt = np.array([[1, 2], [3, 4]])
    g1 = generate(m, prompt, 12, temperature=0.0, seed=0)
    g2 = generate(m, prompt, 12, temperature=0.0, seed=99)
    np.testing.assert_array_equal(g1, g2)
    s1 = generate(m, prompt, 12, temperature=1.5, seed=0)
    s2 = generate(m, prompt, 12, temperature=1.5, seed=1)
    assert not np.array_equal(s1, s2)


def test_sample_next_distribution_and_top_k():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.2, 1e-9]]))
    draws = np.array([sample_next(logits, 1.0, None, rng)[0] for _ in range(20000)])
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq[:3], [0.5, 0.3, 0.2], atol=0.015)  # 3 sigma ~ 0.011
    top2 = np.array([sample_next(logits, 1.0, 2, rng)[0] for _ in range(2000)])
    assert set(np.unique(top2)) == {0, 1}
    assert sample_next(logits, 0.0, None, rng)[0] == 0


def test_bad_arguments():
    m = model()
    with pytest.raises(ValueError, match="prompt: expected a non-empty integer array"):
        generate(m, np.array([], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="temperature: expected a finite number >= 0, got -1"):
        generate(m, np.array([1]), 3, temperature=-1)
