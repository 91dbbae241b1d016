"""Checkpoints: round trip, atomic writes, clear errors on bad files, no pickle."""

import os

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
    (b"", "not a numformer checkpoint"),
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


@pytest.mark.parametrize("where", ["model", "optim"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_tensor_is_never_written(tmp_path, where, bad):
    from numformer.train.checkpoint import NonFiniteError
    path = save_checkpoint(tmp_path / "ckpt.npz", {"w": np.ones(3)}, {"step": 1}, {"m/w": np.ones(3)})
    before = path.read_bytes()
    model = {"w": np.ones(3, np.float32), "e": np.ones((4, 2), np.float32)}
    optim = {"t": 2, "m/w": np.zeros(3), "v/e": np.zeros((4, 2))}
    (model if where == "model" else optim)["e" if where == "model" else "v/e"][2, 1] = bad
    name = "model/e" if where == "model" else "optim/v/e"
    with pytest.raises(NonFiniteError, match=rf"checkpoint .*ckpt.npz: not written: {name} holds "
                                             rf"1 non-finite values .* of 8"):
        save_checkpoint(path, model, {"step": 2}, optim)
    assert path.read_bytes() == before  # the last good checkpoint, bit for bit
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_temporaries_names_only_what_save_checkpoint_leaves(tmp_path):
    import tempfile

    from numformer.train.checkpoint import temporaries
    fd, ours = tempfile.mkstemp(prefix="checkpoint.npz.", suffix=".tmp", dir=tmp_path)
    os.close(fd)
    for other in ("checkpoint.npz", "checkpoint.npz.tmp", "checkpoint.npz.X Y.tmp",
                  "other.npz.abcd1234.tmp", "checkpoint.npz.abcd1234.tmp.bak"):
        (tmp_path / other).write_text("")
    assert [p.name for p in temporaries(tmp_path, "checkpoint.npz")] == [os.path.basename(ours)]
    assert temporaries(tmp_path / "missing", "checkpoint.npz") == []
