"""The training loop shared by every task (masked-LM, classification, causal LM).

A task (see numformer.train.tasks) owns the model, the data and the
evaluation; this loop owns the optimizer, the schedule, clipping, progress,
checkpoints, resumption and the ways a run can end:

- Randomness is a function of (seed, epoch, step): the batch order of an
  epoch, the MLM masks of a batch and the dropout masks of a step are drawn
  from generators seeded with them. A checkpoint therefore restores every
  random stream by its counters, and ``resume=True`` continues exactly: the
  next step's loss equals that of a run that never stopped (same backend and
  thread count).
- A NaN or infinite loss stops the run with ``TrainingDiverged`` before the
  optimizer touches the weights; nothing is saved, so the last good
  checkpoint stays in place.
- Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and returns;
  a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

from numformer import optim
from numformer.train.checkpoint import load_checkpoint, save_checkpoint
from numformer.train.config import RunState, TrainConfig

CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"  # the weights where cfg.keep_best's metric was best (no optimizer state)


def lower_is_better(metric: str) -> bool:
    """Losses, perplexities and bits shrink as a model improves; accuracies grow."""
    return any(w in metric for w in ("loss", "perplexity", "bits"))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def make_optimizer(model, cfg: TrainConfig):
    if cfg.optimizer == "sgd":
        return optim.SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         no_decay="auto")
    cls = optim.AdamW if cfg.optimizer == "adamw" else optim.Adam
    return cls(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
               no_decay="auto")


class _StopFlag:
    """SIGINT sets a flag the loop reads after each step; a second one raises."""

    def __init__(self):
        self.set = False
        self._old = None

    def _handler(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Trainer:
    """Runs ``task`` under ``cfg``, writing into ``cfg.out``."""

    def __init__(self, task, cfg: TrainConfig, log=print):
        self.task = task
        self.cfg = cfg
        self.model = task.model
        self.out = Path(cfg.out)
        self.log = log
        self.opt = make_optimizer(self.model, cfg)
        self.state = RunState()
        self.steps_per_epoch = task.steps_per_epoch()
        # max_steps, when set, is the length of the run (as many epochs as it takes)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.schedule = optim.make_schedule(cfg.schedule, cfg.lr,
                                            warmup_steps=min(cfg.warmup, self.total_steps),
                                            total_steps=self.total_steps)
        self.last_checkpoint: Path | None = None
        # keep_best: {"metric", "value", "step", "epoch"} of the best evaluation so far
        self.best: dict | None = None
        if cfg.keep_best and cfg.keep_best not in task.metric_names():
            raise ValueError(f"keep_best: expected one of this task's metrics "
                             f"{task.metric_names()}, got {cfg.keep_best!r}")
        if cfg.keep_best.startswith("test_"):
            log(f"warning: --keep-best {cfg.keep_best} chooses the weights by the test split, "
                f"so the test figures it reports are optimistic; choose by a dev metric "
                f"where the dataset has one")

    # checkpoints -----------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    @property
    def best_path(self) -> Path:
        return self.out / BEST

    def _meta(self) -> dict:
        return {"task": self.cfg.task, "train_config": self.cfg.to_dict(),
                "model_config": self.task.model_config(), "model_class": type(self.model).__name__,
                "state": {"step": self.state.step, "epoch": self.state.epoch,
                          "batch": self.state.batch, "seconds": self.state.seconds},
                "history": self.state.history, "best": self.best,
                **self.task.checkpoint_meta()}

    def save(self) -> Path:
        self.last_checkpoint = save_checkpoint(self.checkpoint_path, self.model.state_dict(),
                                               self._meta(), self.opt.state_dict())
        return self.last_checkpoint

    def _track_best(self, metrics: dict) -> None:
        """After an evaluation: if cfg.keep_best's metric improved, write best.npz."""
        name = self.cfg.keep_best
        if not name:
            return
        value = float(metrics[name])
        if self.best is not None:
            best = self.best["value"]
            if not (value < best if lower_is_better(name) else value > best):
                return
        self.best = {"metric": name, "value": value, "step": self.state.step,
                     "epoch": self.state.epoch}
        save_checkpoint(self.best_path, self.model.state_dict(), self._meta())

    def restore_best(self) -> dict | None:
        """Put the best.npz weights back into the model and evaluate them (the
        history is left as it is). Returns their metrics, or None without a best."""
        if not self.cfg.keep_best or self.best is None:
            return None
        self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
        metrics = self.evaluate(record=False)
        b = self.best
        n = len(self.state.history.get(b["metric"], []))
        self.log(f"kept the weights of step {b['step']} (epoch {b['epoch']}): {b['metric']} "
                 f"{b['value']:.4g}, the best of {n} evaluations; the final report is theirs "
                 f"({self.best_path}; {self.checkpoint_path} holds the last step, for --resume)")
        return metrics

    def resume(self, path=None) -> None:
        """Load model, optimizer and counters from a checkpoint (default: out/checkpoint.npz)."""
        path = Path(path) if path else self.checkpoint_path
        ck = load_checkpoint(path)
        meta = ck["meta"]
        if meta.get("model_config") != self.task.model_config():
            raise ValueError(f"checkpoint {path}: its model configuration differs from this "
                             f"run's: {meta.get('model_config')} vs {self.task.model_config()}")
        self.model.load_state_dict(ck["model"])
        if ck["optim"] is None:
            raise ValueError(f"checkpoint {path}: holds no optimizer state; cannot resume")
        self.opt.load_state_dict(ck["optim"])
        s = meta["state"]
        self.state = RunState(step=s["step"], epoch=s["epoch"], batch=s["batch"],
                              seconds=s["seconds"], history=meta["history"])
        self.best = meta.get("best")
        self.last_checkpoint = path
        self.log(f"resumed from {path} at step {self.state.step} (epoch {self.state.epoch + 1}, "
                 f"batch {self.state.batch})")

    # evaluation --------------------------------------------------------------
    def evaluate(self, record: bool = True) -> dict:
        """The task's metrics in eval mode; ``record`` appends them to the history."""
        self.model.eval()
        try:
            metrics = self.task.evaluate()
        finally:
            self.model.train()
        if not record:
            return metrics
        h = self.state.history
        h["eval_step"].append(self.state.step)
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                h.setdefault(k, []).append(float(v))
        return metrics

    # the loop ----------------------------------------------------------------
    def train_step(self, batch) -> tuple[float, int]:
        """One step: forward and backward, divergence check, clipping, schedule, update."""
        cfg, st = self.cfg, self.state
        self.model.train()
        self.model.seed((cfg.seed, st.step))
        self.model.zero_grad()
        loss, n_tokens = self.task.loss_and_backward(batch)
        if not math.isfinite(loss):
            where = (f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint
                     else "no checkpoint was written yet")
            raise TrainingDiverged(f"loss became {loss} at step {st.step + 1} (epoch "
                                   f"{st.epoch + 1}); training stopped before the update; {where}")
        if cfg.clip:
            optim.clip_grad_norm(self.model, cfg.clip)
        self.schedule.apply(self.opt)
        self.opt.step()
        st.step += 1
        st.history["step"].append(st.step)
        st.history["train_loss"].append(loss)
        return loss, n_tokens

    def fit(self) -> dict:
        """Train until the step budget, the time limit or Ctrl-C; returns the last metrics."""
        cfg, st = self.cfg, self.state
        self.out.mkdir(parents=True, exist_ok=True)
        if st.step == 0:  # a fresh run: a best.npz left by an earlier run in out/ is not ours
            self.best_path.unlink(missing_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        bar = _progress(cfg.progress, self.total_steps, st.step)
        metrics: dict = {}
        stopped = None
        t_last = time.perf_counter()
        tokens = 0
        with _StopFlag() as stop:
            try:
                while st.step < self.total_steps and stopped is None:
                    batches = self.task.train_batches(st.epoch)
                    while st.batch < len(batches) and st.step < self.total_steps:
                        loss, n = self.train_step(batches[st.batch])
                        st.batch += 1
                        now = time.perf_counter()
                        st.seconds += now - t_last
                        t_last = now
                        tokens += n
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / max(st.seconds, 1e-9):.0f}",
                                            refresh=False)
                        if stop.set:
                            stopped = "interrupted (Ctrl-C)"
                            break
                        if cfg.time_limit and st.seconds >= 60 * cfg.time_limit:
                            stopped = f"time limit of {cfg.time_limit} min reached"
                            break
                        if cfg.eval_every and st.step % cfg.eval_every == 0:
                            metrics = self._eval_and_save(bar)
                            t_last = time.perf_counter()
                    if st.batch >= len(batches):
                        st.epoch += 1
                        st.batch = 0
                        if not cfg.eval_every:
                            metrics = self._eval_and_save(bar)
                            t_last = time.perf_counter()
            finally:
                if bar is not None:
                    bar.close()
        if stopped is not None:
            self.log(f"stopped: {stopped} at step {st.step}")
            metrics = self._eval_and_save(None) if "time" in stopped else metrics
            if "interrupted" in stopped:
                self.save()
        elif not metrics or self.state.history["eval_step"][-1:] != [st.step]:
            metrics = self._eval_and_save(None)
        self.log(f"saved checkpoint {self.last_checkpoint}")
        if stopped is None or "time" in stopped:
            metrics = self.restore_best() or metrics
        return metrics

    def _eval_and_save(self, bar) -> dict:
        metrics = self.evaluate()
        self._track_best(metrics)
        self.save()
        line = f"step {self.state.step} epoch {self.state.epoch}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        (bar.write if bar is not None else self.log)(line)
        return metrics


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm
    # on a terminal: live; in a log file: a line every 30 s
    interval = 0.2 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.1,
                mininterval=interval)


