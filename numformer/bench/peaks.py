"""The machine's limits at a thread count, measured in a child process of their own.

- Matmul peak: ``np.matmul`` of two (n, n) matrices (n = 1024) in the dtype
  asked for, on the pinned thread count; GFLOP/s at the median of repeats
  (2 n^3 FLOP a product).
- FMA peak: a Numba loop (``fastmath``) over ``FMA_WIDTH`` = 128 independent
  accumulators (16 vectors of 8 float32 at 256 bits); each of ``FMA_STEPS``
  steps loads every vector, applies ``FMA_CHAIN`` = 4 dependent multiply-adds
  ``a = a * x + y`` and stores it back: 16 independent chains cover the
  latency of a fused multiply-add, and 4 of them per load and store keep the
  loop bound by FMA throughput, not by memory operations; 2 FLOP per
  multiply-add; one such loop per thread (``prange``).
  LLVM compiles it with 256-bit vectors even on AVX-512 CPUs (it prefers
  them there), so the rate measured is scaled by (the CPU's widest vectors,
  from /proc/cpuinfo) / (the width the loop's assembly uses): on an AVX-512
  machine x2, i.e. the same FMA issues per cycle at 512 bits. That is the
  derived part (a CPU with a single 512-bit FMA unit would reach less);
  ``measured_gflops`` keeps the rate as measured. cpuinfo names neither the
  clock under load nor the number of FMA units, hence a measurement rather
  than a data sheet product.

``python -m numformer.bench.peaks --threads N --out FILE [--dtype float32]`` (via
``harness.run_child``) writes ``{"matmul": {...}, "fma": {...}, "bandwidth": {...}}``
(the last, np.copyto's GB/s, is the roofline plot's memory roof).
"""

from __future__ import annotations

import sys

try:  # numformer's side only: the competitor's processes never import this module
    from numba import prange
except ImportError:  # pragma: no cover
    prange = range

FMA_WIDTH = 128
FMA_STEPS = 50_000
FMA_CHAIN = 4


def _fma_threads_body(steps, x, y, seeds, out):
    """The loop on every thread: row t of ``seeds`` holds thread t's FMA_WIDTH
    independent multiply-add chains."""
    for t in prange(seeds.shape[0]):
        acc = seeds[t].copy()
        for _ in range(steps):
            for j in range(FMA_WIDTH):
                a = acc[j]
                a = a * x + y  # FMA_CHAIN = 4 dependent multiply-adds per load and store
                a = a * x + y
                a = a * x + y
                a = a * x + y
                acc[j] = a
        out[t] = acc.sum()


def fma_peak(threads: int, dtype: str = "float32", repeats: int = 5) -> dict:
    """GFLOP/s of the FMA loop on ``threads`` threads (median, min, max of repeats)."""
    import numba
    import numpy as np

    from numformer.bench.harness import time_call
    kernel = numba.njit(fastmath=True, parallel=threads > 1)(_fma_threads_body)
    dt = np.dtype(dtype).type
    seeds = np.arange(threads * FMA_WIDTH, dtype=dt).reshape(threads, FMA_WIDTH) / dt(1000)
    out = np.empty(threads, dtype=dt)
    kernel(10, dt(0.999), dt(0.001), seeds, out)  # compile
    t = time_call(lambda: kernel(FMA_STEPS, dt(0.999), dt(0.001), seeds, out),
                  repeats=repeats, min_time=0.0)
    flop = 2.0 * FMA_CHAIN * FMA_WIDTH * FMA_STEPS * threads / 1e9
    used = vector_bits_used(kernel)
    cpu = cpu_vector_bits()
    k = cpu / used if used and cpu > used else 1.0
    return {"gflops": k * flop / (t["ms"] * 1e-3), "gflops_min": k * flop / (t["max_ms"] * 1e-3),
            "gflops_max": k * flop / (t["min_ms"] * 1e-3),
            "measured_gflops": flop / (t["ms"] * 1e-3),
            "vector_bits_used": used, "vector_bits_cpu": cpu, "scale": k,
            "dtype": dtype, "threads": threads,
            "how": f"numba fastmath loop per thread: {FMA_WIDTH} independent chains of "
                   f"{FMA_CHAIN} multiply-adds x {FMA_STEPS} steps"}


def vector_bits_used(kernel) -> int | None:
    """The width of the FMA instructions the compiled loop uses (its assembly's
    vfmadd operands: zmm 512, ymm 256, xmm 128), None if it cannot be read."""
    import re
    try:
        asm = "\n".join(kernel.inspect_asm().values())
    except Exception:
        return None
    regs = re.findall(r"vfmadd\w*\s+%([xyz])mm", asm)
    return max(({"x": 128, "y": 256, "z": 512}[r] for r in regs), default=None)


def cpu_vector_bits() -> int:
    """The widest FMA vectors the CPU announces (/proc/cpuinfo flags): 512 with
    avx512f, 256 with fma (AVX2), else 128."""
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo")
                      if ln.startswith("flags")), [])
    except OSError:
        flags = []
    return 512 if "avx512f" in flags else 256 if "fma" in flags else 128


def matmul_peak(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> dict:
    """np.matmul on (n, n) in ``dtype`` at the pinned thread count."""
    import numpy as np

    from numformer.bench.harness import gemm_rate, time_call
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    return dict(gemm_rate(time_call(lambda: np.matmul(a, a, out=out), repeats=repeats), n),
                dtype=dtype, how=f"np.matmul ({n}, {n}) x ({n}, {n})")


def memory_bandwidth(mb: int = 256, repeats: int = 5) -> dict:
    """GB/s of ``np.copyto`` between two ``mb``-MB arrays (far larger than any
    cache) at the pinned thread count: read and written bytes per second. NumPy
    copies on one thread, so this is one core's share of the memory system."""
    import numpy as np

    from numformer.bench.harness import time_call
    a = np.ones(mb * 2 ** 20 // 8)
    b = np.empty_like(a)
    t = time_call(lambda: np.copyto(b, a), repeats=repeats, min_time=0.0)
    gb = 2 * a.nbytes / 1e9
    return {"gbs": gb / (t["ms"] * 1e-3), "gbs_max": gb / (t["min_ms"] * 1e-3),
            "how": f"np.copyto of {mb} MB (read + write)"}


def _add_args(p) -> None:
    p.add_argument("--dtype", default="float32")


def _body(args) -> dict:
    from numformer.bench.harness import blas_info, load_average
    before = load_average()
    res = {"matmul": matmul_peak(args.dtype), "fma": fma_peak(args.threads, args.dtype),
           "bandwidth": memory_bandwidth()}
    res.update(blas=blas_info(), loadavg=[before, load_average()])
    return res


if __name__ == "__main__":
    from numformer.bench.harness import child_main
    sys.exit(child_main(sys.argv[1:], _body, _add_args))
