"""The attention benchmark as a tool: the agreement gate, the FLOP counts, the JSON
schema and the compare command. No timing is asserted."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from numformer.bench import attention as bench
from numformer.bench import attention_child as child
from numformer.bench import attention_report as report
from numformer.bench import compare
from numformer.bench.harness import load_npz
from numformer.ops.attention import allowed_mask


def question(**kw) -> dict:
    q = dict(B=2, H=4, Hkv=2, D=5, T=[7], Tq=None, dtype="float64", masks=["none"],
             pad_fraction=0.25, passes=list(bench.PASSES), repeats=1)
    q.update(kw)
    return q


def case(tmp_path, mask="none", Tk=7, ref_mb=1024.0, **kw) -> dict:
    q = question(**kw)
    bench.write_case(q, mask, Tk, tmp_path, ref_mb)
    return load_npz(tmp_path / f"{bench.case_stem(mask, Tk)}.npz")


WRONG = '''
import numpy as np
from numformer.ops import attention as ref

def attention_forward(q, k, v, key_mask=None, causal=False, scale=None):
    return ref.attention_forward(q, k, v, key_mask=key_mask, causal=False, scale=scale)

def attention_backward(dout, cache):
    return ref.attention_backward(dout, cache)

def wrong_dk_forward(q, k, v, key_mask=None, causal=False, scale=None):
    return ref.attention_forward(q, k, v, key_mask=key_mask, causal=causal, scale=scale)

def wrong_dk_backward(dout, cache):
    dq, dk, dv = ref.attention_backward(dout, cache)
    return dq, 2 * dk, dv

def raising_forward(q, k, v, key_mask=None, causal=False, scale=None):
    return ref.attention_forward(q, k, v, mask=key_mask)

def upcast_forward(q, k, v, key_mask=None, causal=False, scale=None):
    out, cache = ref.attention_forward(q, k, v, key_mask=key_mask, causal=causal, scale=scale)
    return out.astype(np.float64), cache
'''


@pytest.fixture
def user_file(tmp_path):
    p = tmp_path / "my_attention.py"
    p.write_text(WRONG)
    return p


# -- the agreement gate -------------------------------------------------------------------

@pytest.mark.parametrize("mask", ["causal", "causal+padding"])
def test_gate_passes_the_reference_and_refuses_a_kernel_that_ignores_the_causal_mask(
        tmp_path, user_file, mask):
    c = case(tmp_path, mask)
    good = child.pair_impl(*child.load_spec("numformer.ops.attention"), c)
    diffs = child.gate("reference", good["result"](), c)
    assert set(diffs) == {"out", "dq", "dk", "dv"} and max(diffs.values()) < 1e-12
    bad = child.pair_impl(*child.load_spec(f"{user_file}:attention_forward"), c)
    with pytest.raises(AssertionError, match=r"disagrees with the reference: max abs diff"):
        child.gate("user", bad["result"](), c)


def test_gate_refuses_a_wrong_gradient_and_names_it(tmp_path, user_file):
    c = case(tmp_path, "padding", dtype="float32")
    bad = child.pair_impl(*child.load_spec(f"{user_file}:wrong_dk_forward"), c)
    with pytest.raises(AssertionError, match=r"user dk \(padding, Tk=7\) disagrees"):
        child.gate("user", bad["result"](), c)


def test_gate_refuses_a_silent_upcast_and_checks_a_forward_only_kernel(tmp_path, user_file):
    c = case(tmp_path, "none", dtype="float32")
    fwd, bwd = child.load_spec(f"{user_file}:upcast_forward")
    assert bwd is None  # no upcast_backward: forward only
    impl = child.pair_impl(fwd, bwd, c)
    assert impl["backward"] is None and impl["forward+backward"] is None
    with pytest.raises(AssertionError, match="float64, expected the inputs' float32"):
        child.gate("user", impl["result"](), c)


def test_gate_on_one_group_when_the_whole_reference_is_too_big(tmp_path, user_file):
    c = case(tmp_path, "causal", ref_mb=0.0, B=3, H=6, Hkv=2)
    assert not c["meta"]["whole"] and c["ref_out"].shape == (1, 3, 7, 5)
    assert c["ref_dk"].shape == (1, 1, 7, 5)
    good = child.pair_impl(*child.load_spec("numformer.ops.attention"), c)
    assert max(child.gate("ref", good["result"](), c).values()) < 1e-12
    bad = child.pair_impl(*child.load_spec(f"{user_file}:attention_forward"), c)
    with pytest.raises(AssertionError, match="disagrees"):
        child.gate("user", bad["result"](), c)


def test_check_only_refuses_the_wrong_kernel_with_evidence_and_exit_code(user_file, capsys):
    argv = ["--check-only", "--impls", "", "--impl", f"{user_file}:attention_forward",
            "--impl", "numformer.ops.attention", "--impl", f"{user_file}:raising_forward",
            "--B", "2", "--H", "2", "--D", "4", "--T", "5", "--mask", "causal", "--threads", "1"]
    assert bench.main(argv) == 1
    out = capsys.readouterr()
    assert "Refused, never timed: user " in out.out and "max abs diff" in out.out
    assert "| user numformer.ops.attention | 1 |" in out.out  # the right one was checked
    assert "raising_forward raised TypeError" in out.out  # an error is a refusal too


def test_quick_presets_only_what_the_command_line_leaves_out():
    q = bench.question_of(bench.parse(["--quick", "--H", "9", "--kv-heads", "3", "--T", "32"]))
    assert (q["B"], q["H"], q["Hkv"], q["T"], q["repeats"]) == (4, 9, 3, [32], 3)
    assert bench.parse(["--quick"]).threads == "1"
    with pytest.raises(SystemExit, match="--kv-heads: expected a divisor of --H 4, got 3"):
        bench.question_of(bench.parse(["--kv-heads", "3"]))


# -- what counts as useful work -----------------------------------------------------------

@pytest.mark.parametrize("mask,Tq,Tk", [("none", None, 9), ("causal", None, 9),
                                        ("padding", None, 9), ("causal+padding", None, 9),
                                        ("causal", 3, 11), ("causal+padding", 1, 12),
                                        ("padding", 2, 8)])
def test_flops_count_the_pairs_the_mask_lets_through(tmp_path, mask, Tq, Tk):
    """4 D FLOP forward (8 D backward) per (query, key) pair the written case's mask
    allows (numformer.ops.attention.allowed_mask on its key_mask), per query head:
    GQA's Hkv does not change the work, decoding counts Tq queries."""
    c = case(tmp_path, mask, Tk, B=3, H=6, Hkv=2, D=5, Tq=Tq, T=[Tk])
    q = question(B=3, H=6, Hkv=2, D=5, Tq=Tq)
    allowed = allowed_mask(3, Tq or Tk, Tk, c.get("key_mask"), "causal" in mask)
    n = np.broadcast_to(True if allowed is None else allowed, (3, 1, Tq or Tk, Tk)).sum()
    assert bench.useful_gflop(q, Tk, mask, "forward") * 1e9 == pytest.approx(4 * 5 * 6 * n)
    assert bench.useful_gflop(q, Tk, mask, "backward") * 1e9 == pytest.approx(8 * 5 * 6 * n)
    assert bench.useful_gflop(q, Tk, mask, "forward+backward") * 1e9 == pytest.approx(
        12 * 5 * 6 * n)


def test_padding_fraction_pads_the_end_of_each_sequence(tmp_path):
    c = case(tmp_path, "padding", 8, pad_fraction=0.25)
    assert c["key_mask"].tolist() == [[True] * 6 + [False] * 2] * 2
    assert bench.key_lengths(2, 3, "padding", 0.9).tolist() == [1, 1]  # one key stays real


def test_decode_step_sees_every_key_and_the_default_question_matches_the_readme():
    assert bench.visible_pairs(1, 2048, causal=True) == 2048
    assert bench.visible_pairs(3, 10, causal=True) == 8 + 9 + 10
    assert bench.gflop(64, "forward+backward") == pytest.approx(12 * 32 * 4 * 64 * 64 * 32 / 1e9)


# -- the document and compare -------------------------------------------------------------

@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    """A real (tiny) run: numformer numpy alone, 1 thread, 1 repeat."""
    out = tmp_path_factory.mktemp("results")
    assert bench.main(["--impls", "numpy", "--B", "1", "--H", "2", "--kv-heads", "1", "--D",
                       "4", "--T", "6,9", "--mask", "none,causal+padding", "--passes",
                       "forward,backward", "--threads", "1", "--repeats", "1",
                       "--name", "tiny", "--results", str(out)]) == 0
    return out / "tiny.json"


def test_the_json_holds_the_question_machine_checks_and_rows(doc):
    d = report.validate(json.loads(doc.read_text()))
    assert d["question"]["Hkv"] == 1 and d["question"]["masks"] == ["none", "causal+padding"]
    assert {"cpu", "cores", "numpy"} <= set(d["machine"])
    assert d["peaks"]["1"]["fma"]["gflops"] > 0 and d["peaks"]["1"]["matmul_best"] > 0
    assert {(r["mask"], r["Tk"], r["what"]) for r in d["rows"]} == {
        (m, t, w) for m in ("none", "causal+padding") for t in (6, 9)
        for w in ("forward", "backward")}
    r = d["rows"][0]
    assert r["gflops"] == pytest.approx(r["gflop"] / (r["ms"] * 1e-3))
    assert len(d["checks"]) == 4 and d["processes"][0]["blas"]
    assert (doc.parent / "tiny.md").is_file()
    bad = copy.deepcopy(d)
    del bad["rows"][0]["ms"]
    with pytest.raises(ValueError, match="row: missing key 'ms'"):
        report.validate(bad)
    bad = dict(d, question=dict(d["question"], B="1"))
    with pytest.raises(ValueError, match="question: 'B'"):
        report.validate(bad)


def test_compare_two_runs(doc, tmp_path, capsys):
    d = json.loads(doc.read_text())
    slower = copy.deepcopy(d)
    for r in slower["rows"]:
        r["ms"] *= 2
    slower["machine"]["cpu"] = "another CPU"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(slower))
    from numformer import cli
    assert cli.main(["bench", "compare", str(doc), str(b), "--out", str(tmp_path / "c.md")]) == 0
    md = (tmp_path / "c.md").read_text()
    assert "| cpu (differs) |" in md and "another CPU" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| numformer numpy |")]
    assert len(rows) == 8 and all("| 2.00 |" in ln for ln in rows)
    other = dict(copy.deepcopy(d), question=dict(d["question"], D=8))
    c = tmp_path / "c.json"
    c.write_text(json.dumps(other))
    assert "no row is compared" in compare.compare(d, compare.load(c))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"benchmark": "attention", "runs": []}))
    with pytest.raises(SystemExit, match="old.json: expected an attention benchmark JSON"):
        compare.load(old)


# -- torch's side (where torch is installed) -----------------------------------------------

@pytest.mark.parametrize("key", ["torch-flash", "torch-math", "torch-eager"])
@pytest.mark.parametrize("mask,Tq", [("causal", 1), ("causal+padding", None), ("causal", 3)])
def test_torch_twin_follows_numformer_masks_and_gqa(tmp_path, key, mask, Tq):
    """The twin's masks (the causal part aligned at the end of the keys) and GQA
    pass the gate; torch backends with no CPU kernel are reported unavailable."""
    torch = pytest.importorskip("torch")
    import sys
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        from benchmarks.twins import attention as twin
    finally:
        sys.path.remove(str(root))
    c = case(tmp_path, mask, 9, Tq=Tq)
    child.gate(key, twin.torch_impl(torch, key, c)["result"](), c)
    with pytest.raises(child.Unavailable, match="EFFICIENT_ATTENTION"):
        twin.torch_impl(torch, "torch-efficient", c)


@pytest.mark.parametrize("mask,Tq", [("causal", None), ("causal+padding", 4), ("padding", None)])
def test_the_reference_in_query_blocks_equals_the_op_in_one_call(tmp_path, mask, Tq):
    """A tiny memory bound (blocks of one query) gives numformer.ops.attention's
    own result: the causal blocks' key truncation is the op's alignment."""
    from numformer.ops import attention as ref
    c = case(tmp_path, mask, 9, Tq=Tq)
    x = {n: c[n].astype(np.float64) for n in ("q", "k", "v", "dout")}
    km, causal = c.get("key_mask"), "causal" in mask
    got = bench.reference_in_chunks(x, km, causal, max_mb=1e-9)
    out, cache = ref.attention_forward(x["q"], x["k"], x["v"], key_mask=km, causal=causal)
    want = (out, *ref.attention_backward(x["dout"], cache))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
