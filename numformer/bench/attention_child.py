"""One implementation of the attention benchmark in a process of its own
(numformer/bench/attention.py starts it through ``harness.run_child``).

``measure`` is what every child does, numformer's (this module: numpy, numba,
a user's kernel) and torch's (benchmarks/twins/attention.py): for each case
the parent wrote, build the implementation's calls, check its output and
gradients against the float64 reference (``gate``: refused with the evidence,
then nothing is timed), time each pass (first call apart), then measure the
peak extra memory of each pass after every timing.

An implementation is a dict: ``forward`` and ``forward+backward`` zero-argument
calls, ``backward`` a zero-argument call that runs one forward (untimed) and
returns the call that runs the backward from it, ``result`` -> (out, dq, dk,
dv) as arrays (or (out,) for a forward-only kernel); None for a pass it lacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path


class Unavailable(Exception):
    """The implementation cannot run here (a torch backend with no CPU kernel)."""


def tolerance_of(dtype) -> tuple[float, float]:
    """numformer/testing.py's tolerance for the dtype, x10 (sums over the keys)."""
    from numformer.testing import tolerance
    return tolerance(dtype, reduced=True)


def gate(name: str, got: tuple, case: dict) -> dict:
    """Check ``got`` = (out, dq, dk, dv) (or (out,)) against the case's float64
    reference, on the part it covers; raise AssertionError with the evidence
    (max difference, where, pairs) at the first disagreement; else the max
    abs difference of each."""
    import numpy as np
    from numformer.bench.harness import check_against
    meta = case["meta"]
    rtol, atol = tolerance_of(case["q"].dtype)
    sl = (slice(None), slice(None)) if meta["whole"] else (slice(0, 1), slice(0, meta["G"]))
    kv = sl if meta["whole"] else (slice(0, 1), slice(0, 1))
    diffs = {}
    for label, g in zip(("out", "dq", "dk", "dv"), got):
        g = np.asarray(g)
        want = case[f"ref_{label}"]
        full = case["k"].shape if label in ("dk", "dv") else case["q"].shape
        if g.shape != tuple(full):
            raise AssertionError(f"{name}: {label} has shape {g.shape}, expected {tuple(full)}")
        if g.dtype != case["q"].dtype:
            raise AssertionError(f"{name}: {label} is {g.dtype}, expected the inputs' "
                                 f"{case['q'].dtype} (no silent upcast)")
        part = g[kv if label in ("dk", "dv") else sl]
        diffs[label] = check_against(f"{name} {label} ({meta['mask']}, Tk={meta['Tk']})",
                                     part, want, rtol, atol)
    return diffs


# -- numformer's implementations and the user's ----------------------------------------

def load_spec(spec: str):
    """(forward, backward or None) named by ``pkg.mod:fn``, ``pkg.mod`` or ``file.py:fn``."""
    mod_name, _, fn = spec.partition(":")
    if mod_name.endswith(".py"):
        path = Path(mod_name).resolve()
        s = importlib.util.spec_from_file_location(f"user_attention_{path.stem}", path)
        if s is None or not path.is_file():
            raise SystemExit(f"--impl: no file {path}")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(mod_name)
    fn = fn or "attention_forward"
    if not callable(getattr(mod, fn, None)):
        raise SystemExit(f"--impl {spec}: {mod_name} has no function {fn!r}")
    bname = fn.replace("forward", "backward") if "forward" in fn else None
    return getattr(mod, fn), getattr(mod, bname, None) if bname else None


def pair_impl(fwd, bwd, case: dict) -> dict:
    """The calls of a numformer-style (forward, backward) pair on the case's arrays."""
    q, k, v, dout = (case[x] for x in ("q", "k", "v", "dout"))
    km, causal = case.get("key_mask"), case["meta"]["causal"]

    def forward():
        res = fwd(q, k, v, key_mask=km, causal=causal)
        return res if isinstance(res, tuple) else (res, None)

    if bwd is None:
        return {"forward": forward, "backward": None, "forward+backward": None,
                "result": lambda: (forward()[0],)}

    def backward():
        cache = forward()[1]
        return lambda: bwd(dout, cache)

    def forward_backward():
        out, cache = forward()
        return out, bwd(dout, cache)

    def result():
        out, grads = forward_backward()
        return (out, *grads)
    return {"forward": forward, "backward": backward, "forward+backward": forward_backward,
            "result": result}


def numformer_factory(key: str, spec: str):
    if key == "numpy":
        from numformer.ops import attention as m
        pair = (m.attention_forward, m.attention_backward)
    elif key == "numba":
        from numformer.kernels import attention as m
        from numformer.kernels._jit import set_num_threads
        set_num_threads(int(os.environ["NUMBA_NUM_THREADS"]))
        pair = (m.attention_forward, m.attention_backward)
    else:
        pair = load_spec(spec)
    return lambda case: pair_impl(*pair, case)


# -- what every child does --------------------------------------------------------------

def measure(make, name: str, args) -> dict:
    """Gate, time and measure one implementation over the cases ``args.cases``
    (stems of ``args.dir``); ``args.repeats`` 0 checks only."""
    from numformer.bench.harness import load_average, load_npz, malloc_for_memory_peaks, \
        peak_extra_mb, time_call
    passes = args.passes.split(",")
    stems = [s for s in args.cases.split(",") if s]
    rows, checks, load0 = [], [], load_average()
    for stem in stems:
        case = load_npz(Path(args.dir) / f"{stem}.npz")
        meta = case["meta"]
        try:
            impl = make(case)
        except Unavailable as e:
            return {"unavailable": str(e), "checks": checks, "rows": []}
        t0 = time.perf_counter()
        try:
            diffs = gate(name, impl["result"](), case)
        except AssertionError as e:
            return {"refused": {"mask": meta["mask"], "Tk": meta["Tk"], "evidence": str(e)},
                    "checks": checks, "rows": []}
        except Exception as e:  # a kernel that raises is refused too, with its error
            import traceback
            where = traceback.format_exception(e)[-3:]
            return {"refused": {"mask": meta["mask"], "Tk": meta["Tk"], "evidence":
                                f"{name} raised {type(e).__name__}: {e}\n{''.join(where)}"},
                    "checks": checks, "rows": []}
        checks.append({"mask": meta["mask"], "Tk": meta["Tk"], "max_abs_diff": diffs,
                       "reference": meta["reference"], "first_call_ms":
                       1e3 * (time.perf_counter() - t0)})
        if not args.repeats:
            continue
        for what in passes:
            fn = impl[what]
            if fn is None:
                continue
            if what == "backward":
                fn = fn()
            t = time_call(fn, repeats=args.repeats, warmup=2)
            rows.append(dict(t, mask=meta["mask"], Tk=meta["Tk"], Tq=meta["Tq"], what=what))
        print(f"  {name}, {meta['mask']}, Tk={meta['Tk']}: " + ", ".join(
            f"{r['what']} {r['ms']:.3g} ms" for r in rows if r["Tk"] == meta["Tk"]
            and r["mask"] == meta["mask"]), flush=True)
        del impl
    load1 = load_average()
    trim = malloc_for_memory_peaks()
    for stem in stems if args.repeats else []:
        case = load_npz(Path(args.dir) / f"{stem}.npz")
        impl = make(case)
        for r in rows:
            if (r["mask"], r["Tk"]) == (case["meta"]["mask"], case["meta"]["Tk"]):
                fn = impl[r["what"]]
                fn = fn() if r["what"] == "backward" else fn
                fn()
                trim()
                r["peak_mb"] = peak_extra_mb(fn)
        del impl
    return {"rows": rows, "checks": checks, "loadavg": [load0, load1]}


def add_args(p) -> None:
    p.add_argument("--key", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--cases", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--passes", required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--dtype", required=True)
    p.add_argument("--keep-jit-cache", action="store_true")


def body(args) -> dict:
    """numformer's side (numpy, numba) or the user's kernel. The numba kernel
    compiles into an empty cache (removed at the end) unless ``--keep-jit-cache``,
    so its first call is a real JIT compile."""
    jit_cache = None
    if args.key == "numba" and not args.keep_jit_cache:
        jit_cache = tempfile.TemporaryDirectory(prefix="numformer-bench-jit-")
        os.environ["NUMBA_CACHE_DIR"] = jit_cache.name
    from numformer.bench.harness import blas_info, machine_info
    from numformer.bench.peaks import matmul_peak
    res = measure(numformer_factory(args.key, args.spec), args.name, args)
    res.update(machine=machine_info(args.threads), blas=blas_info(),
               gemm_peak=matmul_peak(args.dtype) if args.repeats else None)
    if jit_cache is not None:
        jit_cache.cleanup()
    return res


if __name__ == "__main__":
    from numformer.bench.harness import child_main
    sys.exit(child_main(sys.argv[1:], body, add_args))
