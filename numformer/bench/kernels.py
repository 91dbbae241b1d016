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

Each thread count runs in a fresh process with every thread pool pinned
before numpy, numba or torch load. In it, every implementation is checked
against the NumPy reference before it is timed (the tolerance table of
numformer.testing; its batch-reduced entry for dgamma/dbeta, the loss and
Adam's moments after ten steps), and times are medians of samples taken
round-robin (each sample of each implementation in turn, fast calls looped
to 50 ms), so load from other processes hits all alike. GB/s counts the
bytes an ideal implementation must move (stated per op), the same for all.

Then, per op family, two more fresh processes share an empty numba cache:
the first compiles (cold), the second loads the cache (warm); each reports
the time from ``import numformer`` to the end of its first forward+backward.

    python benchmarks/kernels.py                        # 1 and 2 threads, all ops
    python benchmarks/kernels.py --quick                # 1 thread, small cases, 3 repeats
    numformer bench kernels --threads 1 --ops layernorm,adam --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


# -- the cases: name -> (call, result) per implementation ---------------------------

def _layernorm(np, torch, shape, rng):
    from numformer.kernels import layernorm as K
    from numformer.ops import layernorm as R
    N, C = shape
    x, dout = (rng.standard_normal((N, C)).astype(np.float32) for _ in range(2))
    g = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    b = (0.1 * rng.standard_normal(C)).astype(np.float32)
    impls = {}
    for name, mod in (("numformer numpy", R), ("numformer numba", K)):
        def call(mod=mod):
            out, cache = mod.layernorm_forward(x, g, b)
            return (out, *mod.layernorm_backward(dout, cache))
        impls[name] = (call, call)
    if torch is not None:
        F = torch.nn.functional
        tx, tg, tb = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, g, b))
        td = torch.from_numpy(dout)

        def tcall():
            out = F.layer_norm(tx, (C,), tg, tb, 1e-5)
            return out, torch.autograd.grad(out, (tx, tg, tb), td)

        def tresult():
            out, grads = tcall()
            return tuple(t.detach().numpy() for t in (out, *grads))
        impls["torch"] = (tcall, tresult)
    return impls, ("out", "dx", "dgamma", "dbeta"), (False, False, True, True), 5 * N * C * 4


def _cross_entropy(np, torch, shape, rng):
    from numformer.kernels import losses as K
    from numformer.ops import losses as R
    N, V = shape
    x = (2 * rng.standard_normal((N, V))).astype(np.float32)
    t = rng.integers(0, V, N)
    impls = {}
    for name, mod in (("numformer numpy", R), ("numformer numba", K)):
        def call(mod=mod):
            loss, cache = mod.cross_entropy_forward(x, t)
            return np.asarray(loss), mod.cross_entropy_backward(1.0, cache)
        impls[name] = (call, call)
    if torch is not None:
        F = torch.nn.functional
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tt = torch.from_numpy(t)

        def tcall():
            loss = F.cross_entropy(tx, tt)
            return loss, torch.autograd.grad(loss, (tx,))[0]

        def tresult():
            loss, dx = tcall()
            return loss.detach().numpy(), dx.numpy()
        impls["torch"] = (tcall, tresult)
    return impls, ("loss", "dlogits"), (False, False), 2 * N * V * 4


def _adam(np, torch, shape, rng, steps=10):
    """Each implementation's call does one step; its result is (p, m, v) after
    ``steps`` steps from the same start, for AdamW (decoupled) and Adam (L2)."""
    from numformer.kernels import adam as K
    from numformer.ops import adam as R
    p0, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    impls = {}
    for decoupled, label in ((True, "AdamW"), (False, "Adam")):
        for name, mod in (("numformer numpy", R), ("numformer numba", K)):
            def make(mod=mod, decoupled=decoupled):
                p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
                return lambda step=10: mod.adam_step(p, g, m, v, step=step, decoupled=decoupled,
                                                     **ADAM_HYPER) or (p, m, v)

            def result(make=make):
                f = make()
                for s in range(1, steps + 1):
                    out = f(s)
                return out
            impls[f"{name} {label}"] = (make(), result)
        if torch is None:
            continue
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        for variant in ("for-loop", "foreach", "fused"):
            kw = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True),
                  "fused": dict(fused=True)}[variant]

            def make(cls=cls, kw=kw):
                tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
                tp.grad = torch.from_numpy(g.copy())
                h = dict(ADAM_HYPER)
                opt = cls([tp], lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                          weight_decay=h["weight_decay"], **kw)
                return opt, tp

            def result(make=make):
                opt, tp = make()
                for _ in range(steps):
                    opt.step()
                st = opt.state[tp]
                return (tp.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy())
            try:
                opt, _ = make()
                opt.step()
            except (RuntimeError, TypeError) as e:  # a variant this torch lacks on the CPU
                print(f"  skip torch {label} {variant}: {e}", file=sys.stderr)
                continue
            impls[f"torch {label} {variant}"] = (opt.step, result)
    n = int(np.prod(shape))
    return impls, ("p", "m", "v"), (False, False, False), 7 * n * 4


def _embedding(np, torch, shape, rng):
    from numformer.kernels import embedding as K
    from numformer.ops import embedding as R
    N, V, C = shape
    ids = np.minimum(rng.zipf(1.3, N) - 1, V - 1)  # word-frequency-like: many repeats
    dout = rng.standard_normal((N, C)).astype(np.float32)
    cache = (ids, (V, C), np.dtype(np.float32))
    impls = {}
    for name, mod in (("numformer numpy", R), ("numformer numba", K)):
        def call(mod=mod):
            return (mod.embedding_backward(dout, cache),)
        impls[name] = (call, call)
    if torch is not None:
        tids = torch.from_numpy(ids)
        td = torch.from_numpy(dout)

        def dense_bwd():
            return torch.ops.aten.embedding_dense_backward(td, tids, V, -1, False)

        def index_add():
            return torch.zeros(V, C).index_add_(0, tids, td)
        impls["torch embedding_dense_backward"] = (dense_bwd, lambda: (dense_bwd().numpy(),))
        impls["torch index_add_"] = (index_add, lambda: (index_add().numpy(),))
    return impls, ("dW",), (True,), (V * C + N * C) * 4


def _dropout(np, torch, shape, rng):
    """Forward and backward at p = 0.1. torch draws other masks, so only the
    numformer implementations are compared element by element (result None)."""
    from numformer.kernels import dropout as K
    from numformer.ops import dropout as R
    x, dout = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    impls = {}
    for name, mod in (("numformer numpy", R), ("numformer numba", K)):
        def call(mod=mod):
            out, mask = mod.dropout_forward(x, 0.1, np.random.default_rng(1))
            return out, mask, mod.dropout_backward(dout, mask)
        impls[name] = (call, call)
    if torch is not None:
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        td = torch.from_numpy(dout)

        def tcall():
            out = torch.nn.functional.dropout(tx, 0.1, training=True)
            return out, torch.autograd.grad(out, (tx,), td)[0]
        impls["torch"] = (tcall, None)
    return impls, ("out", "mask", "dx"), (False, False, False), 5 * x.size * 4


def _group(name: str) -> str:
    """The variant group an implementation belongs to ("AdamW", "Adam" or "")."""
    last = name.split()[-1]
    if last in ("AdamW", "Adam"):
        return last
    for word in ("AdamW", "Adam"):
        if f" {word} " in name:
            return word
    return ""


BUILDERS = {"layernorm": _layernorm, "cross_entropy": _cross_entropy, "adam": _adam,
            "embedding": _embedding, "dropout": _dropout}


# -- timing ---------------------------------------------------------------------------

def _malloc_returns_big_buffers():
    """Make glibc serve buffers over 128 KiB by mmap and give them back on free,
    so a call's peak memory shows as a rise of resident memory (timing runs
    before this, with the default allocator). Returns a function that hands
    free heap memory back to the OS, to call before each measurement."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: peaks may read low
        return lambda: None


def run_child(threads: int, ops, cases, repeats: int, out: Path) -> None:
    from numformer.bench.harness import pin_threads
    pin_threads(threads)
    import numpy as np
    from numformer.bench.harness import (check_against, machine_info, peak_extra_mb,
                                         time_interleaved, torch_or_none)
    from numformer.kernels._jit import set_num_threads
    from numformer.testing import tolerance
    set_num_threads(threads)
    torch = torch_or_none()
    load_before = os.getloadavg()[0]
    rows, peaks = [], []
    for op in ops:
        for shape in cases[op]:
            rng = np.random.default_rng(0)
            impls, labels, reduced, nbytes = BUILDERS[op](np, torch, shape, rng)
            for name, (_, result) in impls.items():
                if result is None:  # timed only (e.g. torch's dropout draws other masks)
                    continue
                ref_name = f"numformer numpy {_group(name)}".strip()
                ref = impls[ref_name][1]()
                for label, got, exp, red in zip(labels, result(), ref, reduced):
                    check_against(f"{op} {shape} {name} {label}", got, exp,
                                  *tolerance(np.float32, reduced=red or op == "adam"))
            times = time_interleaved({n: f for n, (f, _) in impls.items()}, repeats)
            for name, (call, _) in impls.items():
                t = times[name]
                rows.append(dict(threads=threads, op=op, shape=list(shape), impl=name,
                                 ms=t["ms"], min_ms=t["min_ms"],
                                 gbps=nbytes / (t["ms"] * 1e-3) / 1e9))
            peaks.append((rows[-len(impls):], impls))
            case_rows = rows[-len(impls):]
            for r in case_rows:
                best = min((x["ms"] for x in case_rows if x["impl"].startswith("torch")
                            and _group(x["impl"]) == _group(r["impl"])), default=None)
                r["ratio"] = r["ms"] / best if best else None
            print(f"  threads={threads} {op} {tuple(shape)}: " + ", ".join(
                f"{r['impl']} {r['ms']:.3f} ms" for r in rows[-len(impls):]), flush=True)
    trim = _malloc_returns_big_buffers()
    for case_rows, impls in peaks:
        for r in case_rows:
            trim()
            r["peak_mb"] = peak_extra_mb(impls[r["impl"]][0])
    del peaks
    out.write_text(json.dumps({"machine": machine_info(threads), "rows": rows,
                               "load_average": [load_before, os.getloadavg()[0]]}))


# -- first call in a fresh process (cold cache, then warm cache) -----------------------

_FIRST_CALL = r"""
import json, sys, time
import numpy as np
name = sys.argv[1]


def call(m, rows, cols):
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


t0 = time.perf_counter()
import numformer
from numformer import kernels
m = kernels.op(name, "numba")
assert m.__name__ == "numformer.kernels." + name, m.__name__
t1 = time.perf_counter()
call(m, 64, 32)  # small: the serial kernels
t2 = time.perf_counter()
call(m, 1024, 256)  # large: the parallel drivers too
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "small_s": t2 - t0, "total_s": t3 - t0}))
"""

FIRST_CALL_OPS = ("layernorm", "softmax", "losses", "embedding", "adam", "activations",
                  "dropout")


def first_calls(threads: int = 1) -> dict:
    """op -> {"cold": {...}, "warm": {...}}: two fresh processes sharing an empty cache."""
    from numformer.bench.harness import THREAD_VARS
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    results = {}
    for op in FIRST_CALL_OPS:
        with tempfile.TemporaryDirectory(prefix="numformer-jit-") as cache:
            env["NUMBA_CACHE_DIR"] = cache
            results[op] = {}
            for which in ("cold", "warm"):
                run = subprocess.run([sys.executable, "-c", _FIRST_CALL, op], env=env,
                                     capture_output=True, text=True, check=True)
                results[op][which] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"  first call {op}: cold {results[op]['cold']['total_s']:.2f} s, warm "
              f"{results[op]['warm']['total_s']:.2f} s", flush=True)
    return results


# -- reporting -----------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(runs: list[dict], first: dict | None) -> str:
    lines = []
    for run in runs:
        n = run["machine"]["threads"]
        load = run.get("load_average")
        lines += [f"### {n} thread{'s' if n > 1 else ''}", ""]
        if load:
            lines += [f"1-minute load average before / after this run: {load[0]:.1f} / "
                      f"{load[1]:.1f} (the run itself accounts for about {n}; more means "
                      f"other processes shared the machine's {os.cpu_count()} cores)", ""]
        lines += ["| op | shape | implementation | ms | GB/s | peak extra MB "
                  "| ms / best torch ms |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in run["rows"]:
            shape = "x".join(map(str, r["shape"]))
            lines.append(f"| {r['op']} | {shape} | {r['impl']} | {r['ms']:.3f} | "
                         f"{r['gbps']:.1f} | {_fmt(r['peak_mb'], '.1f')} | "
                         f"{_fmt(r['ratio'], '.2f')} |")
        lines.append("")
    if first:
        lines += ["### First calls in a fresh process (1 thread)", "",
                  "Seconds from `import numformer` to the end of the first forward+backward "
                  "(Adam: step) of a small input (64x32, the serial kernels), and then of a "
                  "large one as well (1024x256, the parallel drivers too). Cold: compiling "
                  "into an empty numba cache; warm: a second process loading that cache.", "",
                  "| kernel module | cold: small | cold: small + large | warm: small "
                  "| warm: small + large |",
                  "|---|---:|---:|---:|---:|"]
        for op, r in first.items():
            c, w = r["cold"], r["warm"]
            lines.append(f"| {op} | {c['small_s']:.2f} | {c['total_s']:.2f} | "
                         f"{w['small_s']:.2f} | {w['total_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def targets(runs: list[dict]) -> str:
    """1 thread, the issue's target: the kernel at least as fast as torch's best variant."""
    run = next((r for r in runs if r["machine"]["threads"] == 1), None)
    if run is None:
        return ""
    lines = ["### Target (1 thread): numba kernel at least as fast as the fastest torch", "",
             "| op | shape | numba ms | best torch ms (which) | numba <= torch |",
             "|---|---|---:|---:|---|"]
    keys = []
    for r in run["rows"]:
        k = (r["op"], tuple(r["shape"]))
        if k not in keys:
            keys.append(k)
    for op, shape in keys:
        rows = [r for r in run["rows"] if r["op"] == op and tuple(r["shape"]) == shape]
        for nb in (r for r in rows if r["impl"].startswith("numformer numba")):
            pool = [r for r in rows if r["impl"].startswith("torch")
                    and _group(r["impl"]) == _group(nb["impl"])]
            best = min(pool, key=lambda r: r["ms"], default=None)
            ok = "-" if best is None else ("yes" if nb["ms"] <= best["ms"] else "no")
            label = f"{op} {_group(nb['impl'])}".strip()
            lines.append(f"| {label} | {'x'.join(map(str, shape))} | {nb['ms']:.3f} | "
                         f"{_fmt(best and best['ms'], '.3f')} ({best['impl'] if best else '-'}) "
                         f"| {ok} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> bool:
    from numformer.bench.harness import pyplot_or_none
    plt = pyplot_or_none()
    if plt is None:
        return False
    import matplotlib.ticker
    ops = [op for op in OPS if any(r["op"] == op for run in runs for r in run["rows"])]
    ncols = min(2, len(ops))
    nrows = -(-len(ops) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.axis("off")
    for ax, op in zip(axes.flat, ops):
        labels, series = [], {}
        for run in runs:
            n = run["machine"]["threads"]
            for r in run["rows"]:
                if r["op"] != op or r["impl"].startswith("torch") or r["ratio"] is None:
                    continue
                case = f"{'x'.join(map(str, r['shape']))}\n{n} thr"
                if case not in labels:
                    labels.append(case)
                series.setdefault(r["impl"].replace("numformer ", ""), {})[case] = r["ratio"]
        width = 0.8 / max(1, len(series))
        colors = {"numba": "tab:blue", "numba AdamW": "tab:blue", "numba Adam": "lightskyblue",
                  "numpy": "tab:orange", "numpy AdamW": "tab:orange", "numpy Adam": "navajowhite"}
        for i, (impl, vals) in enumerate(sorted(series.items(), key=lambda kv: kv[0][::-1])):
            xs = [j + i * width for j, c in enumerate(labels) if c in vals]
            ax.bar(xs, [vals[c] for c in labels if c in vals], width, label=impl,
                   color=colors.get(impl))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([j + (len(series) - 1) * width / 2 for j in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("ms / fastest torch ms (below 1: faster)")
        ax.set_title(op)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
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
    p.add_argument("--child-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ops = [s.strip() for s in args.ops.split(",")]
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        p.error(f"--ops: unknown {unknown}; choose from {', '.join(OPS)}")
    cases = CASES
    if args.quick:
        args.threads, args.repeats, cases = "1", 3, QUICK_CASES
    if args.child_json:
        run_child(int(args.threads), ops, cases, args.repeats,
                  Path(args.child_json))
        return 0

    from numformer.bench.harness import RESULTS, run_per_thread_count, write_atomic
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(t) for t in args.threads.split(",")):
            child = Path(tmp) / f"{n}.json"
            extra = ["--ops", ",".join(ops), "--repeats", str(args.repeats),
                     "--child-json", str(child)] + (["--quick"] if args.quick else [])
            run_per_thread_count(__file__, [n], extra)
            runs.append(json.loads(child.read_text()))
    first = None if args.no_first_call else first_calls()
    m = runs[0]["machine"]
    command = "python benchmarks/kernels.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    info = ", ".join(f"{k} {v}" for k, v in m.items() if k != "threads")
    notes = "\n".join(f"- {op}: {BYTES_NOTE[op]}" for op in ops)
    header = (f"# Memory-bound kernels, float32\n\n{info}\n\ncommand: `{command.strip()}`\n\n"
              f"Every implementation matched the NumPy reference before timing (tolerance "
              f"table of numformer.testing; batch-reduced entry for dgamma/dbeta/dW and for "
              f"Adam after ten steps). Times: medians of {args.repeats} round-robin samples. "
              f"Ratio: ms / ms of the fastest torch variant of the same case (for Adam: of "
              f"the same weight-decay form). GB/s counts:\n"
              f"{notes}\n")
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
