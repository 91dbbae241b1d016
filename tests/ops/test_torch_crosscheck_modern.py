"""The modern decoder ops against PyTorch and Hugging Face Llama: RMSNorm,
rotary embeddings, SiLU and SwiGLU, forward and gradients (float64 where the
reference computes in float64, float32 where it computes in float32)."""

import numpy as np
import pytest

from numformer import nn, ops
from numformer.testing import assert_close

torch = pytest.importorskip("torch", reason="torch not installed: cross-checks skipped")
F = torch.nn.functional


def _llama():
    """transformers' Llama module, or a skip that says why."""
    try:
        from transformers import LlamaConfig
        from transformers.models.llama import modeling_llama
    except Exception as e:  # pragma: no cover - depends on the environment
        pytest.skip(f"transformers' Llama cannot be imported ({type(e).__name__}: {e}): "
                    f"the Hugging Face cross-checks are skipped")
    return LlamaConfig, modeling_llama


def T(x, grad=True):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def np_(t):
    return t.detach().numpy()


# --- RMSNorm -------------------------------------------------------------------------

@pytest.mark.parametrize("shape, eps", [((2, 5, 6), 1e-5), ((3, 1, 7), 1e-6), ((4, 9), 0.1)])
def test_rmsnorm_against_torch_rms_norm(rng, shape, eps):
    x, w = rng.standard_normal(shape) * 3, rng.standard_normal(shape[-1])
    out, cache = ops.rmsnorm_forward(x, w, eps)
    G = rng.standard_normal(shape)
    tx, tw = T(x), T(w)
    o = F.rms_norm(tx, (shape[-1],), tw, eps)
    o.backward(torch.tensor(G))
    assert_close(out, np_(o), what="rmsnorm out")
    dx, dw = ops.rmsnorm_backward(G, cache)
    assert_close(dx, np_(tx.grad), what="rmsnorm dx")
    assert_close(dw, np_(tw.grad), what="rmsnorm dweight")


def test_rmsnorm_layer_against_llama_rmsnorm_float32(rng):
    """LlamaRMSNorm computes in float32 (it upcasts anything to float32), so
    the comparison runs in float32 with the table's float32 tolerance."""
    _, modeling_llama = _llama()
    C = 24
    x = (rng.standard_normal((2, 5, C)) * 2).astype(np.float32)
    w = rng.standard_normal(C).astype(np.float32)
    ref = modeling_llama.LlamaRMSNorm(C, eps=1e-5)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(w))
    tx = torch.tensor(x, requires_grad=True)
    o = ref(tx)
    G = rng.standard_normal(o.shape).astype(np.float32)
    o.backward(torch.tensor(G))
    layer = nn.RMSNorm(C, eps=1e-5)
    layer.weight.value[...] = w
    out = layer(x)
    assert out.dtype == np.float32
    assert_close(out, np_(o), what="RMSNorm vs LlamaRMSNorm")
    assert_close(layer.backward(G), np_(tx.grad), what="dx")
    assert_close(layer.weight.grad, np_(ref.weight.grad), reduced=True, what="dweight")


# --- rotary embeddings ----------------------------------------------------------------

def _hf_tables(cos, sin, offset, T_):
    """numformer's (L, D/2) tables in Hugging Face's form: (1, T, D), halves repeated."""
    c, s = cos[offset:offset + T_], sin[offset:offset + T_]
    return (torch.tensor(np.concatenate([c, c], -1))[None],
            torch.tensor(np.concatenate([s, s], -1))[None])


@pytest.mark.parametrize("shape, offset", [((2, 3, 5, 8), 0), ((1, 2, 1, 4), 9), ((3, 2, 7, 6), 4)])
def test_rope_against_hf_apply_rotary_pos_emb(rng, shape, offset):
    """Same tables, Hugging Face's rotation (rotate_half): the layout and the
    sign convention of the rotation, forward and backward, in float64."""
    _, modeling_llama = _llama()
    D = shape[-1]
    cos, sin = ops.rope_tables(offset + shape[2] + 1, D, 10000.0, np.float64)
    q, k = rng.standard_normal(shape), rng.standard_normal(shape)
    tq, tk = T(q), T(k)
    hc, hs = _hf_tables(cos, sin, offset, shape[2])
    oq, ok = modeling_llama.apply_rotary_pos_emb(tq, tk, hc, hs)
    Gq, Gk = rng.standard_normal(shape), rng.standard_normal(shape)
    (oq * torch.tensor(Gq) + ok * torch.tensor(Gk)).sum().backward()
    for x, o, t, G, name in ((q, oq, tq, Gq, "q"), (k, ok, tk, Gk, "k")):
        out, cache = ops.rope_forward(x, cos, sin, offset)
        assert_close(out, np_(o), what=f"rope {name}")
        assert_close(ops.rope_backward(G, cache), np_(t.grad), what=f"rope d{name}")


@pytest.mark.parametrize("D, base, offset", [(8, 10000.0, 0), (64, 1e5, 3), (6, 100.0, 40)])
def test_rope_tables_against_llama_rotary_embedding(D, base, offset):
    """LlamaRotaryEmbedding computes its angles in float32, so its tables are
    float32-accurate: compared at the table's float32 tolerance, positions < 64
    (where float32 angles t * f lose less than that)."""
    LlamaConfig, modeling_llama = _llama()
    H, T_ = 2, 64 - offset
    cfg = LlamaConfig(hidden_size=H * D, num_attention_heads=H, head_dim=D, rope_theta=base,
                      max_position_embeddings=128, intermediate_size=4)
    emb = modeling_llama.LlamaRotaryEmbedding(cfg)
    x = torch.zeros(1, H, T_, D, dtype=torch.float32)
    hc, hs = emb(x, torch.arange(offset, offset + T_)[None])  # (1, T, D)
    cos, sin = ops.rope_tables(64, D, base, np.float32)
    want_c, want_s = _hf_tables(cos, sin, offset, T_)
    assert_close(np_(hc), want_c.numpy(), dtype=np.float32, what="cos")
    assert_close(np_(hs), want_s.numpy(), dtype=np.float32, what="sin")


# --- SiLU and SwiGLU --------------------------------------------------------------------

def test_silu_against_torch(rng):
    x = rng.standard_normal((4, 9)) * 6
    x[0, :3] = [-50.0, 0.0, 50.0]
    out, cache = ops.silu_forward(x)
    G = rng.standard_normal(x.shape)
    tx = T(x)
    F.silu(tx).backward(torch.tensor(G))
    assert_close(out, np_(F.silu(T(x, False))), what="silu")
    assert_close(ops.silu_backward(G, cache), np_(tx.grad), what="silu backward")


@pytest.mark.parametrize("shape, Fw", [((2, 5, 6), 7), ((3, 1, 8), 16)])
def test_swiglu_against_torch_autograd(rng, shape, Fw):
    C = shape[-1]
    x = rng.standard_normal(shape)
    Wg, Wu, Wd = (rng.standard_normal(s) * 0.5 for s in ((C, Fw), (C, Fw), (Fw, C)))
    out, cache = ops.swiglu_forward(x, Wg, Wu, Wd)
    G = rng.standard_normal(out.shape)
    tx, tg, tu, td = T(x), T(Wg), T(Wu), T(Wd)
    o = (F.silu(tx @ tg) * (tx @ tu)) @ td
    o.backward(torch.tensor(G))
    assert_close(out, np_(o), what="swiglu out")
    for g, t, name in zip(ops.swiglu_backward(G, cache), (tx, tg, tu, td),
                          ("dx", "dW_gate", "dW_up", "dW_down")):
        assert_close(g, np_(t.grad), what=f"swiglu {name}")


def test_swiglu_layer_against_llama_mlp(rng):
    """nn.SwiGLU holding LlamaMLP's weights (PyTorch's (out, in) transposed)."""
    LlamaConfig, modeling_llama = _llama()
    C, Fw = 12, 20
    cfg = LlamaConfig(hidden_size=C, intermediate_size=Fw, hidden_act="silu", mlp_bias=False,
                      num_attention_heads=2)
    mlp = modeling_llama.LlamaMLP(cfg).double()
    layer = nn.SwiGLU(C, Fw, rng=0).astype(np.float64)
    with torch.no_grad():
        for p in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.3))
    layer.w_gate.value[...] = np_(mlp.gate_proj.weight).T
    layer.w_up.value[...] = np_(mlp.up_proj.weight).T
    layer.w_down.value[...] = np_(mlp.down_proj.weight).T
    x = rng.standard_normal((2, 5, C))
    tx = T(x)
    o = mlp(tx)
    G = rng.standard_normal(o.shape)
    o.backward(torch.tensor(G))
    assert_close(layer(x), np_(o), what="SwiGLU vs LlamaMLP")
    assert_close(layer.backward(G), np_(tx.grad), what="dx")
    for mine, theirs in ((layer.w_gate, mlp.gate_proj), (layer.w_up, mlp.up_proj),
                         (layer.w_down, mlp.down_proj)):
        assert_close(mine.grad, np_(theirs.weight.grad).T, what="dW")
