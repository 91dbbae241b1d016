"""Tokens per second of one training step (forward, backward, AdamW) for numformer
and for the same model and algorithm in PyTorch eager, on the CPU.

Configurations:
    article  masked-LM of the BERT-from-scratch article: V=40000, C=128, H=8,
             2 post-LN blocks, F=512, T=20, B=32, 15% of tokens masked
    mini     masked-LM: V=8000, C=128, H=4, 4 post-LN blocks, F=512, T=128, B=32
    charlm   character causal LM (numformer train lm's model): V=261, C=128, H=4,
             4 pre-LN blocks, F=512, T=128, B=32, loss at every position

Each implementation is timed in its own process (threads pinned before
imports): numba's OpenMP pool and torch's compete when both start in one.
The PyTorch model is written here with the same pieces (learned positions,
GELU, post-LN or pre-LN blocks, attention by scaled_dot_product_attention
without dropout on the probabilities, dropout after the attention and the
feed-forward output, the masked-LM head with a decoder tied to the
embedding, AdamW with weight decay on matrices only). Before timing, the
same weights and batch go through both and their losses must agree.

    python benchmarks/train_step.py --config article --threads 1 --json out.json
    python benchmarks/train_step.py --config mini --dropout 0 --breakdown   # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import sys

CONFIGS = {
    "article": dict(task="mlm", V=40000, C=128, H=8, L=2, F=512, T=20, B=32, norm_first=False),
    "mini": dict(task="mlm", V=8000, C=128, H=4, L=4, F=512, T=128, B=32, norm_first=False),
    "charlm": dict(task="lm", V=261, C=128, H=4, L=4, F=512, T=128, B=32, norm_first=True),
}


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


def matmul_peak_gflops() -> float:
    import numpy as np
    from numformer.bench.harness import time_call
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    t = time_call(lambda: a @ a, repeats=5)
    return 2 * 1024 ** 3 / (t["ms"] * 1e-3) / 1e9


def make_batch(c: dict, seed: int = 0):
    import numpy as np
    from numformer.data.masking import mask_tokens
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, c["V"], (c["B"], c["T"]))
    if c["task"] == "lm":
        return ids, rng.integers(5, c["V"], (c["B"], c["T"]))
    km = np.ones_like(ids, dtype=bool)
    return mask_tokens(ids, km, rng, vocab_size=c["V"])


def numformer_step(c: dict, dropout: float):
    """The numformer model, optimizer and a step closure returning the loss."""
    from numformer import nn, optim
    cfg = nn.ModelConfig(vocab_size=c["V"], dim=c["C"], n_heads=c["H"], n_layers=c["L"],
                         d_ff=c["F"], max_len=c["T"], dropout=dropout, norm_first=c["norm_first"],
                         activation="gelu", tie_weights=c["task"] == "mlm")
    model = nn.MaskedLM(cfg, seed=0) if c["task"] == "mlm" else nn.CausalLM(cfg, seed=0)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.AdamW(model, lr=1e-4, weight_decay=0.01, no_decay="auto")
    batch = make_batch(c)
    step_no = [0]

    def step():
        model.seed((0, step_no[0]))
        step_no[0] += 1
        model.zero_grad()
        if c["task"] == "mlm":
            loss = loss_fn(model(batch.ids, batch.key_mask, batch.positions), batch.targets)
        else:
            loss = loss_fn(model(batch[0]), batch[1])
        model.backward(loss_fn.backward())
        opt.step()
        return float(loss)
    return model, step, batch


def torch_model(c: dict, dropout: float, torch):
    nnt = torch.nn
    F = torch.nn.functional

    class Block(nnt.Module):
        def __init__(self):
            super().__init__()
            C = c["C"]
            self.qkv = nnt.Linear(C, 3 * C)
            self.proj = nnt.Linear(C, C)
            self.ln1 = nnt.LayerNorm(C)
            self.fc1 = nnt.Linear(C, c["F"])
            self.fc2 = nnt.Linear(c["F"], C)
            self.ln2 = nnt.LayerNorm(C)
            self.drop = nnt.Dropout(dropout)

        def attn(self, x, mask):
            B, T, C = x.shape
            H = c["H"]
            q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               is_causal=c["task"] == "lm")
            return self.drop(self.proj(o.transpose(1, 2).reshape(B, T, C)))

        def ffn(self, x):
            return self.drop(self.fc2(F.gelu(self.fc1(x))))

        def forward(self, x, mask):
            if c["norm_first"]:
                x = x + self.attn(self.ln1(x), mask)
                return x + self.ffn(self.ln2(x))
            x = self.ln1(x + self.attn(x, mask))
            return self.ln2(x + self.ffn(x))

    class Model(nnt.Module):
        def __init__(self):
            super().__init__()
            C, V = c["C"], c["V"]
            self.tok = nnt.Embedding(V, C)
            self.pos = nnt.Parameter(torch.zeros(c["T"], C))
            self.drop = nnt.Dropout(dropout)
            self.blocks = nnt.ModuleList(Block() for _ in range(c["L"]))
            self.final = nnt.LayerNorm(C) if c["norm_first"] else None
            if c["task"] == "mlm":
                self.dense = nnt.Linear(C, C)
                self.norm = nnt.LayerNorm(C)
                self.bias = nnt.Parameter(torch.zeros(V))
            else:
                self.head = nnt.Linear(C, V, bias=False)

        def forward(self, ids, mask=None, positions=None):
            x = self.drop(self.tok(ids) + self.pos[:ids.shape[1]])
            for b in self.blocks:
                x = b(x, mask)
            if self.final is not None:
                x = self.final(x)
            if c["task"] == "lm":
                return self.head(x)
            h = x.reshape(-1, x.shape[-1])[positions]
            return self.norm(F.gelu(self.dense(h))) @ self.tok.weight.T + self.bias

    return Model()


def copy_weights(nf_model, tm, c, torch):
    """numformer's weights into the torch model (torch Linear weights are (out, in))."""
    sd = {k: torch.tensor(v) for k, v in nf_model.state_dict().items()}
    with torch.no_grad():
        tm.tok.weight.copy_(sd["body.tok.weight"])
        tm.pos.copy_(sd["body.pos.weight"])
        for i, b in enumerate(tm.blocks):
            p = f"body.encoder.blocks.{i}."
            b.qkv.weight.copy_(sd[p + "attn.Wqkv"].T)
            b.qkv.bias.copy_(sd[p + "attn.bqkv"])
            b.proj.weight.copy_(sd[p + "attn.Wo"].T)
            b.proj.bias.copy_(sd[p + "attn.bo"])
            b.fc1.weight.copy_(sd[p + "ffn.fc1.weight"].T)
            b.fc1.bias.copy_(sd[p + "ffn.fc1.bias"])
            b.fc2.weight.copy_(sd[p + "ffn.fc2.weight"].T)
            b.fc2.bias.copy_(sd[p + "ffn.fc2.bias"])
            for ln in ("ln1", "ln2"):
                getattr(b, ln).weight.copy_(sd[p + ln + ".gamma"])
                getattr(b, ln).bias.copy_(sd[p + ln + ".beta"])
        if tm.final is not None:
            tm.final.weight.copy_(sd["body.encoder.final_norm.gamma"])
            tm.final.bias.copy_(sd["body.encoder.final_norm.beta"])
        if c["task"] == "mlm":
            tm.dense.weight.copy_(sd["head.dense.weight"].T)
            tm.dense.bias.copy_(sd["head.dense.bias"])
            tm.norm.weight.copy_(sd["head.norm.gamma"])
            tm.norm.bias.copy_(sd["head.norm.beta"])
            tm.bias.copy_(sd["head.decoder_bias"])
        else:
            tm.head.weight.copy_(sd["head.weight"].T)


def torch_step(c: dict, dropout: float, torch, nf_model, batch):
    tm = torch_model(c, dropout, torch)
    copy_weights(nf_model, tm, c, torch)
    decay = [p for p in tm.parameters() if p.dim() >= 2]
    no_decay = [p for p in tm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    F = torch.nn.functional
    if c["task"] == "mlm":
        ids = torch.tensor(batch.ids)
        mask = torch.tensor(batch.key_mask)[:, None, None, :]
        pos = torch.tensor(batch.positions)
        tgt = torch.tensor(batch.targets)
    else:
        ids, tgt = torch.tensor(batch[0]), torch.tensor(batch[1])

    def loss_only():
        if c["task"] == "mlm":
            return F.cross_entropy(tm(ids, mask, pos), tgt)
        return F.cross_entropy(tm(ids).reshape(-1, c["V"]), tgt.reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_only()
        loss.backward()
        opt.step()
        return loss.item()
    return tm, step, loss_only


def check_same_model(config: str) -> dict:
    """Same weights and batch through numformer and torch (dropout 0, eval): the
    losses must agree. Returns both."""
    import numformer
    torch = _torch()
    c = CONFIGS[config]
    model, _, batch = numformer_step(c, 0.0)
    _, _, t_loss = torch_step(c, 0.0, torch, model, batch)
    model.eval()
    lf = numformer.nn.CrossEntropyLoss()
    nf = float(lf(model(batch.ids, batch.key_mask, batch.positions), batch.targets)
               if c["task"] == "mlm" else lf(model(batch[0]), batch[1]))
    with torch.no_grad():
        tl = float(t_loss())
    if not abs(nf - tl) <= 1e-4 * max(1.0, abs(tl)):
        raise AssertionError(f"numformer loss {nf} != torch loss {tl}: not the same model")
    return {"numformer": nf, "torch": tl}


def _torch():
    from numformer.bench.harness import torch_or_none
    return torch_or_none()


def _numba_threads(threads: int) -> None:
    """numba's thread count for numformer's kernels (when they are the backend)."""
    import numformer
    from numformer.kernels import numba_available
    if numba_available() and numformer.get_backend() == "numba":
        from numformer.kernels._jit import set_num_threads
        set_num_threads(threads)


def time_impl(impl: str, config: str, threads: int, dropout: float, repeats: int) -> dict:
    """Median step time of one implementation (call in a fresh process: numba's
    OpenMP pool and torch's slow each other down when both start in one)."""
    from numformer.bench.harness import pin_threads, time_call
    pin_threads(threads)
    c = CONFIGS[config]
    import numformer
    model, nf_step, batch = numformer_step(c, dropout)
    if impl == "numformer":
        _numba_threads(threads)
        t = time_call(nf_step, repeats=repeats, warmup=3)
        return {"ms": t["ms"], "first_ms": t["first_ms"], "backend": numformer.get_backend(),
                "masked": int(len(batch.positions)) if c["task"] == "mlm" else 0,
                "matmul_peak_gflops": matmul_peak_gflops()}
    torch = _torch()
    tm, t_step, _ = torch_step(c, dropout, torch, model, batch)
    tm.train()
    t = time_call(t_step, repeats=repeats, warmup=3)
    return {"ms": t["ms"], "first_ms": t["first_ms"]}


def breakdown(config: str, threads: int, dropout: float, steps: int = 5) -> dict:
    """Where numformer's step spends its time: cProfile's own time per function over
    ``steps`` steps (after warm-up), summed into the dense layers' GEMMs (np.matmul
    through ops._alloc), the fused attention kernels (their block GEMMs included),
    the other Numba kernels, and the rest (NumPy calls and Python). Milliseconds
    per step; profiling adds a little to the rest.

    Against that, the floor: the step's matmul FLOPs (dense layers and attention)
    at the measured matmul peak, and how far the unprofiled step (median of
    ``steps``) is above it."""
    import cProfile
    import pstats

    c = CONFIGS[config]
    _numba_threads(threads)
    _, step, batch = numformer_step(c, dropout)
    from numformer.bench.harness import time_call
    unprofiled = time_call(step, repeats=steps, warmup=3)["ms"]
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
        elif file.endswith("kernels/attention.py") and func.endswith("_py"):
            key = "attention kernels"
        elif "/numformer/kernels/" in file and func.endswith("_py"):
            key = "other numba kernels"
        else:
            key = "rest (NumPy, Python)"
        parts[key] += tottime * 1e3 / steps
    total = sum(parts.values())
    masked = len(batch.positions) if c["task"] == "mlm" else 0
    flops = step_flops(c, masked)
    attn = attention_flops(c)
    dense_rate = (flops - attn) / (parts["dense GEMMs (np.matmul)"] * 1e-3) / 1e9
    peak = matmul_peak_gflops()
    floor = flops / (peak * 1e9) * 1e3
    return {"config": config, "threads": threads, "dropout": dropout, "steps": steps,
            "masked": masked,
            "ms_per_step": parts, "total_ms": total, "unprofiled_ms": unprofiled,
            "step_gflop": flops / 1e9, "attention_gflop": attn / 1e9,
            "dense_gemm_gflops": dense_rate,
            "matmul_peak_gflops": peak, "matmul_floor_ms": floor,
            "above_floor_ms": unprofiled - floor}


def budget_line(r: dict, torch_ms: float, target: float = 1.2) -> str:
    """What ``target`` x torch's tokens/s leaves for everything but the matmul FLOPs
    (run at the measured peak), against what numformer spends on it now."""
    need = torch_ms / target
    return (f"torch {torch_ms:.1f} ms per step: {target}x torch's tokens/s needs <= {need:.1f} ms, "
            f"i.e. <= {need - r['matmul_floor_ms']:.1f} ms above the matmul floor "
            f"(numformer now: {r['above_floor_ms']:.1f} ms above it)")


def _child(impl, config, threads, dropout, repeats) -> dict:
    import subprocess
    from numformer.bench.harness import THREAD_VARS
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    r = subprocess.run([sys.executable, "-m", "numformer.bench.train_step", "--impl", impl,
                        "--config", config, "--threads", str(threads), "--dropout", str(dropout),
                        "--repeats", str(repeats)], env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{impl} timing failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_one(config: str, threads: int, dropout: float, repeats: int) -> dict:
    from numformer.bench.harness import machine_info
    c = CONFIGS[config]
    tokens = c["B"] * c["T"]
    result = {"config": config, **c, "dropout": dropout, "threads": threads,
              "tokens_per_step": tokens}
    has_torch = _torch() is not None
    if has_torch:
        result["check_loss"] = check_same_model(config)
    nf = _child("numformer", config, threads, dropout, repeats)
    flops = step_flops(c, nf["masked"] or tokens)
    peak = nf["matmul_peak_gflops"]
    result.update({"backend": nf["backend"], "step_gflop": flops / 1e9, "matmul_peak_gflops": peak,
                   "numformer_ms": nf["ms"], "numformer_first_ms": nf["first_ms"],
                   "numformer_tokens_per_s": tokens / (nf["ms"] * 1e-3),
                   "numformer_peak_fraction": flops / (nf["ms"] * 1e-3) / 1e9 / peak})
    if has_torch:
        t = _child("torch", config, threads, dropout, repeats)
        result.update({"torch_ms": t["ms"], "torch_tokens_per_s": tokens / (t["ms"] * 1e-3),
                       "torch_peak_fraction": flops / (t["ms"] * 1e-3) / 1e9 / peak})
        result["ratio_numformer_over_torch"] = (result["numformer_tokens_per_s"]
                                                / result["torch_tokens_per_s"])
    result["machine"] = machine_info(threads)
    result["load_average"] = os.getloadavg()[0]
    return result


def run_matrix(repeats: int) -> int:
    from numformer.bench.harness import RESULTS, write_atomic
    rows = []
    for config in CONFIGS:
        for threads in (1, 2):
            for dropout in (0.1, 0.0):
                r = run_one(config, threads, dropout, repeats)
                print(_line(r), flush=True)
                rows.append(r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "train_step.json", json.dumps(rows, indent=1))
    m = rows[0]["machine"]
    lines = ["# Training step: numformer vs PyTorch eager (tokens/s)", "",
             f"cpu {m['cpu']}, {m['cores']} cores; numpy {m['numpy']}, numba {m.get('numba')}, "
             f"torch {m.get('torch', '-')}; backend {rows[0]['backend']}; medians of {repeats} "
             f"steps after 3 warm-up steps; each implementation in its own process", "",
             "`python benchmarks/train_step.py --matrix`", "",
             "| config | threads | dropout | numformer ms | numformer tok/s | torch ms | torch tok/s "
             "| numformer / torch | numformer % of matmul peak | torch % of peak | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['threads']} | {r['dropout']} | {r['numformer_ms']:.1f} | "
                     f"{r['numformer_tokens_per_s']:.0f} | {r.get('torch_ms', float('nan')):.1f} | "
                     f"{r.get('torch_tokens_per_s', float('nan')):.0f} | "
                     f"{r.get('ratio_numformer_over_torch', float('nan')):.2f}x | "
                     f"{100 * r['numformer_peak_fraction']:.0f}% | "
                     f"{100 * r.get('torch_peak_fraction', float('nan')):.0f}% | "
                     f"{r['load_average']:.1f} |")
    lines += ["", "Matmul peak: np.matmul float32 1024x1024x1024 at the same thread count. "
              "Configurations: " + "; ".join(f"{k}: {v}" for k, v in CONFIGS.items())]
    write_atomic(RESULTS / "train_step.md", "\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'train_step.md'}")
    return 0


def _line(r: dict) -> str:
    line = (f"{r['config']} dropout={r['dropout']} threads={r['threads']} "
            f"backend={r['backend']}: numformer {r['numformer_ms']:.1f} ms/step, "
            f"{r['numformer_tokens_per_s']:.0f} tok/s ({100 * r['numformer_peak_fraction']:.0f}% "
            f"of the {r['matmul_peak_gflops']:.0f} GFLOP/s matmul peak)")
    if "torch_ms" in r:
        line += (f"; torch {r['torch_ms']:.1f} ms/step, {r['torch_tokens_per_s']:.0f} tok/s "
                 f"({100 * r['torch_peak_fraction']:.0f}%); numformer/torch = "
                 f"{r['ratio_numformer_over_torch']:.2f}x")
    return line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=CONFIGS, default="article")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", metavar="FILE", help="write the result here")
    p.add_argument("--breakdown", action="store_true",
                   help="numformer's time per step in dense GEMMs, attention, other kernels "
                        "and the rest (cProfile), against the floor set by the step's matmul "
                        "FLOPs at the measured peak; with torch importable, also what 1.2x "
                        "torch's tokens/s leaves above that floor")
    p.add_argument("--impl", choices=("numformer", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--matrix", action="store_true",
                   help="every configuration x dropout 0.1 and 0 x 1 and 2 threads; writes "
                        "train_step.json and train_step.md under the results folder")
    args = p.parse_args(argv)
    if args.matrix:
        return run_matrix(args.repeats)
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    if args.breakdown:
        from numformer.bench.harness import pin_threads
        pin_threads(args.threads)  # before numpy's BLAS starts its threads
        r = breakdown(args.config, args.threads, args.dropout)
        print(f"{args.config} dropout={args.dropout} threads={args.threads}: "
              f"{r['total_ms']:.1f} ms per step (profiled) = " + ", ".join(
                  f"{k} {v:.1f}" for k, v in r["ms_per_step"].items()))
        print(f"dense GEMMs: {r['step_gflop'] - r['attention_gflop']:.2f} GFLOP at "
              f"{r['dense_gemm_gflops']:.0f} GFLOP/s; attention products: "
              f"{r['attention_gflop']:.2f} GFLOP")
        print(f"matmul FLOPs of the step {r['step_gflop']:.2f} GFLOP at the measured peak "
              f"{r['matmul_peak_gflops']:.0f} GFLOP/s: a floor of {r['matmul_floor_ms']:.1f} ms; "
              f"numformer's step (unprofiled) {r['unprofiled_ms']:.1f} ms is "
              f"{r['above_floor_ms']:.1f} ms above it")
        if _torch() is not None:  # torch in its own process, as in the timings
            r["torch_ms"] = _child("torch", args.config, args.threads, args.dropout,
                                   args.repeats)["ms"]
            print(budget_line(r, r["torch_ms"]))
        if args.json:
            from pathlib import Path
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(r, indent=1))
        return 0
    if args.impl:  # a timing child
        print(json.dumps(time_impl(args.impl, args.config, args.threads, args.dropout,
                                   args.repeats)))
        return 0
    r = run_one(args.config, args.threads, args.dropout, args.repeats)
    line = _line(r)
    print(line)
    if args.json:
        from pathlib import Path
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
