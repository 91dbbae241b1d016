"""Attention forward and forward+backward: numformer (NumPy reference, fused Numba
kernel) against PyTorch on the CPU (scaled_dot_product_attention, and eager
``softmax(q k^T * scale) v``), at B=32, H=4, D=32, float32, for a range of T.

Each side runs in fresh processes (``harness.run_child``) with every thread
pool pinned before numpy, numba or torch load: numformer's implementations
in one, PyTorch's (benchmarks/twins/attention.py, not shipped with the
package) in another that never loads numformer's kernels or runtime settings
(its JSON records that, and the parent refuses its timings otherwise). On one
thread the implementations of a side share their process and are timed in
interleaved rounds (one sample of each per round), so a load that comes and
goes hits them alike; on more threads each implementation gets its own
process. The inputs (and the NumPy reference's results) are written once by
the parent and read by every child. In each process, for each T:

- the output and gradients are checked against the NumPy reference
  (computed once by the parent) before timing;
- the first call of the Numba kernel (JIT compile into an empty cache) is
  timed and reported apart;
- times are medians of repeats after two warm-up calls (fast calls looped
  to 50 ms per sample), with min, quartiles and max; the load average of the
  (shared) machine is recorded around each process, and each side's BLAS
  (threadpoolctl) and own GEMM peak (np.matmul, torch.mm: 1024^3 float32)
  beside its % of that peak;
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


TWIN = "benchmarks.twins.attention"
SELF = "numformer.bench.attention"


def numformer_impls(case: dict, causal: bool) -> dict:
    """name -> (forward(), forward_backward(), result() -> (out, dq, dk, dv))."""
    from numformer.kernels import attention as ka
    from numformer.ops import attention as ref
    q, k, v, dout = (case[x] for x in ("q", "k", "v", "dout"))
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
    return impls


def write_cases(Ts, causal: bool, directory: Path) -> None:
    """For each T: q, k, v, dout (B, H, T, D) float32 and the NumPy reference's
    out, dq, dk, dv, as ``<T>.npz`` (read by every child, no pickles)."""
    import numpy as np
    from numformer.bench.harness import save_npz
    from numformer.ops import attention as ref
    for T in Ts:
        rng = np.random.default_rng(T)
        q, k, v, dout = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
        out, cache = ref.attention_forward(q, k, v, causal=causal)
        dq, dk, dv = ref.attention_backward(dout, cache)
        save_npz(directory / f"{T}.npz", dict(q=q, k=k, v=v, dout=dout, out=out, dq=dq, dk=dk,
                                              dv=dv))
        del out, cache


def measure(make_impls, names: list, threads: int, Ts, repeats: int, causal: bool,
            case_dir: Path, gemm_peak: dict, first_call: str | None = None) -> dict:
    """Check, time and measure the implementations ``names`` of one side, in this
    process: for each T, ``make_impls(case)`` gives name -> (forward,
    forward_backward, result); each result is checked against the reference in
    the case file before anything is timed. Both sides' children call this."""
    import time

    import numpy as np
    from numformer.bench.harness import check_against, load_average, load_npz, \
        malloc_for_memory_peaks, peak_extra_mb, time_interleaved
    from numformer.testing import REDUCED_FACTOR, tolerance
    rtol, atol = tolerance(np.float32, reduced=True)  # sums over up to T=1024 keys
    rows, compile_ms = [], {}
    load_before = load_average()
    for T in Ts:  # check, then time
        case = load_npz(case_dir / f"{T}.npz")
        impls = {n: f for n, f in make_impls(case).items() if n in names}
        diffs = {}
        for name, (fwd, fwd_bwd, result) in impls.items():
            if name == first_call and not compile_ms:
                for what, f in zip(PASSES, (fwd, fwd_bwd)):
                    t0 = time.perf_counter()
                    f()
                    compile_ms[what] = 1e3 * (time.perf_counter() - t0)
            diffs[name] = max(check_against(f"{name} {label} (T={T})", g, case[label], rtol, atol)
                              for label, g in zip(("out", "dq", "dk", "dv"), result()))
        for p_i, what in enumerate(PASSES):
            times = time_interleaved({n: f[p_i] for n, f in impls.items()}, repeats)
            for name, t in times.items():
                gf = gflop(T, what, causal) / (t["ms"] * 1e-3)
                rows.append(dict(t, threads=threads, T=T, what=what, impl=name, gflops=gf,
                                 peak_fraction=gf / gemm_peak["gflops"], peak_mb=None,
                                 max_abs_diff=diffs[name]))
        print(f"  threads={threads} T={T}: " + ", ".join(
            f"{r['impl']} {r['what']} {r['ms']:.2f} ms" for r in rows if r["T"] == T),
            flush=True)
        del impls
    load_after = load_average()
    trim = malloc_for_memory_peaks()
    for T in Ts:  # memory, once per implementation and pass
        impls = make_impls(load_npz(case_dir / f"{T}.npz"))
        for r in rows:
            if r["T"] == T:
                fn = impls[r["impl"]][PASSES.index(r["what"])]
                fn()
                trim()
                r["peak_mb"] = peak_extra_mb(fn)
        del impls
    return {"compile_ms": compile_ms, "repeats": repeats, "rows": rows,
            "check": {"rtol": rtol, "atol": atol, "note": f"float32 table x{REDUCED_FACTOR:g}"},
            "loadavg": {", ".join(names): [load_before, load_after]},
            "gemm_peak": {", ".join(names): gemm_peak}}


def add_child_args(p) -> None:
    p.add_argument("--T", required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--impls", required=True)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--dir", required=True)


def child_body(args) -> dict:
    """numformer's side: its implementations, in a process with an empty numba cache
    (removed at the end), so the first call below is a real JIT compile."""
    jit_cache = tempfile.TemporaryDirectory(prefix="numformer-bench-jit-")
    os.environ["NUMBA_CACHE_DIR"] = jit_cache.name
    from numformer.bench.harness import blas_info, machine_info, numpy_gemm_peak
    from numformer.kernels._jit import set_num_threads
    set_num_threads(args.threads)
    res = measure(lambda case: numformer_impls(case, args.causal), args.impls.split(","),
                  args.threads, [int(t) for t in args.T.split(",")], args.repeats, args.causal,
                  Path(args.dir), numpy_gemm_peak(), first_call="numformer numba")
    res["machine"] = dict(machine_info(args.threads), blas={"numformer": blas_info()})
    jit_cache.cleanup()
    return res


# -- reporting ------------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(runs: list[dict]) -> str:
    from numformer.bench.harness import fmt_blas, fmt_spread
    lines = []
    for run in runs:
        threads = run["machine"]["threads"]
        cms = run.get("compile_ms") or {}
        lines += [f"### {threads} thread{'s' if threads > 1 else ''}", ""]
        if "command" in run:
            load = ", ".join(f"{k} {a[0]:.1f} -> {b[0]:.1f}"
                             for k, (a, b) in (run.get("loadavg") or {}).items() if a and b)
            lines += [f"`{run['command']}`; medians [min-max] of {run.get('repeats', '?')} "
                      f"samples. 1-minute load average of the (shared) machine before -> after "
                      f"each process: {load}", ""]
        peaks = "; ".join(f"{k}: {v['gflops']:.0f} GFLOP/s" for k, v in
                          (run.get("gemm_peak") or {}).items())
        if peaks:
            lines += [f"GEMM peak of each process (np.matmul or torch.mm, 1024^3 float32; "
                      f"'% peak' uses its own process's): {peaks}", ""]
        for side, blas in (run["machine"].get("blas") or {}).items():
            lines += [f"BLAS, {side}: {fmt_blas(blas)}", ""]
        if run.get("torch_path"):
            lines += ["torch SDPA backend chosen: " + ", ".join(
                f"T={t}: {b}" for t, b in run["torch_path"].items()), ""]
        if cms:
            lines += [f"numba first call (JIT compile into an empty cache, excluded from the "
                      f"times): forward {cms['forward'] / 1e3:.1f} s, then forward+backward "
                      f"{cms['forward+backward'] / 1e3:.1f} s", ""]
        lines += ["| T | pass | implementation | ms [min-max] | GFLOP/s | % peak | peak extra MB "
                  "| ms / torch SDPA ms |",
                  "|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in sorted(run["rows"], key=lambda r: (r["T"], PASSES.index(r["what"]),
                                                     IMPLS.index(r["impl"]))):
            pf = r.get("peak_fraction")
            lines.append(f"| {r['T']} | {r['what']} | {r['impl']} | {fmt_spread(r)} | "
                         f"{r['gflops']:.1f} | {_fmt(pf and 100 * pf, '.0f')} | "
                         f"{_fmt(r['peak_mb'], '.1f')} | {_fmt(r.get('ratio'), '.2f')} |")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" in argv:  # a child of run_child
        from numformer.bench.harness import child_main
        return child_main(argv, child_body, add_child_args)
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
    p.add_argument("--no-torch", action="store_true", help="numformer's implementations only")
    args = p.parse_args(argv)
    if args.quick:
        args.threads, args.T, args.repeats = "1", "64,256", 2
    Ts = [int(t) for t in args.T.split(",")]
    impl_names = [s.strip() for s in args.impls.split(",")]
    unknown = [n for n in impl_names if n not in IMPLS]
    if unknown:
        p.error(f"--impls: unknown {unknown}; choose from {', '.join(IMPLS)}")

    from numformer.bench.harness import RESULTS, check_untouched, run_child, \
        torch_importable, twins_root, write_atomic
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    command = "python benchmarks/attention.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    directory = Path(args.results) if args.results else RESULTS
    name = NAME + ("_causal" if args.causal else "")
    has_torch = not args.no_torch and torch_importable() and twins_root() is not None
    if not has_torch:
        print("torch (or benchmarks/twins) not available: numformer's implementations only",
              flush=True)
        impl_names = [n for n in impl_names if not n.startswith("torch")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"NumPy reference for T = {args.T} ...", flush=True)
        write_cases(Ts, args.causal, tmp)
        for n in (int(t) for t in args.threads.split(",")):
            run = None
            sides = [[i for i in impl_names if not i.startswith("torch")],
                     [i for i in impl_names if i.startswith("torch")]]
            # one thread: a side's implementations in one process, timed in interleaved
            # rounds (fair under a load that comes and goes); more: a process per
            # implementation (their pools would compete)
            groups = [g for g in sides if g] if n == 1 else [[i] for i in impl_names]
            for group in groups:
                torch_side = group[0].startswith("torch")
                extra = ["--T", args.T, "--repeats", str(args.repeats), "--impls",
                         ",".join(group), "--dir", str(tmp)] + (["--causal"] if args.causal
                                                                else [])
                res = run_child(TWIN if torch_side else SELF, extra, n)
                if torch_side:
                    check_untouched(res["runtime"], "torch's attention")
                res["runtime"] = {", ".join(group): res["runtime"]}
                if run is None:
                    run = dict(res, command=command.strip())
                else:
                    run["rows"] += res["rows"]
                    run["compile_ms"] = run["compile_ms"] or res["compile_ms"]
                    for key in ("loadavg", "gemm_peak", "runtime"):
                        run[key].update(res[key])
                    blas = dict(run["machine"].get("blas") or {}, **res["machine"].get("blas", {}))
                    run["machine"].update(res["machine"])  # torch's version, if any
                    run["machine"]["blas"] = blas
                    run["torch_path"] = run.get("torch_path") or res.get("torch_path")
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
    from numformer.bench.harness import fmt_machine
    info = fmt_machine(m)
    chk = runs[0]["check"]
    header = (f"# Attention, B={B}, H={H}, D={D}, float32{', causal' if args.causal else ''}\n\n"
              f"{info}\n\n"
              f"Every implementation matched the NumPy reference (out, dq, dk, dv) within "
              f"rtol={chk['rtol']:g}, atol={chk['atol']:g} ({chk['note']}) before timing. "
              f"Times: medians [min-max], wall clock, in interleaved rounds; torch in a "
              f"process of its own that never loaded numformer's kernels or runtime settings. "
              f"GFLOP/s: 4BHT^2D forward, "
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
