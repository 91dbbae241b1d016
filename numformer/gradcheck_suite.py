"""Every op, every layer and small whole models, each as a named gradient check.

``numformer gradcheck`` runs them all and prints one table; the tests
parametrize over ``CASES``. Shapes are small and odd (T=5, D=3, C=6), batches
hold more than one sequence, masks include padding, a fully padded sequence
and causal attention, and ids repeat.

Whole models use ``init_std=0.5`` so that every gradient is far above the
float64 noise floor of a finite difference (about eps * |loss| / h = 1e-11):
with BERT's 0.02 the deepest gradients are so small that the check would
measure rounding, not the backward pass.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from numformer import nn, ops
from numformer.gradcheck import GradReport, check_module, check_op

B, T, H, D = 2, 5, 2, 3
C = H * D  # 6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x(shape, seed=0):
    x = _rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 0.5, x)  # keep ReLU inputs away from its kink


def _key_mask():
    m = np.ones((B + 1, T), dtype=bool)  # (B', T): one full, one padded, one fully padded
    m[1, 3:] = False
    m[2, :] = False
    return m


def _ids(V=7, shape=(B, T), seed=1):
    ids = _rng(seed).integers(0, V, shape)
    ids.reshape(-1)[:3] = 2  # duplicate ids must accumulate
    return ids


def _attention(causal, masked, tq=T, tk=T, Hq=H, Hkv=H, seeds=(1, 2, 3), name="attention"):
    """The attention op's check: H query heads, Hkv key/value heads; with ``masked`` a
    third sequence, padding at the end of the second and a fully padded third."""
    b = B + 1 if masked else B
    q = _x((b, Hq, tq, D), seeds[0])
    k, v = _x((b, Hkv, tk, D), seeds[1]), _x((b, Hkv, tk, D), seeds[2])
    km = None
    if masked:
        km = np.ones((b, tk), dtype=bool)
        km[1, tk - 2:] = False
        km[2, :] = False
    return check_op(ops.attention_forward, ops.attention_backward,
                    dict(q=q, k=k, v=v, key_mask=km), ["q", "k", "v"], dict(causal=causal),
                    title=f"{name}{' causal' if causal else ''}{' mask' if masked else ''} {tq}x{tk}")


def _dropout_op():
    def fwd(x):
        return ops.dropout_forward(x, 0.4, np.random.default_rng(5))
    return check_op(fwd, ops.dropout_backward, dict(x=_x((B, T, C))), ["x"], title="dropout p=0.4")


def _mha(causal):
    r = _rng(4)
    x, km = _x((B + 1, T, C)), _key_mask()
    inputs = dict(x=x, Wqkv=r.standard_normal((C, 3 * C)) * 0.5, bqkv=r.standard_normal(3 * C),
                  Wo=r.standard_normal((C, C)), bo=r.standard_normal(C))
    return check_op(ops.mha_forward, ops.mha_backward, inputs,
                    ["x", "Wqkv", "bqkv", "Wo", "bo"], dict(n_heads=H, key_mask=km, causal=causal),
                    title=f"multi-head attention causal={causal}")


OP_CASES: dict[str, Callable[[], GradReport]] = {
    "op/embedding": lambda: check_op(ops.embedding_forward, ops.embedding_backward,
                                     dict(ids=_ids(), W=_x((7, C))), ["W"], title="embedding"),
    "op/position": lambda: check_op(ops.position_forward, ops.position_backward,
                                    dict(x=_x((B, T, C)), P=_x((T + 2, C), 1)), ["x", "P"],
                                    dict(offset=1), title="position (learned, offset 1)"),
    "op/linear": lambda: check_op(ops.linear_forward, ops.linear_backward,
                                  dict(x=_x((B, T, 4)), W=_x((4, C), 1), b=_x((C,), 2)),
                                  ["x", "W", "b"], title="linear"),
    "op/matmul": lambda: check_op(ops.matmul_forward, ops.matmul_backward,
                                  dict(a=_x((B, H, T, D)), b=_x((B, H, D, 4), 1)), ["a", "b"],
                                  title="batched matmul 4D"),
    "op/softmax": lambda: check_op(ops.softmax_forward, ops.softmax_backward,
                                   dict(x=_x((B, T, C))), ["x"], title="softmax"),
    "op/log_softmax": lambda: check_op(ops.log_softmax_forward, ops.log_softmax_backward,
                                       dict(x=_x((B, T, C))), ["x"], title="log-softmax"),
    "op/layernorm": lambda: check_op(ops.layernorm_forward, ops.layernorm_backward,
                                     dict(x=_x((B, T, C)), gamma=_x((C,), 1), beta=_x((C,), 2)),
                                     ["x", "gamma", "beta"], title="layernorm"),
    "op/relu": lambda: check_op(ops.relu_forward, ops.relu_backward, dict(x=_x((B, T, C))),
                                ["x"], title="relu"),
    "op/tanh": lambda: check_op(ops.tanh_forward, ops.tanh_backward, dict(x=_x((B, T, C))),
                                ["x"], title="tanh"),
    "op/gelu": lambda: check_op(ops.gelu_forward, ops.gelu_backward, dict(x=_x((B, T, C))),
                                ["x"], title="gelu (erf)"),
    "op/gelu_tanh": lambda: check_op(ops.gelu_forward, ops.gelu_backward, dict(x=_x((B, T, C))),
                                     ["x"], dict(approximate="tanh"), title="gelu (tanh)"),
    "op/dropout": _dropout_op,
    "op/attention": lambda: _attention(False, False),
    "op/attention_mask": lambda: _attention(False, True),
    "op/attention_causal": lambda: _attention(True, False),
    "op/attention_causal_mask": lambda: _attention(True, True),
    "op/attention_cross": lambda: _attention(True, True, tq=3, tk=T),
    "op/mha": lambda: _mha(False),
    "op/mha_causal": lambda: _mha(True),
    "op/cross_entropy": lambda: check_op(
        ops.cross_entropy_forward, ops.cross_entropy_backward,
        dict(logits=_x((B, T, 7)), targets=np.where(_ids() == 3, -100, _ids())), ["logits"],
        title="cross-entropy (ignore_index)"),
    "op/cross_entropy_smooth": lambda: check_op(
        ops.cross_entropy_forward, ops.cross_entropy_backward,
        dict(logits=_x((B * T, 7)), targets=_ids().reshape(-1)), ["logits"],
        dict(label_smoothing=0.1), title="cross-entropy (label smoothing)"),
    "op/mse": lambda: check_op(ops.losses.mse_forward, ops.losses.mse_backward,
                               dict(pred=_x((B, 3)), targets=_x((B, 3), seed=5)), ["pred"],
                               title="mean squared error"),
    "op/bce_logits": lambda: check_op(
        ops.losses.bce_logits_forward, ops.losses.bce_logits_backward,
        dict(logits=3 * _x((B, 3)), targets=np.random.default_rng(6).uniform(0, 1, (B, 3))),
        ["logits"], title="binary cross-entropy on logits (soft targets)"),
    "op/cosent": lambda: check_op(
        ops.losses.cosent_forward, ops.losses.cosent_backward,
        dict(scores=np.tanh(_x((2 * B, 1))),
             targets=np.random.default_rng(7).integers(0, 4, (2 * B, 1)).astype(float)),
        ["scores"], title="CoSENT ranking loss (a batch of cosines, tied targets too)"),
    "op/mean_pool": lambda: check_op(ops.mean_pool_forward, ops.mean_pool_backward,
                                     dict(x=_x((B + 1, T, C)), mask=_key_mask()), ["x"],
                                     title="mean pool (masked)"),
    "op/cls_pool": lambda: check_op(ops.cls_pool_forward, ops.cls_pool_backward,
                                    dict(x=_x((B, T, C))), ["x"], title="first-token pool"),
}


def _layer(module, *inputs, title, **kwargs):
    return check_module(module, *inputs, title=title, **kwargs)


def _tiny_cfg(**kw):
    base = dict(vocab_size=11, dim=C, n_heads=H, n_layers=2, d_ff=7, max_len=T + 2,
                dropout=0.1, init_std=0.5)
    base.update(kw)
    return nn.ModelConfig(**base)


def _mlm(norm_first):
    cfg = _tiny_cfg(norm_first=norm_first)
    model = nn.WithLoss(nn.MaskedLM(cfg, seed=3), nn.CrossEntropyLoss())
    km = np.ones((B, T), dtype=bool)
    km[1, 3:] = False
    positions = np.array([1, 3, 6])  # flat indices into the B*T tokens
    return check_module(model, _ids(11), km, positions, targets=np.array([4, 5, 2]),
                        title=f"masked-LM {'pre' if norm_first else 'post'}-LN + loss")


def _classifier(norm_first, pooling):
    cfg = _tiny_cfg(norm_first=norm_first, pooling=pooling, n_classes=3,
                    positional="sinusoidal" if norm_first else "learned", embed_norm=not norm_first,
                    activation="relu" if pooling == "cls" else "gelu")
    model = nn.WithLoss(nn.Classifier(cfg, seed=4), nn.CrossEntropyLoss(label_smoothing=0.1))
    km = np.ones((B + 1, T), dtype=bool)
    km[1, 2:] = False
    return check_module(model, _ids(11, (B + 1, T)), km, targets=np.array([0, 2, 1]),
                        title=f"classifier {'pre' if norm_first else 'post'}-LN {pooling} + loss")


def _causal_lm(tied):
    cfg = _tiny_cfg(norm_first=True, tie_weights=tied, activation="gelu_tanh")
    model = nn.WithLoss(nn.CausalLM(cfg, seed=5), nn.CrossEntropyLoss())
    ids = _ids(11)
    targets = np.roll(ids, -1, axis=1)
    targets[:, -1] = -100  # no next token after the last one
    return check_module(model, ids, targets=targets,
                        title=f"causal LM pre-LN {'tied' if tied else 'untied'} + loss")


LAYER_CASES: dict[str, Callable[[], GradReport]] = {
    "layer/Linear": lambda: _layer(nn.Linear(4, C, rng=0, init_std=0.5), _x((B, T, 4)),
                                   title="Linear"),
    "layer/Embedding": lambda: _layer(nn.Embedding(7, C, rng=0, init_std=0.5), _ids(),
                                      title="Embedding"),
    "layer/LearnedPositions": lambda: _layer(nn.LearnedPositions(T + 1, C, rng=0, init_std=0.5),
                                             _x((B, T, C)), title="LearnedPositions"),
    "layer/SinusoidalPositions": lambda: _layer(nn.SinusoidalPositions(T + 1, C), _x((B, T, C)),
                                                title="SinusoidalPositions"),
    "layer/LayerNorm": lambda: _layer(nn.LayerNorm(C), _x((B, T, C)), title="LayerNorm"),
    "layer/ReLU": lambda: _layer(nn.ReLU(), _x((B, T, C)), title="ReLU"),
    "layer/Tanh": lambda: _layer(nn.Tanh(), _x((B, T, C)), title="Tanh"),
    "layer/GELU": lambda: _layer(nn.GELU(), _x((B, T, C)), title="GELU"),
    "layer/Dropout": lambda: _layer(nn.Dropout(0.3, seed=0), _x((B, T, C)), title="Dropout"),
    "layer/Softmax": lambda: _layer(nn.Softmax(), _x((B, T, C)), title="Softmax"),
    "layer/MultiHeadAttention": lambda: _layer(
        nn.MultiHeadAttention(C, H, rng=0, init_std=0.5), _x((B + 1, T, C)), _key_mask(),
        title="MultiHeadAttention (mask)"),
    "layer/MultiHeadAttention_causal": lambda: _layer(
        nn.MultiHeadAttention(C, H, rng=0, init_std=0.5), _x((B + 1, T, C)), _key_mask(),
        causal=True, title="MultiHeadAttention (causal+mask)"),
    "layer/FeedForward": lambda: _layer(nn.FeedForward(C, 7, "gelu", rng=0, init_std=0.5),
                                        _x((B, T, C)), title="FeedForward"),
    "layer/MeanPool": lambda: _layer(nn.MeanPool(), _x((B + 1, T, C)), _key_mask(),
                                     title="MeanPool"),
    "layer/ClsPool": lambda: _layer(nn.ClsPool(), _x((B, T, C)), title="ClsPool"),
    "layer/EncoderBlock_postLN": lambda: _layer(
        nn.EncoderBlock(C, H, 7, dropout=0.2, rng=0, init_std=0.5), _x((B + 1, T, C)),
        _key_mask(), title="EncoderBlock post-LN"),
    "layer/EncoderBlock_preLN": lambda: _layer(
        nn.EncoderBlock(C, H, 7, dropout=0.2, norm_first=True, rng=0, init_std=0.5),
        _x((B + 1, T, C)), _key_mask(), title="EncoderBlock pre-LN"),
    "layer/EncoderBlock_causal": lambda: _layer(
        nn.EncoderBlock(C, H, 7, dropout=0.0, norm_first=True, causal=True, rng=0, init_std=0.5),
        _x((B, T, C)), title="EncoderBlock causal"),
}

MODEL_CASES: dict[str, Callable[[], GradReport]] = {
    "model/mlm_postLN": lambda: _mlm(False),
    "model/mlm_preLN": lambda: _mlm(True),
    "model/classifier_postLN_mean": lambda: _classifier(False, "mean"),
    "model/classifier_preLN_cls": lambda: _classifier(True, "cls"),
    "model/causal_lm_tied": lambda: _causal_lm(True),
    "model/causal_lm_untied": lambda: _causal_lm(False),
}

# --- the modern decoder ops (Llama): RMSNorm, rotary embeddings, SiLU, SwiGLU ---------
# Rotary needs an even head dim: DR = 4 (C = H * DR = 8 for the strided case).
DR = 4


def _rope(offset, t=T):
    cos, sin = ops.rope_tables(offset + t + 2, DR, base=100.0, dtype=np.float64)

    def fwd(x):
        return ops.rope_forward(x, cos, sin, offset)
    return check_op(fwd, ops.rope_backward, dict(x=_x((B, H, t, DR), 6)), ["x"],
                    title=f"rope T={t} offset {offset}")


def _rope_strided():
    """k of a fused (B, T, 3C) projection, split into heads as a strided view."""
    cos, sin = ops.rope_tables(T + 3, DR, base=100.0, dtype=np.float64)

    def heads(qkv):
        return qkv.reshape(B, T, 3, H, DR).transpose(2, 0, 3, 1, 4)[1]  # (B, H, T, DR) view

    def fwd(qkv):
        out, cache = ops.rope_forward(heads(qkv), cos, sin, 3)
        return out, (cache, qkv.shape)

    def bwd(dout, cache):
        rope_cache, shape = cache
        dqkv = np.zeros(shape)  # (B, T, 3C)
        heads(dqkv)[...] = ops.rope_backward(dout, rope_cache)
        return dqkv
    return check_op(fwd, bwd, dict(qkv=_x((B, T, 3 * H * DR), 7)), ["qkv"],
                    title="rope on a strided view of qkv")


def _swiglu_inputs(F=7):
    return dict(x=_x((B, T, C)), W_gate=_x((C, F), 1) * 0.5, W_up=_x((C, F), 2) * 0.5,
                W_down=_x((F, C), 3) * 0.5)


def _rmsnorm_layer():
    """RMSNorm with a non-unit weight: with its ones init the output is invariant
    to the scale of each row, so dx is orthogonal to x and much smaller than the
    upstream gradient, and the finite difference measures mostly rounding."""
    m = nn.RMSNorm(C)
    m.weight.value[...] = _x((C,), 1)
    return m


OP_CASES.update({
    "op/rmsnorm": lambda: check_op(ops.rmsnorm_forward, ops.rmsnorm_backward,
                                   dict(x=_x((B, T, C)), weight=_x((C,), 1)), ["x", "weight"],
                                   title="rmsnorm"),
    "op/rmsnorm_T1": lambda: check_op(ops.rmsnorm_forward, ops.rmsnorm_backward,
                                      dict(x=_x((B + 1, 1, 5)), weight=_x((5,), 1)),
                                      ["x", "weight"], dict(eps=1e-2), title="rmsnorm T=1 eps 1e-2"),
    "op/rope": lambda: _rope(0),
    "op/rope_offset": lambda: _rope(3),
    "op/rope_decode": lambda: _rope(4, t=1),
    "op/rope_strided": _rope_strided,
    "op/silu": lambda: check_op(ops.silu_forward, ops.silu_backward, dict(x=_x((B, T, C)) * 3),
                                ["x"], title="silu"),
    "op/silu_mul": lambda: check_op(ops.silu_mul_forward, ops.silu_mul_backward,
                                    dict(g=_x((B, T, 7)) * 3, u=_x((B, T, 7), 1)), ["g", "u"],
                                    title="silu(g) * u"),
    "op/swiglu": lambda: check_op(ops.swiglu_forward, ops.swiglu_backward, _swiglu_inputs(),
                                  ["x", "W_gate", "W_up", "W_down"], title="swiglu feed-forward"),
})

LAYER_CASES.update({
    "layer/RMSNorm": lambda: _layer(_rmsnorm_layer(), _x((B, T, C)), title="RMSNorm"),
    "layer/Rotary": lambda: _layer(nn.Rotary(DR, T + 3, base=100.0), _x((B, H, T, DR)), offset=2,
                                   title="Rotary (offset 2)"),
    "layer/SiLU": lambda: _layer(nn.SiLU(), _x((B, T, C)) * 3, title="SiLU"),
    "layer/SwiGLU": lambda: _layer(nn.SwiGLU(C, 7, rng=0, init_std=0.5), _x((B, T, C)),
                                   title="SwiGLU"),
})


# --- grouped-query attention: Hkv key/value heads shared by H query heads -------------

def _gqa(Hq, Hkv, causal, masked, tq=T, tk=T):
    return _attention(causal, masked, tq, tk, Hq=Hq, Hkv=Hkv, seeds=(11, 12, 13),
                      name=f"gqa H={Hq} Hkv={Hkv}")


def _mha_gqa(Hq, Hkv, bias, causal=True):
    r = _rng(14)
    c = Hq * D
    n = (Hq + 2 * Hkv) * D
    inputs = dict(x=_x((B + 1, T, c), 15), Wqkv=r.standard_normal((c, n)) * 0.5,
                  bqkv=r.standard_normal(n) if bias else None, Wo=r.standard_normal((c, c)) * 0.5,
                  bo=r.standard_normal(c) if bias else None)
    return check_op(ops.mha_forward, ops.mha_backward, inputs, ["x", "Wqkv", "bqkv", "Wo", "bo"],
                    dict(n_heads=Hq, key_mask=_key_mask(), causal=causal, n_kv_heads=Hkv),
                    title=f"mha H={Hq} Hkv={Hkv}{' bias' if bias else ' no bias'}")


def _attention_dropout(Hq, Hkv, causal, p=0.3, key_seed=5):
    """Attention-probability dropout with its mask fixed (a fresh generator of the same
    seed per forward, so every finite difference sees the same key)."""
    b = B + 1
    q, k, v = _x((b, Hq, T, D), 16), _x((b, Hkv, T, D), 17), _x((b, Hkv, T, D), 18)
    km = np.ones((b, T), dtype=bool)
    km[1, T - 2:] = False
    km[2, :] = False

    def forward(q, k, v, key_mask=None, causal=False):
        return ops.attention_forward(q, k, v, key_mask, causal, dropout=p,
                                     rng=np.random.default_rng(key_seed))
    return check_op(forward, ops.attention_backward, dict(q=q, k=k, v=v, key_mask=km),
                    ["q", "k", "v"], dict(causal=causal),
                    title=f"attention dropout {p} H={Hq} Hkv={Hkv}{' causal' if causal else ''} mask")


OP_CASES.update({
    "op/attention_dropout": lambda: _attention_dropout(2, 2, False),
    "op/attention_dropout_gqa_causal": lambda: _attention_dropout(6, 2, True),
    "op/attention_gqa": lambda: _gqa(6, 2, False, True),
    "op/attention_gqa_causal_mask": lambda: _gqa(6, 3, True, True),
    "op/attention_mqa_causal": lambda: _gqa(4, 1, True, False),
    "op/attention_gqa_decode": lambda: _gqa(6, 2, True, True, tq=1, tk=T),
    "op/mha_gqa": lambda: _mha_gqa(4, 2, bias=True),
    "op/mha_gqa_no_bias": lambda: _mha_gqa(3, 1, bias=False),
})


def _llama_lm(n_kv_heads, tied=True):
    """A tiny Llama-style decoder (RMSNorm, rotary positions, SwiGLU, grouped-query
    attention, no biases) with dropout 0.1: the same stack as SmolLM2's. The head
    width is even (rope rotates pairs): dim 8, 4 heads of 2. init_std 0.3, not 0.5:
    at 0.5 the grouped-query rows' scores are so peaked that the central
    difference's truncation error (it falls as h^2: 1e-5 -> 9.7e-8, 1e-4 -> 9.7e-6)
    passes 1e-8; at 0.3 every row lands near 1e-9."""
    cfg = nn.ModelConfig.for_arch("llama", vocab_size=11, dim=8, n_heads=4,
                                  n_kv_heads=n_kv_heads, n_layers=2, d_ff=6, max_len=T + 2,
                                  dropout=0.1, init_std=0.3, tie_weights=tied)
    model = nn.WithLoss(nn.CausalLM(cfg, seed=6), nn.CrossEntropyLoss())
    ids = _ids(11)
    targets = np.roll(ids, -1, axis=1)
    targets[:, -1] = -100
    return check_module(model, ids, targets=targets,
                        title=f"Llama-style LM, {n_kv_heads} of 4 kv heads"
                              + ("" if tied else ", untied") + " + loss")


def _bert_like_classifier():
    """The "bert" preset of the Transformer: token types, embedding LayerNorm, post-LN."""
    cfg = nn.ModelConfig.for_arch("bert", vocab_size=11, dim=C, n_heads=H, n_layers=2, d_ff=7,
                                  max_len=T + 2, dropout=0.1, init_std=0.5, n_classes=3,
                                  eps=1e-5)
    model = nn.WithLoss(nn.Classifier(cfg, seed=7), nn.CrossEntropyLoss())
    km = np.ones((B, T), dtype=bool)
    km[0, 3:] = False
    return check_module(model, _ids(11), km, targets=np.array([2, 0]),
                        title="bert preset classifier + loss")


MODEL_CASES.update({
    "model/llama_lm_gqa": lambda: _llama_lm(2),
    "model/llama_lm_mqa_untied": lambda: _llama_lm(1, tied=False),
    "model/llama_lm_mha": lambda: _llama_lm(4),
    "model/bert_preset_classifier": _bert_like_classifier,
})


CASES: dict[str, Callable[[], GradReport]] = {**OP_CASES, **LAYER_CASES, **MODEL_CASES}


def run_all(names=None, out=print) -> bool:
    """Run the named cases (all by default), print one table, return True if all pass."""
    names = list(CASES) if names is None else list(names)
    ok = True
    first = True
    for name in names:
        report = CASES[name]()
        out(report.table(header=first))
        first = False
        ok &= report.ok
    return ok
