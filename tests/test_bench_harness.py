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
