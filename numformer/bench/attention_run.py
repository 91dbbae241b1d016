"""The attention benchmark's parent: a process per (implementation, thread count)
and one per thread count for the machine's peaks; the rows they return made
into the JSON document (GFLOP/s, % of peaks, ratios), then written out."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from numformer.bench.attention import (BUILTINS, MATERIALIZING, SCHEMA, case_stem, min_bytes,
                                       scores_mb, useful_gflop)


def _child_args(q: dict, impl: dict, stems: list, directory: Path, repeats: int,
                quick: bool) -> list:
    return ["--key", impl["key"], "--spec", impl["spec"], "--name", impl["name"],
            "--cases", ",".join(stems), "--dir", str(directory), "--passes",
            ",".join(q["passes"]), "--repeats", str(repeats), "--dtype", q["dtype"]] + \
        (["--keep-jit-cache"] if quick else [])


def run_all(q: dict, impls: list, threads: list, cases: list, directory: Path, args,
            command: str) -> dict:
    """Run every child; the document (see attention_report.validate for its schema)."""
    from numformer.bench.harness import check_untouched, cpu_name, load_average, run_child
    doc = {"schema": SCHEMA, "command": command, "question": dict(q, threads=threads),
           "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                       "python": sys.version.split()[0]},
           "tolerance": None, "peaks": {}, "processes": [], "checks": [], "refused": [],
           "unavailable": [], "skipped": [], "rows": [], "loadavg_start": load_average()}
    check_only = args.check_only
    for n in threads[:1] if check_only else threads:
        if not check_only:
            print(f"[{n} thread{'s' * (n > 1)}] the machine's peaks ...", flush=True)
            pk = run_child("numformer.bench.peaks", ["--dtype", q["dtype"]], n)
            doc["peaks"][str(n)] = {"matmul": {"numpy": pk["matmul"]}, "fma": pk["fma"],
                                    "bandwidth": pk["bandwidth"], "loadavg": pk["loadavg"]}
        for impl in impls:
            if any(impl["name"] in (r["impl"] for r in doc[k]) for k in ("refused",
                                                                         "unavailable")):
                continue
            stems = []
            for c in cases:
                mb = 4 * scores_mb(q, c["Tk"])
                if impl["key"] in MATERIALIZING and mb > args.mem_limit_mb:
                    if n == threads[0]:
                        doc["skipped"].append({"impl": impl["name"], "mask": c["mask"],
                                               "Tk": c["Tk"], "reason": f"4 score arrays "
                                               f"{mb:.0f} MB > --mem-limit-mb "
                                               f"{args.mem_limit_mb:g}"})
                    continue
                stems.append(case_stem(c["mask"], c["Tk"]))
            if not stems:
                continue
            print(f"[{n} thread{'s' * (n > 1)}] {impl['name']} ...", flush=True)
            res = run_child(impl["module"], _child_args(
                q, impl, stems, directory, 0 if check_only else q["repeats"],
                args.quick or check_only), n,
                tune_runtime=impl["key"] != "user")
            if impl["module"].startswith("benchmarks."):
                check_untouched(res["runtime"], impl["name"])
            record(doc, impl, n, res)
    return doc


def record(doc: dict, impl: dict, n: int, res: dict) -> None:
    """Fold one child's result into the document."""
    from numformer.bench.attention_child import tolerance_of
    name = impl["name"]
    rtol, atol = tolerance_of(doc["question"]["dtype"])
    doc["tolerance"] = {"rtol": rtol, "atol": atol, "against": "numformer.ops.attention in "
                        "float64 on the same inputs", "note": "numformer/testing.py's table "
                        "for the dtype x10 (sums over the keys)"}
    for c in res.get("checks", []):
        if n == doc["question"]["threads"][0]:
            doc["checks"].append(dict(c, impl=name))
    if "refused" in res:
        doc["refused"].append(dict(res["refused"], impl=name))
        print(f"REFUSED {name}: {res['refused']['evidence']}", file=sys.stderr, flush=True)
    if "unavailable" in res:
        doc["unavailable"].append({"impl": name, "reason": res["unavailable"]})
        print(f"{name} unavailable: {res['unavailable']}", flush=True)
    doc["processes"].append({"impl": name, "threads": n, "runtime": res.get("runtime"),
                             "blas": res.get("blas"), "loadavg": res.get("loadavg"),
                             "gemm_peak": res.get("gemm_peak"), "machine": res.get("machine")})
    for k in ("numpy", "numba", "torch"):
        v = (res.get("machine") or {}).get(k)
        if v:
            doc["machine"][k] = v
    gp = res.get("gemm_peak")
    if gp and str(n) in doc["peaks"]:
        side = "torch" if impl["key"].startswith("torch") else "numpy"
        best = doc["peaks"][str(n)]["matmul"].get(side)
        if best is None or gp["gflops"] > best["gflops"]:
            doc["peaks"][str(n)]["matmul"][side] = gp
    for r in res.get("rows", []):
        doc["rows"].append(dict(r, impl=name, threads=n))


def derive(doc: dict, baseline: str | None) -> None:
    """GFLOP/s, % of the matmul and FMA peaks at the row's thread count, ratios."""
    q = doc["question"]
    names = list(dict.fromkeys(r["impl"] for r in doc["rows"]))
    if baseline is not None:
        baseline = BUILTINS.get(baseline, baseline if baseline.startswith("user ") else
                                f"user {baseline}")
    elif BUILTINS["torch-flash"] in names:
        baseline = BUILTINS["torch-flash"]
    else:
        baseline = names[0] if names else None
    doc["baseline"] = baseline
    for n, pk in doc["peaks"].items():
        pk["matmul_best"] = max((v["gflops"] for v in pk["matmul"].values()), default=None)
    index = {(r["impl"], r["threads"], r["mask"], r["Tk"], r["what"]): r for r in doc["rows"]}
    for r in doc["rows"]:
        r["gflop"] = useful_gflop(q, r["Tk"], r["mask"], r["what"])
        r["gflops"] = r["gflop"] / (r["ms"] * 1e-3)
        r["intensity"] = r["gflop"] * 1e9 / min_bytes(q, r["Tk"], r["what"])  # FLOP / byte
        pk = doc["peaks"].get(str(r["threads"]), {})
        r["pct_matmul_peak"] = 100 * r["gflops"] / pk["matmul_best"] if pk.get(
            "matmul_best") else None
        r["pct_fma_peak"] = 100 * r["gflops"] / pk["fma"]["gflops"] if pk.get("fma") else None
        b = index.get((baseline, r["threads"], r["mask"], r["Tk"], r["what"]))
        r["ratio"] = r["ms"] / b["ms"] if b else None


def finish(doc: dict, args, name: str) -> int:
    """Derive, print and write the Markdown, JSON and plots; 1 if a kernel was refused."""
    from numformer.bench import attention_report as rep
    from numformer.bench.harness import RESULTS, load_average, write_atomic
    doc["loadavg_end"] = load_average()
    derive(doc, args.baseline)
    rep.validate(doc)
    md = rep.markdown(doc)
    print("\n" + md)
    if args.check_only:
        return 1 if doc["refused"] else 0
    directory = Path(args.results) if args.results else RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{name}.json", json.dumps(doc, indent=1))
    write_atomic(directory / f"{name}.md", md)
    wrote = [f"{name}.json", f"{name}.md"] + rep.plots(doc, directory, name)
    print(f"wrote {', '.join(wrote)} under {directory}")
    return 1 if doc["refused"] else 0
