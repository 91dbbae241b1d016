"""``train(cfg)``: the whole run behind ``numformer train``, usable from Python.

    from numformer.train import TrainConfig, train
    result = train(TrainConfig(task="mlm", epochs=2, out="runs/mlm"))
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from numformer import distributed as dist
from numformer.train import resume as resume_check
from numformer.train.checkpoint import load_checkpoint
from numformer.train.config import TrainConfig
from numformer.train.loop import Trainer, TrainingDiverged
from numformer.train.rundir import CHECKPOINT, open_run_folder
from numformer.train.task_base import tokenizer_from_meta
from numformer.train.tasks import make_task


def _setup_runtime(cfg: TrainConfig) -> None:
    import numformer
    from numformer import _runtime
    _runtime.tune()  # the process settings for speed (numformer/_runtime.py)
    if cfg.backend:
        numformer.set_backend(cfg.backend)
    threads = cfg.threads or dist.threads_per_rank()  # MPI ranks share the cores
    if threads:
        from numformer.kernels import numba_available
        if numba_available() and numformer.get_backend() == "numba":
            from numformer.kernels._jit import set_num_threads
            set_num_threads(threads)
        _runtime.limit_blas_threads(threads)  # NumPy's matrix products too


def train(cfg: TrainConfig, resume: bool | str = False, log=print) -> dict:
    """Train, evaluate, write the outputs; returns a summary dict (metrics and files).

    ``resume``: True continues from ``cfg.out``/checkpoint.npz, a path from that
    checkpoint. Before any data is loaded: ``cfg.out`` is checked (a writable
    folder), locked for the run's life (a second run into it gets
    ``RunLocked`` naming the holder's pid) and cleared of a killed write's
    temporaries; a new run into a folder holding a run's checkpoint is refused
    unless ``cfg.overwrite`` (``RunFolderError``); a resumed run must keep the
    checkpoint's data, seed and model settings (``ResumeMismatch``; see
    numformer.train.resume) and uses its tokenizer. All three are ValueErrors.

    An interrupted run (Ctrl-C or SIGTERM) saves its checkpoint, writes its
    outputs and returns: ``summary["interrupted"]`` is then "SIGINT" or
    "SIGTERM" (None for a run that ended by itself), so a caller can tell it
    from a finished run. ``summary["skipped_updates"]`` counts the updates
    skipped for non-finite gradients (``cfg.on_nonfinite="skip"``).

    Under ``mpiexec -n N`` the run is data-parallel (numformer.distributed):
    rank 0 holds the folder's lock and writes the outputs (the other ranks
    return a summary without files), logs come from rank 0, and an error on
    one rank ends every rank with its message.
    """
    w = dist.world()
    with dist.guard(w, agreed=(TrainingDiverged,)):  # one rank's error ends all
        return _train(cfg, resume, log if w.is_root else (lambda *a, **k: None), w)


def _train(cfg: TrainConfig, resume, log, w) -> dict:
    _setup_runtime(cfg)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if resume and cfg.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "give one of them")
    ck_path = (out / CHECKPOINT) if resume is True else Path(resume) if resume else None
    same = ck_path is not None and ck_path.resolve() == (out / CHECKPOINT).resolve()
    lock = (open_run_folder(out, fresh=not same, overwrite=cfg.overwrite, log=log)
            if w.is_root else dist.NoLock())
    try:
        tokenizer, ck = None, None
        if ck_path is not None:
            if not ck_path.is_file():
                raise FileNotFoundError(f"--resume: {ck_path}: no checkpoint to resume (a run "
                                        f"writes one at its first evaluation; start without "
                                        f"--resume, or give a checkpoint file)")
            ck = load_checkpoint(ck_path)
            for line in resume_check.compare(ck["meta"], cfg, ck_path):
                log(line)
            if "tokenizer" in ck["meta"]:
                tokenizer = tokenizer_from_meta(ck["meta"]["tokenizer"])
        task = make_task(cfg, log=log, tokenizer=tokenizer)
        trainer = Trainer(task, cfg, log=log, lock=lock)
        if ck is not None:
            trainer.resume(ck_path, checkpoint=ck, check=False)
        log(f"training {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch, batch "
            f"{cfg.batch_size}), backend {_backend()}"
            + (f", {w.size} MPI ranks" if w.size > 1 else ""))
        metrics = trainer.fit()
        if not w.is_root:
            return {"metrics": metrics, "files": {}, "steps": trainer.state.step,
                    "interrupted": trainer.interrupted, "rank": w.rank}
        return _outputs(cfg, task, trainer, metrics, t0, log)
    finally:
        lock.release()


def _outputs(cfg, task, trainer, metrics, t0, log) -> dict:
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
               "best": trainer.best, "interrupted": trainer.interrupted,
               "skipped_updates": len(trainer.skipped),
               "train_seconds": trainer.state.seconds, "total_seconds": elapsed}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    state = f"interrupted by {trainer.interrupted}" if trainer.interrupted else "done"
    log(f"{state} in {elapsed:.0f} s ({trainer.state.seconds:.0f} s training). Outputs in {out}/:")
    for k, v in files.items():
        log(f"  {k:>18}: {v}")
    return summary


def _backend() -> str:
    import numformer
    return numformer.get_backend()
