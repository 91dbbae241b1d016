"""The fused attention kernel against the NumPy reference (numformer.ops.attention).

Every case runs over four block settings (the ``blocks`` fixture): the
default block sizes; tiny ones (BQ=4, BK=8), so short sequences still cross
several query and key blocks and end in partial blocks, with the work forced
onto every numba thread (small calls otherwise run on the calling thread);
the same tiny blocks in the forward's column orientation only; and the row
orientation (columns x keys, the decoding path) for every forward block.
Random scores never move the online softmax's offset after a block was
accumulated: the rescaling branch has its own test
(tests/kernels/test_attention_gqa.py::test_online_softmax_rescaling_branch).
Runs compiled and, with NUMBA_DISABLE_JIT=1, as plain Python (smaller grid).
"""

import itertools

import numpy as np
import pytest

from numformer import kernels
from numformer.gradcheck import check_op
from numformer.kernels import _jit
from numformer.kernels import attention as ka
from numformer.testing import attention_inputs as make_inputs
from numformer.ops import attention as ref
from numformer.testing import assert_close

DTYPES = [np.float32, np.float64]
# (B, H, Tq, Tk, D): T=1, equal lengths, Tq < Tk and Tq > Tk (queries aligned
# with the end of the keys), sizes that are not multiples of any block size.
SHAPES = [(1, 1, 1, 1, 3), (2, 3, 5, 5, 4), (2, 2, 7, 13, 5), (2, 1, 13, 6, 3), (1, 2, 17, 17, 8)]
if not _jit.JIT_DISABLED:
    SHAPES += [(2, 2, 70, 70, 16), (1, 2, 65, 300, 32)]
# The block settings every case runs under: the `blocks` fixture of conftest.py.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked,causal", list(itertools.product([False, True], [False, True])))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_agrees_with_reference(rng, blocks, shape, dtype, masked, causal):
    q, k, v, key_mask = make_inputs(rng, shape, dtype, masked)
    out, cache = ka.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
    out_ref, cache_ref = ref.attention_forward(q, k, v, key_mask=key_mask, causal=causal)
    assert out.dtype == dtype and out.shape == out_ref.shape
    assert_close(out, out_ref, dtype, what="attention out")
    dout = rng.standard_normal(out.shape).astype(dtype)
    grads = ka.attention_backward(dout, cache)
    grads_ref = ref.attention_backward(dout, cache_ref)
    for name, g, g_ref in zip(("dq", "dk", "dv"), grads, grads_ref):
        assert g.dtype == dtype and g.shape == g_ref.shape
        assert np.all(np.isfinite(g)), f"{name} has NaN/inf"
        assert_close(g, g_ref, dtype, what=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_rows_give_zeros(rng, blocks, dtype):
    """A padded sequence and causal queries that precede every key: zeros, never NaN."""
    q, k, v, _ = make_inputs(rng, (2, 2, 9, 4, 3), dtype, False)
    key_mask = np.ones((2, 4), bool)
    key_mask[0] = False
    out, cache = ka.attention_forward(q, k, v, key_mask=key_mask, causal=True)
    assert np.all(out[0] == 0)
    assert np.all(out[1, :, :5] == 0)  # query i sees keys j <= i + (4 - 9)
    assert np.all(out[1, :, 5:] != 0)
    grads = ka.attention_backward(np.ones_like(out), cache)
    for g in grads:
        assert np.all(np.isfinite(g))
    assert np.all(grads[0][0] == 0) and np.all(grads[1][0] == 0) and np.all(grads[2][0] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_like_the_reference(rng, blocks, dtype):
    """A NaN in a query makes its output row NaN, a NaN in a key every row that
    sees it; never silently finite (a NaN loss must stop training)."""
    q, k, v, _ = make_inputs(rng, (1, 2, 9, 11, 3), dtype, False)
    q[0, 0, 2, 1] = np.nan
    k[0, 1, 5, 0] = np.nan
    with np.errstate(invalid="ignore"):
        out, cache = ka.attention_forward(q, k, v, causal=True)
        out_ref, _ = ref.attention_forward(q, k, v, causal=True)
        grads = ka.attention_backward(np.ones_like(out), cache)
    assert np.array_equal(np.isnan(out), np.isnan(out_ref))
    assert np.isnan(out[0, 0, 2]).all() and np.isnan(out[0, 1, 3:]).all()
    assert np.isfinite(out[0, 1, :3]).all()  # queries that precede the NaN key
    assert all(np.isnan(g).any() for g in grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cache_holds_nothing_quadratic(rng, dtype):
    B, H, Tq, Tk, D = 2, 3, 11, 13, 4
    q, k, v, key_mask = make_inputs(rng, (B, H, Tq, Tk, D), dtype, True)
    _, cache = ka.attention_forward(q, k, v, key_mask=key_mask, causal=True)
    arrays = [x for x in cache if isinstance(x, np.ndarray)]
    assert not any(x.ndim >= 2 and x.shape[-2:] == (Tq, Tk) for x in arrays)
    assert max(x.size for x in arrays) <= B * H * max(Tq, Tk) * D
    total = sum(x.nbytes for x in arrays)
    out_and_lse = q.nbytes + B * H * Tq * q.itemsize
    assert total <= q.nbytes + k.nbytes + v.nbytes + out_and_lse + key_mask.nbytes


def test_scale_argument_and_dtype(rng):
    q, k, v, _ = make_inputs(rng, (1, 2, 6, 7, 4), np.float32, False)
    out, cache = ka.attention_forward(q, k, v, scale=0.3)
    out_ref, cache_ref = ref.attention_forward(q, k, v, scale=0.3)
    assert_close(out, out_ref, np.float32, what="out with scale=0.3")
    dout = rng.standard_normal(out.shape).astype(np.float32)
    grads, grads_ref = ka.attention_backward(dout, cache), ref.attention_backward(dout, cache_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == np.float32
        assert_close(g, g_ref, np.float32, what="grad with scale=0.3")


def test_strided_inputs(rng):
    """Heads split from a (B, T, 3C) buffer (unit inner stride) are read in place;
    a non-unit inner stride is copied; both give the reference's numbers."""
    B, T, H, D = 2, 9, 2, 4
    qkv = rng.standard_normal((B, T, 3 * H * D))
    q, k, v = (ref.split_heads(t, H) for t in np.split(qkv, 3, axis=-1))
    assert not q.flags.c_contiguous
    wide = rng.standard_normal((B, H, T, 2 * D))[..., ::2]  # inner stride 2
    for args in [(q, k, v), (q, wide, v)]:
        out, cache = ka.attention_forward(*args, causal=True)
        out_ref, cache_ref = ref.attention_forward(*args, causal=True)
        assert_close(out, out_ref, what="out (strided)")
        dout = rng.standard_normal(out.shape)
        for g, g_ref in zip(ka.attention_backward(dout, cache),
                            ref.attention_backward(dout, cache_ref)):
            assert_close(g, g_ref, what="grad (strided)")


def test_gradcheck_kernel(rng, blocks):
    """The kernel's own backward against finite differences (float64)."""
    q, k, v, key_mask = make_inputs(rng, (2, 1, 5, 7, 3), np.float64, True)
    key_mask[0, 2:] = True  # some keys visible in both sequences
    report = check_op(ka.attention_forward, ka.attention_backward,
                      {"q": q, "k": k, "v": v}, ["q", "k", "v"],
                      kwargs={"key_mask": key_mask, "causal": True}, title="kernel attention")
    report.assert_ok()


def test_exp2f_polynomial(rng):
    """float32 2**x used by the kernel: relative error near float32 rounding over the
    whole range it sees (the forward's offsets allow up to +WINDOW), exactly 0
    below the float32 normal range and for the masked score, NaN for NaN."""
    x = np.concatenate([np.linspace(-125.9, ka.WINDOW + 1, 3000), -rng.random(300) * 5,
                        np.array([0.0, -1e-7, 0.5, -0.5, 1.5])]).astype(np.float32)
    got = np.array([ka._exp2f(v) for v in x], dtype=np.float64)
    want = np.exp2(x.astype(np.float64))
    rel = np.abs(got - want) / want
    assert rel.max() < 4e-7, f"max relative error {rel.max():.2e} at x={x[rel.argmax()]}"
    for v in (-126.5, -200.0, -1e30, ka._NEG):
        assert ka._exp2f(np.float32(v)) == 0.0
    with np.errstate(invalid="ignore"):  # uncompiled, NaN -> int32 warns
        assert np.isnan(ka._exp2f(np.float32(np.nan)))
    # and in a loop the compiler vectorises (where a clamp may drop the NaN)
    s = np.zeros((3, 20), np.float32)
    s[1, 7] = np.nan
    colsum, colmax = np.zeros(20, np.float32), np.zeros(20, np.float32)
    with np.errstate(invalid="ignore"):
        ka._exp2_sum_max(s, 3, 20, np.zeros(20, np.float32), colsum, colmax)
    assert np.isnan(s[1, 7]) and np.isnan(colsum[7])
    assert np.isfinite(np.delete(colsum, 7)).all()


def test_validation_errors_match_reference(rng):
    q, k, v, _ = make_inputs(rng, (2, 2, 4, 5, 3), np.float32, False)
    bad_cases = [
        dict(q=q.astype(np.float64), k=k, v=v),
        dict(q=q, k=k[..., :2], v=v),
        dict(q=q, k=k, v=v[:, :, :4]),
        dict(q=q[0], k=k, v=v),
        dict(q=q, k=k, v=v, key_mask=np.ones((2, 4), bool)),
        dict(q=q, k=k, v=v, key_mask=np.ones((2, 5), np.int8)),
        dict(q=q.astype(np.int64), k=k, v=v),
    ]
    for case in bad_cases:
        with pytest.raises(ValueError) as e_ref:
            ref.attention_forward(**case)
        with pytest.raises(ValueError) as e_kernel:
            ka.attention_forward(**case)
        assert str(e_kernel.value) == str(e_ref.value)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_agrees_with_reference(rng, causal):
    B, T, C, H = 2, 7, 12, 3
    x = rng.standard_normal((B, T, C))
    Wqkv, bqkv = rng.standard_normal((C, 3 * C)) * 0.3, rng.standard_normal(3 * C)
    Wo, bo = rng.standard_normal((C, C)) * 0.3, rng.standard_normal(C)
    key_mask = np.ones((B, T), bool)
    key_mask[1, 5:] = False
    out, cache = ka.mha_forward(x, Wqkv, bqkv, Wo, bo, H, key_mask, causal)
    out_ref, cache_ref = ref.mha_forward(x, Wqkv, bqkv, Wo, bo, H, key_mask, causal)
    assert_close(out, out_ref, what="mha out")
    dout = rng.standard_normal(out.shape)
    names = ("dx", "dWqkv", "dbqkv", "dWo", "dbo")
    grads, grads_ref = ka.mha_backward(dout, cache), ref.mha_backward(dout, cache_ref)
    for name, g, g_ref in zip(names, grads, grads_ref):
        assert_close(g, g_ref, reduced=name != "dx", what=name)  # dW, db: batch-reduced
    with pytest.raises(ValueError, match="n_heads"):
        ka.mha_forward(x, Wqkv, bqkv, Wo, bo, 5)


def test_backend_switch_uses_the_kernel():
    assert kernels.op("attention", backend="numba") is ka
    assert kernels.op("attention", backend="numpy") is ref


def test_block_sizes_keep_blas_on_one_thread():
    from numformer.kernels.matmul import SINGLE_THREAD_MNK
    for D in (1, 3, 32, 64, 100, 256, 2048):
        bq, bk = ka.block_sizes(D)
        assert bq >= 1 and bk >= 1
        assert bq * bk * D <= SINGLE_THREAD_MNK or (bq == 8 and bk == 16)


# -- the benchmark's plumbing (the timings themselves are never asserted) ----------------

def test_bench_command_passes_its_options_to_the_benchmark(monkeypatch):
    from numformer import cli
    from numformer.commands import bench
    seen = []
    monkeypatch.setitem(bench.BENCHMARKS, "attention", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "attention", "--T", "64,128", "--repeats", "2"]) == 0
    assert seen == [["--T", "64,128", "--repeats", "2"]]


def test_bench_targets_read_off_the_one_thread_run():
    from numformer.bench import attention as bench

    def row(impl, T, ms, peak=None):
        return dict(impl=impl, T=T, what="forward+backward", ms=ms, peak_mb=peak)
    run = {"machine": {"threads": 1}, "rows": [
        row("numformer numba", 64, 4.0, 10.0), row("torch SDPA", 64, 5.0, 12.0),
        row("numformer numpy", 64, 7.0),
        row("numformer numba", 1024, 9.0, 13.0), row("torch SDPA", 1024, 8.0, 12.0),
        row("numformer numpy", 1024, 30.0)]}
    lines = bench.targets([run]).splitlines()
    assert "| 64 | 4.00 | 5.00 | yes | 7.00 | no |" in lines  # 4 > 7 / 2
    assert "| 1024 | 9.00 | 8.00 | - | 30.00 | yes |" in lines  # SDPA target is for T <= 512
    assert any("numba 13.0 MB, torch SDPA 12.0 MB (more than SDPA)" in ln for ln in lines)
