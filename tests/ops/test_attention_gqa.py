"""Grouped-query attention (GQA) in the reference ops: ``attention_forward`` with
k, v of Hkv heads (Hkv dividing H, query head h reads kv head h // (H // Hkv)),
and ``mha_forward(..., n_kv_heads=Hkv)`` with Wqkv (C, (H + 2 Hkv) D).

Checked four ways: against plain multi-head attention on K/V repeated per
query head (the Hugging Face ``repeat_kv`` composition, whose adjoint sums
dK and dV over a group); finite differences (float64, odd shapes, T=1,
Hkv = 1, = H and in between, causal and padding masks, decode shapes
Tq < Tk); torch's ``scaled_dot_product_attention(..., enable_gqa=True)``;
and the clear errors for shapes that do not group and for a float64 dout
into a float32 forward.
"""

import numpy as np
import pytest

from numformer import ops
from numformer.gradcheck import check_op
from numformer.ops import attention as ref
from numformer.testing import assert_close, attention_inputs

# (B, H, Hkv, Tq, Tk, D): T=1, T=5, D=3, Hkv = 1 (multi-query), = H, in between,
# decode shapes (one or a few queries against more keys).
SHAPES = [
    (1, 3, 1, 1, 1, 3),
    (2, 4, 2, 5, 5, 3),
    (2, 6, 2, 5, 5, 3),
    (2, 6, 3, 4, 7, 2),
    (2, 3, 3, 5, 5, 3),
    (3, 6, 1, 1, 6, 3),
    (2, 6, 3, 2, 9, 4),
]
IDS = ["x".join(map(str, s)) for s in SHAPES]


def make(rng, shape, masked, dtype=np.float64):
    """q, k, v of numformer.testing.attention_inputs (the same draws), with this file's
    fixed padding pattern instead of its random mask."""
    B, Tk = shape[0], shape[4]  # (B, H, Hkv, Tq, Tk, D)
    q, k, v, _ = attention_inputs(rng, shape, dtype, masked=False)
    km = None
    if masked:
        km = np.ones((B, Tk), bool)
        km[-1, Tk // 2:] = False  # padding at the end of the last sequence
        if B > 2:
            km[1, :] = False  # a fully padded sequence
    return q, k, v, km


def repeat_kv(x, G):
    """(B, Hkv, T, D) -> (B, Hkv * G, T, D), kv head g copied to query heads g*G .. g*G+G-1."""
    return np.repeat(x, G, axis=1)


def sum_groups(dx, Hkv):
    """The adjoint of repeat_kv: (B, H, T, D) -> (B, Hkv, T, D)."""
    B, H, T, D = dx.shape
    return dx.reshape(B, Hkv, H // Hkv, T, D).sum(axis=2)


@pytest.mark.parametrize("masked,causal", [(False, False), (True, False), (False, True),
                                           (True, True)])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gqa_is_attention_on_repeated_kv(rng, shape, masked, causal):
    """Same numbers as ordinary multi-head attention on K and V repeated per query
    head; dK and dV are the sums of the repeated heads' gradients."""
    q, k, v, km = make(rng, shape, masked)
    G = q.shape[1] // k.shape[1]
    out, cache = ref.attention_forward(q, k, v, key_mask=km, causal=causal)
    out_r, cache_r = ref.attention_forward(q, repeat_kv(k, G), repeat_kv(v, G), key_mask=km,
                                           causal=causal)
    assert out.shape == q.shape
    assert_close(out, out_r, what="gqa out")
    dout = rng.standard_normal(out.shape)
    dq, dk, dv = ref.attention_backward(dout, cache)
    dq_r, dk_r, dv_r = ref.attention_backward(dout, cache_r)
    assert dk.shape == k.shape and dv.shape == v.shape
    assert_close(dq, dq_r, what="dq")
    assert_close(dk, sum_groups(dk_r, k.shape[1]), what="dk (sum over the group)")
    assert_close(dv, sum_groups(dv_r, k.shape[1]), what="dv (sum over the group)")
    # the cache keeps k and v as given: no repeated copy
    assert cache[1] is k and cache[2] is v


@pytest.mark.parametrize("masked,causal", [(False, False), (True, True), (True, False),
                                           (False, True)])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gqa_gradcheck(rng, shape, masked, causal):
    q, k, v, km = make(rng, shape, masked)
    report = check_op(ops.attention_forward, ops.attention_backward,
                      dict(q=q, k=k, v=v, key_mask=km), ["q", "k", "v"], dict(causal=causal),
                      title=f"gqa {shape}")
    report.assert_ok()
    assert report.worst_norm_rel < 1e-8, report.table()


def test_the_grouping_is_the_llama_one(rng):
    """Query head h reads kv head h // G (not h % Hkv): with Hkv=2, H=4, heads 0, 1
    see kv head 0 and heads 2, 3 kv head 1."""
    q, k, v, _ = make(rng, (1, 4, 2, 3, 5, 3), False)
    out, _ = ref.attention_forward(q, k, v)
    for h in range(4):
        single, _ = ref.attention_forward(q[:, h:h + 1], k[:, h // 2:h // 2 + 1],
                                          v[:, h // 2:h // 2 + 1])
        assert_close(out[:, h:h + 1], single, what=f"head {h}")


# -- against PyTorch ---------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 6, 2, 5, 5, 3), (3, 6, 1, 1, 6, 3), (2, 6, 3, 2, 9, 4),
                                   (2, 4, 4, 5, 5, 3)], ids=lambda s: "x".join(map(str, s)))
def test_gqa_against_torch_sdpa(rng, shape, causal):
    torch = pytest.importorskip("torch", reason="torch not installed: GQA cross-check skipped")
    F = torch.nn.functional
    q, k, v, km = make(rng, shape, masked=True)
    km[0, 0] = False  # and padding in front
    out, cache = ref.attention_forward(q, k, v, key_mask=km, causal=causal)
    dout = rng.standard_normal(out.shape)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    Tq, Tk = q.shape[2], k.shape[2]
    allowed = torch.tensor(km)[:, None, None, :]
    if causal:  # query i sees keys j <= i + (Tk - Tq)
        allowed = allowed & torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
    o = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=allowed, enable_gqa=True)
    o.backward(torch.tensor(dout))
    # torch gives NaN for a query that sees no key; numformer gives 0 (documented):
    # compare the rows that see at least one key, and check the others are 0
    seen = np.broadcast_to(allowed.numpy().any(-1), out.shape[:3])  # (B, H, Tq)
    assert_close(out[seen], o.detach().numpy()[seen], what="out vs torch")
    assert np.all(out[~seen] == 0)
    dq, dk, dv = ref.attention_backward(dout, cache)
    assert_close(dq[seen], tq.grad.numpy()[seen], what="dq vs torch")
    if seen.all():  # torch's NaN rows would spoil its dk, dv
        assert_close(dk, tk.grad.numpy(), what="dk vs torch")
        assert_close(dv, tv.grad.numpy(), what="dv vs torch")
    else:
        assert not np.isnan(dk).any() and not np.isnan(dv).any()


@pytest.mark.parametrize("causal", [False, True])
def test_gqa_gradients_against_torch_all_rows_seen(rng, causal):
    """Every query sees a key, so dk and dv compare in full."""
    torch = pytest.importorskip("torch", reason="torch not installed: GQA cross-check skipped")
    F = torch.nn.functional
    q, k, v, _ = make(rng, (2, 6, 2, 4, 7, 3), False)
    km = np.ones((2, 7), bool)
    km[1, 5:] = False
    out, cache = ref.attention_forward(q, k, v, key_mask=km, causal=causal)
    dout = rng.standard_normal(out.shape)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    allowed = torch.tensor(km)[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(4, 7, dtype=torch.bool).tril(3)
    o = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=allowed, enable_gqa=True)
    o.backward(torch.tensor(dout))
    assert_close(out, o.detach().numpy(), what="out vs torch")
    for g, t, n in zip(ref.attention_backward(dout, cache), (tq, tk, tv), "qkv"):
        assert_close(g, t.grad.numpy(), what=f"d{n} vs torch")


# -- multi-head self-attention with n_kv_heads ----------------------------------------------

def mha_params(rng, C, H, Hkv, bias=True, dtype=np.float64):
    D = C // H
    n = (H + 2 * Hkv) * D
    Wqkv = (rng.standard_normal((C, n)) * 0.5).astype(dtype)
    Wo = (rng.standard_normal((C, C)) * 0.5).astype(dtype)
    bqkv = rng.standard_normal(n).astype(dtype) if bias else None
    bo = rng.standard_normal(C).astype(dtype) if bias else None
    return Wqkv, bqkv, Wo, bo


def mha_composition(x, Wqkv, bqkv, Wo, bo, H, Hkv, km, causal, dout):
    """mha written out: projection, split into H query and Hkv key/value heads, K/V
    repeated per query head, plain multi-head attention, merge, projection; and
    its backward through the same steps (the repeat's adjoint sums the group)."""
    B, T, C = x.shape
    D, G = C // H, H // Hkv
    qkv = x @ Wqkv + (0 if bqkv is None else bqkv)
    q = qkv[..., :H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3)
    k = qkv[..., H * D:(H + Hkv) * D].reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    v = qkv[..., (H + Hkv) * D:].reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    a, ac = ref.attention_forward(q, repeat_kv(k, G), repeat_kv(v, G), key_mask=km, causal=causal)
    m = a.transpose(0, 2, 1, 3).reshape(B, T, C)
    out = m @ Wo + (0 if bo is None else bo)
    dWo = m.reshape(-1, C).T @ dout.reshape(-1, C)
    dbo = None if bo is None else dout.sum(axis=(0, 1))
    da = (dout @ Wo.T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
    dq, dk, dv = ref.attention_backward(da, ac)
    dk, dv = sum_groups(dk, Hkv), sum_groups(dv, Hkv)
    dqkv = np.concatenate([t.transpose(0, 2, 1, 3).reshape(B, T, -1) for t in (dq, dk, dv)], -1)
    dx = dqkv @ Wqkv.T
    dWqkv = x.reshape(-1, C).T @ dqkv.reshape(-1, dqkv.shape[-1])
    dbqkv = None if bqkv is None else dqkv.sum(axis=(0, 1))
    return out, (dx, dWqkv, dbqkv, dWo, dbo)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("H,Hkv", [(6, 1), (6, 2), (6, 3), (6, 6), (3, 1)])
def test_mha_n_kv_heads_matches_composition(rng, H, Hkv, causal, bias):
    B, T, C = 3, 5, 6
    x = rng.standard_normal((B, T, C))
    Wqkv, bqkv, Wo, bo = mha_params(rng, C, H, Hkv, bias)
    km = np.ones((B, T), bool)
    km[1, 3:] = False
    km[2, :] = False
    out, cache = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, km, causal, n_kv_heads=Hkv)
    dout = rng.standard_normal(out.shape)
    out_c, grads_c = mha_composition(x, Wqkv, bqkv, Wo, bo, H, Hkv, km, causal, dout)
    assert_close(out, out_c, what="mha out")
    grads = ref.mha_backward(dout, cache)
    assert len(grads) == 5
    for name, g, g_c in zip(("dx", "dWqkv", "dbqkv", "dWo", "dbo"), grads, grads_c):
        if g_c is None:
            assert g is None, f"{name}: expected None for an absent bias"
        else:
            assert g.shape == g_c.shape
            assert_close(g, g_c, reduced=name != "dx", what=name)  # dW, db: batch-reduced


def test_mha_n_kv_heads_none_is_n_heads(rng):
    """n_kv_heads=None is today's multi-head attention: Wqkv (C, 3C), same numbers
    as n_kv_heads=n_heads, bit for bit."""
    B, T, C, H = 2, 5, 6, 3
    x = rng.standard_normal((B, T, C))
    Wqkv, bqkv, Wo, bo = mha_params(rng, C, H, H)
    assert Wqkv.shape == (C, 3 * C)
    out, cache = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, causal=True)
    out_h, cache_h = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, causal=True, n_kv_heads=H)
    assert np.array_equal(out, out_h)
    dout = rng.standard_normal(out.shape)
    for g, g_h in zip(ref.mha_backward(dout, cache), ref.mha_backward(dout, cache_h)):
        assert np.array_equal(g, g_h)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("C,H,Hkv,T", [(6, 2, 1, 5), (6, 3, 1, 1), (12, 6, 3, 4), (12, 4, 2, 5)])
def test_mha_n_kv_heads_gradcheck(rng, C, H, Hkv, T, bias):
    B = 2
    x = rng.standard_normal((B, T, C))
    Wqkv, bqkv, Wo, bo = mha_params(rng, C, H, Hkv, bias)
    km = np.ones((B, T), bool)
    if T > 1:
        km[1, T - 1:] = False  # padding at the end of sequence 1
    inputs = dict(x=x, Wqkv=Wqkv, bqkv=bqkv, Wo=Wo, bo=bo)
    report = check_op(ref.mha_forward, ref.mha_backward, inputs, ["x", "Wqkv", "bqkv", "Wo", "bo"],
                      dict(n_heads=H, key_mask=km, causal=True, n_kv_heads=Hkv),
                      title=f"mha H={H} Hkv={Hkv}")
    report.assert_ok()
    assert {r.name for r in report.rows} == ({"x", "Wqkv", "bqkv", "Wo", "bo"} if bias
                                             else {"x", "Wqkv", "Wo"})


# -- bad input ---------------------------------------------------------------------------

def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("call,pattern", [
    (lambda: ref.attention_forward(z(2, 6, 3, 4), z(2, 4, 3, 4), z(2, 4, 3, 4)),
     r"k: expected a number of key/value heads Hkv .* divides the H=6 query heads of q "
     r"\(2, 6, 3, 4\), got k of shape \(2, 4, 3, 4\) \(Hkv=4\)"),
    (lambda: ref.attention_forward(z(2, 6, 3, 4), z(2, 2, 3, 4), z(2, 3, 3, 4)),
     r"v: expected shape \(2, 2, 3, 4\) \(B, Hkv, Tk, D\), got \(2, 3, 3, 4\)"),
    (lambda: ref.attention_forward(z(2, 6, 3, 4), z(2, 2, 3, 5), z(2, 2, 3, 4)),
     r"k: expected shape \(2, 2, 3, 4\) \(B, Hkv, Tk, D\), got \(2, 2, 3, 5\)"),
    (lambda: ref.mha_forward(z(1, 2, 6), z(6, 18), None, z(6, 6), None, 3, n_kv_heads=2),
     r"n_kv_heads: expected a divisor of n_heads=3 \(or None for n_heads\), got 2"),
    (lambda: ref.mha_forward(z(1, 2, 6), z(6, 18), None, z(6, 6), None, 3, n_kv_heads=0),
     r"n_kv_heads: expected a divisor of n_heads=3"),
    (lambda: ref.mha_forward(z(1, 2, 6), z(6, 18), None, z(6, 6), None, 3, n_kv_heads=1.0),
     r"n_kv_heads: expected a divisor of n_heads=3 \(or None for n_heads\), got 1.0"),
    (lambda: ref.mha_forward(z(1, 2, 6), z(6, 18), None, z(6, 6), None, 3, n_kv_heads=1),
     r"Wqkv: expected shape \(6, 10\) \(C, \(n_heads \+ 2 \* n_kv_heads\) \* D\) with C=6, "
     r"n_heads=3, n_kv_heads=1, D=2, got \(6, 18\)"),
    (lambda: ref.mha_forward(z(1, 2, 6), z(6, 10), None, z(6, 6), None, 3),
     r"Wqkv: expected shape \(6, 18\).*n_kv_heads=3.*got \(6, 10\)"),
])
def test_bad_grouping_is_a_clear_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_float64_dout_into_float32_forward_is_refused(rng):
    q, k, v, _ = make(rng, (2, 4, 2, 3, 5, 3), False, dtype=np.float32)
    out, cache = ref.attention_forward(q, k, v, causal=True)
    with pytest.raises(ValueError, match=r"attention_backward: dout: expected dtype float32 "
                                         r"\(the dtype of the forward pass\), got float64"):
        ref.attention_backward(np.ones(out.shape), cache)
    with pytest.raises(ValueError, match=r"attention_backward: dout: expected shape"):
        ref.attention_backward(np.ones(out.shape[:-1] + (2,), np.float32), cache)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    Wqkv, bqkv, Wo, bo = mha_params(rng, 6, 2, 1, dtype=np.float32)
    out, cache = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, 2, n_kv_heads=1)
    with pytest.raises(ValueError, match=r"mha_backward: dout: expected dtype float32 "
                                         r"\(the dtype of the forward pass\), got float64"):
        ref.mha_backward(np.ones(out.shape), cache)
    grads = ref.mha_backward(np.ones(out.shape, np.float32), cache)
    assert all(g.dtype == np.float32 for g in grads)
