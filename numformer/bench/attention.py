"""The attention benchmark: any shape, mask and pass, your own kernel, against the
machine's measured limits.

    numformer bench attention                       # the default question (below)
    numformer bench attention --quick               # under a minute: a small case
    numformer bench attention --check-only --impl mypkg.mymod:attention_forward
    numformer bench attention --H 9 --kv-heads 3 --D 64 --Tq 1 --T 256,1024,2048 \\
        --mask causal --passes forward --threads 1,2
    numformer bench compare A.json B.json           # two runs, two machines

The question: q (B, H, Tq, D), k and v (B, Hkv, Tk, D) for each Tk in ``--T``
(Tq = Tk unless ``--Tq`` gives a decode step's few queries, aligned with the
end of the keys), ``--dtype`` float32 or float64, each ``--mask`` (none,
causal, padding: the last ``--pad-fraction`` of every sequence's keys are
padding, causal+padding), each ``--passes`` (forward; backward alone, from a
forward done before the clock starts; forward+backward). The default is the
question the README has always asked: B=32, H=4, D=32, float32, no mask,
forward and forward+backward, T = 20 ... 1024, 1 and 2 threads.

Implementations (``--impls``): numpy (numformer's reference), numba (its fused
kernel), torch-flash / torch-math / torch-efficient / torch-cudnn (torch's
``scaled_dot_product_attention`` with that backend selected explicitly by
``sdpa_kernel``; on the CPU in torch 2.13 only FLASH_ATTENTION and MATH run,
the others answer "no viable backend" and are reported as unavailable),
torch-eager (``softmax(q k^T * scale) v`` in eager torch), and any number of
``--impl SPEC`` kernels of your own with numformer's signature
``attention_forward(q, k, v, key_mask=None, causal=False, scale=None) ->
(out, cache)`` and ``attention_backward(dout, cache) -> (dq, dk, dv)``:
SPEC is ``pkg.mod:forward_name`` (the backward is the same name with
"forward" -> "backward", if the module has it; else forward only),
``pkg.mod`` (its attention_forward/attention_backward) or ``path/file.py:name``.

Fairness (numformer/bench/harness.py): every implementation runs in a fresh
process of its own per thread count, every pool pinned before numpy, numba
or torch load; torch's processes never load numformer's kernels or runtime
settings (checked); your kernel's process gets no runtime tuning. Before
anything is timed, each implementation's output and gradients are checked
against numformer's reference in float64 on the same inputs (the whole
batch, or batch row 0 and kv group 0 when the float64 probabilities would
pass ``--ref-mb``) with the tolerance of numformer/testing.py for the dtype,
x10 for sums over the keys (float32: rtol = atol = 1e-4); a kernel that
disagrees is refused with the evidence, never timed, and the exit code is 1.
Implementations that hold (Tq, Tk) scores (numpy, torch-math, torch-eager)
are skipped, and say so, past ``--mem-limit-mb``.

What it reports: per case the median ms with min, quartiles and max of the
repeats after warm-up; the first call of each pass apart (the fused
kernel's JIT compile into an empty cache); GFLOP/s of the useful work
(forward 4 D, backward 8 D, both 12 D FLOP per visible (query, key) pair
and query head: causal and padding count visible pairs only, whatever an
implementation computes); % of the machine's matmul peak (the best of
np.matmul and torch.mm, (1024, 1024) products in the dtype, at that thread
count) and of its FMA peak (numformer/bench/peaks.py says how it is
measured); peak extra memory; the ratio to ``--baseline``. Markdown, JSON
(the question, the machine, BLAS per process, versions, load averages) and
three plots under the results folder: time against T per mask and pass;
GFLOP/s against T with the peaks as lines; a roofline (GFLOP/s against
useful FLOP per byte of least traffic, under min(FMA peak, np.copyto's
bandwidth x intensity)).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

NAME = "attention"
B, H, D = 32, 4, 32  # the default question (and the shape of ``gflop``)
DEFAULT_T = (20, 64, 128, 256, 512, 1024)
BUILTINS = {"numpy": "numformer numpy", "numba": "numformer numba",
            "torch-flash": "torch SDPA flash", "torch-math": "torch SDPA math",
            "torch-efficient": "torch SDPA efficient", "torch-cudnn": "torch SDPA cudnn",
            "torch-eager": "torch eager math"}
DEFAULT_IMPLS = ("numpy", "numba", "torch-flash", "torch-math", "torch-eager")
MATERIALIZING = ("numpy", "torch-math", "torch-eager")  # hold (B, H, Tq, Tk) scores
PASSES = ("forward", "backward", "forward+backward")
MASKS = ("none", "causal", "padding", "causal+padding")
FLOP_PER_PAIR = {"forward": 4, "backward": 8, "forward+backward": 12}  # x D per visible pair
SELF = "numformer.bench.attention_child"
TWIN = "benchmarks.twins.attention"
SCHEMA = "numformer.bench.attention/1"
QUICK = dict(B=4, T="64,256", threads="1", repeats=3)  # --quick: defaults of these flags


# -- the work ---------------------------------------------------------------------------

def key_lengths(Bn: int, Tk: int, mask: str, pad_fraction: float):
    """Real keys per sequence, (B,) ints: the last round(pad_fraction * Tk) keys of
    every sequence are padding (at least one key stays real); None without padding."""
    import numpy as np
    if "padding" not in mask:
        return None
    return np.full(Bn, max(1, Tk - int(round(pad_fraction * Tk))), dtype=np.int64)


def visible_pairs(Tq: int, Tk: int, causal: bool, lengths=None, Bn: int = 1) -> int:
    """(query, key) pairs a query head sees, summed over the batch: query i sees
    key j if j < length (padding) and, causal, j <= i + Tk - Tq (queries aligned
    with the end of the keys, as numformer.ops.attention does)."""
    import numpy as np
    reach = np.minimum(np.arange(Tq) + (Tk - Tq) + 1, Tk) if causal else np.full(Tq, Tk)
    reach = np.maximum(reach, 0)
    if lengths is None:
        return int(Bn * reach.sum())
    return int(sum(np.minimum(reach, n).sum() for n in lengths))


def useful_gflop(q: dict, Tk: int, mask: str, what: str) -> float:
    """The useful GFLOP of one call: FLOP_PER_PAIR[what] * D per visible pair and
    query head (grouped-query attention does the same work per query head)."""
    Tq = q["Tq"] or Tk
    pairs = visible_pairs(Tq, Tk, "causal" in mask, key_lengths(q["B"], Tk, mask,
                                                               q["pad_fraction"]), q["B"])
    return FLOP_PER_PAIR[what] * q["D"] * q["H"] * pairs / 1e9


def min_bytes(q: dict, Tk: int, what: str) -> int:
    """The least memory traffic of one call: every input read and every output
    written once (forward: q, k, v, out; backward: q, k, v, out, dout, dq, dk, dv;
    both: the sum), the roofline plot's x axis divides the useful FLOP by it."""
    import numpy as np
    nq = q["B"] * q["H"] * (q["Tq"] or Tk) * q["D"]  # one (B, H, Tq, D) array
    nk = q["B"] * q["Hkv"] * Tk * q["D"]  # one (B, Hkv, Tk, D) array
    n = {"forward": 2 * nq + 2 * nk, "backward": 4 * nq + 4 * nk,
         "forward+backward": 6 * nq + 6 * nk}[what]
    return n * np.dtype(q["dtype"]).itemsize


def gflop(T: int, what: str, causal: bool = False) -> float:
    """The default question's useful GFLOP at T (self-attention, no padding)."""
    q = dict(B=B, H=H, D=D, Tq=None, pad_fraction=0.0)
    return useful_gflop(q, T, "causal" if causal else "none", what)


def targets(runs: list) -> str:
    """The first benchmark's targets table (numformer.bench.attention_report.targets)."""
    from numformer.bench.attention_report import targets as t
    return t(runs)


def scores_mb(q: dict, Tk: int) -> float:
    """MB of one (B, H, Tq, Tk) array of scores in the question's dtype."""
    import numpy as np
    return q["B"] * q["H"] * (q["Tq"] or Tk) * Tk * np.dtype(q["dtype"]).itemsize / 2 ** 20


# -- the cases: inputs and the float64 reference, written once for every child ----------

def case_stem(mask: str, Tk: int) -> str:
    return f"{mask.replace('+', '_')}-{Tk}"


def reference_in_chunks(x: dict, key_mask, causal: bool, max_mb: float):
    """numformer.ops.attention's (out, dq, dk, dv) for x = {q, k, v, dout}, a block
    of queries at a time so that its (b, H, c, Tk) probabilities stay near
    ``max_mb``. Queries a..b-1 of Tq, causal, see the first b + Tk - Tq keys, and
    are the last queries of those keys, as the op aligns them: the block runs
    on those keys, and its dk, dv add into their rows."""
    import numpy as np
    from numformer.ops import attention as ref
    q, k, v, dout = x["q"], x["k"], x["v"], x["dout"]
    Bn, Hn, Tq, _ = q.shape
    Tk = k.shape[2]
    c = max(1, min(Tq, int(max_mb * 2 ** 20 / (4 * 8 * Bn * Hn * Tk))))
    out, dq = np.empty_like(q), np.empty_like(q)
    dk, dv = np.zeros_like(k), np.zeros_like(v)
    for a in range(0, Tq, c):
        b = min(Tq, a + c)
        n = b + Tk - Tq if causal else Tk  # keys the block can see
        km = None if key_mask is None else key_mask[:, :n]
        o, cache = ref.attention_forward(q[:, :, a:b], k[:, :, :n], v[:, :, :n], key_mask=km,
                                         causal=causal)
        out[:, :, a:b] = o
        gq, gk, gv = ref.attention_backward(dout[:, :, a:b], cache)
        dq[:, :, a:b] = gq
        dk[:, :, :n] += gk
        dv[:, :, :n] += gv
        del cache
    return out, dq, dk, dv


def write_case(q: dict, mask: str, Tk: int, directory: Path, ref_mb: float) -> dict:
    """Inputs q, k, v, dout (and key_mask) in the question's dtype, and numformer's
    reference output and gradients in float64 from the same values, as
    ``<stem>.npz``. The reference covers the whole batch when its float64
    probabilities fit in ``ref_mb``, else batch row 0 and kv group 0 (query heads
    0 .. G-1: their outputs and dq, kv head 0's dk and dv depend on nothing else),
    computed a block of queries at a time within ``ref_mb`` (``reference_in_chunks``)."""
    import numpy as np
    from numformer.bench.harness import save_npz
    Tq, G = q["Tq"] or Tk, q["H"] // q["Hkv"]
    rng = np.random.default_rng([Tk, MASKS.index(mask)])
    dt = np.dtype(q["dtype"])
    x = {n: rng.standard_normal(s).astype(dt) for n, s in (
        ("q", (q["B"], q["H"], Tq, q["D"])), ("k", (q["B"], q["Hkv"], Tk, q["D"])),
        ("v", (q["B"], q["Hkv"], Tk, q["D"])), ("dout", (q["B"], q["H"], Tq, q["D"])))}
    lengths = key_lengths(q["B"], Tk, mask, q["pad_fraction"])
    key_mask = None if lengths is None else np.arange(Tk)[None, :] < lengths[:, None]  # (B, Tk)
    whole = q["B"] * q["H"] * Tq * Tk * 8 / 2 ** 20 <= ref_mb
    sl = (slice(None), slice(None)) if whole else (slice(0, 1), slice(0, G))
    kv = (sl[0], slice(None) if whole else slice(0, 1))
    f64 = {n: x[n][kv if n in "kv" else sl].astype(np.float64) for n in x}
    km = None if key_mask is None else key_mask[sl[0]]
    out, dq, dk, dv = reference_in_chunks(f64, km, "causal" in mask, ref_mb)
    meta = {"mask": mask, "Tk": Tk, "Tq": Tq, "causal": "causal" in mask,
            "reference": "whole batch" if whole else f"batch row 0, query heads 0-{G - 1}, "
                                                     f"kv head 0 (float64 > {ref_mb:g} MB)",
            "whole": whole, "G": G}
    arrays = dict(x, ref_out=out, ref_dq=dq, ref_dk=dk, ref_dv=dv, meta=meta)
    if key_mask is not None:
        arrays["key_mask"] = key_mask
    save_npz(directory / f"{case_stem(mask, Tk)}.npz", arrays)
    return meta


# -- the command ------------------------------------------------------------------------

def _ints(flag: str, text: str) -> list[int]:
    try:
        vals = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise SystemExit(f"{flag}: expected positive integers separated by commas, got {text!r}")
    return vals


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numformer bench attention", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    a = p.add_argument
    a("--B", type=int, default=B, help="batch (default %(default)s)")
    a("--H", type=int, default=H, help="query heads (default %(default)s)")
    a("--kv-heads", type=int, default=None, help="key/value heads, dividing H (default H)")
    a("--D", type=int, default=D, help="head width (default %(default)s)")
    a("--T", default=",".join(map(str, DEFAULT_T)), help="key lengths Tk, comma-separated "
                                                         "(default %(default)s)")
    a("--Tq", type=int, default=None, help="queries per call (decode: 1 or a few, at the end "
                                           "of the keys); default Tq = T")
    a("--dtype", default="float32", choices=("float32", "float64"))
    a("--mask", default="none", help=f"masks, comma-separated, from {', '.join(MASKS)}")
    a("--causal", action="store_true", help="same as --mask causal")
    a("--pad-fraction", type=float, default=0.25, help="padding masks: fraction of each "
                                                       "sequence's keys that are padding")
    a("--passes", default="forward,forward+backward",
      help=f"passes, comma-separated, from {', '.join(PASSES)} (default %(default)s)")
    a("--impls", default=",".join(DEFAULT_IMPLS),
      help=f"built-in implementations, comma-separated, from {', '.join(BUILTINS)} "
           f"('' for none; default %(default)s)")
    a("--impl", action="append", default=[], metavar="SPEC",
      help="your kernel: pkg.mod:attention_forward, pkg.mod, or file.py:name (repeatable)")
    a("--threads", default="1,2", help="thread counts (a fresh process per implementation "
                                       "and count; default %(default)s)")
    a("--repeats", type=int, default=5, help="timed samples per case (default %(default)s)")
    a("--baseline", default=None, help="implementation the ratios divide by (default "
                                       "torch-flash if run, else the first)")
    a("--ref-mb", type=float, default=1024.0,
      help="the float64 reference covers the whole batch if its probabilities fit in this "
           "many MB, else batch row 0 and kv group 0; computed in query blocks within it")
    a("--mem-limit-mb", type=float, default=4096.0,
      help="skip numpy, torch-math and torch-eager where 4 score arrays pass this")
    a("--quick", action="store_true", help="unless given: B=4, T=64,256, 1 thread, 3 repeats; "
                                           "the numba JIT cache kept (< 1 minute)")
    a("--check-only", action="store_true", help="run the agreement checks only (1 process "
                                                "per implementation, first thread count)")
    a("--no-torch", action="store_true", help="numformer's and your implementations only")
    a("--name", default=None, help="results file name (default attention, or one naming "
                                   "the question)")
    a("--results", default=None, help="results folder (default benchmarks/results or "
                                      "$NUMFORMER_BENCH_RESULTS)")
    return p


def parse(argv: list) -> argparse.Namespace:
    """The options; ``--quick`` sets QUICK's values where the command line gives none."""
    p = parser()
    if "--quick" in argv:
        p.set_defaults(**QUICK)
    return p.parse_args(argv)


def question_of(args) -> dict:
    """The question as the JSON records it; bad flags are errors naming the flag."""
    Hkv = args.kv_heads or args.H
    for flag, v in (("--B", args.B), ("--H", args.H), ("--D", args.D), ("--kv-heads", Hkv),
                    ("--repeats", args.repeats)):
        if v < 1:
            raise SystemExit(f"{flag}: expected a positive integer, got {v}")
    if args.H % Hkv:
        raise SystemExit(f"--kv-heads: expected a divisor of --H {args.H}, got {Hkv}")
    masks = ["causal"] if args.causal and args.mask == "none" else \
        [m.strip() for m in args.mask.split(",") if m.strip()]
    passes = [s.strip() for s in args.passes.split(",") if s.strip()]
    for flag, got, allowed in (("--mask", masks, MASKS), ("--passes", passes, PASSES)):
        bad = [g for g in got if g not in allowed]
        if bad or not got:
            raise SystemExit(f"{flag}: expected names from {', '.join(allowed)}, got {bad or got}")
    if not 0.0 <= args.pad_fraction < 1.0:
        raise SystemExit(f"--pad-fraction: expected a fraction in [0, 1), got {args.pad_fraction}")
    Ts = _ints("--T", args.T)
    if args.Tq is not None and (args.Tq < 1 or args.Tq > min(Ts)):
        raise SystemExit(f"--Tq: expected 1 <= Tq <= the smallest --T ({min(Ts)}), got {args.Tq}")
    return dict(B=args.B, H=args.H, Hkv=Hkv, D=args.D, T=Ts, Tq=args.Tq, dtype=args.dtype,
                masks=masks, pad_fraction=args.pad_fraction, passes=passes,
                repeats=args.repeats)


def impls_of(args, has_torch: bool) -> list[dict]:
    """[{key, name, module, spec}] of the implementations asked for."""
    keys = [s.strip() for s in args.impls.split(",") if s.strip()]
    bad = [k for k in keys if k not in BUILTINS]
    if bad:
        raise SystemExit(f"--impls: unknown {bad}; choose from {', '.join(BUILTINS)}")
    out = []
    for k in keys:
        if k.startswith("torch") and not has_torch:
            print(f"{k}: torch (or benchmarks/twins) not available here: skipped", flush=True)
            continue
        out.append(dict(key=k, name=BUILTINS[k], module=TWIN if k.startswith("torch") else SELF,
                        spec=k))
    for spec in args.impl:
        if ":" not in spec and not spec.replace(".", "").replace("_", "").isalnum():
            raise SystemExit(f"--impl: expected pkg.mod, pkg.mod:function or file.py:function, "
                             f"got {spec!r}")
        out.append(dict(key="user", name=f"user {spec}", module=SELF, spec=spec))
    if not out:
        raise SystemExit("--impls/--impl: no implementation left to run")
    return out


def default_name(q: dict) -> str:
    base = dict(B=B, H=H, Hkv=H, D=D, Tq=None, dtype="float32", masks=["none"])
    if all(q[k] == v for k, v in base.items()):
        return NAME
    tag = f"B{q['B']}_H{q['H']}" + (f"kv{q['Hkv']}" if q["Hkv"] != q["H"] else "") + \
          f"_D{q['D']}" + (f"_Tq{q['Tq']}" if q["Tq"] else "") + f"_{q['dtype']}_" + \
          "_".join(m.replace("+", "-") for m in q["masks"])
    return f"{NAME}_{tag}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    q = question_of(args)
    from numformer.bench import attention_run as run
    from numformer.bench.harness import torch_importable, twins_root
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    has_torch = not args.no_torch and torch_importable() and twins_root() is not None
    impls = impls_of(args, has_torch)
    threads = _ints("--threads", args.threads)
    command = "numformer bench attention " + shlex.join(argv)
    with tempfile.TemporaryDirectory(prefix="numformer-bench-cases-") as tmp:
        print(f"inputs and the float64 reference for T = {q['T']}, masks {q['masks']} ...",
              flush=True)
        cases = [write_case(q, m, T, Path(tmp), args.ref_mb) for m in q["masks"] for T in q["T"]]
        doc = run.run_all(q, impls, threads, cases, Path(tmp), args, command)
    return run.finish(doc, args, args.name or default_name(q))


if __name__ == "__main__":
    sys.exit(main())
