"""The one configurable Transformer: old configurations and names unchanged,
the Llama configuration on both backends, the key-value cache."""

from __future__ import annotations

import numpy as np
import pytest

import numformer
from numformer import nn
from numformer.testing import describe_difference


def tiny_llama(**kw):
    base = dict(vocab_size=23, dim=16, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=24, max_len=64,
                init_std=0.3)
    base.update(kw)
    return nn.ModelConfig.for_arch("llama", **base)


def test_a_config_saved_before_the_new_fields_builds_the_same_model():
    """A ModelConfig dict written by the release before this stack (no norm, ffn,
    n_kv_heads, ... keys) loads, and the model has exactly the parameter names
    and shapes that release gave it, so its checkpoints load."""
    old = {"vocab_size": 30, "dim": 8, "n_heads": 2, "n_layers": 1, "d_ff": 12, "max_len": 10,
           "dropout": 0.1, "norm_first": True, "activation": "gelu", "positional": "learned",
           "scale_embedding": False, "embed_norm": False, "tie_weights": True, "n_classes": 2,
           "pooling": "mean", "init_std": 0.02, "eps": 1e-5}
    cfg = nn.ModelConfig.from_dict(old)
    names = {n: p.shape for n, p in nn.MaskedLM(cfg).named_parameters()}
    b = "body.encoder.blocks.0."
    assert names == {
        "body.tok.weight": (30, 8), "body.pos.weight": (10, 8),
        b + "attn.Wqkv": (8, 24), b + "attn.bqkv": (24,), b + "attn.Wo": (8, 8),
        b + "attn.bo": (8,), b + "ln1.gamma": (8,), b + "ln1.beta": (8,),
        b + "ffn.fc1.weight": (8, 12), b + "ffn.fc1.bias": (12,),
        b + "ffn.fc2.weight": (12, 8), b + "ffn.fc2.bias": (8,),
        b + "ln2.gamma": (8,), b + "ln2.beta": (8,),
        "body.encoder.final_norm.gamma": (8,), "body.encoder.final_norm.beta": (8,),
        "head.dense.weight": (8, 8), "head.dense.bias": (8,), "head.norm.gamma": (8,),
        "head.norm.beta": (8,), "head.decoder_bias": (30,)}


def test_an_unknown_config_field_names_itself():
    with pytest.raises(ValueError, match=r"unknown fields \['flash'\]"):
        nn.ModelConfig.from_dict({"vocab_size": 5, "flash": True})


@pytest.mark.parametrize("field, value, fragment", [
    ("n_kv_heads", 3, "n_kv_heads: expected a divisor of n_heads=4"),
    ("norm", "batchnorm", "norm: expected one of"),
    ("positional", "alibi", "positional: expected one of"),
    ("ffn", "moe", "ffn: expected one of"),
    ("rope_base", -1.0, "rope_base: expected a finite positive number"),
    ("dim", 18, "n_heads: expected a divisor of dim=18"),
])
def test_bad_choices_are_refused(field, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        tiny_llama(**{field: value})


def test_rope_needs_an_even_head_width():
    with pytest.raises(ValueError, match="even head width"):
        nn.ModelConfig.for_arch("llama", vocab_size=5, dim=12, n_heads=4)


def test_llama_preset_builds_the_llama_layers():
    m = nn.CausalLM(tiny_llama())
    blk = m.body.encoder.blocks[0]
    assert isinstance(blk.ln1, nn.RMSNorm) and isinstance(blk.ffn, nn.SwiGLU)
    assert blk.attn.n_kv_heads == 2 and blk.attn.bqkv is None and blk.attn.bo is None
    assert blk.attn.Wqkv.shape == (16, (4 + 2 * 2) * 4)
    assert m.body.pos is None and m.head is None and blk.norm_first and blk.causal


def _grads(model, ids, targets):
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    value = loss(model(ids), targets)
    model.backward(loss.backward())
    return value, {n: p.grad.copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_llama_numba_equals_numpy_forward_and_gradients(n_kv):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 23, (3, 13))
    targets = rng.integers(0, 23, (3, 13))
    results = {}
    previous = numformer.get_backend()
    try:
        for backend in ("numpy", "numba"):
            numformer.set_backend(backend)
            model = nn.CausalLM(tiny_llama(n_kv_heads=n_kv, dropout=0.0), seed=2)
            results[backend] = _grads(model, ids, targets)
    finally:
        numformer.set_backend(previous)
    (l0, g0), (l1, g1) = results["numpy"], results["numba"]
    assert abs(l0 - l1) <= 1e-5 * abs(l0)
    for name in g0:  # batch-reduced dW: float32 sums in another order
        scale = np.abs(g0[name]).max()
        assert np.abs(g1[name] - g0[name]).max() <= 1e-4 * scale + 1e-7, \
            f"{name}: " + describe_difference(g1[name], g0[name], 1e-4, 1e-4 * scale)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_cached_decoding_past_the_initial_capacity_equals_the_full_forward(backend):
    """40 tokens one at a time: the cache grows past its first capacity (16) twice."""
    previous = numformer.get_backend()
    numformer.set_backend(backend)
    try:
        m = nn.CausalLM(tiny_llama(), seed=1)
        m.astype(np.float64).eval()
        ids = np.random.default_rng(3).integers(0, 23, (2, 40))
        full = m(ids)
        cache = m.new_cache()
        parts = [m(ids[:, :3], kv_cache=cache)]
        parts += [m(ids[:, t:t + 1], kv_cache=cache) for t in range(3, 40)]
        assert nn.CausalLM.cache_length(cache) == 40
        np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-10, atol=1e-12)
    finally:
        numformer.set_backend(previous)


def test_kv_cache_refuses_a_batch_of_another_shape():
    c = nn.KVCache()
    c.append(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="kv cache: expected keys"):
        c.append(np.zeros((2, 2, 1, 4)), np.zeros((2, 2, 1, 4)))


def test_attention_maps_of_a_grouped_query_model_are_probabilities():
    m = nn.CausalLM(tiny_llama(), seed=4)
    ids = np.random.default_rng(5).integers(0, 23, (2, 7))
    maps = nn.attention_maps(m, ids)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 7, 7)
    np.testing.assert_allclose(maps[0].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(maps[1][0, 0], k=1) == 0)  # causal


def test_the_llama_lm_overfits_a_short_text():
    """A real check that the whole stack learns: 60 AdamW steps on one batch
    take the loss from ln(V) to near zero."""
    from numformer.optim import AdamW
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 23, (4, 12))
    targets = np.roll(ids, -1, axis=1)
    m = nn.CausalLM(tiny_llama(init_std=0.05), seed=0)
    opt = AdamW(m, lr=1e-2, weight_decay=0.0)
    loss = nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        m.zero_grad()
        value = loss(m(ids), targets)
        first = value if first is None else first
        m.backward(loss.backward())
        opt.step()
    assert first > 2.5 and value < 0.1, (first, value)
