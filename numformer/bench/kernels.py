"""The memory-bound kernels against PyTorch on the CPU: layernorm forward+backward,
softmax cross-entropy forward+backward, one Adam/AdamW step and the embedding
scatter-add, each as numformer numpy (the reference), numformer numba (the
kernel) and PyTorch (float32 throughout).

    layernorm      F.layer_norm, backward by autograd (rows x C)
    cross_entropy  F.cross_entropy (mean), backward by autograd (rows x V)
    adam           torch.optim.Adam (L2 weight decay) and AdamW, each as the
                   for-loop, foreach and fused variants; one parameter array
    embedding      the scatter-add of the backward: aten's embedding_dense_backward
                   (what F.embedding's autograd runs) and zeros().index_add_
    dropout        F.dropout at p = 0.1, backward by autograd (rows x C); torch
                   draws other masks, so its output is timed, not compared

The inputs of every case are written once by the parent and read by both
sides. At each thread count, each side runs in a fresh process with every
thread pool pinned before numpy, numba or torch load: numformer's (numpy and
numba; it checks the kernel against the NumPy reference and writes that
reference's results), then PyTorch's (benchmarks/twins/kernels.py, not in
the package), in a process that never loads numformer's kernels or runtime
settings (its JSON records that; the parent refuses its timings otherwise),
checked against the same reference. The tolerance table of
numformer.testing applies (its batch-reduced entry for dgamma/dbeta/dW and
for Adam after ten steps). In each process, times are medians of samples
taken round-robin (each sample of each implementation in turn, fast calls
looped to 50 ms), with min, quartiles and max, so load from other processes
hits all alike; the load average before and after, the BLAS and the GEMM
peak of each process are reported. GB/s counts the bytes an ideal
implementation must move (stated per op), the same for all.

Then, per op family, two more fresh processes share an empty numba cache:
the first compiles (cold), the second loads the cache (warm); each reports
the time from loading the kernel module to the end of its first
forward+backward.

    python benchmarks/kernels.py                        # 1 and 2 threads, all ops
    python benchmarks/kernels.py --quick                # 1 thread, small cases, 3 repeats
    numformer bench kernels --threads 1 --ops layernorm,adam --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

NAME = "kernels"
OPS = ("layernorm", "cross_entropy", "adam", "embedding", "dropout")
CASES = {
    "layernorm": [(640, 128), (4096, 128), (4096, 768)],            # (rows, C)
    "cross_entropy": [(640, 40000), (4096, 8000)],                   # (rows, V)
    "adam": [(40000, 128), (512, 512), (128, 512), (128,)],          # parameter shape
    "embedding": [(640, 40000, 128), (4096, 8000, 128)],             # (ids, V, C)
    "dropout": [(640, 128), (4096, 128), (4096, 512)],               # (rows, C), p = 0.1
}
QUICK_CASES = {"layernorm": [(640, 128)], "cross_entropy": [(640, 8000)],
               "adam": [(512, 512)], "embedding": [(640, 8000, 128)],
               "dropout": [(640, 128)]}
BYTES_NOTE = {
    "layernorm": "5 passes of rows*C floats (read x, write out; read dout and x, write dx)",
    "cross_entropy": "2 passes of rows*V floats (read logits, write dlogits)",
    "adam": "7 passes of the parameter (read p, g, m, v; write p, m, v)",
    "embedding": "write dW (V*C) once, read dout (ids*C) once",
    "dropout": "5 passes of rows*C floats (read x, write out and mask; read dout, write dx)",
}
ADAM_HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)


TWIN = "benchmarks.twins.kernels"
SELF = "numformer.bench.kernels"


# -- the cases: inputs written once, then name -> (call, result) per side ---------------

def case_inputs(op: str, shape, rng) -> dict:
    """The arrays of one case (float32), the same for every implementation."""
    import numpy as np
    f32 = np.float32
    if op == "layernorm":
        N, C = shape
        return {"x": rng.standard_normal((N, C)).astype(f32),
                "dout": rng.standard_normal((N, C)).astype(f32),
                "g": (1 + 0.1 * rng.standard_normal(C)).astype(f32),
                "b": (0.1 * rng.standard_normal(C)).astype(f32)}
    if op == "cross_entropy":
        N, V = shape
        return {"x": (2 * rng.standard_normal((N, V))).astype(f32), "t": rng.integers(0, V, N)}
    if op == "adam":
        return {"p0": rng.standard_normal(shape).astype(f32),
                "g": rng.standard_normal(shape).astype(f32)}
    if op == "embedding":
        N, V, C = shape
        return {"ids": np.minimum(rng.zipf(1.3, N) - 1, V - 1),  # word-frequency-like
                "dout": rng.standard_normal((N, C)).astype(f32), "V": np.array(V)}
    if op == "dropout":
        return {"x": rng.standard_normal(shape).astype(f32),
                "dout": rng.standard_normal(shape).astype(f32)}
    raise ValueError(f"op: expected one of {OPS}, got {op!r}")


# what each case's result holds, and which entries are batch-reduced (looser tolerance)
LABELS = {"layernorm": (("out", "dx", "dgamma", "dbeta"), (False, False, True, True)),
          "cross_entropy": (("loss", "dlogits"), (False, False)),
          "adam": (("p", "m", "v"), (True, True, True)),  # after ten steps
          "embedding": (("dW",), (True,)),
          "dropout": (("out", "mask", "dx"), (False, False, False))}
NBYTES = {"layernorm": lambda s: 5 * s[0] * s[1] * 4,
          "cross_entropy": lambda s: 2 * s[0] * s[1] * 4,
          "adam": lambda s: 7 * math.prod(s) * 4,
          "embedding": lambda s: (s[1] * s[2] + s[0] * s[2]) * 4,
          "dropout": lambda s: 5 * s[0] * s[1] * 4}
ADAM_STEPS = 10


def numformer_impls(op: str, inp: dict) -> dict:
    """name -> (call, result): numformer numpy (the reference) and numba; for Adam one
    pair per weight-decay form ("... AdamW", "... Adam")."""
    import numpy as np
    from numformer import kernels
    impls = {}
    for name, backend in (("numformer numpy", "numpy"), ("numformer numba", "numba")):
        mod = kernels.op(op if op != "cross_entropy" else "losses", backend)
        if op == "layernorm":
            def call(mod=mod):
                out, cache = mod.layernorm_forward(inp["x"], inp["g"], inp["b"])
                return (out, *mod.layernorm_backward(inp["dout"], cache))
            impls[name] = (call, call)
        elif op == "cross_entropy":
            def call(mod=mod):
                loss, cache = mod.cross_entropy_forward(inp["x"], inp["t"])
                return np.asarray(loss), mod.cross_entropy_backward(1.0, cache)
            impls[name] = (call, call)
        elif op == "embedding":
            cache = (inp["ids"], (int(inp["V"]), inp["dout"].shape[1]), np.dtype(np.float32))

            def call(mod=mod, cache=cache):
                return (mod.embedding_backward(inp["dout"], cache),)
            impls[name] = (call, call)
        elif op == "dropout":
            def call(mod=mod):
                out, mask = mod.dropout_forward(inp["x"], 0.1, np.random.default_rng(1))
                return out, mask, mod.dropout_backward(inp["dout"], mask)
            impls[name] = (call, call)
        else:
            for decoupled, label in ((True, "AdamW"), (False, "Adam")):
                def make(mod=mod, decoupled=decoupled):
                    p0 = inp["p0"]
                    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
                    return lambda step=10: mod.adam_step(p, inp["g"], m, v, step=step,
                                                         decoupled=decoupled,
                                                         **ADAM_HYPER) or (p, m, v)

                def result(make=make):
                    f = make()
                    for s in range(1, ADAM_STEPS + 1):
                        out = f(s)
                    return out
                impls[f"{name} {label}"] = (make(), result)
    return impls


def _group(name: str) -> str:
    """The variant group an implementation belongs to ("AdamW", "Adam" or "")."""
    last = name.split()[-1]
    if last in ("AdamW", "Adam"):
        return last
    for word in ("AdamW", "Adam"):
        if f" {word} " in name:
            return word
    return ""


# -- timing (both sides' children) ----------------------------------------------------

def measure(make_impls, threads: int, case_dir: Path, repeats: int, gemm_peak: dict,
            write_ref: bool) -> dict:
    """Check, time and measure one side's implementations of every case in
    ``case_dir`` (in this process). numformer's child checks numba against its
    NumPy reference and writes that reference (``write_ref``); torch's child
    checks against it. A result of None is timed only (torch's dropout draws
    other masks)."""
    import numpy as np
    from numformer.bench.harness import check_against, load_average, load_npz, \
        malloc_for_memory_peaks, peak_extra_mb, save_npz, time_interleaved
    from numformer.testing import tolerance
    load_before = load_average()
    rows, peaks = [], []
    for path in sorted(case_dir.glob("case_*.npz"), key=lambda p: int(p.stem.split("_")[1])):
        inp = load_npz(path)
        op, shape = inp["meta"]["op"], tuple(inp["meta"]["shape"])
        labels, reduced = LABELS[op]
        impls = make_impls(op, inp)
        ref_path = path.with_name(path.stem.replace("case_", "ref_") + ".npz")
        if write_ref:
            ref = {}
            for name, (_, result) in impls.items():
                if name.startswith("numformer numpy"):
                    ref.update({f"{_group(name)}|{lb}": np.asarray(x)
                                for lb, x in zip(labels, result())})
            save_npz(ref_path, ref)
        ref = load_npz(ref_path)
        for name, (_, result) in impls.items():
            if result is None:
                continue
            for label, got, red in zip(labels, result(), reduced):
                check_against(f"{op} {shape} {name} {label}", got,
                              ref[f"{_group(name)}|{label}"], *tolerance(np.float32, reduced=red))
        times = time_interleaved({n: f for n, (f, _) in impls.items()}, repeats)
        case_rows = []
        for name in impls:
            t = times[name]
            case_rows.append(dict(t, threads=threads, op=op, shape=list(shape), impl=name,
                                  gbps=NBYTES[op](shape) / (t["ms"] * 1e-3) / 1e9))
        rows += case_rows
        peaks.append((case_rows, impls))
        print(f"  threads={threads} {op} {shape}: " + ", ".join(
            f"{r['impl']} {r['ms']:.3f} ms" for r in case_rows), flush=True)
    load_after = load_average()
    trim = malloc_for_memory_peaks()
    for case_rows, impls in peaks:
        for r in case_rows:
            trim()
            r["peak_mb"] = peak_extra_mb(impls[r["impl"]][0])
    return {"rows": rows, "load_average": [load_before, load_after], "gemm_peak": gemm_peak}


def add_child_args(p) -> None:
    p.add_argument("--dir", required=True)
    p.add_argument("--repeats", type=int, required=True)


def child_body(args) -> dict:
    from numformer.bench.harness import blas_info, machine_info, numpy_gemm_peak
    from numformer.kernels._jit import set_num_threads
    set_num_threads(args.threads)
    res = measure(numformer_impls, args.threads, Path(args.dir), args.repeats,
                  numpy_gemm_peak(), write_ref=True)
    res["machine"] = dict(machine_info(args.threads), blas={"numformer": blas_info()})
    return res


def write_cases(ops, cases, directory: Path) -> None:
    """``case_<i>.npz``: the inputs of every (op, shape), from one seed each."""
    import numpy as np
    from numformer.bench.harness import save_npz
    i = 0
    for op in ops:
        for shape in cases[op]:
            inp = case_inputs(op, shape, np.random.default_rng(0))
            save_npz(directory / f"case_{i}.npz",
                     dict(inp, meta={"op": op, "shape": list(shape), "adam": ADAM_HYPER,
                                     "adam_steps": ADAM_STEPS, "dropout_p": 0.1}))
            i += 1


def set_ratios(rows: list) -> None:
    """ratio: ms / ms of the fastest torch implementation of the same case and group."""
    for r in rows:
        best = min((x["ms"] for x in rows if x["impl"].startswith("torch") and x["op"] == r["op"]
                    and x["shape"] == r["shape"] and _group(x["impl"]) == _group(r["impl"])),
                   default=None)
        r["ratio"] = r["ms"] / best if best else None


# -- first call in a fresh process (cold cache, then warm cache) -----------------------

def first_call_body(args) -> dict:
    """One kernel module's first calls in a fresh process: from loading it (numba's
    import and its cache included) to the end of its first forward+backward."""
    import time
    t0 = time.perf_counter()
    import numpy as np
    from numformer import kernels
    name = args.first_call
    m = kernels.op(name, "numba")
    assert m.__name__ == "numformer.kernels." + name, m.__name__
    t1 = time.perf_counter()

    def call(rows, cols):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        if name == "layernorm":
            out, c = m.layernorm_forward(x, np.ones(cols, np.float32), np.zeros(cols, np.float32))
            m.layernorm_backward(x, c)
        elif name == "losses":
            loss, c = m.cross_entropy_forward(x, rng.integers(0, cols, rows))
            m.cross_entropy_backward(1.0, c)
        elif name == "softmax":
            p, c = m.softmax_forward(x)
            m.softmax_backward(x, c)
        elif name == "activations":
            y, c = m.gelu_forward(x)
            m.gelu_backward(x, c)
        elif name == "embedding":
            y, c = m.embedding_forward(rng.integers(0, rows, rows), x)
            m.embedding_backward(y, c)
        elif name == "dropout":
            y, c = m.dropout_forward(x, 0.1, np.random.default_rng(0))
            m.dropout_backward(x, c)
        elif name == "adam":
            m.adam_step(x, x.copy(), np.zeros_like(x), np.zeros_like(x), lr=1e-3, beta1=0.9,
                        beta2=0.999, eps=1e-8, weight_decay=0.0, step=1, decoupled=True)
    call(64, 32)  # small: the serial kernels
    t2 = time.perf_counter()
    call(1024, 256)  # large: the parallel drivers too
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "small_s": t2 - t0, "total_s": t3 - t0}


FIRST_CALL_OPS = ("layernorm", "softmax", "losses", "embedding", "adam", "activations",
                  "dropout")


def first_calls(threads: int = 1) -> dict:
    """op -> {"cold": {...}, "warm": {...}}: two fresh processes sharing an empty cache."""
    from numformer.bench.harness import run_child
    results = {}
    for op in FIRST_CALL_OPS:
        with tempfile.TemporaryDirectory(prefix="numformer-jit-") as cache:
            results[op] = {which: run_child(SELF, ["--first-call", op], threads,
                                            env={"NUMBA_CACHE_DIR": cache})
                           for which in ("cold", "warm")}
        print(f"  first call {op}: cold {results[op]['cold']['total_s']:.2f} s, warm "
              f"{results[op]['warm']['total_s']:.2f} s", flush=True)
    return results


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" in argv:  # a child of run_child
        from numformer.bench.harness import child_main

        def add(p):
            p.add_argument("--first-call")
            p.add_argument("--dir")
            p.add_argument("--repeats", type=int, default=9)
        return child_main(argv, lambda a: first_call_body(a) if a.first_call else child_body(a),
                          add)
    p = argparse.ArgumentParser(prog="numformer bench kernels",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (a fresh "
                                                    "process each); default 1,2")
    p.add_argument("--ops", default=",".join(OPS), help="ops, comma-separated; default all")
    p.add_argument("--repeats", type=int, default=9, help="timed samples per case (median)")
    p.add_argument("--no-first-call", action="store_true",
                   help="skip the cold/warm first-call measurement")
    p.add_argument("--quick", action="store_true", help="1 thread, small cases, 3 repeats")
    p.add_argument("--results", default=None, help="results folder (default benchmarks/results "
                                                    "or $NUMFORMER_BENCH_RESULTS)")
    p.add_argument("--no-torch", action="store_true", help="numformer's implementations only")
    args = p.parse_args(argv)
    ops = [s.strip() for s in args.ops.split(",")]
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        p.error(f"--ops: unknown {unknown}; choose from {', '.join(OPS)}")
    cases = CASES
    if args.quick:
        args.threads, args.repeats, cases = "1", 3, QUICK_CASES

    from numformer.bench.harness import RESULTS, check_untouched, run_child, \
        torch_importable, twins_root, write_atomic
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    has_torch = not args.no_torch and torch_importable() and twins_root() is not None
    if not has_torch:
        print("torch (or benchmarks/twins) not available: numformer's implementations only",
              flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(ops, cases, Path(tmp))
        for n in (int(t) for t in args.threads.split(",")):
            extra = ["--dir", tmp, "--repeats", args.repeats]
            nf = run_child(SELF, extra, n)  # first: it writes the reference results
            run = {"machine": nf["machine"], "rows": nf["rows"],
                   "load_average": {"numformer": nf["load_average"]},
                   "gemm_peak": {"numformer": nf["gemm_peak"]},
                   "runtime": {"numformer": nf["runtime"]}}
            if has_torch:
                tw = run_child(TWIN, extra, n)
                check_untouched(tw["runtime"], "torch's kernels")
                blas = dict(run["machine"]["blas"], **tw["machine"]["blas"])
                run["machine"].update(tw["machine"])
                run["machine"]["blas"] = blas
                run["rows"] += tw["rows"]
                for key in ("load_average", "gemm_peak", "runtime"):
                    run[key]["torch"] = tw[key]
            order = {(r["op"], tuple(r["shape"])): i for i, r in enumerate(nf["rows"])}
            run["rows"].sort(key=lambda r: order[(r["op"], tuple(r["shape"]))])
            set_ratios(run["rows"])
            runs.append(run)
    first = None if args.no_first_call else first_calls()
    m = runs[0]["machine"]
    command = "python benchmarks/kernels.py " + " ".join(argv)
    from numformer.bench.harness import fmt_machine
    info = fmt_machine(m)
    notes = "\n".join(f"- {op}: {BYTES_NOTE[op]}" for op in ops)
    header = (f"# Memory-bound kernels, float32\n\n{info}\n\ncommand: `{command.strip()}`\n\n"
              f"Every implementation matched the NumPy reference before timing (tolerance "
              f"table of numformer.testing; batch-reduced entry for dgamma/dbeta/dW and for "
              f"Adam after ten steps). Times: medians [min-max] of {args.repeats} round-robin "
              f"samples, "
              f"torch in a process of its own that never loaded numformer's kernels or "
              f"runtime settings. "
              f"Ratio: ms / ms of the fastest torch variant of the same case (for Adam: of "
              f"the same weight-decay form). GB/s counts:\n"
              f"{notes}\n")
    from numformer.bench.kernels_report import markdown, plot, targets
    md = f"{header}\n{markdown(runs, first)}\n{targets(runs)}\n"
    print("\n" + md)
    directory = Path(args.results) if args.results else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{NAME}.json",
                 json.dumps({"benchmark": NAME, "command": command, "runs": runs,
                             "first_call": first}, indent=1))
    write_atomic(directory / f"{NAME}.md", md)
    wrote = [f"{NAME}.json", f"{NAME}.md"]
    if plot(runs, directory / f"{NAME}.png"):
        wrote.append(f"{NAME}.png")
    print(f"wrote {', '.join(wrote)} under {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
