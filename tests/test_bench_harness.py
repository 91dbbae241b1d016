"""The benchmark harness and the train-step benchmark's checks (timings themselves
are never asserted)."""

import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from numformer.bench import harness
from numformer.bench.harness import spread, time_interleaved, write_atomic

TINY = dict(task="mlm", V=50, C=16, H=2, L=2, F=32, T=12, B=4, norm_first=False)
TINY_LM = dict(TINY, task="lm", norm_first=True)
ROOT = Path(__file__).resolve().parents[1]


def test_time_interleaved_warms_up_then_samples_in_rounds():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    result = time_interleaved(fns, repeats=3, min_time=0.0)
    # two warm-up calls each, then one sample of each function per round
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    for r in result.values():
        assert r["inner"] == 1 and r["repeats"] == 3
        assert 0 <= r["min_ms"] <= r["q1_ms"] <= r["ms"] <= r["q3_ms"] <= r["max_ms"]


def test_spread_of_known_samples():
    r = spread([0.005, 0.001, 0.004, 0.002, 0.003])  # seconds, unsorted
    assert (r["min_ms"], r["q1_ms"], r["ms"], r["q3_ms"], r["max_ms"]) == \
        pytest.approx((1.0, 2.0, 3.0, 4.0, 5.0))
    assert spread([0.002])["q1_ms"] == spread([0.002])["max_ms"] == pytest.approx(2.0)


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    assert write_atomic(path, "new") == path
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_npz_for_children_round_trips_without_pickles(tmp_path):
    a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array(["ab", "c"]),
         "meta": {"config": TINY, "lr": 1e-4}}
    back = harness.load_npz(harness.save_npz(tmp_path / "c.npz", a))
    assert back["meta"] == json.loads(json.dumps(a["meta"]))
    np.testing.assert_array_equal(back["x"], a["x"])
    assert back["s"].tolist() == ["ab", "c"]


# -- FLOP counts ----------------------------------------------------------------------

@pytest.mark.parametrize("c", [TINY, TINY_LM], ids=["mlm", "lm"])
def test_step_flops_counts_every_matmul_of_a_step(c, monkeypatch):
    """Count 2*m*n*k of every matrix product numformer's NumPy backend runs in one
    forward+backward (every module that calls ops._alloc.matmul, patched): it must
    equal step_flops (3x the forward: the backward does two products per product)."""
    import numformer
    from numformer.bench import train_step as ts
    from numformer.ops import _alloc
    monkeypatch.setattr(numformer.kernels, "_backend", "numpy")
    flops = [0]

    def counting(a, b):
        out = _alloc.__dict__["matmul"](a, b)
        flops[0] += 2 * out.size * a.shape[-1] if a.ndim > 1 and b.ndim > 1 else 2 * a.size
        return out
    for name in ("numformer.ops.linear", "numformer.ops.attention", "numformer.ops.matmul",
                 "numformer.nn.causal_lm", "numformer.nn.models"):
        mod = importlib.import_module(name)
        if hasattr(mod, "matmul"):
            monkeypatch.setattr(mod, "matmul", counting)
    case = harness.load_npz(ts.write_case(c, Path(tempfile.mkdtemp()) / "case.npz"))
    _, _, _, loss_and_backward = ts.numformer_build(case, 0.0)
    loss_and_backward()
    n_head = len(case["b:targets"]) if c["task"] == "mlm" else c["B"] * c["T"]
    assert flops[0] == ts.step_flops(c, n_head)


def test_attention_benchmark_counts_causal_pairs():
    from numformer.bench.attention import B, D, H, gflop
    assert gflop(4, "forward") == 4 * B * H * 16 * D / 1e9
    assert gflop(4, "forward+backward", causal=True) == 12 * B * H * 10 * D / 1e9  # 10 of 16


# -- the agreement gate ---------------------------------------------------------------

def _gate_arrays(c, **build):
    """numformer's loss, gradients and parameters after one step (dropout 0), with the
    model or optimizer changed by ``build`` (a deliberately different algorithm)."""
    from numformer import nn, optim
    from numformer.bench import train_step as ts
    case = harness.load_npz(ts.write_case(c, Path(tempfile.mkdtemp()) / "case.npz"))
    model, opt, _, loss_and_backward = ts.numformer_build(case, 0.0, "adamw_check")
    if "activation" in build:
        cfg = nn.ModelConfig(vocab_size=c["V"], dim=c["C"], n_heads=c["H"], n_layers=c["L"],
                             d_ff=c["F"], max_len=c["T"], dropout=0.0, norm_first=False,
                             activation=build["activation"], tie_weights=True)
        wrong = nn.MaskedLM(cfg, seed=0)
        wrong.load_state_dict(model.state_dict())
        model.__dict__.update(wrong.__dict__)  # the closure calls this model
    if "no_decay" in build:
        h = case["meta"]["adamw_check"]
        opt = optim.AdamW(model, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                          weight_decay=h["weight_decay"], no_decay=build["no_decay"])
    out = {"loss": loss_and_backward()}
    out.update({f"grad:{n}": p.grad.copy() for n, p in model.named_parameters()})
    opt.step()
    out.update({f"param:{n}": p.value.copy() for n, p in model.named_parameters()})
    return out


def test_gate_passes_the_same_algorithm_and_refuses_a_wrong_one(monkeypatch):
    import numformer
    from numformer.bench.train_step import gate
    monkeypatch.setattr(numformer.kernels, "_backend", "numpy")  # no JIT compile here
    ref = _gate_arrays(TINY)
    d = gate(ref, _gate_arrays(TINY))
    assert d["loss"] == 0 and d["grad_max_rel"] == 0 and d["param_max_abs"] == 0
    with pytest.raises(AssertionError, match="loss"):  # ReLU for GELU: another model
        gate(ref, _gate_arrays(TINY, activation="relu"), label="wrong twin")
    # weight decay on the LayerNorm gains and biases too: the same loss and gradients,
    # other parameters after the step
    with pytest.raises(AssertionError, match=r"param:.*(gamma|beta|bias)"):
        gate(ref, _gate_arrays(TINY, no_decay=None), label="wrong twin")
    bad = dict(ref)
    name = "grad:body.encoder.blocks.0.attn.Wqkv"
    bad[name] = ref[name] * np.float32(1.001)  # a gradient off by 0.1%
    with pytest.raises(AssertionError, match="attn.Wqkv"):
        gate(ref, bad)
    with pytest.raises(AssertionError, match="differ in name"):
        gate(ref, {k: v for k, v in ref.items() if k != name})


# -- untouched children -----------------------------------------------------------------

def _clean_env(**extra):
    import os
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "NUMFORMER_TUNE_RUNTIME")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _record(code: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json\nfrom numformer.bench."
                          "harness import runtime_record\nprint(json.dumps(runtime_record()))"],
                         env=_clean_env(**env), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_numformer_touches_nothing_and_the_kernels_tune_lazily():
    r = _record("import numformer, numformer.nn, numformer.bench.harness")
    assert r["OMP_WAIT_POLICY"] is None and r["numformer_runtime_applied"] == {}
    assert not r["modules"]["numba"] and not r["modules"]["numformer.kernels._jit"]
    harness.check_untouched(r)
    r = _record("import numformer.kernels._jit")
    assert r["OMP_WAIT_POLICY"] == "PASSIVE" == r["numformer_runtime_applied"]["OMP_WAIT_POLICY"]
    with pytest.raises(AssertionError, match="touched by numformer"):
        harness.check_untouched(r)
    r = _record("import numformer.kernels._jit", NUMFORMER_TUNE_RUNTIME="0")
    assert r["OMP_WAIT_POLICY"] is None and r["numformer_runtime_applied"] == {}


def test_child_env_drops_what_numformer_set_here(monkeypatch):
    from numformer import _runtime
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(_runtime.applied, "OMP_WAIT_POLICY", "PASSIVE")
    env = harness.child_env(3, tune_runtime=False)
    assert "OMP_WAIT_POLICY" not in env and env["NUMFORMER_TUNE_RUNTIME"] == "0"
    assert all(env[v] == "3" for v in harness.THREAD_VARS)


has_torch = harness.torch_importable() and harness.twins_root() is not None


@pytest.mark.skipif(not has_torch, reason="torch or benchmarks/twins not available")
def test_train_step_run_torch_untouched_and_every_row_with_its_spread(monkeypatch):
    """A whole (tiny) run: the torch twin's process was not touched by numformer even
    though this process had tuned (simulated), the gate's differences are kept, and
    every row has median, quartiles, min, max, load before/after, BLAS and GEMM peak."""
    from numformer import _runtime
    from numformer.bench import train_step as ts
    from numformer.bench import train_step_report as report
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(_runtime.applied, "OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(ts.CONFIGS, "tiny", TINY)
    r = ts.run_one("tiny", 1, 0.1, repeats=2)
    rec = r["torch"]["runtime"]
    assert rec["OMP_WAIT_POLICY"] is None and rec["numformer_runtime_applied"] == {}
    assert not rec["modules"]["numba"] and not rec["modules"]["numformer.kernels._jit"]
    assert r["numformer"]["runtime"]["numformer_runtime_applied"]  # numformer tuned itself
    assert set(r["rows"]) == {"numformer", "torch fused AdamW", "torch for-loop AdamW"}
    for row in r["rows"].values():
        assert row["min_ms"] <= row["q1_ms"] <= row["ms"] <= row["q3_ms"] <= row["max_ms"]
        assert row["repeats"] == 2
    for side in ("numformer", "torch"):
        load = r[side]["load"]
        assert len(load) == 2 and len(load[0]) == 3
        assert r[side]["gemm_peak"]["gflops"] > 0 and r[side]["machine"]["blas"]
    assert r["torch"]["path"]["attn_mask"] == "None"  # nothing padded: no mask for SDPA
    for twin in ("torch fused AdamW", "torch for-loop AdamW"):
        d = r["check"][twin]
        assert d["grad_max_rel"] <= ts.GATE_TOL["grad_rel"]
        assert d["param_max_abs"] <= ts.GATE_TOL["param_atol"]
    md = report.markdown([r], 2)
    assert "| tiny | 1 | 0.1 |" in md and md.count("[") >= 3  # spreads in the table
    json.dumps(r)  # the JSON row is serialisable


def test_train_step_runs_without_torch_and_with_tuning_off(monkeypatch):
    from numformer.bench import train_step as ts
    monkeypatch.setitem(ts.CONFIGS, "tiny", TINY)
    r = ts.run_one("tiny", 1, 0.0, repeats=2, tune_runtime=False, with_torch=False)
    assert set(r["rows"]) == {"numformer"} and "torch" not in r and "check" not in r
    rec = r["numformer"]["runtime"]
    assert rec["NUMFORMER_TUNE_RUNTIME"] == "0" and rec["numformer_runtime_applied"] == {}


def test_budget_line_states_what_the_target_leaves_above_the_floor():
    from numformer.bench.train_step_report import budget_line
    r = {"matmul_floor_ms": 250.0, "above_floor_ms": 100.0}
    line = budget_line(r, torch_ms=390.0)
    assert "needs <= 325.0 ms" in line and "<= 75.0 ms above the matmul floor" in line
    assert "now: 100.0 ms above it" in line


def test_breakdown_finds_the_gemms_and_the_kernels(monkeypatch):
    """--breakdown's profile finds time in each category of a tiny masked-LM step
    (with the numba backend: the attention kernels and the other kernels too)."""
    import numformer
    from numformer.bench import train_step as ts
    from numformer.bench.train_step_report import breakdown
    monkeypatch.setitem(ts.CONFIGS, "tiny", TINY)
    numba_backend = numformer.get_backend() == "numba"
    if numba_backend:  # breakdown sets numba's thread count: put it back afterwards
        from numformer.kernels._jit import get_num_threads, set_num_threads
        before = get_num_threads()
    try:
        r = breakdown("tiny", threads=1, dropout=0.1, steps=2)
    finally:
        if numba_backend:
            set_num_threads(before)
    parts = r["ms_per_step"]
    assert parts["dense GEMMs (np.matmul)"] > 0 and parts["rest (NumPy, Python)"] > 0
    if numba_backend:
        assert parts["attention kernels"] > 0 and parts["other numba kernels"] > 0
