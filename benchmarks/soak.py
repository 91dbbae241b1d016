"""Kill soak: a small training run killed with SIGKILL at random moments, resumed
each time, must end bit-equal to the same run never interrupted.

A correctness soak, not a timing benchmark. It runs ``numformer train mlm``
(a tiny model: dim 32, 2 layers, on 600 lines of the embedded Europarl,
dropout 0.1 so the dropout and masking streams are exercised) in a child
process, first uninterrupted (the reference), then again in a fresh folder,
killing it with SIGKILL ``--kills`` times and restarting it with ``--resume``
each time (fresh, when no checkpoint was written yet). Every child uses one
thread (``--threads 1``, OMP/OpenBLAS/MKL/Numba at 1) and the same backend, so
resumption is expected to continue exactly.

The moments are seeded: each kill is either during start-up (import, data,
kernels: a random time before the first step, 15% of kills) or a random
time after the child reports a random target step (up to 3 steps' time later,
so some land in an evaluation or a checkpoint write). The child reports
``@step N`` after each step (a wrapper around ``Trainer.train_step``; the run
is otherwise the CLI's).

Reported (printed, and written to ``benchmarks/results/soak.json``): kills,
failed resumes (a resumed child that ends with an error, or whose first
step is not the one after its checkpoint), steps lost beyond the last
checkpoint (summed over kills: the last step a child reported minus the
checkpoint's), temporary files found after the kills and left over after
the restarts and at the end, and the final max abs difference of the weights
and optimizer state against the reference (0.0 and identical loss curves:
bit-equal).

    python benchmarks/soak.py                      # 20 kills, seed 0, 300 steps
    python benchmarks/soak.py --kills 5 --steps 100 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from numformer.train.checkpoint import load_checkpoint, temporaries  # noqa: E402

DRIVER = """
import sys
from numformer.train.loop import Trainer
step = Trainer.train_step
def train_step(self, batch):
    out = step(self, batch)
    print(f"@step {self.state.step}", flush=True)
    return out
Trainer.train_step = train_step
from numformer.cli import main
sys.exit(main(sys.argv[1:]))
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
           NUMBA_NUM_THREADS="1", NUMBA_THREADING_LAYER=os.environ.get("NUMBA_THREADING_LAYER",
                                                                        "omp"))


def train_args(steps: int, eval_every: int) -> list[str]:
    return ["train", "mlm", "--limit", "600", "--dim", "32", "--n-heads", "2", "--n-layers", "2",
            "--d-ff", "64", "--batch-size", "16", "--max-steps", str(steps), "--eval-every",
            str(eval_every), "--warmup", "10", "--dropout", "0.1", "--no-progress",
            "--threads", "1"]


class Child:
    """One ``numformer train`` process; a thread collects its "@step N" lines."""

    def __init__(self, args: list[str], log_path: Path):
        self.t0 = time.monotonic()
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=ENV,
                                     cwd=REPO)
        self.steps: list[tuple[float, int]] = []  # (seconds since start, step)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("@step "):
                self.steps.append((time.monotonic() - self.t0, int(line.split()[1])))
            else:
                self.lines.append(line.rstrip("\n"))

    @property
    def last_step(self) -> int | None:
        return self.steps[-1][1] if self.steps else None

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.log.close()
        return rc

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(60)


def saved_step(out: Path) -> int | None:
    ck = out / "checkpoint.npz"
    return load_checkpoint(ck)["meta"]["state"]["step"] if ck.is_file() else None


def plan_kills(rng, n: int, steps: int, startup_s: float, step_s: float) -> list[dict]:
    """Sorted target steps (or start-up moments) and delays, seeded."""
    targets = np.sort(rng.integers(1, steps, n))
    plan = []
    for k in targets:
        if rng.random() < 0.15:
            plan.append({"kind": "startup", "delay_s": float(rng.uniform(0.0, startup_s))})
        else:
            plan.append({"kind": "step", "step": int(k),
                         "delay_s": float(rng.uniform(0.0, 3.0 * step_s))})
    return plan


def compare(ref: Path, got: Path) -> dict:
    a, b = load_checkpoint(ref / "checkpoint.npz"), load_checkpoint(got / "checkpoint.npz")
    diff, differing = 0.0, []
    for part in ("model", "optim"):
        for k, v in a[part].items():
            if not isinstance(v, np.ndarray):
                if v != b[part].get(k):
                    differing.append(f"{part}/{k}")
                continue
            w = b[part][k]
            if v.shape != w.shape:
                differing.append(f"{part}/{k}")
                continue
            d = float(np.max(np.abs(v.astype(np.float64) - w.astype(np.float64)))) if v.size else 0.0
            if d or not np.array_equal(v, w):
                differing.append(f"{part}/{k}")
            diff = max(diff, d)
    ha = json.loads((ref / "history.json").read_text())
    hb = json.loads((got / "history.json").read_text())
    return {"max_abs_diff": diff, "differing_tensors": differing,
            "train_loss_identical": ha["train_loss"] == hb["train_loss"],
            "eval_loss_identical": ha.get("eval_loss") == hb.get("eval_loss"),
            "steps": (a["meta"]["state"]["step"], b["meta"]["state"]["step"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "soak.json"))
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="numformer-soak-"))
    log = root / "children.log"
    cmd_args = train_args(args.steps, args.eval_every)
    try:
        # warm-up: compile (or load) the kernels once, outside the measured runs
        Child([*train_args(2, 1), "--out", str(root / "warmup")], log).wait(900)
        ref_out = root / "reference"
        ref = Child([*cmd_args, "--out", str(ref_out)], log)
        if ref.wait(900) != 0:
            print(f"soak: the reference run failed; see {log}", file=sys.stderr)
            return 1
        startup_s = ref.steps[0][0]
        step_s = (ref.steps[-1][0] - ref.steps[0][0]) / max(1, len(ref.steps) - 1)
        rng = np.random.default_rng(args.seed)
        plan = plan_kills(rng, args.kills, args.steps, startup_s, step_s)

        out = root / "killed"
        events, failed, lost, found_tmp, left_after_restart = [], 0, 0, 0, 0
        starts = 0
        for kill in [*plan, None]:
            before = saved_step(out)
            resume = before is not None
            pending_tmp = [p.name for n in ("checkpoint.npz", "best.npz")
                           for p in temporaries(out, n)]
            child = Child([*cmd_args, "--out", str(out), *(["--resume"] if resume else [])], log)
            starts += 1
            if kill is None:
                rc = child.wait(900)
            else:
                deadline = time.monotonic() + 600
                if kill["kind"] == "startup":
                    time.sleep(kill["delay_s"])
                else:
                    while (child.last_step or -1) < kill["step"] and child.proc.poll() is None \
                            and time.monotonic() < deadline:
                        time.sleep(0.002)
                    time.sleep(kill["delay_s"])
                rc = child.kill()
            first = child.steps[0][1] if child.steps else None
            # a resumed child continues at the step after its checkpoint; a child that
            # ended on its own must have ended well (rc -9 is our kill)
            bad = (rc not in (0, -signal.SIGKILL)) or \
                (first is not None and first != (before or 0) + 1)
            failed += bool(bad and resume)
            after = saved_step(out)
            reached = child.last_step if child.last_step is not None else (before or 0)
            step_lost = max(0, reached - (after or 0)) if kill is not None else 0
            lost += step_lost
            tmp_now = [p.name for n in ("checkpoint.npz", "best.npz") for p in temporaries(out, n)]
            found_tmp += len(tmp_now) if kill is not None else 0
            left_after_restart += len(set(pending_tmp) & set(tmp_now))
            events.append({"start": starts, "resumed_from": before, "first_step": first,
                           "reached": reached, "checkpoint_after": after, "steps_lost": step_lost,
                           "rc": rc, "kill": kill, "temporaries_after": tmp_now,
                           "failed": bool(bad)})
            if kill is None and rc != 0:
                print(f"soak: the last child ended with {rc}; see {log}", file=sys.stderr)
        left_at_end = [p.name for n in ("checkpoint.npz", "best.npz") for p in temporaries(out, n)]
        result = compare(ref_out, out)
        kills = sum(1 for e in events if e["kill"] is not None and e["rc"] == -signal.SIGKILL)
        import numformer
        summary = {
            "command": " ".join(["python benchmarks/soak.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "train_command": "numformer " + " ".join(cmd_args) + " --out DIR [--resume]",
            "seed": args.seed, "kills": kills, "starts": starts, "failed_resumes": failed,
            "steps_lost_beyond_last_checkpoint": lost,
            "temporaries_found_after_kills": found_tmp,
            "temporaries_left_after_restart": left_after_restart,
            "temporaries_left_at_end": len(left_at_end),
            "final_max_abs_diff": result["max_abs_diff"],
            "bit_equal": (result["max_abs_diff"] == 0.0 and not result["differing_tensors"]
                          and result["train_loss_identical"]),
            "comparison": result,
            "reference_startup_s": round(startup_s, 3), "reference_step_ms": round(1e3 * step_s, 3),
            "events": events,
            "machine": {"python": platform.python_version(), "numpy": np.__version__,
                        "numformer": numformer.__version__, "threads": 1,
                        "backend": os.environ.get("NUMFORMER_BACKEND", "numba (default)"),
                        "load_average": list(os.getloadavg())},
            "seconds": round(time.monotonic() - t_start, 1),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"kill soak: {summary['train_command']}")
        print(f"  kills (SIGKILL)                     {kills} over {starts} starts")
        print(f"  failed resumes                      {failed}")
        print(f"  steps lost beyond last checkpoint   {lost} (sum; checkpoints every "
              f"{args.eval_every} steps)")
        print(f"  temporary files after kills         {found_tmp} found, "
              f"{left_after_restart} left after the restart, {len(left_at_end)} at the end")
        print(f"  final max abs diff vs uninterrupted {result['max_abs_diff']:.3g} "
              f"({'bit-equal' if summary['bit_equal'] else 'DIFFERENT: ' + str(result)})")
        print(f"  {summary['seconds']} s; written to {args.json}")
        return 0 if summary["bit_equal"] and not failed else 1
    finally:
        if args.keep:
            print(f"run folders kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
