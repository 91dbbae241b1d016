"""Checkpoints: round trip, atomic writes, clear errors on bad files, no pickle."""

import numpy as np
import pytest

from numformer.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path, rng):
    model = {"a.weight": rng.standard_normal((3, 4)).astype(np.float32), "b": np.zeros(2)}
    optim = {"t": 7, "lr": 0.01, "m/a.weight": rng.standard_normal((3, 4))}
    meta = {"step": 7, "config": {"dim": 4, "names": ["x", "y"]}, "rng": {"state": 2**100}}
    path = save_checkpoint(tmp_path / "sub" / "ckpt.npz", model, meta, optim)
    back = load_checkpoint(path)
    assert back["meta"]["step"] == 7 and back["meta"]["config"]["names"] == ["x", "y"]
    assert back["meta"]["rng"]["state"] == 2**100  # big ints survive (PCG64 states)
    for k, v in model.items():
        assert back["model"][k].dtype == v.dtype and np.array_equal(back["model"][k], v)
    assert back["optim"]["t"] == 7 and back["optim"]["lr"] == 0.01
    assert np.array_equal(back["optim"]["m/a.weight"], optim["m/a.weight"])
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.npz"]  # no temporary left


def test_failed_write_keeps_the_last_good_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.npz", {"w": np.ones(3)}, {"step": 1})

    def explode(*a, **k):
        raise OSError("disk full")
    orig = np.savez
    np.savez = explode
    try:
        with pytest.raises(OSError, match="disk full"):
            save_checkpoint(path, {"w": np.zeros(3)}, {"step": 2})
    finally:
        np.savez = orig
    assert load_checkpoint(path)["meta"]["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


@pytest.mark.parametrize("content,pattern", [
    (b"", "corrupt or not a numformer checkpoint"),
    (b"PK\x03\x04 truncated zip", "corrupt or not a numformer checkpoint"),
])
def test_corrupt_files(tmp_path, content, pattern):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern) as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)


def test_truncated_checkpoint(tmp_path):
    p = save_checkpoint(tmp_path / "c.npz", {"w": np.ones(1000)}, {"step": 1})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(p)


def test_foreign_npz_and_pickles_are_refused(tmp_path):
    p = tmp_path / "other.npz"
    np.savez(p, x=np.ones(2))
    with pytest.raises(CheckpointError, match="no 'meta' entry"):
        load_checkpoint(p)
    q = tmp_path / "pickled.npz"
    np.savez(q, meta=np.array([{"format": "numformer-checkpoint"}], dtype=object))
    with pytest.raises(CheckpointError, match="corrupt or not"):
        load_checkpoint(q)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "missing.npz")


def test_wrong_format_or_version(tmp_path):
    import json
    p = tmp_path / "v.npz"
    meta = json.dumps({"format": "numformer-checkpoint", "version": 99}).encode()
    np.savez(p, meta=np.frombuffer(meta, np.uint8))
    with pytest.raises(CheckpointError, match="expected version 1, got 99"):
        load_checkpoint(p)
