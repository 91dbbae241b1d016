"""The benchmark harness shared by every benchmark (numformer/bench, benchmarks/).

Practice (DESIGN.md): every implementation is timed in a child process of
its own per thread count, started by ``run_child`` (the one way), with every
thread pool pinned before numpy, numba or torch load; each is checked
against the reference before timing; warm-up (JIT compile timed apart);
the median of repeats with their spread (min, quartiles, max); the load
average before and after; the BLAS each side uses (threadpoolctl, when
installed); results as a Markdown table, JSON and a PNG plot under a results
folder (default ``benchmarks/results`` under the current directory, or
``NUMFORMER_BENCH_RESULTS``).

The competitor runs alone and untouched: PyTorch's side lives in the
repository's ``benchmarks/twins/`` package (not shipped with numformer) and
runs in a process that never loads numformer's kernels or runtime settings
(``numformer._runtime``: OMP_WAIT_POLICY, glibc's allocator). Importing
this module changes nothing in the process (standard library only at import);
``runtime_record()`` is the evidence each child writes into its JSON, and
``check_untouched`` refuses a competitor's timings without it.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(os.environ.get("NUMFORMER_BENCH_RESULTS", Path("benchmarks") / "results"))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
TWINS = "benchmarks.twins"  # the competitor's side (imports torch), in the repository


def pin_threads(n: int) -> None:
    """Limit every thread pool to ``n``; call before importing numpy, numba or torch."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# the children: one way to start them -----------------------------------------------

def twins_root() -> Path | None:
    """The folder holding ``benchmarks/twins`` (the repository root), or None when
    numformer runs from an install without the repository: then the torch column
    is absent."""
    import numformer
    for root in (Path.cwd(), Path(numformer.__file__).resolve().parents[1]):
        if (root / "benchmarks" / "twins" / "__init__.py").is_file():
            return root
    return None


def torch_importable() -> bool:
    """True if torch can be imported, found without importing it here."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def child_env(threads: int, tune_runtime: bool = True) -> dict:
    """The environment of a child: every pool pinned to ``threads``; what numformer's
    runtime tuning set in this process removed (the child decides for itself);
    ``NUMFORMER_TUNE_RUNTIME=0`` when ``tune_runtime`` is False; the repository root
    on PYTHONPATH so that ``benchmarks.twins`` imports."""
    env = dict(os.environ)
    rt = sys.modules.get("numformer._runtime")
    for key in (getattr(rt, "applied", None) or {}):
        if key.isupper():
            env.pop(key, None)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.setdefault("NUMBA_THREADING_LAYER", "omp")
    if not tune_runtime:
        env["NUMFORMER_TUNE_RUNTIME"] = "0"
    root = twins_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in env.get(
            "PYTHONPATH", "").split(os.pathsep) if p])
    return env


def run_child(module: str, args: list, threads: int, tune_runtime: bool = True,
              env: dict | None = None) -> dict:
    """Run ``python -m module --threads N --out FILE *args`` in a fresh process and
    return the JSON it wrote to FILE. Its output goes to the terminal; a failure
    raises with its exit code. ``module`` is a numformer side
    (``numformer.bench.NAME``) or a competitor's twin (``benchmarks.twins.NAME``);
    ``env`` adds variables (e.g. an empty ``NUMBA_CACHE_DIR``)."""
    with tempfile.TemporaryDirectory(prefix="numformer-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--threads", str(threads), "--out", str(out),
               *map(str, args)]
        rc = subprocess.run(cmd, env=dict(child_env(threads, tune_runtime), **(env or {}))
                            ).returncode
        if rc or not out.is_file():
            raise RuntimeError(f"benchmark child failed (exit code {rc}): {' '.join(cmd)}")
        return json.loads(out.read_text())


def child_main(argv, body: Callable[..., dict], add_args: Callable | None = None) -> int:
    """The entry point of a child: parse ``--threads``, ``--out`` (and what
    ``add_args(parser)`` adds), pin the threads, call ``body(args)`` and write its
    dict, with the runtime record, to ``--out``."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    if add_args is not None:
        add_args(p)
    args = p.parse_args(argv)
    pin_threads(args.threads)
    result = body(args)
    result.setdefault("runtime", runtime_record())
    write_atomic(Path(args.out), json.dumps(result))
    return 0


def runtime_record() -> dict:
    """What numformer did to this process's runtime: the OMP_WAIT_POLICY in force,
    what ``numformer._runtime`` applied, and whether numformer's kernels (which
    start OpenMP and apply the tuning) or numba were loaded."""
    rt = sys.modules.get("numformer._runtime")
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "NUMFORMER_TUNE_RUNTIME": os.environ.get("NUMFORMER_TUNE_RUNTIME"),
            "numformer_runtime_applied": dict(getattr(rt, "applied", {}) or {}),
            "modules": {m: m in sys.modules for m in ("numformer._runtime", "numformer.kernels",
                                                      "numformer.kernels._jit", "numba")}}


def check_untouched(record: dict, who: str = "the competitor") -> None:
    """Raise unless ``record`` (from ``runtime_record``) shows a process whose runtime
    numformer has not touched: no tuning applied, numformer's kernels and numba
    never loaded."""
    bad = [k for k in ("numformer._runtime", "numformer.kernels._jit", "numba")
           if record["modules"].get(k)]
    if record["numformer_runtime_applied"] or bad:
        raise AssertionError(f"{who} ran in a process touched by numformer: applied "
                             f"{record['numformer_runtime_applied']}, loaded {bad}")


# the machine ----------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list | None:
    """The 1-, 5- and 15-minute load averages (None where unsupported)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def blas_info() -> list:
    """The BLAS (and OpenMP) libraries loaded in this process, with their thread
    counts, by threadpoolctl; without it, NumPy's build configuration."""
    try:
        import threadpoolctl
    except ImportError:
        try:
            import numpy
            cfg = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
            return [{"source": "numpy build config (threadpoolctl not installed)",
                     "name": cfg.get("name"), "version": cfg.get("version")}]
        except Exception:
            return [{"source": "unknown (threadpoolctl not installed)"}]
    return [{"user_api": i.get("user_api"), "internal_api": i.get("internal_api"),
             "version": i.get("version"), "num_threads": i.get("num_threads"),
             "library": Path(i.get("filepath") or "").name}
            for i in threadpoolctl.threadpool_info()]


def machine_info(threads: int) -> dict:
    import numpy
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "numpy": numpy.__version__}
    for name in ("numba", "torch"):
        mod = sys.modules.get(name)
        if mod is not None:
            info[name] = mod.__version__
    return info


def numpy_gemm_peak(n: int = 1024, repeats: int = 5) -> dict:
    """np.matmul on (n, n) float32 at the pinned thread count: GFLOP/s with spread."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return gemm_rate(time_call(lambda: a @ a, repeats=repeats), n)


def gemm_rate(t: dict, n: int = 1024) -> dict:
    """GFLOP/s of an (n, n) x (n, n) product from a ``time_call`` result: at the
    median, the fastest and the slowest sample."""
    f = 2 * n ** 3 / 1e9
    return {"gflops": f / (t["ms"] * 1e-3), "gflops_min": f / (t["max_ms"] * 1e-3),
            "gflops_max": f / (t["min_ms"] * 1e-3), "n": n}


# timing ---------------------------------------------------------------------------

def spread(samples_s: list) -> dict:
    """Median, min, quartiles and max of samples in seconds, as ms."""
    ms = sorted(1e3 * s for s in samples_s)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return {"ms": statistics.median(ms), "min_ms": ms[0], "q1_ms": q1, "q3_ms": q3,
            "max_ms": ms[-1], "repeats": len(ms)}


def fmt_spread(r: dict, spec: str = ".2f") -> str:
    """``median [min-max]`` of a timing row."""
    if r.get("min_ms") is None or r.get("max_ms") is None:
        return format(r["ms"], spec)
    return f"{r['ms']:{spec}} [{r['min_ms']:{spec}}-{r['max_ms']:{spec}}]"


def time_call(fn: Callable[[], object], repeats: int = 7, warmup: int = 1,
              min_time: float = 0.05) -> dict:
    """Wall time of ``fn()`` over ``repeats`` samples after ``warmup`` calls (the
    first, with any JIT compile, is reported as ``first_ms``): median, min,
    quartiles, max in ms. Fast calls are looped so a sample lasts ``min_time`` s."""
    return time_interleaved({"f": fn}, repeats, min_time, warmup=warmup)["f"]


def time_interleaved(fns: dict, repeats: int, min_time: float = 0.05, warmup: int = 2) -> dict:
    """The spread of ms per call of each ``fns[name]()``, sampled in rounds: one
    sample of each function per round, so a load that comes and goes hits all of
    them alike. ``warmup`` calls each (at least one; the first, with any JIT
    compile, is ``first_ms``; the last sets how many calls make a sample)."""
    inner, first = {}, {}
    for name, fn in fns.items():
        last = 0.0
        for i in range(max(1, warmup)):
            t0 = time.perf_counter()
            fn()
            last = time.perf_counter() - t0
            if i == 0:
                first[name] = last
        inner[name] = max(1, int(min_time / max(last, 1e-7)))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: {**spread(s), "first_ms": 1e3 * first[name], "inner": inner[name]}
            for name, s in samples.items()}


# memory ---------------------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_extra_mb(fn: Callable[[], object]) -> float | None:
    """Peak resident memory above the current level while ``fn()`` runs, in MB
    (Linux: resets the high-water mark via /proc/self/clear_refs). Counts every
    allocator (NumPy, numba, torch). None where unsupported."""
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kb("VmRSS")
        result = fn()
        peak = _status_kb("VmHWM")
        del result
        return max(0, peak - base) / 1024.0
    except (OSError, KeyError):
        return None


def malloc_for_memory_peaks() -> Callable[[], None]:
    """glibc only: from now on serve blocks over 128 KiB by mmap (freed straight
    back to the OS); returns a function that gives free heap memory back, to call
    before each ``peak_extra_mb``, so the rise of resident memory during a call is
    what that call needs. Call it after the timings (they run with the defaults)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: peaks may read low
        return lambda: None


# checking -------------------------------------------------------------------------

def check_against(name: str, got, ref, rtol: float, atol: float) -> float:
    """Raise with evidence if an implementation disagrees with the reference;
    return the max absolute difference."""
    import numpy as np
    from numformer.testing import describe_difference
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape or not np.allclose(g, r, rtol=rtol, atol=atol):
        raise AssertionError(f"{name} disagrees with the reference: "
                             f"{describe_difference(g, r, rtol, atol)}")
    return float(np.abs(g - r).max()) if g.size else 0.0


def save_npz(path: Path, arrays: dict) -> Path:
    """Arrays (and JSON-able metadata under ``meta``) for a child, without pickles."""
    import numpy as np
    arrays = dict(arrays)
    if "meta" in arrays:
        arrays["meta"] = np.array(json.dumps(arrays["meta"]))
    np.savez(path, **arrays)
    return path


def load_npz(path) -> dict:
    """The arrays of ``save_npz`` (``allow_pickle=False``), ``meta`` decoded."""
    import numpy as np
    with np.load(path, allow_pickle=False) as f:
        out = {k: f[k] for k in f.files}
    if "meta" in out:
        out["meta"] = json.loads(str(out["meta"]))
    return out


# output ---------------------------------------------------------------------------

def pyplot_or_none():
    """matplotlib.pyplot on the file-only Agg backend, or None (said on stderr)
    when matplotlib is not installed: the plots are optional."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return None
    return plt


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a
    reader never sees half a file and an interrupted run leaves the old one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def fmt_load(load) -> str:
    """``a -> b`` of the 1-minute load averages [before, after]."""
    if not load or load[0] is None:
        return "-"
    return f"{load[0][0]:.1f} -> {load[1][0]:.1f}" if isinstance(load[0], list) else \
        f"{load[0]:.1f} -> {load[1]:.1f}"


def fmt_blas(blas: list) -> str:
    """One line naming each BLAS/OpenMP library with its thread count."""
    if not blas:
        return "-"
    return ", ".join(f"{b.get('internal_api') or b.get('name') or '?'} "
                     f"{b.get('version') or ''} ({b.get('library') or b.get('source', '')}, "
                     f"{b.get('num_threads', '?')} thr)".replace("  ", " ") for b in blas)


def fmt_machine(m: dict) -> str:
    """The machine record in one line (CPU, cores, versions), BLAS and ids left out."""
    return ", ".join(f"{k} {v}" for k, v in m.items()
                     if k not in ("threads", "blas", "pid", "torch_threads"))
