"""Sentence-embedding throughput of all-MiniLM-L6-v2: numformer against the same
model in PyTorch (transformers' BertModel), on real sentences.

Both sides do the same work on the same batches: the parent tokenizes the
sentences once (numformer's WordPiece, truncation at 256 tokens), sorts them
by token count (longest first, as sentence-transformers' ``encode``), cuts
batches of 32 padded to the longest of each, and saves the token ids and
masks as an .npz; every child runs the encoder on those batches, mean-pools
over the mask and L2-normalises. Tokenizing is timed apart, each side with
its own tokenizer (numformer: pure-Python WordPiece; PyTorch: the Rust
``tokenizers`` of the model's tokenizer.json), and the torch child checks
that its tokenizer gives the same ids. Before timing, every child's
embeddings are checked against the first child's (torch's when it runs,
else numformer numpy's; max absolute difference <= 1e-4).

Each implementation at each thread count runs in a fresh process
(``harness.run_child``) with its thread pools pinned before numpy, numba or
torch load; torch's (benchmarks/twins/embeddings.py, not in the package)
never loads numformer's kernels or runtime settings (its JSON records that;
the parent refuses its timings otherwise). Timings: median [min-max] of
repeats of the whole set (default 256 SST dev sentences); the first call
(numba compiles there) is reported apart; the load average before and after,
the BLAS and the GEMM peak of each process are recorded. A profile of one
numformer call gives the share of each op, so the slow parts are named.

    python benchmarks/embeddings.py                 # 1 and 2 threads, writes results
    python benchmarks/embeddings.py --threads 1 --n 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

NAME = "embeddings"
TOLERANCE = 1e-4
OPS_OF_INTEREST = ("linear_forward", "erf", "gelu_forward", "attention_forward",
                   "mha_forward", "layernorm_forward", "embedding_forward", "mean_pool_forward",
                   "_content_ids", "encode")


def data_dir() -> Path:
    env = os.environ.get("NUMFORMER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def load_sentences(n: int) -> list[str] | None:
    """The first n sentences of SST-2 dev (labels dropped), or None if absent."""
    path = data_dir() / "sst" / "stsa.binary.dev"
    if not path.is_file():
        return None
    lines = [ln.split(" ", 1)[1] for ln in path.read_text(encoding="utf-8").split("\n") if ln]
    return lines[:n]


def forward_gflop(token_counts: list[int], batch_size: int, cfg) -> float:
    """Matmul GFLOP of the encoder over the batches (sorted by length, padded to the
    longest of each batch), as both implementations run them."""
    counts = sorted(token_counts, reverse=True)
    C, F, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    total = 0.0
    for s in range(0, len(counts), batch_size):
        B, T = len(counts[s:s + batch_size]), counts[s]
        per_token = 2 * (4 * C * C + 2 * C * F) + 2 * 2 * T * C  # projections + QK^T, PV
        total += B * T * L * per_token
    return total / 1e9


def profile_shares(fn) -> dict:
    """Seconds spent in the named ops (own time, plus erf and gelu as a whole) in one fn()."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = max(v[3] for v in stats.values())  # cumulative time of the outermost call
    shares = {}
    for (_, _, func), (_, _, tottime, cumtime, _) in stats.items():
        if func in OPS_OF_INTEREST:
            t = cumtime if func in ("erf", "gelu_forward", "mha_forward", "attention_forward",
                                    "_content_ids", "encode") else tottime
            shares[func] = shares.get(func, 0.0) + t
    return {"total_s": total, **{k: round(v, 4) for k, v in sorted(shares.items())}}


IMPLS = ("torch", "numpy", "numba")
TWIN = "benchmarks.twins.embeddings"
SELF = "numformer.bench.embeddings"


def write_batches(sentences: list, tok, batch_size: int, path: Path) -> dict:
    """Tokenize once, sort by token count (longest first), cut padded batches; save
    ``ids_<i>``, ``mask_<i>``, ``index_<i>`` (the sentences of batch i) and the
    sentences themselves. Returns the counts."""
    import numpy as np
    from numformer.bench.harness import save_npz
    encoded = [tok.encode(s) for s in sentences]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    arrays = {"sentences": np.array(sentences)}  # a unicode array, no pickle
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        T = len(encoded[idx[0]])  # the longest of this batch
        ids = np.full((len(idx), T), tok.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(idx), T), dtype=bool)  # (B, T)
        for row, i in enumerate(idx):
            ids[row, :len(encoded[i])] = encoded[i]
            mask[row, :len(encoded[i])] = True
        arrays.update({f"ids_{b}": ids, f"mask_{b}": mask, f"index_{b}": np.array(idx)})
    counts = [len(e) for e in encoded]
    arrays["meta"] = {"batches": -(-len(order) // batch_size), "hidden": None,
                      "max_length": tok.max_length, "counts": counts}
    save_npz(path, arrays)
    return {"tokens": sum(counts), "max_tokens": max(counts), "counts": counts}


def batches_of(data: dict) -> list:
    """(ids, mask, index) per batch, from ``write_batches``'s file."""
    return [(data[f"ids_{b}"], data[f"mask_{b}"], data[f"index_{b}"])
            for b in range(data["meta"]["batches"])]


def check_and_time(embed, tokenize, data: dict, folder: Path, impl: str, threads: int,
                   repeats: int, extra_row: dict) -> dict:
    """Both sides' children: the first call, the check against the first child's
    embeddings (this one's become the reference when there are none yet), the
    timing of the set and of tokenizing it, peak memory."""
    import numpy as np
    from numformer.bench.harness import check_against, load_average, peak_extra_mb, time_call
    load_before = load_average()
    t0 = time.perf_counter()
    first = embed()  # compiles numba's kernels, if any
    first_ms = 1e3 * (time.perf_counter() - t0)
    ref_path = folder / "reference.npy"
    diff, ref_impl = None, None
    if ref_path.is_file():
        ref = np.load(ref_path, allow_pickle=False)
        ref_impl = (folder / "reference.txt").read_text()
        diff = check_against(f"{impl} sentence embeddings vs {ref_impl}", first, ref, rtol=0,
                             atol=TOLERANCE)
    else:
        np.save(ref_path, first)
        (folder / "reference.txt").write_text(impl)
    t = time_call(embed, repeats=repeats, warmup=1, min_time=0)
    tt = time_call(tokenize, repeats=repeats, min_time=0)
    n = len(data["sentences"])
    return dict(t, impl=impl, threads=threads, first_ms=first_ms,
                sentences_per_s=n / (t["ms"] * 1e-3), tokenize_ms=tt["ms"],
                peak_mb=peak_extra_mb(embed), max_abs_diff=diff, reference=ref_impl,
                load=[load_before, load_average()], **extra_row)


def add_child_args(p) -> None:
    p.add_argument("--impl", required=True)
    p.add_argument("--folder", required=True)
    p.add_argument("--repeats", type=int, required=True)


def child_body(args) -> dict:
    """numformer's side (numpy or numba backend) on the parent's batches."""
    import numpy as np
    from numformer import kernels, set_backend
    from numformer.bench.harness import blas_info, load_npz, machine_info, numpy_gemm_peak
    from numformer.pretrained import default_model_path, load_bert
    from numformer.pretrained.sentence import mean_pool_normalize
    impl, folder = args.impl, Path(args.folder)
    if impl == "numba":
        if not (kernels.numba_available() and kernels.KERNEL_OPS):
            return {"skipped": "no numba kernels registered"}
        from numformer.kernels._jit import set_num_threads
        set_num_threads(args.threads)
    set_backend(impl)
    data = load_npz(folder / "batches.npz")
    model, tok = load_bert(default_model_path())
    model.eval()
    batches = batches_of(data)
    sentences = [str(s) for s in data["sentences"]]

    def embed():
        out = np.zeros((len(sentences), model.cfg.hidden_size), dtype=np.float32)  # (N, C)
        for ids, mask, idx in batches:
            out[idx] = mean_pool_normalize(model(ids, mask), mask)  # (B, C)
        return out
    row = check_and_time(embed, lambda: [tok.encode(s) for s in sentences], data, folder,
                         f"numformer ({impl})", args.threads, args.repeats, {})
    row["profile_s"] = profile_shares(embed)
    info = machine_info(args.threads)
    info["blas"] = {"numformer": blas_info()}
    return {"row": row, "machine": info, "gemm_peak": numpy_gemm_peak()}


def markdown(results: list[dict]) -> str:
    from numformer.bench.harness import fmt_blas, fmt_spread
    lines = ["| threads | implementation | sentences/s | ms per set, median [min-max] | "
             "first call ms | GFLOP/s | % of own GEMM peak | tokenize ms | peak extra MB | "
             "ms / torch ms | max abs diff (vs) | load avg before/after |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results:
        torch_ms = next((r["ms"] for r in res["rows"] if r["impl"].startswith("torch")), None)
        cores = res.get("machine", {}).get("cores") or 2
        for r in res["rows"]:
            ratio = f"{r['ms'] / torch_ms:.2f}" if torch_ms else "-"
            diff = "-" if r["max_abs_diff"] is None else \
                f"{r['max_abs_diff']:.1e} ({r['reference']})"
            peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            loads = [x[0] for x in r.get("load", []) if x]
            load = "/".join(f"{x:.1f}" for x in loads) or "-"
            if loads and max(loads) > cores:
                load += " (busy)"
            pf = r.get("peak_fraction")
            lines.append(f"| {r['threads']} | {r['impl']} | {r['sentences_per_s']:.1f} | "
                         f"{fmt_spread(r, '.0f')} | {r['first_ms']:.0f} | "
                         f"{r['gflops']:.1f} | {'-' if pf is None else f'{100 * pf:.0f}%'} | "
                         f"{r['tokenize_ms']:.1f} | {peak} | {ratio} | {diff} | {load} |")
    for res in results[:1]:
        lines += [""] + [f"BLAS, {side}: {fmt_blas(b)}" for side, b in
                         (res.get("machine", {}).get("blas") or {}).items()]
        lines += [f"GEMM peak (1024^3 float32) of the {k} process: {v['gflops']:.0f} GFLOP/s"
                  for k, v in (res.get("gemm_peak") or {}).items()]
        if "tokenizers_agree" in res:
            lines.append(f"Rust tokenizer vs numformer's WordPiece: {res['tokenizers_agree']}")
    lines.append("")
    lines.append("(busy): the 1-minute load average around this measurement exceeded the "
                 "number of cores, so other processes shared them; with 2 threads on 2 cores "
                 "every parallel region then waits for a descheduled thread, and the time "
                 "measures the machine's load more than the implementation.")
    lines.append("")
    for res in results:
        for r in res["rows"]:
            if "profile_s" in r:
                p = dict(r["profile_s"])
                total = p.pop("total_s")
                parts = ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in
                                  sorted(p.items(), key=lambda kv: -kv[1]))
                lines.append(f"- profile of one call, {r['impl']}, {r['threads']} thread(s), "
                             f"{total:.2f} s: {parts}")
    return "\n".join(lines)


def write_results(directory: Path, results: list[dict], command: str, echo: bool = False):
    """embeddings.json (every measurement) and embeddings.md (the table), atomically."""
    from numformer.bench.harness import write_atomic
    md = markdown(results)
    m = {k: v for k, v in results[0]["machine"].items() if k != "blas"}
    header = (f"{results[0]['n']} SST-2 dev sentences ({results[0]['tokens']} tokens, at most "
              f"{results[0]['max_tokens']}), batches of {results[0]['batch_size']} (the same "
              f"batches for every implementation: sorted by token count, padded to the "
              f"longest), {results[0]['gflop']:.1f} GFLOP of encoder matmuls per set; torch "
              f"in a process of its own that never loaded numformer's kernels or runtime "
              f"settings")
    if echo:
        print(f"{m.get('cpu')}, numpy {m.get('numpy')}, numba {m.get('numba', '-')}, "
              f"torch {m.get('torch', '-')}\n{header}\n\n{md}")
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": NAME, "description": header, "command": command, "runs": results}
    path = write_atomic(directory / f"{NAME}.json", json.dumps(payload, indent=1))
    from numformer.bench.harness import fmt_machine
    info = fmt_machine(m)
    mdp = write_atomic(directory / f"{NAME}.md",
                       f"# Sentence embeddings, all-MiniLM-L6-v2\n\n{info}\n\n{header}; "
                       f"command: `{command}`\n\n{md}\n")
    if echo:
        print(f"\nwrote {path} and {mdp}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" in argv:  # a child of run_child
        from numformer.bench.harness import child_main
        return child_main(argv, child_body, add_child_args)
    p = argparse.ArgumentParser(prog="numformer bench embeddings",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (a fresh "
                                                    "process each)")
    p.add_argument("--n", type=int, default=256, help="sentences (SST-2 dev), default 256")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 thread, 64 sentences, 2 repeats")
    p.add_argument("--no-torch", action="store_true", help="numformer only")
    p.add_argument("--results", default=None, help="results folder (default benchmarks/results "
                                                    "or $NUMFORMER_BENCH_RESULTS)")
    args = p.parse_args(argv)
    if args.quick:
        args.threads, args.n, args.repeats = "1", 64, 2
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    from numformer.bench.harness import RESULTS, check_untouched, run_child, torch_importable, \
        twins_root
    sentences = load_sentences(args.n)
    if sentences is None:
        print(f"no SST data under {data_dir()}: nothing to measure")
        return 0
    try:
        from numformer.pretrained import default_model_path, load_bert
        model, tok = load_bert(default_model_path())
    except (FileNotFoundError, ImportError) as e:
        print(f"no model: {e}")
        return 0
    has_torch = not args.no_torch and torch_importable() and twins_root() is not None
    impls = IMPLS if has_torch else IMPLS[1:]
    if not has_torch:
        print("torch (or benchmarks/twins) not available: numformer only", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        counts = write_batches(sentences, tok, args.batch_size, Path(tmp) / "batches.npz")
        gflop = forward_gflop(counts["counts"], args.batch_size, model.cfg)
        for n in (int(t) for t in args.threads.split(",")):
            folder = Path(tmp) / f"threads_{n}"
            folder.mkdir()
            (folder / "batches.npz").symlink_to(Path(tmp) / "batches.npz")
            run = {"rows": [], "n": len(sentences), "batch_size": args.batch_size,
                   "tokens": counts["tokens"], "max_tokens": counts["max_tokens"],
                   "gflop": gflop, "gemm_peak": {}, "runtime": {}}
            for impl in impls:  # torch first: its embeddings are the reference
                res = run_child(TWIN if impl == "torch" else SELF,
                                ["--impl", impl, "--folder", folder, "--repeats", args.repeats],
                                n)
                if "skipped" in res:
                    print(f"{impl} at {n} thread(s) skipped: {res['skipped']}")
                    continue
                if impl == "torch":
                    check_untouched(res["runtime"], "torch's embeddings")
                row = res["row"]
                row["gflops"] = gflop / (row["ms"] * 1e-3)
                row["peak_fraction"] = row["gflops"] / res["gemm_peak"]["gflops"]
                blas = dict(run.get("machine", {}).get("blas", {}), **res["machine"]["blas"])
                run["machine"] = {**run.get("machine", {}), **res["machine"], "blas": blas}
                run["gemm_peak"][row["impl"]] = res["gemm_peak"]
                run["runtime"][row["impl"]] = res["runtime"]
                for k in ("tokenizers_agree",):
                    if k in res:
                        run[k] = res[k]
                run["rows"].append(row)
            results.append(run)
    directory = Path(args.results) if args.results else RESULTS
    command = (f"python benchmarks/embeddings.py --threads {args.threads} --n {args.n} "
               f"--repeats {args.repeats}")
    write_results(directory, results, command, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
