"""LoRA adapters: the op's gradients, an adapted model's gradients, frozen
base weights, merging, and a LoRA fine-tune that learns."""

from __future__ import annotations

import numpy as np
import pytest

import numformer
from numformer import nn
from numformer.gradcheck import check_module, check_op
from numformer.nn.lora import add_lora, lora_state_dict, merge_lora
from numformer.ops import lora as L


def tiny(arch="llama", **kw):
    base = dict(vocab_size=13, dim=8, n_heads=4, n_layers=2, d_ff=6, max_len=16, init_std=0.4)
    if arch == "llama":
        base["n_kv_heads"] = 2
    base.update(kw)
    return nn.ModelConfig.for_arch(arch, **base)


def randomize_adapters(model, seed=1, std=0.3):
    """B starts at zero (an adapted model starts as its base); a gradient check
    needs B != 0, or A's gradient would be zero whatever the backward did."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if ".lora_" in name:
            p.value[...] = rng.normal(0, std, p.shape).astype(p.dtype)


@pytest.mark.parametrize("bias, shape", [(True, (2, 5, 6)), (False, (7, 6)), (True, (1, 1, 6))])
def test_lora_linear_op_gradcheck(bias, shape):
    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(size=shape), "W": rng.normal(size=(6, 4)),
              "b": rng.normal(size=4) if bias else None, "A": rng.normal(size=(6, 3)),
              "B": rng.normal(size=(3, 4))}

    def fwd(x, W, b, A, B):
        return L.lora_linear_forward(x, W, b, A, B, 0.7)

    def bwd(dout, cache):
        dx, dW, db, dA, dB = L.lora_linear_backward(dout, cache, need_dW=True)
        return dx, dW, db, dA, dB

    wrt = ["x", "W", "b", "A", "B"]  # the backward's order; db is None without a bias
    report = check_op(fwd, bwd, inputs, wrt=wrt, title="lora_linear")
    report.assert_ok()


def test_lora_op_equals_the_merged_weight_and_skips_dW_when_frozen():
    rng = np.random.default_rng(1)
    x, W, A, B = (rng.normal(size=s) for s in ((4, 5), (5, 3), (5, 2), (2, 3)))
    out, cache = L.lora_linear_forward(x, W, None, A, B, 0.5)
    np.testing.assert_allclose(out, x @ L.merge(W, A, B, 0.5), rtol=1e-12)
    assert L.lora_linear_backward(np.ones_like(out), cache)[1] is None


def test_bad_adapter_shapes_name_the_argument():
    x, W = np.ones((2, 5)), np.ones((5, 3))
    with pytest.raises(ValueError, match=r"B: expected shape \(2, 3\)"):
        L.lora_linear_forward(x, W, None, np.ones((5, 2)), np.ones((3, 3)), 1.0)
    with pytest.raises(ValueError, match="rank: expected a positive integer"):
        nn.lora.LoRA(5, 3, 0)


@pytest.mark.parametrize("arch", ["llama", "gpt"])
def test_an_adapted_model_starts_as_its_base_and_merges_exactly(arch):
    m = nn.CausalLM(tiny(arch), seed=0).eval()
    ids = np.random.default_rng(2).integers(0, 13, (2, 7))
    base = m(ids)
    names = add_lora(m, rank=2)
    assert any(n.endswith("attn.Wqkv") for n in names)
    assert len(names) == 2 * (5 if arch == "llama" else 4)  # blocks x adapted projections
    np.testing.assert_allclose(m(ids), base, rtol=1e-6, atol=1e-6)
    randomize_adapters(m)
    adapted = m(ids)
    assert np.abs(adapted - base).max() > 1e-3
    merge_lora(m)
    assert not any(".lora_" in n for n, _ in m.named_parameters())
    np.testing.assert_allclose(m(ids), adapted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt"])
def test_adapted_model_gradcheck(arch):
    """Every adapter's gradient through the whole model (rope, GQA, SwiGLU for
    llama; the MLP's Linear layers for gpt), the base frozen."""
    previous = numformer.get_backend()
    numformer.set_backend("numpy")
    try:
        m = nn.CausalLM(tiny(arch, dropout=0.0), seed=3)
        add_lora(m, rank=2, alpha=3.0)
        randomize_adapters(m)
        model = nn.WithLoss(m, nn.CrossEntropyLoss())
        ids = np.random.default_rng(4).integers(0, 13, (2, 5))
        report = check_module(model, ids, targets=np.roll(ids, -1, axis=1), title=f"LoRA {arch}")
    finally:
        numformer.set_backend(previous)
    checked = {r.name for r in report.rows}
    assert checked and all(".lora_" in n for n in checked), sorted(checked)[:5]
    report.assert_ok()


def test_frozen_base_has_no_gradients_and_no_optimizer_state():
    from numformer.optim import AdamW
    m = nn.CausalLM(tiny(), seed=5)
    add_lora(m, rank=2)
    before = {n: p.value.copy() for n, p in m.named_parameters() if ".lora_" not in n}
    opt = AdamW(m, lr=1e-2)
    loss = nn.CrossEntropyLoss()
    ids = np.random.default_rng(6).integers(0, 13, (2, 6))
    for _ in range(3):
        m.zero_grad()
        loss(m(ids), np.roll(ids, -1, axis=1))
        m.backward(loss.backward())
        opt.step()
    for n, p in m.named_parameters():
        if ".lora_" in n:
            assert p.grad is not None
        else:
            assert p.grad is None, n
            np.testing.assert_array_equal(p.value, before[n], err_msg=n)
    state = opt.state_dict()
    n_arrays = sum(isinstance(v, np.ndarray) for v in state.values())
    n_adapters = len(lora_state_dict(m))
    assert n_arrays == 2 * n_adapters, (n_arrays, n_adapters)  # two moments per adapter


def test_a_lora_fine_tune_learns_a_batch():
    from numformer.optim import AdamW
    """A cycle of 5 tokens: each next token is a function of the current one, which
    adapters on a frozen random base can learn (the base alone stays near ln 13)."""
    cycle = np.random.default_rng(7).permutation(13)[:5]
    ids = np.stack([np.roll(np.tile(cycle, 3), -k)[:11] for k in range(4)])  # (4, 11)
    ids, targets = ids[:, :-1], ids[:, 1:]
    m = nn.CausalLM(tiny(init_std=1.0), seed=8)  # frozen tied head: logits need a scale
    add_lora(m, rank=4)
    opt = AdamW(m, lr=3e-2, weight_decay=0.0)
    loss = nn.CrossEntropyLoss()
    values = []
    for _ in range(80):
        m.zero_grad()
        values.append(loss(m(ids), targets))
        m.backward(loss.backward())
        opt.step()
    assert values[-1] < 0.2 * values[0], (values[0], values[-1])
