"""The benchmark harness shared by every benchmark (numformer/bench, benchmarks/).

Practice (DESIGN.md): pin threads before numpy/numba/torch load, check each
implementation against the reference before timing, warm up (JIT compile
timed apart), take the median of repeats, measure peak extra memory, and
write a table (markdown), JSON and a PNG plot under a results folder
(default ``benchmarks/results`` under the current directory, or
``NUMFORMER_BENCH_RESULTS``).

Thread pinning has to happen before the libraries start their pools, so a
script calls ``pin_threads(n)`` first thing, or runs itself once per thread
count in a subprocess (``run_per_thread_count``).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(os.environ.get("NUMFORMER_BENCH_RESULTS", Path("benchmarks") / "results"))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def pin_threads(n: int) -> None:
    """Limit every thread pool to ``n``; call before importing numpy, numba or torch."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def torch_or_none():
    """torch if importable (pinned to the same thread count), else None."""
    try:
        import torch
    except Exception:
        return None
    n = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if n:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    return torch


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    import numpy
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import numba
        info["numba"] = numba.__version__
    except Exception:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
    return info


# timing ---------------------------------------------------------------------

def time_call(fn: Callable[[], object], repeats: int = 7, warmup: int = 1,
              min_time: float = 0.05) -> dict:
    """Median wall time of ``fn()`` in ms over ``repeats`` runs, after ``warmup`` runs
    (the first warm-up, which includes any JIT compile, is reported as ``first_ms``).
    Fast calls are looped so each sample lasts at least ``min_time`` seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return {"ms": 1e3 * statistics.median(samples), "min_ms": 1e3 * min(samples),
            "first_ms": 1e3 * first, "repeats": repeats, "inner": inner}


def time_interleaved(fns: dict, repeats: int, min_time: float = 0.05) -> dict:
    """Median (and min) ms per call of each ``fns[name]()``, sampled in rounds: one
    sample of each function per round, so a load that comes and goes on a shared
    machine hits all of them alike. Two warm-up calls each (the first, with any
    JIT compile, is reported as ``first_ms``); a sample loops a fast call until
    it lasts ``min_time`` s."""
    inner, first = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: {"ms": 1e3 * statistics.median(s), "min_ms": 1e3 * min(s),
                   "first_ms": 1e3 * first[name], "inner": inner[name]}
            for name, s in samples.items()}


# memory -------------------------------------------------------------------

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


# checking -----------------------------------------------------------------

def check_against(name: str, got, ref, rtol: float, atol: float) -> None:
    """Raise with evidence if an implementation disagrees with the reference."""
    from numformer.testing import describe_difference
    import numpy as np
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape or not np.allclose(g, r, rtol=rtol, atol=atol):
        raise AssertionError(f"{name} disagrees with the reference: "
                             f"{describe_difference(g, r, rtol, atol)}")


# output -------------------------------------------------------------------

@dataclass
class Row:
    impl: str
    shape: str
    ms: float
    gflops: float | None = None
    peak_mb: float | None = None
    ratio: float | None = None      # ms / ms of the comparison baseline (e.g. torch SDPA)
    extra: dict = field(default_factory=dict)


def markdown_table(rows: list[Row], ratio_label: str = "ratio") -> str:
    lines = [f"| implementation | shape | ms | GFLOP/s | peak extra MB | {ratio_label} |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        g = f"{r.gflops:.1f}" if r.gflops is not None else "-"
        m = f"{r.peak_mb:.1f}" if r.peak_mb is not None else "-"
        q = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        lines.append(f"| {r.impl} | {r.shape} | {r.ms:.3f} | {g} | {m} | {q} |")
    return "\n".join(lines)


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_results(name: str, info: dict, rows: list[Row], markdown: str | None = None,
                 directory: Path = RESULTS) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` (atomically) under the results folder."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "rows": [asdict(r) for r in rows]}
    path = write_atomic(directory / f"{name}.json", json.dumps(payload, indent=1))
    header = ", ".join(f"{k} {v}" for k, v in info.items())
    write_atomic(directory / f"{name}.md", f"{header}\n\n{markdown or markdown_table(rows)}\n")
    return path


def run_per_thread_count(script: str, thread_counts, extra_args=()) -> None:
    """Run ``python script --threads N ...`` in a fresh process per N, so that
    every library starts its pool with N threads."""
    for n in thread_counts:
        env = dict(os.environ)
        for var in THREAD_VARS:
            env[var] = str(n)
        subprocess.run([sys.executable, script, "--threads", str(n), *extra_args],
                       check=True, env=env)
