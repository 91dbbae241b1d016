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
    monkeypatch.setenv("NUMFORMER_CACHE_DIR", str(tmp_path / "own"))
    folder = _jit.cache_folder()
    package = Path(_jit.__file__).resolve().parent
    assert package not in folder.parents, f"cache inside the package: {folder}"
    assert folder.parent.parent == tmp_path / "own"
    assert folder.parent.name.startswith("numformer-") and folder.name.startswith("kernels_")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    folder = _jit.cache_folder()
    assert folder.parent == tmp_path and folder.name.startswith("kernels_")


def test_two_versions_get_two_folders(tmp_path, monkeypatch):
    import numformer
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("NUMFORMER_CACHE_DIR", str(tmp_path))
    a = _jit.cache_folder()
    monkeypatch.setattr(numformer, "__version__", "9.9.9")
    b = _jit.cache_folder()
    assert a != b and "9.9.9" in str(b) and "9.9.9" not in str(a)


def test_compiled_kernels_land_in_the_user_folder_not_the_package(tmp_path):
    """A fresh process compiles a kernel: its machine code goes under
    $XDG_CACHE_HOME/numformer/..., and nothing is written into the package
    (a wheel's site-packages folder must stay as pip left it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    package = Path(_jit.__file__).resolve().parent
    before = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "NUMFORMER_CACHE_DIR", "NUMBA_DISABLE_JIT")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = ("import numpy as np\n"
            "from numformer.kernels import softmax\n"
            "x = np.ones((3, 5), np.float32)\n"
            "softmax.softmax_forward(x)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    written = list(tmp_path.glob("numformer/numformer-*/kernels_*/*.nbi"))
    assert written, f"no kernel index under {tmp_path}: {sorted(tmp_path.rglob('*'))[:10]}"
    after = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    assert after - before == set(), f"kernels written into the package: {sorted(after - before)}"
