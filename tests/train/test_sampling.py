"""Sampling rules of generation: the nucleus (top-p), stop ids, streaming,
and which special tokens a pretrained BPE tokenizer may produce."""

from __future__ import annotations

import numpy as np
import pytest

from numformer.train.generate import never_sampled, sample_next, stop_ids


def test_top_p_samples_the_nucleus_only_in_its_renormalised_proportions():
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = np.log(p)
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, 1.0, None, rng, top_p=0.75)[0] for _ in range(4000)])
    assert set(draws) == {0, 1}  # 0.5 + 0.3 passes 0.75: ids 2 and 3 are outside
    share = (draws == 0).mean()
    assert abs(share - 0.625) < 4 * np.sqrt(0.625 * 0.375 / 4000), share


def test_top_p_keeps_the_first_id_that_crosses_the_threshold():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(1)
    draws = {int(sample_next(logits, 1.0, None, rng, top_p=0.85)[0]) for _ in range(3000)}
    assert draws == {0, 1, 2}  # 0.8 < 0.85: the third id is needed, not the fourth


def test_top_p_one_is_plain_sampling():
    logits = np.random.default_rng(2).normal(size=(3, 50))
    a = [sample_next(logits, 0.9, None, np.random.default_rng(5), top_p=1.0) for _ in range(3)]
    b = [sample_next(logits, 0.9, None, np.random.default_rng(5)) for _ in range(3)]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), True])
def test_bad_top_p_is_refused(bad):
    with pytest.raises(ValueError, match="top_p: expected"):
        sample_next(np.zeros((1, 4)), 1.0, None, np.random.default_rng(0), top_p=bad)


def test_generation_stops_at_a_stop_id_and_streams_every_token():
    from numformer import nn
    from numformer.train.generate import generate
    cfg = nn.ModelConfig(vocab_size=9, dim=8, n_heads=2, n_layers=1, d_ff=8, max_len=32,
                         norm_first=True, dropout=0.0)
    m = nn.CausalLM(cfg, seed=0)
    free = generate(m, np.array([1, 2, 3]), 20, temperature=0.0, exclude=())
    stop = int(free[5])  # the third new token of the greedy run
    seen = []
    out = generate(m, np.array([1, 2, 3]), 20, temperature=0.0, exclude=(), stop=(stop,),
                   on_token=lambda col: seen.append(int(col[0])))
    first = 3 + list(free[3:]).index(stop)
    np.testing.assert_array_equal(out, free[:first + 1])
    assert seen == list(out[3:])


class _FakeBPE:
    special_ids = frozenset({0, 1, 2, 3, 4})
    eos_id = 2
    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}


def test_a_pretrained_tokenizer_may_end_but_never_emits_other_controls():
    tok = _FakeBPE()
    assert stop_ids(tok) == (2,)
    assert never_sampled(tok) == (0, 1, 3, 4)
