"""Frozen Parameters: no gradient buffer, no optimizer state, untouched by
updates and clipping, still saved; the other gradients as if nothing were frozen."""

import numpy as np
import pytest

from numformer import nn
from numformer.optim import SGD, AdamW, clip_grad_norm, grad_norm

V = 13


def cfg(**kw):
    base = dict(vocab_size=V, dim=8, n_heads=2, n_layers=2, d_ff=12, max_len=10, dropout=0.0)
    base.update(kw)
    return nn.ModelConfig(**base)


def step_grads(m, ids, pos, dlogits):
    m.zero_grad()
    m(ids, None, pos)
    m.backward(dlogits)
    return {n: (None if p.grad is None else p.grad.copy()) for n, p in m.named_parameters()}


@pytest.mark.parametrize("tie", [True, False])
def test_frozen_embedding_no_buffer_no_state_unchanged_and_others_exact(rng, tie):
    frozen = nn.MaskedLM(cfg(tie_weights=tie), seed=4)
    free = nn.MaskedLM(cfg(tie_weights=tie), seed=4)
    names = frozen.freeze("body.tok.*")
    assert names == ["body.tok.weight"]
    E = frozen.body.tok.weight
    assert E.grad is None and E.frozen and not E.requires_grad
    before = E.value.copy()
    opt = AdamW(frozen, lr=1e-2, weight_decay=0.1)
    i = opt.names.index("body.tok.weight")
    assert opt.state["m"][i] is None and opt.state["v"][i] is None
    ids = rng.integers(0, V, (2, 6))
    pos = np.array([0, 3, 5, 11])
    dlogits = rng.standard_normal((4, V)).astype(np.float32)
    # one step from equal weights: every other gradient equals the unfrozen model's
    g_frozen, g_free = step_grads(frozen, ids, pos, dlogits), step_grads(free, ids, pos, dlogits)
    assert g_frozen["body.tok.weight"] is None and np.abs(g_free["body.tok.weight"]).max() > 0
    for n, g in g_free.items():
        if n != "body.tok.weight":
            np.testing.assert_array_equal(g_frozen[n], g, err_msg=n)
    for _ in range(3):
        opt.step()
        step_grads(frozen, ids, pos, dlogits)
    np.testing.assert_array_equal(E.value, before)  # weight decay did not touch it either
    others = [n for n in opt.names if n != "body.tok.weight"]
    moved = [n for n in others if not np.array_equal(frozen.state_dict()[n], free.state_dict()[n])]
    assert len(moved) == len(others)  # every trainable Parameter was updated
    sd = opt.state_dict()
    assert f"m.{i}" not in sd and f"v.{i}" not in sd
    assert {f"m.{j}" for j in range(len(opt.names)) if j != i} <= set(sd)
    # the model's state_dict still holds the frozen values
    np.testing.assert_array_equal(frozen.state_dict()["body.tok.weight"], before)


def test_freeze_patterns_tied_names_errors_and_unfreeze():
    m = nn.MaskedLM(cfg(tie_weights=True))
    # a tied Parameter matches under its second name too
    assert m.freeze("head.decoder_weight") == ["body.tok.weight"]
    assert m.body.tok.weight.grad is None
    frozen = m.freeze(["body.encoder.blocks.0.*", "*.gamma"])
    assert "body.encoder.blocks.0.attn.Wqkv" in frozen and "head.norm.gamma" in frozen
    assert m.body.encoder.blocks[1].ffn.fc1.weight.grad is not None
    with pytest.raises(ValueError, match=r"freeze: pattern 'body\.nope\*' matches no parameter "
                                         r"name of MaskedLM \(names are like body\.tok\.weight"):
        m.freeze("body.nope*")
    with pytest.raises(ValueError, match="unfreeze: expected None, a glob or a non-empty list"):
        m.unfreeze([])
    m.unfreeze()
    assert all(p.grad is not None and not p.grad.any() for p in m.parameters())
    m.freeze()
    assert m.trainable_parameters() == []
    m.zero_grad()  # nothing to zero, no error
    p = nn.Parameter(np.ones(3, np.float32), requires_grad=False)
    assert p.grad is None and "frozen" in repr(p)
    p.astype(np.float64)
    assert p.dtype == np.float64 and p.grad is None
    p.requires_grad = True
    assert p.grad.dtype == np.float64 and not p.grad.any()


def test_clipping_and_the_norm_skip_frozen_parameters(rng):
    m = nn.Classifier(cfg())
    for p in m.parameters():
        p.grad[...] = rng.standard_normal(p.shape)
    m.freeze("body.*")
    trainable = m.trainable_parameters()
    expected = np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in trainable))
    assert grad_norm(m) == pytest.approx(expected, rel=1e-12)
    before = [p.grad.copy() for p in trainable]
    assert clip_grad_norm(m, expected / 2) == pytest.approx(expected, rel=1e-12)
    for p, g in zip(trainable, before):
        np.testing.assert_allclose(p.grad, g / 2, rtol=1e-5)


def test_sgd_momentum_skips_frozen_and_state_follows_a_later_freeze(rng):
    m = nn.Classifier(cfg())
    opt = SGD(m, lr=0.1, momentum=0.9)
    ids = rng.integers(0, V, (3, 5))
    n_all = len(opt.names)
    assert sum(b is not None for b in opt.state["momentum_buffer"]) == n_all
    m.freeze("fc.*")  # after the optimizer was built
    w = m.fc.weight.value.copy()
    m(ids)
    m.backward(np.ones((3, 2), np.float32))
    opt.step()
    np.testing.assert_array_equal(m.fc.weight.value, w)
    held = [n for n, b in zip(opt.names, opt.state["momentum_buffer"]) if b is not None]
    assert held == [n for n in opt.names if not n.startswith("fc.")]
    # save with the frozen head, load into a fresh optimizer over the same frozen model
    sd = opt.state_dict()
    other = SGD(m, lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    for a, b in zip(opt.state["momentum_buffer"], other.state["momentum_buffer"]):
        assert (a is None and b is None) or np.array_equal(a, b)
    m.unfreeze("fc.*")  # a state saved with fc frozen no longer fits
    with pytest.raises(ValueError, match="missing keys .*momentum_buffer"):
        SGD(m, lr=0.1, momentum=0.9).load_state_dict(sd)


def test_gradcheck_of_a_partly_frozen_module(rng):
    from numformer.gradcheck import check_module
    ff = nn.FeedForward(4, 6, "gelu", rng=0)
    ff.freeze("fc1.*")
    report = check_module(ff, rng.standard_normal((2, 3, 4)))
    names = [r.name for r in report.rows]
    assert "fc2.weight" in names and not any(n.startswith("fc1") for n in names)
    assert report.ok
