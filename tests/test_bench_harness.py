"""The benchmark harness's plumbing (timings themselves are never asserted)."""

from numformer.bench.harness import time_interleaved, write_atomic


def test_time_interleaved_warms_up_then_samples_in_rounds():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    result = time_interleaved(fns, repeats=3, min_time=0.0)
    # two warm-up calls each, then one sample of each function per round
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(result) == {"a", "b"}
    for r in result.values():
        assert r["inner"] == 1
        assert 0 <= r["min_ms"] <= r["ms"]


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    assert write_atomic(path, "new") == path
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_train_step_breakdown_adds_up(monkeypatch):
    """--breakdown: the dense GEMMs and the attention kernels of a (tiny) masked-LM
    step are found, and the parts sum to the total."""
    from numformer.bench import train_step
    tiny = dict(task="mlm", V=50, C=16, H=2, L=2, F=32, T=12, B=4, norm_first=False)
    monkeypatch.setitem(train_step.CONFIGS, "tiny", tiny)
    import numformer
    numba_backend = numformer.get_backend() == "numba"
    if numba_backend:  # breakdown sets numba's thread count: put it back afterwards
        from numformer.kernels._jit import get_num_threads, set_num_threads
        before = get_num_threads()
    try:
        r = train_step.breakdown("tiny", threads=1, dropout=0.1, steps=2)
    finally:
        if numba_backend:
            set_num_threads(before)
    parts = r["ms_per_step"]
    assert set(parts) == {"dense GEMMs (np.matmul)", "attention kernels", "other numba kernels",
                          "rest (NumPy, Python)"}
    assert parts["dense GEMMs (np.matmul)"] > 0
    if numba_backend:
        assert parts["attention kernels"] > 0 and parts["other numba kernels"] > 0
    assert abs(sum(parts.values()) - r["total_ms"]) < 1e-9
    # the floor: the step's matmul FLOPs (the head only at the masked tokens) at the peak
    per_token_layer = 2 * (3 * 16 * 16 + 16 * 16 + 2 * 16 * 32) + 2 * 2 * 12 * 16
    fwd = 4 * 12 * 2 * per_token_layer + r["masked"] * 2 * (16 * 50 + 16 * 16)
    assert r["step_gflop"] == 3 * fwd / 1e9
    floor = r["step_gflop"] / r["matmul_peak_gflops"] * 1e3
    assert abs(r["matmul_floor_ms"] - floor) <= 1e-12 * floor  # rounding only
    assert r["attention_gflop"] == 3 * 4 * 12 * 2 * (2 * 2 * 12 * 16) / 1e9
    dense_s = r["ms_per_step"]["dense GEMMs (np.matmul)"] * 1e-3
    rate = (r["step_gflop"] - r["attention_gflop"]) / dense_s
    assert abs(r["dense_gemm_gflops"] - rate) <= 1e-9 * rate
    assert r["unprofiled_ms"] > 0
    assert r["above_floor_ms"] == r["unprofiled_ms"] - r["matmul_floor_ms"]


def test_budget_line_states_what_the_target_leaves_above_the_floor():
    from numformer.bench.train_step import budget_line
    r = {"matmul_floor_ms": 250.0, "above_floor_ms": 100.0}
    line = budget_line(r, torch_ms=390.0)
    assert "needs <= 325.0 ms" in line and "<= 75.0 ms above the matmul floor" in line
    assert "now: 100.0 ms above it" in line
