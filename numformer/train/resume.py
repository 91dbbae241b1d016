"""What ``--resume`` may change, and what it may not.

A resumed run continues the saved one: it reads the checkpoint's tokenizer
(the vocabulary is never rebuilt from the data) and compares every
TrainConfig setting with the one saved in the checkpoint:

REFUSED (``ResumeMismatch``, naming each differing setting, saved vs now):
the data and how it is cut and split (task, dataset, data, eval_data, train,
dev, test, format, header, text_column, label_column, text_pair_column, max_len, vocab_size, min_freq, eval_fraction, limit, mask_prob, batch_size:
they decide what a token id, an example and the saved batch index mean), the
model (dim, n_heads, n_layers, d_ff, dropout, norm_first, activation,
positional, pooling, tie_weights, init, arch,
n_kv_heads, lora_rank, lora_alpha), the optimizer (its saved state is
that optimizer's) and the seed (every random stream is a function of it).
Paths (data, eval_data, out) are compared as absolute paths, so the same file
named from another folder is the same data.

WARNED (one ``warning:`` line each; the run goes on): settings that change
how long or how the run continues, which a user may mean to change (a longer
run, a lower learning rate), at the price of no longer matching a run that
never stopped: epochs, max_steps, time_limit, eval_every, keep_best, keep_margin, lr,
weight_decay, beta1, beta2, momentum, warmup, schedule, clip,
label_smoothing, word_dropout; and backend, threads, grad_accum and zero (results equal a run
that never stopped only on the same backend, thread count and split of the
batch; the number of MPI ranks is free), and out (the checkpoint
continues in another folder).

FREE (silent): progress, overwrite, on_nonfinite; they change no number.

A setting missing from an older checkpoint counts as its default; a setting
in none of the lists is refused.
"""

from __future__ import annotations

import os

from numformer.train.config import TrainConfig

REFUSED = ("task", "dataset", "data", "eval_data", "max_len", "vocab_size", "min_freq",
           "eval_fraction", "limit", "mask_prob", "batch_size",
           "train", "dev", "test", "format", "header", "text_column", "label_column",
           "text_pair_column", "pair_swap",
           "dim", "n_heads", "n_layers", "d_ff", "dropout", "norm_first", "activation",
           "positional", "pooling", "tie_weights", "init", "arch", "n_kv_heads", "lora_rank",
           "lora_alpha", "optimizer", "seed", "regress_loss",
           "pair_encoder")
WARNED = ("epochs", "max_steps", "time_limit", "eval_every", "keep_best", "keep_margin", "lr",
          "weight_decay", "beta1", "beta2", "momentum", "warmup", "schedule", "clip",
          "label_smoothing", "word_dropout", "backend", "threads", "grad_accum", "zero", "out")
FREE = ("progress", "overwrite", "on_nonfinite")
PATHS = ("data", "eval_data", "out", "train", "dev", "test")  # compared as absolute paths


class ResumeMismatch(ValueError):
    """--resume with data, seed or model settings other than the checkpoint's."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def absolute_paths(cfg: TrainConfig) -> dict:
    """The absolute form of cfg's data paths, saved in checkpoints for the comparison."""
    return {k: os.path.abspath(getattr(cfg, k)) if getattr(cfg, k) else "" for k in PATHS}


def _same(name: str, saved, now, saved_abs: dict | None, now_abs: dict) -> bool:
    if name in PATHS and saved_abs and name in saved_abs:
        return saved_abs[name] == now_abs[name]
    return saved == now


def compare(meta: dict, cfg: TrainConfig, source) -> list[str]:
    """Compare the settings saved in a checkpoint's ``meta`` with ``cfg``: raise
    ResumeMismatch listing every refused difference; return the warning lines."""
    saved = meta.get("train_config") or {}
    defaults = TrainConfig().to_dict()
    now = cfg.to_dict()
    saved_abs = meta.get("paths")
    now_abs = absolute_paths(cfg)
    refused, warned = [], []
    auto = cfg.auto_fields()  # not compared: the task chooses them again from the same data
    for name, value in now.items():
        before = saved.get(name, defaults.get(name))
        if name == "task":
            before = meta.get("task", before)
        if name in FREE or name in auto or _same(name, before, value, saved_abs, now_abs):
            continue
        line = f"{flag(name)}: saved {before!r}, now {value!r}"
        (warned if name in WARNED else refused).append(line)
    if refused:
        raise ResumeMismatch(
            f"--resume {source}: the checkpoint was trained with other settings: "
            + "; ".join(refused) + ". A resumed run keeps its data, dataset, seed and model "
            "settings; start a new run to change them (--overwrite, or a new --out)")
    return [f"warning: --resume {source}: {line} (the run goes on with the new value)"
            for line in warned]
