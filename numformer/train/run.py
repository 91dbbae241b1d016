"""``train(cfg)``: the whole run behind ``numformer train``, usable from Python.

    from numformer.train import TrainConfig, train
    result = train(TrainConfig(task="mlm", epochs=2, out="runs/mlm"))
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from numformer.train.config import TrainConfig
from numformer.train.loop import Trainer
from numformer.train.tasks import make_task


def _setup_runtime(cfg: TrainConfig) -> None:
    import numformer
    from numformer import _runtime
    _runtime.tune()  # the process settings for speed (numformer/_runtime.py)
    if cfg.backend:
        numformer.set_backend(cfg.backend)
    if cfg.threads:
        from numformer.kernels import numba_available
        if numba_available() and numformer.get_backend() == "numba":
            from numformer.kernels._jit import set_num_threads
            set_num_threads(cfg.threads)


def train(cfg: TrainConfig, resume: bool | str = False, log=print) -> dict:
    """Train, evaluate, write the outputs; returns a summary dict (metrics and files)."""
    _setup_runtime(cfg)
    t0 = time.perf_counter()
    task = make_task(cfg, log=log)
    trainer = Trainer(task, cfg, log=log)
    if resume:
        trainer.resume(None if resume is True else resume)
    log(f"training {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch, batch "
        f"{cfg.batch_size}), backend {_backend()}")
    metrics = trainer.fit()
    out = Path(cfg.out)
    from numformer.train import outputs
    files = {"checkpoint": str(trainer.last_checkpoint)}
    if trainer.best is not None:
        files["best"] = str(trainer.best_path)
    hist = trainer.state.history
    (out / "history.json").write_text(json.dumps(hist))
    files["history"] = str(out / "history.json")
    files["curves"] = str(outputs.plot_curves(hist, out / "curves.png", title=f"{cfg.task}"))
    files.update(task.report(out, log=log))
    elapsed = time.perf_counter() - t0
    summary = {"metrics": metrics, "files": files, "steps": trainer.state.step,
               "best": trainer.best,
               "train_seconds": trainer.state.seconds, "total_seconds": elapsed}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"done in {elapsed:.0f} s ({trainer.state.seconds:.0f} s training). Outputs in {out}/:")
    for k, v in files.items():
        log(f"  {k:>18}: {v}")
    return summary


def _backend() -> str:
    import numformer
    return numformer.get_backend()
