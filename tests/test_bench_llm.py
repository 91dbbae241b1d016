"""The LLM benchmark (numformer/bench/llm.py, llm_run.py, benchmarks/twins/llm.py):
its FLOP and byte counts against instrumented passes of a tiny Llama-style
model, the gate refusing a wrong implementation, the torch twin's process left
untouched by numformer, and the JSON a run writes. No timing is asserted. The
tests that need SmolLM2 skip, saying why, where its package is absent."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from numformer.bench import llm
from numformer.bench.llm_run import gate

ROOT = Path(__file__).resolve().parents[1]
S = {"V": 37, "C": 12, "F": 20, "L": 2, "H": 3, "Hkv": 1, "D": 4}


def tiny_model(s=S, seed=0):
    from numformer import nn
    cfg = nn.ModelConfig.for_arch("llama", vocab_size=s["V"], dim=s["C"], n_heads=s["H"],
                                  n_kv_heads=s["Hkv"], n_layers=s["L"], d_ff=s["F"], max_len=64,
                                  tie_weights=True)
    return nn.CausalLM(cfg, seed=seed)


@pytest.fixture
def count_matmuls(monkeypatch):
    """Every matrix product of the NumPy backend (each module's ``matmul``), counted
    as 2*m*n*k."""
    import numformer
    from numformer.ops import _alloc
    monkeypatch.setattr(numformer.kernels, "_backend", "numpy")
    flops = [0]

    def counting(a, b):
        out = _alloc.__dict__["matmul"](a, b)
        flops[0] += 2 * out.size * a.shape[-1]
        return out
    for name in ("numformer.ops.linear", "numformer.ops.attention", "numformer.ops.matmul",
                 "numformer.ops.lora", "numformer.nn.causal_lm", "numformer.nn.lora"):
        mod = importlib.import_module(name)
        if hasattr(mod, "matmul"):
            monkeypatch.setattr(mod, "matmul", counting)
    return flops


def full_attention(s, T):
    """The NumPy reference computes every score of the T x T square (the kernels
    skip the masked half, which ``attention_flops`` counts)."""
    return s["L"] * 2 * 2 * s["H"] * s["D"] * T * T


def test_prefill_flops_count_every_product_of_a_forward(count_matmuls):
    model = tiny_model().eval()
    P = 7
    model(np.arange(P)[None] % S["V"], kv_cache=model.new_cache())
    assert count_matmuls[0] == llm.prefill_flops(S, P) - llm.attention_flops(S, P) \
        + full_attention(S, P)
    assert llm.attention_flops(S, P) == S["L"] * 4 * S["H"] * S["D"] * P * (P + 1) // 2


@pytest.mark.parametrize("rank", [0, 3])
def test_train_flops_count_every_product_of_a_step(count_matmuls, rank):
    """Full: 3x the forward. LoRA: frozen weights (the tied head too) give dx only."""
    from numformer import nn
    from numformer.nn.lora import add_lora
    model = tiny_model()
    if rank:
        add_lora(model, rank=rank, targets=tuple("*" + w for w in llm.LORA_TARGETS))
    model.train()
    B, T = 2, 5
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, S["V"], (B, T)), rng.integers(0, S["V"], (B, T))
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    attn = B * (full_attention(S, T) - llm.attention_flops(S, T))
    assert count_matmuls[0] == llm.train_flops(S, B, T, rank) + 3 * attn


def test_decode_bytes_are_the_weights_and_the_cache_each_step_reads(monkeypatch):
    import numformer
    monkeypatch.setattr(numformer.kernels, "_backend", "numpy")  # bytes only: any backend
    model = tiny_model().eval()
    weights = sum(p.value.nbytes for n, p in model.named_parameters() if p.value.ndim == 2)
    P, N = 5, 4
    cache = model.new_cache()
    model(np.arange(P)[None], kv_cache=cache)
    read = []
    for i in range(N):
        model(np.array([[i]]), kv_cache=cache)
        read.append(weights + sum(c._k[:, :, :c.length].nbytes + c._v[:, :, :c.length].nbytes
                                  for c in cache))
    assert llm.decode_bytes(S, P, N) == pytest.approx(np.mean(read), rel=1e-12)


def test_lora_init_covers_every_adapter_of_add_lora():
    from numformer.nn.lora import add_lora
    model = tiny_model()
    names = add_lora(model, rank=2, targets=tuple("*" + w for w in llm.LORA_TARGETS))
    init = llm.lora_init(S, 2)
    assert sorted({k.rsplit(":", 1)[0] for k in init}) == sorted(names)
    params = dict(model.named_parameters())
    for k, v in init.items():
        name, ab = k.rsplit(":", 1)
        prefix, w = name.rsplit(".", 1)
        assert params[f"{prefix}.lora_{w}.{ab}"].shape == v.shape


# -- the gate on the real model ------------------------------------------------------------

def smollm2_or_skip():
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the gguf reader (pip install gguf)")
    from numformer.pretrained.gguf import find_smollm2
    try:
        return find_smollm2()
    except FileNotFoundError as e:
        pytest.skip(f"needs SmolLM2: {e}")


@pytest.fixture(scope="module")
def loaded():
    """SmolLM2 loaded once; each check runs on a deep copy (LoRA changes the model)."""
    import copy
    path = smollm2_or_skip()
    from numformer.pretrained.llama import load_llama
    model, _ = load_llama(path)
    real = llm.numformer_model
    llm.numformer_model = lambda case: copy.deepcopy(model)
    yield path
    llm.numformer_model = real


@pytest.fixture(scope="module")
def real_case(loaded):
    from numformer.bench.harness import load_npz
    work = dict(llm.QUICK, prompt=12, new_tokens=4, T=16)
    tmp = Path(tempfile.mkdtemp(prefix="bench-llm-test-"))
    case = load_npz(llm.write_case(tmp / "case.npz", work, loaded))
    return case, llm.numformer_check(case)


def test_the_case_is_the_same_text_for_prompt_and_batch(real_case):
    case, _ = real_case
    assert case["prompt"].shape == (1, 12) and case["x"].shape == (1, 16)
    np.testing.assert_array_equal(case["x"][:, 1:], case["y"][:, :-1])
    np.testing.assert_array_equal(case["check_x"], case["x"][:, :16])


def test_gate_accepts_the_same_arrays_and_refuses_each_wrong_one(real_case):
    _, nf = real_case
    same = {k: np.array(v, copy=True) for k, v in nf.items()}
    assert gate(nf, same)["greedy_tokens_equal"] == 5
    bad = dict(same, logits=same["logits"] + 1e-3 * np.ptp(same["logits"]) * (
        np.arange(same["logits"].size).reshape(same["logits"].shape) == 7))
    with pytest.raises(AssertionError, match="prefill logits"):
        gate(nf, bad)
    g = same["greedy"].copy()
    g[-1] += 1
    with pytest.raises(AssertionError, match="greedy tokens differ"):
        gate(nf, dict(same, greedy=g))
    key = sorted(k for k in nf if k.startswith("full:grad:"))[0]
    wrong = same[key].copy()
    wrong.flat[0] += 0.01 * np.abs(wrong).max()
    with pytest.raises(AssertionError, match="disagrees"):
        gate(nf, {**same, key: wrong})
    with pytest.raises(AssertionError, match="frozen base"):
        gate(nf, dict(same, **{"lora:base_grads": np.array(3)}))


def test_gate_refuses_a_wrong_adapter_scale(real_case, monkeypatch):
    """LoRA with scale 1 instead of alpha/r = 2: the same base model (prefill,
    greedy, full step pass), a different LoRA step, refused."""
    case, nf = real_case
    from numformer.nn import lora as nl
    real_add = nl.add_lora
    monkeypatch.setattr(nl, "add_lora", lambda model, rank, **kw: real_add(
        model, rank=rank, alpha=float(rank), **kw))
    wrong = llm.numformer_check(case)
    with pytest.raises(AssertionError, match=r"\(lora\): loss"):
        gate(nf, wrong)
    assert wrong["lora:base_grads"] == 0 and nf["lora:base_grads"] == 0


def test_run_without_torch_writes_the_json_of_every_phase(tmp_path):
    smollm2_or_skip()
    from numformer.bench.llm_run import main
    out = tmp_path / "llm.json"
    assert main(["--quick", "--no-torch", "--prompt", "8", "--phases", "prefill", "decode",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["quick"] and r["work"]["prompt"] == 32  # --quick's sizes win
    run = r["runs"][0]
    assert run["threads"] == 1 and set(run["rows"]) == {"numformer"}
    rows = run["rows"]["numformer"]
    assert set(rows) == {"prefill", "decode"}
    for row in rows.values():
        assert row["min_ms"] <= row["ms"] <= row["max_ms"] and row["tokens_per_s"] > 0
    assert 0 < rows["prefill"]["peak_fraction"] and 0 < rows["decode"]["bound_fraction"]
    side = run["sides"]["numformer"]
    assert side["copy_bandwidth"]["gbps"] > 0 and side["gemm_peak"]["gflops"] > 0
    assert side["runtime"]["modules"]["numformer.kernels"]


# -- the twin's process ----------------------------------------------------------------------

def test_the_twin_imports_nothing_of_numformers_runtime():
    for name in ("torch", "transformers"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name}")
    code = ("import benchmarks.twins.llm, json; from numformer.bench.harness import "
            "runtime_record, check_untouched; r = runtime_record(); check_untouched(r); "
            "print(json.dumps(r))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not json.loads(p.stdout.strip().splitlines()[-1])["modules"]["numba"]


@pytest.mark.parametrize("argv,flag", [(["--threads", "0"], "--threads"),
                                       (["--new-tokens", "0"], "--new-tokens"),
                                       (["--repeats", "-1"], "--repeats")])
def test_bad_flags_are_refused_by_name(argv, flag, capsys):
    from numformer.bench.llm_run import main
    with pytest.raises(SystemExit):
        main(argv)
    assert flag in capsys.readouterr().err
