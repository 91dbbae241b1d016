"""Tokens per second of one training step (forward, backward, AdamW) for numformer
and for the same model and algorithm in PyTorch eager, on the CPU.

Configurations:
    article  masked-LM of the BERT-from-scratch article: V=40000, C=128, H=8,
             2 post-LN blocks, F=512, T=20, B=32, 15% of tokens masked
    mini     masked-LM: V=8000, C=128, H=4, 4 post-LN blocks, F=512, T=128, B=32
    charlm   character causal LM (numformer train lm's model): V=261, C=128, H=4,
             4 pre-LN blocks, F=512, T=128, B=32, loss at every position

How it is fair:
- The same work: the parent builds one case (the initial weights and the
  batch: token ids, key mask, masked positions, targets) and saves it as an
  .npz; both sides read it.
- The same model and algorithm, checked before timing with dropout 0: the
  loss, every parameter's gradient and every parameter after one AdamW step
  agree between numformer and the PyTorch twin within ``GATE_TOL``
  (float32); the max differences are printed and kept in the JSON.
- The competitor at its best and alone: the twin (benchmarks/twins/
  train_step.py, in the repository, not in the package) runs in a process of
  its own that never loads numformer's kernels or runtime settings
  (OMP_WAIT_POLICY, the allocator; its JSON holds that record and the parent
  refuses its timings otherwise), steps with ``torch.optim.AdamW(fused=True)``
  (the default for-loop AdamW is timed beside it), and gives SDPA
  ``attn_mask=None`` when nothing is padded (the backend it picks is recorded).
- numformer runs in a process of its own too, with its runtime tuning on, or
  off with ``--no-tune-runtime`` (``NUMFORMER_TUNE_RUNTIME=0``), to measure
  what the tuning is worth.
- Every time is the median of repeats with min, quartiles and max; the load
  average before and after, the BLAS of each side (threadpoolctl) and each
  side's own GEMM peak (np.matmul and torch.mm, 1024^3 float32, at the thread
  count) are reported; each side's % of peak uses its own peak.

    python benchmarks/train_step.py --config article --threads 1 --json out.json
    python benchmarks/train_step.py --config article --threads 2 --no-tune-runtime
    python benchmarks/train_step.py --config mini --dropout 0 --breakdown   # where the time goes
    python benchmarks/train_step.py --matrix                              # every configuration
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "article": dict(task="mlm", V=40000, C=128, H=8, L=2, F=512, T=20, B=32, norm_first=False),
    "mini": dict(task="mlm", V=8000, C=128, H=4, L=4, F=512, T=128, B=32, norm_first=False),
    "charlm": dict(task="lm", V=261, C=128, H=4, L=4, F=512, T=128, B=32, norm_first=True),
}
ADAMW = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
# The gate's AdamW: the same algorithm, settings that make one step well-conditioned
# and its parts visible. With eps=1e-8 the first step lr*g/(|g|+eps) of a gradient near
# 1e-8 swings with float32 noise in g; with eps=1e-4 a gradient difference d moves the
# step by at most lr*d/eps, and weight decay (lr*wd*p = 1e-4 for a LayerNorm gain) and
# the bias corrections show far above the tolerance.
GATE_ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.1)
TWIN = "benchmarks.twins.train_step"
SELF = "numformer.bench.train_step"
# The agreement gate, float32. Loss: relative. Gradients: per tensor, max |difference|
# over max |torch's gradient| (float32 sums over the batch). Parameters after one
# GATE_ADAMW step: absolute, 0.2% of its lr.
GATE_TOL = {"loss_rtol": 1e-5, "grad_rel": 1e-4, "param_atol": 2e-6}


def attention_flops(c: dict) -> float:
    """FLOPs of attention's products (S = QK^T and PV) in one step: forward, then
    twice that for the backward."""
    B, T, C, L = c["B"], c["T"], c["C"], c["L"]
    return 3.0 * B * T * L * 2 * 2 * T * C


def step_flops(c: dict, n_masked: int) -> float:
    """Matmul FLOPs of one step (dense layers, head, attention): forward, then twice
    that for the backward."""
    B, T, C, F, L, V = c["B"], c["T"], c["C"], c["F"], c["L"], c["V"]
    fwd = B * T * L * 2 * (3 * C * C + C * C + 2 * C * F)
    n_head = n_masked if c["task"] == "mlm" else B * T
    fwd += n_head * 2 * (C * V + (C * C if c["task"] == "mlm" else 0))
    return 3.0 * fwd + attention_flops(c)


def make_batch(c: dict, seed: int = 0) -> dict:
    """The batch of a case: ids, targets (and for the masked LM key_mask, positions)."""
    import numpy as np
    from numformer.data.masking import mask_tokens
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, c["V"], (c["B"], c["T"]))
    if c["task"] == "lm":
        return {"ids": ids, "targets": rng.integers(5, c["V"], (c["B"], c["T"]))}
    b = mask_tokens(ids, np.ones_like(ids, dtype=bool), rng, vocab_size=c["V"])
    return {"ids": b.ids, "key_mask": b.key_mask, "positions": b.positions,
            "targets": b.targets}


def _model(c: dict, dropout: float):
    from numformer import nn
    cfg = nn.ModelConfig(vocab_size=c["V"], dim=c["C"], n_heads=c["H"], n_layers=c["L"],
                         d_ff=c["F"], max_len=c["T"], dropout=dropout, norm_first=c["norm_first"],
                         activation="gelu", tie_weights=c["task"] == "mlm")
    return nn.MaskedLM(cfg, seed=0) if c["task"] == "mlm" else nn.CausalLM(cfg, seed=0)


def write_case(c: dict, path: Path) -> Path:
    """The initial weights (seed 0) and the batch, for both sides."""
    from numformer.bench.harness import save_npz
    arrays = {"w:" + k: v for k, v in _model(c, 0.0).state_dict().items()}
    arrays.update({"b:" + k: v for k, v in make_batch(c).items()})
    arrays["meta"] = {"config": c, "adamw": ADAMW, "adamw_check": GATE_ADAMW}
    return save_npz(path, arrays)


def numformer_build(case: dict, dropout: float, adamw: str = "adamw"):
    """numformer's model with the case's weights, its AdamW (settings ``meta[adamw]``)
    and a step closure."""
    from numformer import nn, optim
    c = case["meta"]["config"]
    model = _model(c, dropout)
    model.load_state_dict({k[2:]: v for k, v in case.items() if k.startswith("w:")})
    h = case["meta"][adamw]
    opt = optim.AdamW(model, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                      weight_decay=h["weight_decay"], no_decay="auto")
    loss_fn = nn.CrossEntropyLoss()
    km = case.get("b:key_mask")
    km = None if km is None or km.all() else km  # nothing padded: no mask (as the twin)
    args = (case["b:ids"], km, case["b:positions"]) if c["task"] == "mlm" else (case["b:ids"],)
    step_no = [0]

    def loss_and_backward():
        model.zero_grad()
        loss = loss_fn(model(*args), case["b:targets"])
        model.backward(loss_fn.backward())
        return float(loss)

    def step():
        model.seed((0, step_no[0]))
        step_no[0] += 1
        loss = loss_and_backward()
        opt.step()
        return loss
    return model, opt, step, loss_and_backward


def _numba_threads(threads: int) -> None:
    """numba's thread count for numformer's kernels (when they are the backend)."""
    import numformer
    from numformer.kernels import numba_available
    if numba_available() and numformer.get_backend() == "numba":
        from numformer.kernels._jit import set_num_threads
        set_num_threads(threads)


def _attention_path(case: dict) -> str:
    """Which attention numformer's model calls, and with which mask."""
    from numformer import kernels
    km = case.get("b:key_mask")
    mask = "key_mask=None" if km is None or km.all() else "key_mask"
    causal = ", causal" if case["meta"]["config"]["task"] == "lm" else ""
    return f"{kernels.op('attention').__name__}.mha_forward, {mask}{causal}"


def child_body(args) -> dict:
    """The numformer side in its own process: the gate's arrays, or the timing."""
    from numformer.bench.harness import load_average, load_npz, numpy_gemm_peak, save_npz, \
        time_call
    case = load_npz(args.case)
    if args.mode == "check":
        model, opt, _, loss_and_backward = numformer_build(case, 0.0, "adamw_check")
        out = {"loss": loss_and_backward()}
        out.update({f"grad:{n}": p.grad.copy() for n, p in model.named_parameters()})
        opt.step()
        out.update({f"param:{n}": p.value.copy() for n, p in model.named_parameters()})
        save_npz(args.arrays, out)
        return {}
    import numformer
    from numformer.bench.harness import blas_info, machine_info
    _numba_threads(args.threads)
    load_before = load_average()
    _, _, step, _ = numformer_build(case, args.dropout)
    t = time_call(step, repeats=args.repeats, warmup=3, min_time=0.0)
    info = machine_info(args.threads)
    info["blas"] = blas_info()
    return {"times": {"numformer": t}, "backend": numformer.get_backend(),
            "path": {"attention": _attention_path(case)}, "load": [load_before, load_average()],
            "gemm_peak": numpy_gemm_peak(), "machine": info}


def gate(nf: dict, tw: dict, tol: dict = GATE_TOL, label: str = "torch") -> dict:
    """Compare numformer's loss, gradients and parameters after one step (``nf``,
    arrays by name) with a twin's (``tw``); raise with the evidence beyond ``tol``.
    Returns the max differences (and the worst tensor of each kind)."""
    import numpy as np
    from numformer.testing import describe_difference
    diffs = {"loss": abs(float(nf["loss"]) - float(tw["loss"]))}
    if not diffs["loss"] <= tol["loss_rtol"] * max(1.0, abs(float(tw["loss"]))):
        raise AssertionError(f"{label}: loss {float(tw['loss'])!r} != numformer's "
                             f"{float(nf['loss'])!r}: not the same model")
    names = sorted(k for k in nf if k.startswith(("grad:", "param:")))
    missing = sorted(set(names) ^ {k for k in tw if k.startswith(("grad:", "param:"))})
    if missing:
        raise AssertionError(f"{label}: the parameters differ in name: {missing[:6]}")
    worst = {"grad": (0.0, None), "param": (0.0, None)}
    for k in names:
        a, b = np.asarray(nf[k], np.float64), np.asarray(tw[k], np.float64)
        if a.shape != b.shape:
            raise AssertionError(f"{label}: {k} has shape {b.shape}, numformer's {a.shape}")
        kind = k.split(":")[0]
        d = float(np.abs(a - b).max()) if a.size else 0.0
        if kind == "grad":
            scale = float(np.abs(b).max()) or 1.0
            bad, d = d > tol["grad_rel"] * scale, d / scale
            atol = tol["grad_rel"] * scale
        else:
            bad, atol = d > tol["param_atol"], tol["param_atol"]
        if bad:
            raise AssertionError(f"{label}: {k} disagrees with numformer's: "
                                 f"{describe_difference(b, a, 0.0, atol)}")
        if d >= worst[kind][0]:
            worst[kind] = (d, k.split(":", 1)[1])
    diffs.update({"grad_max_rel": worst["grad"][0], "grad_worst": worst["grad"][1],
                  "param_max_abs": worst["param"][0], "param_worst": worst["param"][1]})
    return diffs


def gate_twins(nf: dict, tw: dict) -> dict:
    """``gate`` for each torch AdamW (fused, for-loop) of the twin's arrays."""
    out = {"tolerance": GATE_TOL}
    for tag in ("fused", "for-loop"):
        twin = {k[len(tag) + 1:]: v for k, v in tw.items() if k.startswith(tag + ":")}
        out[f"torch {tag} AdamW"] = gate(nf, twin, label=f"torch ({tag} AdamW)")
    return out


def numformer_arrays(case_path: Path, tmp: Path, threads: int = 1) -> Path:
    """numformer's side of the gate, from a child of its own: the arrays' file."""
    from numformer.bench.harness import run_child
    path = tmp / "nf_check.npz"
    run_child(SELF, ["--case", case_path, "--mode", "check", "--arrays", path], threads)
    return path


def run_one(config: str, threads: int, dropout: float, repeats: int, tune_runtime: bool = True,
            with_torch: bool | None = None) -> dict:
    """One configuration at one thread count: gate (with torch), then each side timed
    in its own process."""
    from numformer.bench.harness import check_untouched, run_child, torch_importable, \
        twins_root
    c = CONFIGS[config]
    tokens = c["B"] * c["T"]
    if with_torch is None:
        with_torch = torch_importable() and twins_root() is not None
    result = {"config": config, **c, "dropout": dropout, "threads": threads,
              "tokens_per_step": tokens, "tune_runtime": tune_runtime, "repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="numformer-train-step-") as tmp:
        tmp = Path(tmp)
        case = write_case(c, tmp / "case.npz")
        tw = None
        if with_torch:  # the twin checks itself against numformer's arrays, then times
            tw = run_child(TWIN, ["--case", case, "--mode", "time", "--dropout", dropout,
                                  "--repeats", repeats,
                                  "--gate", numformer_arrays(case, tmp, threads)], threads)
            check_untouched(tw["runtime"], "the torch twin")
            result["check"] = tw["check"]
            print(f"{config}: same model and algorithm as torch (dropout 0): " + "; ".join(
                f"{k}: loss diff {v['loss']:.1e}, grads max rel {v['grad_max_rel']:.1e}, "
                f"params after a step max abs {v['param_max_abs']:.1e}"
                for k, v in result["check"].items() if k.startswith("torch ")), flush=True)
        nf = run_child(SELF, ["--case", case, "--mode", "time", "--dropout", dropout,
                              "--repeats", repeats], threads, tune_runtime=tune_runtime)
    masked = len(make_batch(c)["targets"]) if c["task"] == "mlm" else tokens
    flops = step_flops(c, masked)
    result.update(step_gflop=flops / 1e9, backend=nf["backend"], masked=masked)
    sides = {"numformer": nf} if tw is None else {"numformer": nf, "torch": tw}
    result["rows"] = {}
    for side, res in sides.items():
        peak = res["gemm_peak"]["gflops"]
        for impl, t in res["times"].items():
            result["rows"][impl] = dict(t, tokens_per_s=tokens / (t["ms"] * 1e-3),
                                        tokens_per_s_min=tokens / (t["max_ms"] * 1e-3),
                                        tokens_per_s_max=tokens / (t["min_ms"] * 1e-3),
                                        peak_fraction=flops / (t["ms"] * 1e-3) / 1e9 / peak,
                                        side=side)
        result[side] = {k: res[k] for k in ("load", "gemm_peak", "machine", "path", "runtime")}
    if tw is not None:
        best = "torch fused AdamW"
        result["ratio_numformer_over_torch"] = (result["rows"]["numformer"]["tokens_per_s"]
                                                / result["rows"][best]["tokens_per_s"])
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" in argv:  # a child of run_child
        from numformer.bench.harness import child_main

        def add(p):
            p.add_argument("--case", required=True)
            p.add_argument("--mode", choices=("check", "time"), required=True)
            p.add_argument("--arrays")
            p.add_argument("--dropout", type=float, default=0.1)
            p.add_argument("--repeats", type=int, default=7)
        return child_main(argv, child_body, add)
    from numformer.bench import train_step_report as report
    p = argparse.ArgumentParser(prog="numformer bench train_step",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=CONFIGS, default="article")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", metavar="FILE", help="write the result here")
    p.add_argument("--no-tune-runtime", action="store_true",
                   help="run numformer's child with NUMFORMER_TUNE_RUNTIME=0 (no "
                        "OMP_WAIT_POLICY=PASSIVE, no allocator tuning): what the tuning is worth")
    p.add_argument("--no-torch", action="store_true", help="numformer only")
    p.add_argument("--breakdown", action="store_true",
                   help="numformer's time per step in dense GEMMs, attention, other kernels "
                        "and the rest (cProfile), against the floor set by the step's matmul "
                        "FLOPs at the measured peak; with torch, also what 1.2x torch's "
                        "tokens/s leaves above that floor")
    p.add_argument("--matrix", action="store_true",
                   help="every configuration x dropout 0.1 and 0 x 1 and 2 threads; writes "
                        "train_step.json and train_step.md under the results folder")
    p.add_argument("--quick", action="store_true",
                   help="the article configuration, 1 thread, 3 repeats")
    args = p.parse_args(argv)
    with_torch = False if args.no_torch else None
    if args.quick:
        args.config, args.threads, args.repeats = "article", 1, 3
    if args.matrix:
        return report.run_matrix(args.repeats, not args.no_tune_runtime, with_torch)
    if args.breakdown:
        return report.run_breakdown(args, with_torch)
    r = run_one(args.config, args.threads, args.dropout, args.repeats,
                not args.no_tune_runtime, with_torch)
    print(report.line(r))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    sys.exit(main())
