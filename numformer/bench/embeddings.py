"""Sentence-embedding throughput of all-MiniLM-L6-v2: numformer against the same
model in PyTorch (transformers' BertModel), on real sentences.

Both sides do the whole job sentence-transformers does in ``encode``: sort the
sentences by length, tokenize batches of 32 (numformer: its pure-Python
WordPiece; PyTorch: the Rust ``tokenizers`` of the model's tokenizer.json,
truncation at 256 tokens, padding to the longest of the batch), run the
encoder, mean-pool over the mask and L2-normalise. Before timing, every
numformer backend's embeddings are checked against PyTorch's (max absolute
difference <= 1e-4).

Each implementation at each thread count runs in a fresh process with its
thread pools pinned before numpy, numba or torch load. (They must not share a
process: numba's OpenMP pool, once started, spins beside torch's and makes
torch at 2 threads on 2 cores some 25 times slower.) Timings: median of repeats of the whole
set (default 256 SST dev sentences); the first call (numba compiles there)
is reported apart. A profile of one numformer call gives the share of each
op, so the slow parts are named.

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


def torch_embedder(torch, model_dir: Path, batch_size: int, max_length: int):
    """sentence-transformers' encode, spelled out: the Rust tokenizer, BertModel, mean
    pooling over the attention mask, L2 normalisation."""
    import numpy as np
    import tokenizers
    import transformers
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of the batch
    transformers.utils.logging.disable_progress_bar()
    model = transformers.BertModel.from_pretrained(str(model_dir)).eval()

    def embed(sentences):
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = np.zeros((len(sentences), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = tok.encode_batch([sentences[i] for i in idx])
                ids = torch.tensor([e.ids for e in enc])
                mask = torch.tensor([e.attention_mask for e in enc])
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)  # (B, C)
                out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out
    return embed, tok


def load_average() -> float | None:
    """The 1-minute load average (other processes on the machine skew 2-thread timings)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


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


def run_child(impl: str, threads: int, n: int, batch_size: int, repeats: int, folder: Path) -> None:
    """One implementation at one thread count, in a process of its own: torch and numba
    each start an OpenMP pool, and two pools spinning in one process on two cores slow
    torch down more than tenfold. The torch child leaves its embeddings in
    ``folder/ref_<threads>.npy``; the numformer children check theirs against them."""
    from numformer.bench.harness import pin_threads
    pin_threads(threads)
    import numpy as np  # (after pinning)
    from numformer import kernels, set_backend
    from numformer.bench.harness import check_against, machine_info, peak_extra_mb, time_call, \
        torch_or_none
    from numformer.pretrained import default_model_path, load_bert, sentence_embeddings

    out = folder / f"{impl}_{threads}.json"
    sentences = load_sentences(n)
    if sentences is None:
        out.write_text(json.dumps({"skipped": f"no SST data under {data_dir()}"}))
        return
    model_dir = default_model_path()
    model, tok = load_bert(model_dir)
    counts = [len(tok.encode(s)) for s in sentences]
    gflop = forward_gflop(counts, batch_size, model.cfg)
    result = {"machine": machine_info(threads), "n": len(sentences), "batch_size": batch_size,
              "tokens": sum(counts), "max_tokens": max(counts), "gflop": gflop}
    load_before = load_average()
    ref_path = folder / f"ref_{threads}.npy"

    if impl == "torch":
        torch = torch_or_none()
        if torch is None:
            out.write_text(json.dumps({"skipped": "torch is not installed"}))
            return
        try:
            embed_t, rust_tok = torch_embedder(torch, model_dir, batch_size, tok.max_length)
        except ImportError as e:  # transformers or tokenizers missing
            out.write_text(json.dumps({"skipped": f"torch reference: {e}"}))
            return
        ref = embed_t(sentences)
        with open(ref_path, "wb") as f:
            np.save(f, ref)
        t = time_call(lambda: embed_t(sentences), repeats=repeats, warmup=1, min_time=0)
        tt = time_call(lambda: rust_tok.encode_batch(sentences), repeats=repeats, min_time=0)
        result["machine"] = machine_info(threads)  # now with torch's version
        result["row"] = dict(impl=f"torch {torch.__version__} (transformers BertModel)",
                             threads=threads, ms=t["ms"], first_ms=t["first_ms"],
                             sentences_per_s=len(sentences) / (t["ms"] * 1e-3),
                             gflops=gflop / (t["ms"] * 1e-3), tokenize_ms=tt["ms"],
                             peak_mb=peak_extra_mb(lambda: embed_t(sentences)), max_abs_diff=0.0,
                             min_ms=t["min_ms"], load=[load_before, load_average()])
        out.write_text(json.dumps(result))
        return

    if impl == "numba":
        if not (kernels.numba_available() and kernels.KERNEL_OPS):
            out.write_text(json.dumps({"skipped": "no numba kernels registered"}))
            return
        from numformer.kernels._jit import set_num_threads
        set_num_threads(threads)
    set_backend(impl)

    def run():
        return sentence_embeddings(model, tok, sentences, batch_size=batch_size)
    t0 = time.perf_counter()
    first = run()  # compiles the kernels of this backend, if any
    first_ms = 1e3 * (time.perf_counter() - t0)
    diff = None
    if ref_path.is_file():
        ref = np.load(ref_path)  # plain array, no pickle
        check_against(f"numformer ({impl}) sentence embeddings", first, ref, rtol=0,
                      atol=TOLERANCE)
        diff = float(np.abs(first - ref).max())
    t = time_call(run, repeats=repeats, warmup=1, min_time=0)
    tt = time_call(lambda: [tok.encode(s) for s in sentences], repeats=repeats, min_time=0)
    result["row"] = dict(impl=f"numformer ({impl})", threads=threads, ms=t["ms"],
                         first_ms=first_ms, sentences_per_s=len(sentences) / (t["ms"] * 1e-3),
                         gflops=gflop / (t["ms"] * 1e-3), tokenize_ms=tt["ms"],
                         peak_mb=peak_extra_mb(run), max_abs_diff=diff, min_ms=t["min_ms"],
                         load=[load_before, load_average()], profile_s=profile_shares(run))
    out.write_text(json.dumps(result))


def markdown(results: list[dict]) -> str:
    lines = ["| threads | implementation | sentences/s | ms per set (median) | fastest ms | "
             "first call ms | GFLOP/s | tokenize ms | peak extra MB | ms / torch ms | "
             "max abs diff vs torch | load avg before/after |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results:
        torch_ms = next((r["ms"] for r in res["rows"] if r["impl"].startswith("torch")), None)
        cores = res.get("machine", {}).get("cores") or 2
        for r in res["rows"]:
            ratio = f"{r['ms'] / torch_ms:.1f}" if torch_ms else "-"
            diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
            peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            loads = [x for x in r.get("load", []) if x is not None]
            load = "/".join(f"{x:.1f}" for x in loads) or "-"
            if loads and max(loads) > cores:
                load += " (busy)"
            lines.append(f"| {r['threads']} | {r['impl']} | {r['sentences_per_s']:.1f} | "
                         f"{r['ms']:.0f} | {r['min_ms']:.0f} | {r['first_ms']:.0f} | "
                         f"{r['gflops']:.1f} | {r['tokenize_ms']:.1f} | {peak} | {ratio} | "
                         f"{diff} | {load} |")
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
    m = results[0]["machine"]
    header = (f"{results[0]['n']} SST-2 dev sentences ({results[0]['tokens']} tokens, at most "
              f"{results[0]['max_tokens']}), batches of {results[0]['batch_size']}, "
              f"{results[0]['gflop']:.1f} GFLOP of encoder matmuls per set")
    if echo:
        print(f"{m.get('cpu')}, numpy {m.get('numpy')}, numba {m.get('numba', '-')}, "
              f"torch {m.get('torch', '-')}\n{header}\n\n{md}")
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": NAME, "description": header, "command": command, "runs": results}
    path = write_atomic(directory / f"{NAME}.json", json.dumps(payload, indent=1))
    info = ", ".join(f"{k} {v}" for k, v in m.items() if k != "threads")
    mdp = write_atomic(directory / f"{NAME}.md",
                       f"# Sentence embeddings, all-MiniLM-L6-v2\n\n{info}\n\n{header}; "
                       f"command: `{command}`\n\n{md}\n")
    if echo:
        print(f"\nwrote {path} and {mdp}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (a fresh "
                                                    "process each)")
    p.add_argument("--n", type=int, default=256, help="sentences (SST-2 dev), default 256")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "FOLDER"), help=argparse.SUPPRESS)
    p.add_argument("--results", default=None, help="results folder (default benchmarks/results "
                                                    "or $NUMFORMER_BENCH_RESULTS)")
    args = p.parse_args(argv)
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    if args.child:
        run_child(args.child[0], int(args.threads), args.n, args.batch_size, args.repeats,
                  Path(args.child[1]))
        return 0

    from numformer.bench.harness import RESULTS, run_per_thread_count
    counts = [int(t) for t in args.threads.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            run = {"rows": []}
            for impl in IMPLS:  # torch first: it writes the reference
                run_per_thread_count(__file__, [n], ["--n", str(args.n), "--batch-size",
                                                     str(args.batch_size), "--repeats",
                                                     str(args.repeats), "--child", impl, tmp])
                res = json.loads((Path(tmp) / f"{impl}_{n}.json").read_text())
                if "skipped" in res:
                    print(f"{impl} at {n} thread(s) skipped: {res['skipped']}")
                    if impl == "numpy":  # no data or no model: nothing to measure
                        return 0
                    continue
                row, machine = res.pop("row"), res.pop("machine")
                if impl == "torch" or "machine" not in run:
                    run["machine"] = machine  # the torch child's names torch's version
                run.update(res)
                run["rows"].append(row)
            results.append(run)
    directory = Path(args.results) if args.results else RESULTS
    command = (f"python benchmarks/embeddings.py --threads {args.threads} --n {args.n} "
               f"--repeats {args.repeats}")
    write_results(directory, results, command, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
