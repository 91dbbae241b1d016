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
- A finite loss with a NaN or infinite gradient: the global gradient norm
  (the one clipping computes; computed alone when clipping is off) is not
  finite. ``cfg.on_nonfinite == "stop"`` (the default) raises
  ``NonFiniteGradient`` naming the first parameter holding one and the step,
  before the update, nothing saved; ``"skip"`` skips that update (the step
  and its batch count, the weights and the optimizer state stay as they
  were), logs it and counts it (``Trainer.skipped``, saved in checkpoints).
  A checkpoint holding a non-finite value is never written: save_checkpoint
  refuses, and the loop raises ``TrainingDiverged`` naming the tensor.
- Ctrl-C (SIGINT) and SIGTERM (what schedulers and containers send) finish
  the current step, save a checkpoint and return; ``Trainer.interrupted``
  then names the signal ("SIGINT" or "SIGTERM"; None for a run that ended by
  itself), as does ``train()``'s summary["interrupted"]; ``numformer train``
  exits with 130 or 143 after saving. A second Ctrl-C interrupts at once
  (KeyboardInterrupt); a second SIGTERM ends the process at once.
- ``fit`` holds the run folder's lock (numformer.train.rundir) for its whole
  life and refuses a fresh run into a folder holding another run's checkpoint
  unless ``cfg.overwrite``; ``train()`` takes that lock before loading data.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from numformer import optim
from numformer.distributed import DataParallel
from numformer.optim.clip import first_nonfinite
from numformer.train import metrics as M
from numformer.train import resume as resume_check
from numformer.train.checkpoint import NonFiniteError, load_checkpoint, save_checkpoint
from numformer.train.config import RunState, TrainConfig
from numformer.train.interrupt import StopFlag
from numformer.train.progress import advance as _advance
from numformer.train.progress import progress_bar as _progress
from numformer.train.rundir import BEST, CHECKPOINT, open_run_folder

__all__ = ["Trainer", "TrainingDiverged", "NonFiniteGradient", "CHECKPOINT", "BEST",
           "make_optimizer", "lower_is_better"]


def lower_is_better(metric: str) -> bool:
    """Losses, perplexities and bits shrink as a model improves; accuracies grow."""
    return any(w in metric for w in ("loss", "perplexity", "bits"))


class TrainingDiverged(RuntimeError):
    """The loss (or the weights to be saved) became NaN or infinite."""


class NonFiniteGradient(TrainingDiverged):
    """A gradient held NaN or inf (with ``on_nonfinite="stop"``)."""


def make_optimizer(model, cfg: TrainConfig):
    if cfg.optimizer == "sgd":
        return optim.SGD(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         no_decay="auto")
    cls = optim.AdamW if cfg.optimizer == "adamw" else optim.Adam
    return cls(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
               no_decay="auto")


class Trainer:
    """Runs ``task`` under ``cfg``, writing into ``cfg.out``."""

    def __init__(self, task, cfg: TrainConfig, log=print, lock=None):
        """``lock``: the run folder's held RunLock (``train()`` takes it before
        loading data); without one, ``fit`` takes it."""
        self.task = task
        self.cfg = cfg
        self.model = task.model
        self.out = Path(cfg.out)
        self.dp = DataParallel(self.model, cfg.grad_accum, zero=cfg.zero)  # ranks, micro-batches
        self.log = log = log if self.dp.is_root else _quiet  # logs from rank 0 only
        self.opt = self.dp.optimizer(make_optimizer(self.model, cfg))  # ZeRO-1: sharded
        self.state = RunState()
        self.steps_per_epoch = task.steps_per_epoch()
        # max_steps, when set, is the length of the run (as many epochs as it takes)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.schedule = optim.make_schedule(cfg.schedule, cfg.lr,
                                            warmup_steps=min(cfg.warmup, self.total_steps),
                                            total_steps=self.total_steps)
        self.last_checkpoint: Path | None = None
        self.lock = lock
        self.resumed_from: Path | None = None
        self.skipped: list[int] = []  # steps whose update was skipped (on_nonfinite="skip")
        self.interrupted: str | None = None  # "SIGINT" | "SIGTERM" after an interrupted fit
        self._bar = None
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
                "history": self.state.history, "best": self.best, "skipped_updates": self.skipped,
                "world_size": self.dp.size,
                "paths": resume_check.absolute_paths(self.cfg),
                **self.task.checkpoint_meta()}

    def _write(self, path, with_optimizer: bool) -> Path:
        """save_checkpoint, with a refused non-finite tensor made a TrainingDiverged."""
        try:
            # rank 0 writes; the other ranks raise its error too
            return self.dp.root_only(save_checkpoint, path, self.model.state_dict(), self._meta(),
                                     self.opt.state_dict() if with_optimizer else None) or path
        except NonFiniteError as e:
            raise TrainingDiverged(f"after step {self.state.step}: {e}; "
                                   f"{self._last_good()}") from None

    def _last_good(self) -> str:
        return (f"last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint
                else "no checkpoint was written yet")

    def save(self) -> Path:
        self.last_checkpoint = self._write(self.checkpoint_path, with_optimizer=True)
        return self.last_checkpoint

    def _margin(self, name: str, value: float) -> float:
        """cfg.keep_margin standard errors of metric ``name`` at ``value`` on its split (0
        where the metric has no standard error: losses, perplexity)."""
        if not self.cfg.keep_margin:
            return 0.0
        count = getattr(self.task, "eval_count", None)
        se = M.standard_error(name, value, count(name.split("_", 1)[0]) if count else 0)
        return self.cfg.keep_margin * se if se else 0.0

    def _track_best(self, metrics: dict) -> None:
        """After an evaluation: write best.npz (the weights the run reports) when
        cfg.keep_best's metric is the best so far, or (cfg.keep_margin) is within the
        margin of the best: a later evaluation is kept unless it is worse by more than
        the split's sampling noise, so a small dev set's noise does not choose the
        weights. ``self.best`` holds the kept evaluation and the best value seen
        (``top``, at ``top_step``)."""
        name = self.cfg.keep_best
        if not name:
            return
        value = float(metrics[name])
        lower = lower_is_better(name)
        top, top_step = value, self.state.step
        if self.best is not None:
            top = self.best.get("top", self.best["value"])
            top_step = self.best.get("top_step", self.best["step"])
            better = value < top if lower else value > top
            margin = self._margin(name, top)
            near = margin > 0 and (value <= top + margin if lower else value >= top - margin)
            if not (better or near):
                return
            if better:
                top, top_step = value, self.state.step
        best = {"metric": name, "value": value, "step": self.state.step,
                "epoch": self.state.epoch, "top": top, "top_step": top_step}
        previous, self.best = self.best, best
        try:
            self._write(self.best_path, with_optimizer=False)
        except BaseException:
            self.best = previous
            raise

    def restore_best(self) -> dict | None:
        """Put the best.npz weights back into the model and evaluate them (the
        history is left as it is). Returns their metrics, or None without a best."""
        if not self.cfg.keep_best or self.best is None:
            return None
        b = self.best
        hist = self.state.history
        n = len(hist.get(b["metric"], []))
        top, top_step = b.get("top", b["value"]), b.get("top_step", b["step"])
        why = f"the best of {n} evaluations"
        if top_step != b["step"]:
            se = self._margin(b["metric"], top) / self.cfg.keep_margin
            why = (f"within {self.cfg.keep_margin:g} standard errors ({se:.2g} each) of the "
                   f"best, {top:.4g} at step {top_step}: the latest of {n} evaluations that "
                   f"close (--keep-margin)")
        last = hist.get("eval_step", [])[-1:] == [b["step"]] == [self.state.step]
        where = ("the last step's weights, also in " if last else "") + str(self.best_path)
        self.log(f"kept the weights of step {b['step']} (epoch {b['epoch']}): {b['metric']} "
                 f"{b['value']:.4g}, {why}; the final report is theirs ({where}; "
                 f"{self.checkpoint_path} holds the last step, for --resume)")
        if last:  # the model holds them already, and their metrics are the last ones
            return None
        self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
        return self.evaluate(record=False)

    def resume(self, path=None, checkpoint: dict | None = None, check: bool = True) -> None:
        """Load model, optimizer and counters from a checkpoint (default:
        out/checkpoint.npz; ``checkpoint``: that file already loaded).

        ``check``: compare the saved settings with this run's (see
        numformer.train.resume: data, seed, model settings refused, step budget
        and the like warned); ``train()`` has done it before loading the data.
        The task must use the checkpoint's tokenizer (``make_task(cfg,
        tokenizer=...)``): another vocabulary is refused.
        """
        path = Path(path) if path else self.checkpoint_path
        ck = checkpoint if checkpoint is not None else load_checkpoint(path)
        meta = ck["meta"]
        if check:
            for line in resume_check.compare(meta, self.cfg, path):
                self.log(line)
        tok = self.task.checkpoint_meta().get("tokenizer")
        if "tokenizer" in meta and tok is not None and meta["tokenizer"] != tok:
            raise resume_check.ResumeMismatch(
                f"--resume {path}: this run's tokenizer differs from the checkpoint's (a "
                f"vocabulary rebuilt from other data?); build the task with the checkpoint's "
                f"tokenizer: make_task(cfg, tokenizer=tokenizer_from_meta(meta['tokenizer']))")
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
        if self.best is not None and (self.best.get("metric") != self.cfg.keep_best
                                      or path.parent.resolve() != self.out.resolve()):
            self.log(f"--resume: the saved best ({self.best.get('metric')} at step "
                     f"{self.best.get('step')}) is not carried over (another --keep-best or "
                     f"another folder); the best is tracked afresh")
            self.best = None
        self.skipped = list(meta.get("skipped_updates", []))
        self.last_checkpoint = path
        self.resumed_from = path
        self.log(f"resumed from {path} at step {self.state.step} (epoch {self.state.epoch + 1}, "
                 f"batch {self.state.batch})")

    # evaluation --------------------------------------------------------------
    def evaluate(self, record: bool = True) -> dict:
        """The task's metrics in eval mode, keeping no cache (``no_grad``: the loss
        module is not part of the model); ``record`` appends them to the history."""
        from numformer.nn.module import no_grad
        self.model.eval()
        try:
            with no_grad():
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
        """One step: forward and backward, divergence check, clipping (whose global
        norm is the gradients' finiteness check), schedule, update."""
        cfg, st = self.cfg, self.state
        self.model.train()
        self.model.seed((cfg.seed, st.step))
        self.model.zero_grad()
        loss, n_tokens = self.dp.loss_and_backward(  # this rank's share, reduced over ranks
            self.task, batch, reseed=lambda: self.model.seed((cfg.seed, st.step)))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {st.step + 1} (epoch "
                                   f"{st.epoch + 1}); training stopped before the update; "
                                   f"{self._last_good()}")
        norm = self.dp.clip_grad_norm(cfg.clip)  # the global norm (ZeRO-1: over the shards)
        lr = 0.0  # the learning rate this step applied (0: its update was skipped)
        if math.isfinite(norm):
            lr = float(self.schedule.apply(self.opt))
            self.opt.step()
        else:
            self._nonfinite_gradient(norm)
        st.step += 1
        st.history["step"].append(st.step)
        st.history["train_loss"].append(loss)
        st.history.setdefault("lr", []).append(lr)  # (absent from older checkpoints' history)
        return loss, n_tokens

    def _nonfinite_gradient(self, norm: float) -> None:
        """Stop (NonFiniteGradient) or, with on_nonfinite="skip", log the skipped update."""
        st = self.state
        bad = first_nonfinite(self.model.named_parameters())
        what = (f"the gradient of {bad[0]} holds {bad[1]} NaN or infinite values of {bad[2]}"
                if bad else f"the gradient norm overflowed to {norm} (every element finite)")
        where = f"step {st.step + 1} (epoch {st.epoch + 1})"
        if self.cfg.on_nonfinite != "skip":
            raise NonFiniteGradient(f"non-finite gradient at {where}: {what}; training stopped "
                                    f"before the update; {self._last_good()} (--on-nonfinite "
                                    f"skip skips such updates instead)")
        self.skipped.append(st.step + 1)
        self._say(f"{where}: {what}; update skipped ({len(self.skipped)} skipped so far)")

    def _say(self, line: str) -> None:
        (self._bar.write if self._bar is not None else self.log)(line)

    def fit(self) -> dict:
        """Train until the step budget, the time limit, Ctrl-C or SIGTERM; returns the
        last metrics (``self.interrupted`` names the signal that stopped it)."""
        own_lock = self.lock is None and self.dp.is_root  # rank 0 holds the folder
        if own_lock:
            same = (self.resumed_from is not None
                    and self.resumed_from.resolve() == self.checkpoint_path.resolve())
            self.lock = open_run_folder(self.out, fresh=not same, overwrite=self.cfg.overwrite,
                                        log=self.log)
        try:
            with StopFlag() as stop:
                return self._fit(stop)
        finally:
            if own_lock:
                self.lock.release()
                self.lock = None

    def _fit(self, stop) -> dict:
        cfg, st = self.cfg, self.state
        self.interrupted = None
        self.dp.start()  # rank 0's weights on every rank
        if self.dp.is_root:
            (self.out / "train_config.json").write_text(
                json.dumps({**cfg.to_dict(), "world_size": self.dp.size}, indent=1))
        bar = self._bar = _progress(cfg.progress and self.dp.is_root, self.total_steps, st.step)
        metrics: dict = {}
        stopped = None
        t_last = time.perf_counter()
        tokens = 0
        try:
            while st.step < self.total_steps and stopped is None:
                batches = self.task.train_batches(st.epoch)
                while st.batch < len(batches) and st.step < self.total_steps:
                    loss, n = self.train_step(batches[st.batch])
                    st.batch += 1
                    now = time.perf_counter()
                    st.seconds += now - t_last
                    t_last = now
                    self.dp.agree(stop, st)  # the ranks stop together: signal, time limit
                    tokens += n
                    if bar is not None:
                        _advance(bar)  # the first step compiled: kept out of the rate
                        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / max(st.seconds, 1e-9):.0f}",
                                        refresh=False)
                    if stop.set:
                        self.interrupted = stop.set
                        stopped = "interrupted (" + ("Ctrl-C" if stop.set == "SIGINT"
                                                     else stop.set) + ")"
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
            self._bar = None
        if stopped is not None:
            self.log(f"stopped: {stopped} at step {st.step}")
            metrics = self._eval_and_save(None) if "time" in stopped else metrics
            if self.interrupted:
                self.save()
        elif not metrics or self.state.history["eval_step"][-1:] != [st.step]:
            metrics = self._eval_and_save(None)
        self.log(f"saved checkpoint {self.last_checkpoint}")
        if self.skipped:
            self.log(f"{len(self.skipped)} update(s) skipped for non-finite gradients, at steps "
                     f"{self.skipped[:10]}{' ...' if len(self.skipped) > 10 else ''}")
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


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0."""
