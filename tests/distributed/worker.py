"""One rank of a data-parallel test run (launched by tests/distributed/test_mpi.py,
under ``mpiexec -n N`` or alone as one process).

    python tests/distributed/worker.py SPEC.json

SPEC: {"settings": {TrainConfig fields}, "dtype": "float32" | "float64",
"resume": bool, "result": "path prefix", "pid": bool, "fail": [rank, part]
(that rank raises at that part)}. Each rank writes
``<result>.rank<r>.json``: the world size, the train losses by step, a digest
of the final parameters (every byte), and what each of its parts held (the
loss count, whether a row was padded).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np


def main(spec_path: str) -> None:
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    spec = json.loads(Path(spec_path).read_text())
    from numformer import distributed as dist
    w = dist.world()
    result = spec["result"]
    if spec.get("pid"):
        Path(f"{result}.pid{w.rank}").write_text(str(os.getpid()))
    with dist.guard(w):
        from numformer.train import TrainConfig
        from numformer.train.loop import Trainer
        from numformer.train.tasks import make_task
        cfg = TrainConfig(**spec["settings"])
        quiet = (lambda *a, **k: None)
        tokenizer, ck = None, None
        if spec.get("resume"):
            from numformer.train.checkpoint import load_checkpoint
            from numformer.train.task_base import tokenizer_from_meta
            ck = load_checkpoint(Path(cfg.out) / "checkpoint.npz")
            tokenizer = tokenizer_from_meta(ck["meta"]["tokenizer"])
        task = make_task(cfg, log=quiet, tokenizer=tokenizer)
        if spec.get("dtype", "float32") != "float32":
            task.model.astype(spec["dtype"])
        parts = []
        inner = task.loss_and_backward

        def recorded(b, weight=1.0):
            if spec.get("fail") == [w.rank, len(parts)]:
                raise RuntimeError(f"a deliberate failure at part {len(parts)}")
            parts.append({"count": dist.loss_count(task, b),
                          "padded": bool(not np.all(_key_mask(b))), "weight": weight})
            return inner(b, weight=weight)
        task.loss_and_backward = recorded
        trainer = Trainer(task, cfg, log=quiet)
        if ck is not None:
            trainer.resume(checkpoint=ck)
        trainer.fit()
        h = hashlib.sha256()
        for name, p in trainer.model.named_parameters():
            h.update(name.encode())
            h.update(np.ascontiguousarray(p.value).tobytes())
        out = {"rank": w.rank, "size": w.size, "steps": trainer.state.history["step"],
               "losses": trainer.state.history["train_loss"], "digest": h.hexdigest(),
               "parts": parts}
        Path(f"{result}.rank{w.rank}.json").write_text(json.dumps(out))


def _key_mask(b):
    km = getattr(b, "key_mask", None)
    if km is None and isinstance(b, tuple) and len(b) == 3:
        km = b[1]
    return np.ones(1, bool) if km is None else km


if __name__ == "__main__":
    main(sys.argv[1])
