"""Data-parallel training over MPI: tokens per second of one training step on
1 process x 1 thread, 1 process x 2 threads and 2 ranks x 1 thread, the time
per step in communication, and the scaling efficiency.

The step is the train-step benchmark's (numformer/bench/train_step.py: its
``mini`` masked-LM and ``charlm`` causal LM, their initial weights and global
batch of B=32, AdamW, dropout 0.1 unless ``--dropout``) driven through
``numformer.distributed.DataParallel``: each rank runs its rows of the same
global batch, one Allreduce of the flat gradient buffer per step.

Checked before it is timed: every layout's losses over the timed steps agree
with 1 process x 1 thread's within 1e-5 relative (float32; the same masks,
the same mean), else the row is marked FAILED and no ratio is given.

Measured per layout, in a fresh process (or ``mpiexec -n 2`` job) with every
thread pool pinned: the median step time over ``--steps`` steps after
``--warmup`` (with min and max), tokens/s = B*T / median, the time of the
step spent in the reduction (Allreduce, waiting for the slower rank
included), and that of a bare Allreduce of the same buffer after a barrier
(the transfer alone). Scaling efficiency = tokens/s(2 ranks x 1 thread) /
(2 x tokens/s(1 process x 1 thread)).

    python benchmarks/data_parallel.py                        # mini and charlm
    python benchmarks/data_parallel.py --configs charlm --steps 30
    python benchmarks/data_parallel.py --tiny --steps 3 --warmup 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYOUTS = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)
CHECK_RTOL = 1e-5


def _mpiexec() -> str | None:
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.is_file() else shutil.which("mpiexec")


# the child: one layout ------------------------------------------------------------

class _Task:
    """The train-step benchmark's batch as a task numformer.distributed can cut."""

    def __init__(self, model, c: dict):
        from numformer import nn
        self.model, self.c = model, c
        self.loss = nn.CrossEntropyLoss()

    def loss_and_backward(self, b, weight: float = 1.0):
        if self.c["task"] == "mlm":
            logits = self.model(b.ids, None if b.key_mask.all() else b.key_mask, b.positions)
            tokens = int(b.key_mask.sum())
        else:
            x, _ = b
            logits, tokens = self.model(x), x.size
        loss = float(self.loss(logits, b.targets if self.c["task"] == "mlm" else b[1]))
        self.model.backward(self.loss.backward(weight))
        return loss, tokens


def child(args) -> dict:
    from numformer.bench import harness
    harness.pin_threads(args.threads)
    import numpy as np

    from numformer import distributed as dist
    from numformer import optim
    from numformer.bench.train_step import ADAMW, CONFIGS, _model, _numba_threads, make_batch
    from numformer.data.masking import MLMBatch
    _numba_threads(args.threads)
    c = dict(CONFIGS[args.config])
    if args.tiny:
        c.update(T=16, B=8, L=1)
    w = dist.world()
    model = _model(c, args.dropout)
    opt = optim.AdamW(model, lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
                      weight_decay=ADAMW["weight_decay"], no_decay="auto")
    raw = make_batch(c)
    batch = (MLMBatch(raw["ids"], raw["key_mask"], raw["positions"], raw["targets"])
             if c["task"] == "mlm" else (raw["ids"], raw["targets"]))
    task = _Task(model, c)
    dp = dist.DataParallel(model, grad_accum=1, w=w)
    dp.start()
    if dp.grads is None:
        dp.grads = dist.GradBuffer(model.parameters())
    step_s, comm_s, losses = [], [], []
    for step in range(args.warmup + args.steps):
        w.barrier()
        t0, c0 = time.perf_counter(), dp.comm_seconds
        model.zero_grad()

        def reseed(s=step):
            model.seed((0, s))
        reseed()
        loss, _ = (dp.loss_and_backward(task, batch, reseed) if w.size > 1
                   else task.loss_and_backward(batch))
        opt.step()
        if step >= args.warmup:
            step_s.append(time.perf_counter() - t0)
            comm_s.append(dp.comm_seconds - c0)
            losses.append(loss)
    bare = []
    for _ in range(max(3, args.steps // 2)):  # the transfer alone
        w.barrier()
        t0 = time.perf_counter()
        w.allreduce_(dp.grads.flat)
        bare.append(time.perf_counter() - t0)
    out = {"config": args.config, "c": c, "ranks": w.size, "threads": args.threads,
           "step": harness.spread(step_s), "comm": harness.spread(comm_s) if w.size > 1 else None,
           "bare_allreduce": harness.spread(bare) if w.size > 1 else None,
           "grad_bytes": int(dp.grads.nbytes), "parameters": int(model.num_parameters()),
           "losses": losses, "tokens_per_step": c["B"] * c["T"],
           "machine": harness.machine_info(args.threads)}
    if w.is_root:
        harness.write_atomic(Path(args.out), json.dumps(out))
    return out


# the parent --------------------------------------------------------------------------

def run_layout(config: str, ranks: int, threads: int, args, tmp: Path) -> dict:
    from numformer.bench import harness
    out = tmp / f"{config}-{ranks}x{threads}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--config", config,
           "--threads", str(threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--dropout", str(args.dropout), "--out", str(out)] + (["--tiny"] if args.tiny else [])
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    env = harness.child_env(threads)
    env["NUMFORMER_MPI"] = "1" if ranks > 1 else "0"
    rc = subprocess.run(cmd, env=env, timeout=args.timeout).returncode
    if rc or not out.is_file():
        raise RuntimeError(f"layout {ranks} x {threads} of {config} failed (exit code {rc}): "
                           f"{' '.join(cmd)}")
    return json.loads(out.read_text())


def report(rows: list[dict]) -> str:
    import numpy as np
    lines = ["| config | ranks x threads | ms/step [min-max] | tokens/s | comm ms/step "
             "(bare Allreduce) | vs 1x1 | check |", "|---|---|---|---|---|---|---|"]
    for config in dict.fromkeys(r["config"] for r in rows):
        rs = [r for r in rows if r["config"] == config]
        base = next(r for r in rs if (r["ranks"], r["threads"]) == (1, 1))
        for r in rs:
            rel = (np.abs(np.subtract(r["losses"], base["losses"]))
                   / np.abs(base["losses"])).max()
            r["check_max_rel"] = float(rel)
            r["check_ok"] = bool(rel <= CHECK_RTOL)
            r["tokens_per_s"] = r["tokens_per_step"] / (r["step"]["ms"] * 1e-3)
            comm = "-" if r["comm"] is None else \
                f"{r['comm']['ms']:.2f} ({r['bare_allreduce']['ms']:.2f})"
            ratio = r["tokens_per_s"] / base["tokens_per_s"]
            from numformer.bench.harness import fmt_spread
            lines.append(f"| {config} | {r['ranks']} x {r['threads']} | {fmt_spread(r['step'])} "
                         f"| {r['tokens_per_s']:.0f} | {comm} | "
                         f"{f'{ratio:.2f}x' if r['check_ok'] else '-'} | "
                         f"{'ok' if r['check_ok'] else 'FAILED'} ({rel:.1e}) |")
        two = next((r for r in rs if (r["ranks"], r["threads"]) == (2, 1)), None)
        thr = next((r for r in rs if (r["ranks"], r["threads"]) == (1, 2)), None)
        if two is not None and two["check_ok"]:
            eff = two["tokens_per_s"] / (2 * base["tokens_per_s"])
            vs = f", {two['tokens_per_s'] / thr['tokens_per_s']:.2f}x 1 process x 2 threads" \
                if thr is not None else ""
            lines.append(f"\n{config}: scaling efficiency of 2 ranks {eff:.0%}{vs}; "
                         f"{two['grad_bytes'] / 1e6:.2f} MB reduced per step "
                         f"({two['parameters']:,} parameters x 4 bytes)\n")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path | None:
    """Tokens/s of each layout, one group of bars per configuration."""
    from numformer.bench import harness
    plt = harness.pyplot_or_none()
    if plt is None:
        return None
    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, (ranks, threads) in enumerate(LAYOUTS):
        ys = [next((r["tokens_per_s"] for r in rows if r["config"] == c
                    and (r["ranks"], r["threads"]) == (ranks, threads)), 0) for c in configs]
        ax.bar([i + 0.27 * (j - 1) for i in range(len(configs))], ys, width=0.27,
               label=f"{ranks} process{'es' if ranks > 1 else ''} x {threads} thread"
                     f"{'s' if threads > 1 else ''}")
    ax.set_xticks(range(len(configs)), configs)
    ax.set_ylabel("tokens / s")
    ax.set_title("one training step, data parallel over MPI")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="mini,charlm")
    p.add_argument("--steps", type=int, default=20, help="timed steps per layout")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--tiny", action="store_true", help="shrunken configurations (a check)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per layout")
    p.add_argument("--json", default="", help="where the results go (default "
                                              "benchmarks/results/data_parallel.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if _mpiexec() is None:
        print("data_parallel: needs mpiexec and mpi4py (pip install mpi4py mpich)",
              file=sys.stderr)
        return 2
    from numformer.bench import harness
    load0 = harness.load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="numformer-dp-") as tmp:
        for config in args.configs.split(","):
            for ranks, threads in LAYOUTS:
                rows.append(run_layout(config, ranks, threads, args, Path(tmp)))
    table = report(rows)
    m = rows[0]["machine"]
    print(f"\n{harness.fmt_machine(m)}; load {harness.fmt_load([load0, harness.load_average()])}"
          f"; dropout {args.dropout}; {args.steps} steps after {args.warmup}"
          f"{'; TINY configurations' if args.tiny else ''}\n")
    print(table)
    path = Path(args.json) if args.json else harness.RESULTS / "data_parallel.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    harness.write_atomic(path, json.dumps({"rows": rows, "load": [load0,
                                                                  harness.load_average()],
                                           "tiny": args.tiny}, indent=1))
    png = plot(rows, path.with_suffix(".png"))
    print(f"\nresults: {path}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    sys.exit(main())
