"""Forward and backward against PyTorch (float64), where torch is importable."""

import numpy as np
import pytest

from numformer import nn, ops

torch = pytest.importorskip("torch", reason="torch not installed: cross-checks skipped")
F = torch.nn.functional
RTOL, ATOL = 1e-10, 1e-12  # float64 row of numformer.testing.TOLERANCES


def T(x, grad=True):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def close(a, b, what):
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=what)


def backward_with(out, G):
    out.backward(torch.tensor(G))


def test_linear_matmul_softmax_layernorm(rng):
    x, W, b = rng.standard_normal((2, 5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    out, cache = ops.linear_forward(x, W, b)
    G = rng.standard_normal(out.shape)
    tx, tW, tb = T(x), T(W), T(b)
    o = tx @ tW + tb
    backward_with(o, G)
    close(out, o, "linear out")
    for g, t, n in zip(ops.linear_backward(G, cache), (tx, tW, tb), "xWb"):
        close(g, t.grad, f"linear d{n}")

    a, c = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 4, 6))
    out, cache = ops.matmul_forward(a, c)
    G = rng.standard_normal(out.shape)
    ta, tc = T(a), T(c)
    backward_with(ta @ tc, G)
    da, dc = ops.matmul_backward(G, cache)
    close(da, ta.grad, "matmul da")
    close(dc, tc.grad, "matmul db")

    x = rng.standard_normal((3, 7)) * 4
    for fwd, bwd, tf in [(ops.softmax_forward, ops.softmax_backward, lambda t: F.softmax(t, -1)),
                         (ops.log_softmax_forward, ops.log_softmax_backward,
                          lambda t: F.log_softmax(t, -1))]:
        out, cache = fwd(x)
        G = rng.standard_normal(out.shape)
        tx = T(x)
        o = tf(tx)
        backward_with(o, G)
        close(out, o, fwd.__name__)
        close(bwd(G, cache), tx.grad, fwd.__name__ + " backward")

    x, g, bb = rng.standard_normal((2, 5, 6)) * 3, rng.standard_normal(6), rng.standard_normal(6)
    out, cache = ops.layernorm_forward(x, g, bb)
    G = rng.standard_normal(out.shape)
    tx, tg, tb = T(x), T(g), T(bb)
    o = F.layer_norm(tx, (6,), tg, tb, 1e-5)
    backward_with(o, G)
    close(out, o, "layernorm")
    for grad, t, n in zip(ops.layernorm_backward(G, cache), (tx, tg, tb), ("x", "gamma", "beta")):
        close(grad, t.grad, f"layernorm d{n}")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_and_relu(rng, approximate):
    x = rng.standard_normal((4, 9)) * 3
    out, cache = ops.gelu_forward(x, approximate)
    G = rng.standard_normal(out.shape)
    tx = T(x)
    o = F.gelu(tx, approximate=approximate)
    backward_with(o, G)
    close(out, o, "gelu")
    close(ops.gelu_backward(G, cache), tx.grad, "gelu backward")
    out, cache = ops.relu_forward(x)
    tx = T(x)
    backward_with(F.relu(tx), G)
    close(ops.relu_backward(G, cache), tx.grad, "relu backward")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(rng, smoothing):
    logits = rng.standard_normal((2, 5, 7)) * 3
    targets = rng.integers(0, 7, (2, 5))
    targets[0, 1] = targets[1, 4] = -100
    loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=smoothing)
    tl = T(logits)
    tloss = F.cross_entropy(tl.reshape(-1, 7), torch.tensor(targets.reshape(-1)),
                            ignore_index=-100, label_smoothing=smoothing)
    tloss.backward(torch.tensor(1.7, dtype=torch.float64))
    close(loss, tloss, "cross-entropy")
    close(ops.cross_entropy_backward(1.7, cache), tl.grad, "cross-entropy backward")


def test_embedding_with_repeated_ids(rng):
    W, ids = rng.standard_normal((6, 4)), np.array([[1, 1, 5], [1, 0, 5]])
    out, cache = ops.embedding_forward(ids, W)
    G = rng.standard_normal(out.shape)
    tW = T(W)
    backward_with(F.embedding(torch.tensor(ids), tW), G)
    close(ops.embedding_backward(G, cache), tW.grad, "embedding dW")


@pytest.mark.parametrize("causal", [False, True])
def test_attention_against_sdpa(rng, causal):
    B, H, Tn, D = 3, 2, 6, 4
    q, k, v = (rng.standard_normal((B, H, Tn, D)) for _ in range(3))
    km = np.ones((B, Tn), bool)
    km[1, 4:] = False
    km[2, 1:3] = False
    out, cache = ops.attention_forward(q, k, v, key_mask=km, causal=causal)
    G = rng.standard_normal(out.shape)
    tq, tk, tv = T(q), T(k), T(v)
    allowed = torch.tensor(km)[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(Tn, Tn, dtype=torch.bool).tril()
    o = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=allowed)
    backward_with(o, G)
    close(out, o, "attention out")
    for g, t, n in zip(ops.attention_backward(G, cache), (tq, tk, tv), "qkv"):
        close(g, t.grad, f"attention d{n}")


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_against_torch_layer(rng, norm_first):
    """numformer's EncoderBlock and torch.nn.TransformerEncoderLayer with the same weights."""
    C, H, Fw, B, Tn = 8, 2, 12, 3, 5
    blk = nn.EncoderBlock(C, H, Fw, dropout=0.0, norm_first=norm_first, activation="gelu",
                          rng=0, init_std=0.3).astype(np.float64)
    for p in (blk.attn.bqkv, blk.attn.bo, blk.ln1.gamma, blk.ln1.beta, blk.ffn.fc1.bias):
        p.value[...] = rng.standard_normal(p.shape) * 0.3
    layer = torch.nn.TransformerEncoderLayer(C, H, Fw, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=norm_first,
                                             dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.tensor(blk.attn.Wqkv.value.T))
        layer.self_attn.in_proj_bias.copy_(torch.tensor(blk.attn.bqkv.value))
        layer.self_attn.out_proj.weight.copy_(torch.tensor(blk.attn.Wo.value.T))
        layer.self_attn.out_proj.bias.copy_(torch.tensor(blk.attn.bo.value))
        layer.linear1.weight.copy_(torch.tensor(blk.ffn.fc1.weight.value.T))
        layer.linear1.bias.copy_(torch.tensor(blk.ffn.fc1.bias.value))
        layer.linear2.weight.copy_(torch.tensor(blk.ffn.fc2.weight.value.T))
        layer.linear2.bias.copy_(torch.tensor(blk.ffn.fc2.bias.value))
        for ln, tln in ((blk.ln1, layer.norm1), (blk.ln2, layer.norm2)):
            tln.weight.copy_(torch.tensor(ln.gamma.value))
            tln.bias.copy_(torch.tensor(ln.beta.value))
    layer.train()  # keep torch on its plain (differentiable) path; dropout is 0
    x = rng.standard_normal((B, Tn, C))
    km = np.ones((B, Tn), bool)
    km[1, 3:] = False
    out = blk(x, km)
    G = rng.standard_normal(out.shape)
    blk.zero_grad()
    dx = blk.backward(G)
    tx = T(x)
    o = layer(tx, src_key_padding_mask=torch.tensor(~km))
    backward_with(o, G)
    np.testing.assert_allclose(out, o.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(blk.attn.Wqkv.grad, layer.self_attn.in_proj_weight.grad.numpy().T,
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(blk.ffn.fc1.weight.grad, layer.linear1.weight.grad.numpy().T,
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(blk.ln2.gamma.grad, layer.norm2.weight.grad.numpy(),
                               rtol=RTOL, atol=ATOL)
