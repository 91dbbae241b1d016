"""The train-step benchmark's reports: one line per run, the --matrix table and
the --breakdown of numformer's step (see numformer/bench/train_step.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from numformer.bench.train_step import CONFIGS, attention_flops, numformer_build, run_one, \
    step_flops, write_case


def breakdown(config: str, threads: int, dropout: float, steps: int = 5) -> dict:
    """Where numformer's step spends its time: cProfile's own time per function over
    ``steps`` steps (after warm-up), summed into the dense layers' GEMMs (np.matmul
    through ops._alloc), the fused attention kernels (their block GEMMs included),
    the other Numba kernels, and the rest (NumPy calls and Python). Milliseconds
    per step; profiling adds a little to the rest.

    Against that, the floor: the step's matmul FLOPs (dense layers and attention)
    at the measured matmul peak, and how far the unprofiled step (median of
    ``steps``) is above it. Runs in this process (call ``pin_threads`` first)."""
    import cProfile
    import pstats
    import tempfile

    from numformer.bench.harness import load_npz, numpy_gemm_peak, time_call
    from numformer.bench.train_step import _numba_threads
    c = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        case = load_npz(write_case(c, Path(tmp) / "case.npz"))
    _numba_threads(threads)
    _, _, step, _ = numformer_build(case, dropout)
    unprofiled = time_call(step, repeats=steps, warmup=3, min_time=0.0)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    parts = {"dense GEMMs (np.matmul)": 0.0, "attention kernels": 0.0, "other numba kernels": 0.0,
             "rest (NumPy, Python)": 0.0}
    for (file, _, func), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
        if file.endswith("_alloc.py") and func == "matmul":
            key = "dense GEMMs (np.matmul)"
        elif "/numformer/kernels/" in file and "attention" in file and func.endswith("_py"):
            key = "attention kernels"
        elif "/numformer/kernels/" in file and func.endswith("_py"):
            key = "other numba kernels"
        else:
            key = "rest (NumPy, Python)"
        parts[key] += tottime * 1e3 / steps
    masked = len(case["b:targets"]) if c["task"] == "mlm" else c["B"] * c["T"]
    flops, attn = step_flops(c, masked), attention_flops(c)
    dense_s = parts["dense GEMMs (np.matmul)"] * 1e-3
    peak = numpy_gemm_peak()
    floor = flops / (peak["gflops"] * 1e9) * 1e3
    return {"config": config, "threads": threads, "dropout": dropout, "steps": steps,
            "masked": masked, "ms_per_step": parts, "profiled_ms": sum(parts.values()),
            "unprofiled": unprofiled, "unprofiled_ms": unprofiled["ms"],
            "step_gflop": flops / 1e9, "attention_gflop": attn / 1e9,
            "dense_gemm_gflops": (flops - attn) / dense_s / 1e9 if dense_s else None,
            "matmul_peak": peak, "matmul_peak_gflops": peak["gflops"], "matmul_floor_ms": floor,
            "above_floor_ms": unprofiled["ms"] - floor}


def budget_line(r: dict, torch_ms: float, target: float = 1.2) -> str:
    """What ``target`` x torch's tokens/s leaves for everything but the matmul FLOPs
    (run at the measured peak), against what numformer spends on it now."""
    need = torch_ms / target
    return (f"torch {torch_ms:.1f} ms per step: {target}x torch's tokens/s needs <= {need:.1f} ms, "
            f"i.e. <= {need - r['matmul_floor_ms']:.1f} ms above the matmul floor "
            f"(numformer now: {r['above_floor_ms']:.1f} ms above it)")


def run_breakdown(args, with_torch) -> int:
    from numformer.bench.harness import fmt_spread, pin_threads, run_child, torch_importable, \
        twins_root
    pin_threads(args.threads)  # before numpy's BLAS starts its threads
    r = breakdown(args.config, args.threads, args.dropout)
    print(f"{args.config} dropout={args.dropout} threads={args.threads}: "
          f"{r['profiled_ms']:.1f} ms per step (profiled) = " + ", ".join(
              f"{k} {v:.1f}" for k, v in r["ms_per_step"].items()))
    print(f"dense GEMMs: {r['step_gflop'] - r['attention_gflop']:.2f} GFLOP at "
          f"{r['dense_gemm_gflops']:.0f} GFLOP/s; attention products: "
          f"{r['attention_gflop']:.2f} GFLOP")
    print(f"matmul FLOPs of the step {r['step_gflop']:.2f} GFLOP at the measured peak "
          f"{r['matmul_peak_gflops']:.0f} GFLOP/s: a floor of {r['matmul_floor_ms']:.1f} ms; "
          f"numformer's step (unprofiled, median [min-max] ms) {fmt_spread(r['unprofiled'], '.1f')}"
          f" is {r['above_floor_ms']:.1f} ms above it")
    if with_torch is None:
        with_torch = torch_importable() and twins_root() is not None
    if with_torch:  # torch in its own untouched process, as in the timings
        import tempfile

        from numformer.bench.harness import check_untouched
        from numformer.bench.train_step import TWIN
        with tempfile.TemporaryDirectory() as tmp:
            case = write_case(CONFIGS[args.config], Path(tmp) / "case.npz")
            tw = run_child(TWIN, ["--case", case, "--mode", "time", "--dropout", args.dropout,
                                  "--repeats", args.repeats], args.threads)
        check_untouched(tw["runtime"], "the torch twin")
        r["torch"] = tw["times"]
        r["torch_ms"] = tw["times"]["torch fused AdamW"]["ms"]
        print(budget_line(r, r["torch_ms"]) + " (torch: fused AdamW)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


def line(r: dict) -> str:
    """One run in a sentence: each implementation's median [min-max] ms and tok/s."""
    from numformer.bench.harness import fmt_load, fmt_spread
    parts = []
    for impl, t in r["rows"].items():
        side = r[t["side"]]
        parts.append(f"{impl} {fmt_spread(t, '.1f')} ms/step, {t['tokens_per_s']:.0f} tok/s "
                     f"({100 * t['peak_fraction']:.0f}% of its own "
                     f"{side['gemm_peak']['gflops']:.0f} GFLOP/s GEMM peak)")
    s = (f"{r['config']} dropout={r['dropout']} threads={r['threads']} backend={r['backend']}"
         f"{'' if r['tune_runtime'] else ' (numformer runtime tuning off)'}: " + "; ".join(parts))
    if "ratio_numformer_over_torch" in r:
        s += f"; numformer / torch fused = {r['ratio_numformer_over_torch']:.2f}x"
    loads = ", ".join(f"{k} {fmt_load(r[k]['load'])}" for k in ("numformer", "torch") if k in r)
    return s + f"; load {loads}"


def markdown(rows: list, repeats: int) -> str:
    from numformer.bench.harness import fmt_blas, fmt_load, fmt_spread
    first = rows[0]
    m = first["numformer"]["machine"]
    tm = first.get("torch", {}).get("machine", {})
    lines = ["# Training step: numformer vs PyTorch eager (tokens/s)", "",
             f"cpu {m['cpu']}, {m['cores']} cores; numpy {m['numpy']}, numba {m.get('numba')}, "
             f"torch {tm.get('torch', '-')}; backend {first['backend']}; medians [min-max] of "
             f"{repeats} steps after 3 warm-up steps; each side in its own process (torch's never "
             f"loads numformer's kernels or runtime settings); numformer runtime tuning "
             f"{'on' if first['tune_runtime'] else 'off'}", "",
             f"BLAS: numformer {fmt_blas(m.get('blas'))}; torch {fmt_blas(tm.get('blas'))}", "",
             "`python benchmarks/train_step.py --matrix`", "",
             "| config | threads | dropout | numformer ms | numformer tok/s | torch fused ms | "
             "torch fused tok/s | torch for-loop ms | numformer / torch fused | numformer % of "
             "NumPy GEMM peak | torch % of torch GEMM peak | GEMM peaks NumPy / torch GFLOP/s | "
             "load nf / torch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rw = r["rows"]
        nf, tf, tl = rw["numformer"], rw.get("torch fused AdamW"), rw.get("torch for-loop AdamW")
        tp = r.get("torch", {}).get("gemm_peak", {}).get("gflops")
        cells = [r["config"], r["threads"], r["dropout"], fmt_spread(nf, ".1f"),
                 f"{nf['tokens_per_s']:.0f}",
                 fmt_spread(tf, ".1f") if tf else "-",
                 f"{tf['tokens_per_s']:.0f}" if tf else "-",
                 fmt_spread(tl, ".1f") if tl else "-",
                 f"{r['ratio_numformer_over_torch']:.2f}x" if tf else "-",
                 f"{100 * nf['peak_fraction']:.0f}%",
                 f"{100 * tf['peak_fraction']:.0f}%" if tf else "-",
                 f"{r['numformer']['gemm_peak']['gflops']:.0f} / " + (f"{tp:.0f}" if tp else "-"),
                 fmt_load(r["numformer"]["load"]) + " / "
                 + (fmt_load(r["torch"]["load"]) if "torch" in r else "-")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "GEMM peaks: np.matmul (numformer's process) and torch.mm (torch's process), "
              "float32 1024x1024x1024 at the same thread count; each side's % of peak uses its "
              "own. Configurations: " + "; ".join(f"{k}: {v}" for k, v in CONFIGS.items())]
    return "\n".join(lines) + "\n"


def run_matrix(repeats: int, tune_runtime: bool = True, with_torch=None) -> int:
    from numformer.bench.harness import RESULTS, write_atomic
    rows = []
    for config in CONFIGS:
        for threads in (1, 2):
            for dropout in (0.1, 0.0):
                r = run_one(config, threads, dropout, repeats, tune_runtime, with_torch)
                print(line(r), flush=True)
                rows.append(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_step" if tune_runtime else "train_step_untuned"
    write_atomic(RESULTS / f"{name}.json", json.dumps(rows, indent=1))
    write_atomic(RESULTS / f"{name}.md", markdown(rows, repeats))
    print(f"wrote {RESULTS / (name + '.md')}")
    return 0


os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
