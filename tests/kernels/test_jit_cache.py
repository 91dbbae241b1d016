"""The on-disk kernel cache is cleared when any kernel source changes."""

from numformer.kernels import _jit


def test_stale_cache_is_deleted_once(tmp_path):
    cached = [tmp_path / "attention._attention_fwd_py-217.py311.nbi",
              tmp_path / "attention._attention_fwd_py-217.py311.1.nbc"]
    for f in cached:
        f.write_bytes(b"old machine code")
    other = tmp_path / "notes.txt"
    other.write_text("kept")
    assert _jit.refresh_cache(tmp_path, "aaaa") is True  # no stamp yet: stale
    assert not any(f.exists() for f in cached) and other.read_text() == "kept"
    assert (tmp_path / _jit.STAMP).read_text().strip() == "aaaa"
    for f in cached:  # numba writes the kernels again
        f.write_bytes(b"new machine code")
    assert _jit.refresh_cache(tmp_path, "aaaa") is False  # same sources: kept
    assert all(f.exists() for f in cached)
    assert _jit.refresh_cache(tmp_path, "bbbb") is True  # a source changed
    assert not any(f.exists() for f in cached)
    assert list(tmp_path.glob("*.tmp")) == []


def test_fingerprint_covers_every_kernel_source(tmp_path, monkeypatch):
    """Editing any .py file of the kernels folder (here a copy of it) changes it."""
    import shutil
    from pathlib import Path
    src = Path(_jit.__file__).resolve().parent
    copy = tmp_path / "kernels"
    copy.mkdir()
    for f in src.glob("*.py"):
        shutil.copy(f, copy / f.name)
    monkeypatch.setattr(_jit, "__file__", str(copy / "_jit.py"))
    before = _jit.sources_fingerprint()
    assert before == _jit.sources_fingerprint()
    with open(copy / "_loops.py", "a") as fh:
        fh.write("\n# an edit\n")
    assert _jit.sources_fingerprint() != before


def test_cache_folder_follows_numba_cache_dir(tmp_path, monkeypatch):
    from pathlib import Path
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _jit.cache_folder() == Path(_jit.__file__).resolve().parent / "__pycache__"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    folder = _jit.cache_folder()
    assert folder.parent == tmp_path and folder.name.startswith("kernels_")
