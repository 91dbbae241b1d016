"""Attention forward and forward+backward: numformer (NumPy reference, fused Numba
kernel) against PyTorch on the CPU (scaled_dot_product_attention, and eager
``softmax(q k^T * scale) v``), at B=32, H=4, D=32, float32, for a range of T.

Each thread count runs in fresh processes with every thread pool pinned
before numpy, numba or torch load. On one thread, all implementations share
one process and are timed in interleaved rounds (one sample of each per
round), so a load that comes and goes on a shared machine hits them alike;
on more threads, each implementation gets its own process, because the
pools of NumPy's BLAS, numba and PyTorch compete inside one process (on 2
cores, badly). In each process, for each T:

- the output and gradients are checked against the NumPy reference
  (computed once by the parent) before timing;
- the first call of the Numba kernel (JIT compile into an empty cache) is
  timed and reported apart;
- times are medians of repeats after two warm-up calls (fast calls looped
  to 50 ms per sample); the load average of the (shared) machine is
  recorded around each process;
- GFLOP/s counts the useful work, 4*B*H*T^2*D forward and 12*B*H*T^2*D
  forward+backward (causal: the visible pairs only), for every
  implementation (the fused kernel does 14*B*H*T^2*D: its backward
  recomputes the scores);
- peak extra memory is the rise of resident memory above the level before
  the call (inputs already allocated), outputs and caches included; it is
  measured after all timings, with glibc told to serve big blocks by mmap
  and to give free memory back first, so that memory freed by earlier calls
  does not hide what a call needs.

    python benchmarks/attention.py                          # 1 and 2 threads, all T
    python benchmarks/attention.py --quick                  # 1 thread, T=64,256, 2 repeats
    python benchmarks/attention.py --threads 2 --merge      # add a 2-thread run to the results
    numformer bench attention --threads 1 --T 128,512 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

NAME = "attention"
B, H, D = 32, 4, 32
DEFAULT_T = (20, 64, 128, 256, 512, 1024)
IMPLS = ("numformer numpy", "numformer numba", "torch SDPA", "torch eager math")
PASSES = ("forward", "forward+backward")
BASELINE = "torch SDPA"


def gflop(T: int, what: str, causal: bool = False) -> float:
    """Useful GFLOP: 4*B*H*T^2*D forward, 12*B*H*T^2*D forward+backward; causal
    attention counts the visible (query, key) pairs only, T(T+1)/2 of T^2."""
    pairs = T * (T + 1) / 2 if causal else T * T
    return (4 if what == "forward" else 12) * B * H * pairs * D / 1e9


def _implementations(np, torch, q, k, v, dout, causal):
    """name -> (forward(), forward_backward(), result() -> (out, dq, dk, dv) as NumPy)."""
    from numformer.kernels import attention as ka
    from numformer.ops import attention as ref
    impls = {}
    for name, mod in (("numformer numpy", ref), ("numformer numba", ka)):
        def fwd(mod=mod):
            return mod.attention_forward(q, k, v, causal=causal)

        def fwd_bwd(mod=mod):
            out, cache = mod.attention_forward(q, k, v, causal=causal)
            return out, mod.attention_backward(dout, cache)

        def result(fwd_bwd=fwd_bwd):
            out, grads = fwd_bwd()
            return (out, *grads)
        impls[name] = (fwd, fwd_bwd, result)
    if torch is None:
        return impls
    F = torch.nn.functional
    tq, tk, tv = (torch.from_numpy(x).requires_grad_(True) for x in (q, k, v))
    tdout = torch.from_numpy(dout)
    scale = 1.0 / D ** 0.5

    def sdpa(a, b_, c):
        return F.scaled_dot_product_attention(a, b_, c, is_causal=causal)

    def eager(a, b_, c):
        s = (a @ b_.transpose(-2, -1)) * scale  # (B, H, T, T)
        if causal:
            T = s.shape[-1]
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, dim=-1) @ c

    for name, f in (("torch SDPA", sdpa), ("torch eager math", eager)):
        def fwd(f=f):
            return f(tq, tk, tv)  # autograd on: the training forward

        def fwd_bwd(f=f):
            out = f(tq, tk, tv)
            return out, torch.autograd.grad(out, (tq, tk, tv), tdout)

        def result(fwd_bwd=fwd_bwd):
            out, grads = fwd_bwd()
            return tuple(t.detach().numpy() for t in (out, *grads))
        impls[name] = (fwd, fwd_bwd, result)
    return impls


def _allocator_for_memory_peaks():
    """glibc only: from now on serve big blocks by mmap (freed straight back to
    the OS) and return what is free now, so the rise of resident memory during
    a call is the memory that call needs. Called after all timings: the times
    are taken with the allocator's defaults."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB, fixed
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


def _inputs(np, T: int):
    """q, k, v, dout (B, H, T, D) float32, the same in every process."""
    rng = np.random.default_rng(T)
    return tuple(rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))


def write_reference(Ts, causal: bool, directory: Path) -> None:
    """The NumPy reference's out, dq, dk, dv for each T, as .npy files."""
    import numpy as np
    from numformer.ops import attention as ref
    for T in Ts:
        q, k, v, dout = _inputs(np, T)
        out, cache = ref.attention_forward(q, k, v, causal=causal)
        for label, x in zip(("out", "dq", "dk", "dv"), (out, *ref.attention_backward(dout, cache))):
            np.save(directory / f"{T}_{label}.npy", x)
        del out, cache


def run_child(threads: int, Ts, repeats: int, names: list, causal: bool, ref_dir: Path,
              out: Path) -> None:
    """Check, time and measure some implementations at one thread count, in this
    process (several only when they run on one thread: their pools would
    compete otherwise)."""
    from numformer.bench.harness import pin_threads
    pin_threads(threads)
    # an empty numba cache, removed when this function returns: the first call
    # below is a real JIT compile
    jit_cache = tempfile.TemporaryDirectory(prefix="numformer-bench-jit-")
    os.environ["NUMBA_CACHE_DIR"] = jit_cache.name
    import time

    import numpy as np
    from numformer.bench.harness import check_against, machine_info, peak_extra_mb, \
        time_interleaved, torch_or_none
    from numformer.testing import REDUCED_FACTOR, tolerance
    if "numformer numba" in names:
        # never in a process that times torch on several threads: numba's OpenMP
        # pool started before torch's parallel regions makes them ~100x slower
        # (one libgomp serves both)
        from numformer.kernels._jit import set_num_threads
        set_num_threads(threads)
    torch = torch_or_none() if any(n.startswith("torch") for n in names) else None
    names = [n for n in names if torch is not None or not n.startswith("torch")]
    rtol, atol = tolerance(np.float32, reduced=True)  # sums over up to T=1024 keys
    rows, compile_ms = [], {}
    load_before = os.getloadavg()[0]
    for T in Ts:  # check, then time
        impls = _implementations(np, torch, *_inputs(np, T), causal)
        impls = {n: impls[n] for n in names}
        diffs = {}
        for name, (fwd, fwd_bwd, result) in impls.items():
            if name == "numformer numba" and not compile_ms:
                t0 = time.perf_counter()
                fwd()
                compile_ms["forward"] = 1e3 * (time.perf_counter() - t0)
                t0 = time.perf_counter()
                fwd_bwd()
                compile_ms["forward+backward"] = 1e3 * (time.perf_counter() - t0)
            diffs[name] = 0.0
            for label, g in zip(("out", "dq", "dk", "dv"), result()):
                e = np.load(ref_dir / f"{T}_{label}.npy")
                check_against(f"{name} {label} (T={T})", g, e, rtol, atol)
                diffs[name] = max(diffs[name], float(np.abs(g - e).max()))
        for p_i, what in enumerate(PASSES):
            times = time_interleaved({n: f[p_i] for n, f in impls.items()}, repeats)
            for name, t in times.items():
                rows.append(dict(threads=threads, T=T, what=what, impl=name, ms=t["ms"],
                                 min_ms=t["min_ms"],
                                 gflops=gflop(T, what, causal) / (t["ms"] * 1e-3),
                                 peak_mb=None, max_abs_diff=diffs[name]))
        print(f"  threads={threads} T={T}: " + ", ".join(
            f"{r['impl']} {r['what']} {r['ms']:.2f} ms" for r in rows if r["T"] == T),
            flush=True)
        del impls
    load_after = os.getloadavg()[0]
    trim = _allocator_for_memory_peaks()
    for T in Ts:  # memory, once per implementation and pass
        impls = _implementations(np, torch, *_inputs(np, T), causal)
        for r in rows:
            if r["T"] == T:
                fn = impls[r["impl"]][PASSES.index(r["what"])]
                fn()
                trim()
                r["peak_mb"] = peak_extra_mb(fn)
        del impls
    out.write_text(json.dumps({"machine": machine_info(threads), "compile_ms": compile_ms,
                               "check": {"rtol": rtol, "atol": atol,
                                         "note": f"float32 table x{REDUCED_FACTOR:g}"},
                               "repeats": repeats, "rows": rows,
                               "loadavg": {", ".join(names): [load_before, load_after]}}))
    jit_cache.cleanup()


# -- reporting ------------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(runs: list[dict]) -> str:
    lines = []
    for run in runs:
        threads = run["machine"]["threads"]
        cms = run.get("compile_ms") or {}
        lines += [f"### {threads} thread{'s' if threads > 1 else ''}", ""]
        if "command" in run:
            load = ", ".join(f"{k} {a:.1f} -> {b:.1f}"
                             for k, (a, b) in (run.get("loadavg") or {}).items())
            lines += [f"`{run['command']}`; medians of {run.get('repeats', '?')} samples. "
                      f"1-minute load average of the (2-core, shared) machine before -> after "
                      f"each implementation's process: {load}", ""]
        if cms:
            lines += [f"numba first call (JIT compile into an empty cache, excluded from the "
                      f"times): forward {cms['forward'] / 1e3:.1f} s, then forward+backward "
                      f"{cms['forward+backward'] / 1e3:.1f} s", ""]
        lines += ["| T | pass | implementation | ms | GFLOP/s | peak extra MB "
                  "| ms / torch SDPA ms |",
                  "|---:|---|---|---:|---:|---:|---:|"]
        for r in sorted(run["rows"], key=lambda r: (r["T"], PASSES.index(r["what"]),
                                                     IMPLS.index(r["impl"]))):
            lines.append(f"| {r['T']} | {r['what']} | {r['impl']} | {r['ms']:.2f} | "
                         f"{r['gflops']:.1f} | {_fmt(r['peak_mb'], '.1f')} | "
                         f"{_fmt(r['ratio'], '.2f')} |")
        lines.append("")
    return "\n".join(lines)


def targets(runs: list[dict]) -> str:
    """The issue's targets, read off the 1-thread run."""
    run = next((r for r in runs if r["machine"]["threads"] == 1), None)
    if run is None:
        return ""

    def get(impl, T, what="forward+backward", key="ms"):
        return next((r[key] for r in run["rows"]
                     if r["impl"] == impl and r["T"] == T and r["what"] == what), None)
    lines = ["### Targets (1 thread, forward+backward)", "",
             "| T | numba ms | torch SDPA ms | numba <= SDPA | numpy ms | numba <= numpy / 2 |",
             "|---:|---:|---:|---|---:|---|"]
    Ts = sorted({r["T"] for r in run["rows"]})
    for T in Ts:
        nb, sd, npy = (get(i, T) for i in ("numformer numba", BASELINE, "numformer numpy"))
        ok1 = "-" if nb is None or sd is None or not 64 <= T <= 512 else \
            ("yes" if nb <= sd else "no")
        ok2 = "-" if nb is None or npy is None or T < 64 else ("yes" if nb <= npy / 2 else "no")
        lines.append(f"| {T} | {_fmt(nb, '.2f')} | {_fmt(sd, '.2f')} | {ok1} | "
                     f"{_fmt(npy, '.2f')} | {ok2} |")
    Tmax = max(Ts)
    mn, ms = get("numformer numba", Tmax, key="peak_mb"), get(BASELINE, Tmax, key="peak_mb")
    if mn is not None and ms is not None:
        lines += ["", f"Peak extra memory at T={Tmax}, forward+backward: numba {mn:.1f} MB, "
                      f"torch SDPA {ms:.1f} MB ({'at most' if mn <= ms else 'more than'} SDPA)."]
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> bool:
    from numformer.bench.harness import pyplot_or_none
    plt = pyplot_or_none()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = dict(zip(IMPLS, ("tab:gray", "tab:blue", "tab:red", "tab:orange")))
    for ax, what in zip(axes, PASSES):
        for run in runs:
            n = run["machine"]["threads"]
            for impl in IMPLS:
                pts = sorted((r["T"], r["ms"]) for r in run["rows"]
                             if r["impl"] == impl and r["what"] == what)
                if pts:
                    ax.plot(*zip(*pts), marker="o", color=colors[impl],
                            linestyle="-" if n == 1 else "--", label=f"{impl}, {n} thr")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"attention {what}, B={B} H={H} D={D} float32")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="numformer bench attention",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (a fresh "
                                                    "process each); default 1,2")
    p.add_argument("--T", default=",".join(map(str, DEFAULT_T)),
                   help="sequence lengths, comma-separated; default %(default)s")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per case (median)")
    p.add_argument("--impls", default=",".join(IMPLS),
                   help="implementations, comma-separated (the NumPy reference is always "
                        "computed to check them)")
    p.add_argument("--causal", action="store_true", help="causal attention")
    p.add_argument("--quick", action="store_true", help="1 thread, T=64,256, 2 repeats")
    p.add_argument("--results", default=None, help="results folder (default benchmarks/results "
                                                    "or $NUMFORMER_BENCH_RESULTS)")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs of other thread counts already in the results file "
                        "(run each thread count when the machine is quiet)")
    p.add_argument("--child-json", help=argparse.SUPPRESS)
    p.add_argument("--ref-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.threads, args.T, args.repeats = "1", "64,256", 2
    Ts = [int(t) for t in args.T.split(",")]
    impl_names = [s.strip() for s in args.impls.split(",")]
    unknown = [n for n in impl_names if n not in IMPLS]
    if unknown:
        p.error(f"--impls: unknown {unknown}; choose from {', '.join(IMPLS)}")
    if args.child_json:
        run_child(int(args.threads), Ts, args.repeats, impl_names, args.causal,
                  Path(args.ref_dir), Path(args.child_json))
        return 0

    from numformer.bench.harness import RESULTS, run_per_thread_count, write_atomic
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    command = "python benchmarks/attention.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    directory = Path(args.results) if args.results else RESULTS
    name = NAME + ("_causal" if args.causal else "")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"NumPy reference for T = {args.T} ...", flush=True)
        write_reference(Ts, args.causal, tmp)
        for n in (int(t) for t in args.threads.split(",")):
            run = None
            # one thread: all in one process, timed in interleaved rounds (fair under a
            # load that comes and goes); more: a process per implementation
            groups = [impl_names] if n == 1 else [[impl] for impl in impl_names]
            for i, group in enumerate(groups):
                child = tmp / f"{n}_{i}.json"
                extra = ["--T", args.T, "--repeats", str(args.repeats), "--impls",
                         ",".join(group), "--ref-dir", str(tmp), "--child-json", str(child)]
                run_per_thread_count(__file__, [n], extra + (["--causal"] if args.causal else []))
                res = json.loads(child.read_text())
                if run is None:
                    run = dict(res, command=command.strip())
                else:
                    run["rows"] += res["rows"]
                    run["compile_ms"] = run["compile_ms"] or res["compile_ms"]
                    run["loadavg"].update(res["loadavg"])
                    run["machine"].update(res["machine"])  # torch's version, if any
            runs.append(run)
        for run in runs:
            for r in run["rows"]:
                base = next((x["ms"] for x in run["rows"] if x["impl"] == BASELINE
                             and x["T"] == r["T"] and x["what"] == r["what"]), None)
                r["ratio"] = r["ms"] / base if base else None
    if args.merge and (directory / f"{name}.json").is_file():
        old = json.loads((directory / f"{name}.json").read_text())
        if (old.get("B"), old.get("H"), old.get("D")) == (B, H, D):
            new_threads = {r["machine"]["threads"] for r in runs}
            runs = [r for r in old["runs"] if r["machine"]["threads"] not in new_threads] + runs
            runs.sort(key=lambda r: r["machine"]["threads"])
    m = runs[0]["machine"]
    info = ", ".join(f"{k} {v}" for k, v in m.items() if k != "threads")
    chk = runs[0]["check"]
    header = (f"# Attention, B={B}, H={H}, D={D}, float32{', causal' if args.causal else ''}\n\n"
              f"{info}\n\n"
              f"Every implementation matched the NumPy reference (out, dq, dk, dv) within "
              f"rtol={chk['rtol']:g}, atol={chk['atol']:g} ({chk['note']}) before timing. "
              f"Times: medians, wall clock, in interleaved rounds. GFLOP/s: 4BHT^2D forward, "
              f"12BHT^2D forward+backward{' (T^2 -> T(T+1)/2, causal)' if args.causal else ''}."
              f"\n")
    md = f"{header}\n{markdown(runs)}\n{targets(runs)}\n"
    print("\n" + md)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{name}.json",
                 json.dumps({"benchmark": name, "B": B, "H": H, "D": D, "causal": args.causal,
                             "runs": runs}, indent=1))
    write_atomic(directory / f"{name}.md", md)
    wrote = [f"{name}.json", f"{name}.md"]
    if plot(runs, directory / f"{name}.png"):
        wrote.append(f"{name}.png")
    print(f"wrote {', '.join(wrote)} under {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
