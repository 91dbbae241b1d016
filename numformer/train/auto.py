"""Defaults chosen from the data at hand (classify and regress).

A classify or regress run whose settings hold the "auto" values of
numformer.train.config.AUTO (the task's defaults: ``max_len 0``, ``epochs 0``,
``lr 0``, ``keep_best auto``) chooses them once its tokenizer has read the
training texts, prints what it chose and why, and writes the chosen values
into the run's settings (the checkpoint holds numbers, not "auto"). A value
the user gives wins. The rules:

- max_len: the 95th percentile of the training examples' token counts
  (specials included; up to 4,000 examples, a seeded sample), rounded up to a
  multiple of 16, at least 16, at most ``cap``: 512 from scratch (attention's
  time and memory grow with T squared) or the positions of the model
  fine-tuned.
- epochs: from the number of training examples: from scratch about 25,000
  examples seen (at least 3 epochs, at most 20; on SST-2, 60,000 - 9 epochs -
  overfit: test accuracy 78.7% against 81.2% at 4); fine-tuning a pretrained
  model about 20,000 (2 to 4 epochs, the usual fine-tuning recipes).
- lr: 5e-4 from scratch, 3e-5 for a pretrained BERT, 3e-4 for the encoder of
  a numformer run.
- keep_best: the dev split's main metric (dev_accuracy; regress:
  dev_spearman) when the data has a dev split, else '' (the last weights);
  with --keep-margin (2 standard errors), a later evaluation within the dev
  set's noise of the best is kept over it.
"""

from __future__ import annotations

import math

import numpy as np

MAX_LEN_CAP = 512
PERCENTILE = 95
SAMPLE = 4000
SEEN = {"scratch": (25_000, 3, 20), "pretrained": (20_000, 2, 4)}
LR = {"scratch": 5e-4, "bert": 3e-5, "numformer": 3e-4}


def choose_max_len(lengths, cap: int) -> tuple[int, str]:
    """(max_len, why) from the examples' token counts (specials included)."""
    lengths = np.asarray(lengths)
    p = int(math.ceil(np.percentile(lengths, PERCENTILE)))
    value = min(cap, max(16, -(-p // 16) * 16))
    why = (f"the {PERCENTILE}th percentile of {len(lengths):,} training examples' token counts "
           f"is {p} (median {int(np.median(lengths))}, longest {int(lengths.max())})")
    if value == cap and p > cap:
        why += f", capped at {cap}"
    return value, why


def choose_epochs(n_train: int, start: str) -> tuple[int, str]:
    """(epochs, why) from the number of training examples; ``start`` is 'scratch'
    or 'pretrained'."""
    seen, lo, hi = SEEN[start]
    value = min(hi, max(lo, math.ceil(seen / max(1, n_train))))
    return value, (f"{n_train:,} training examples: about {seen:,} seen "
                   f"{'from scratch' if start == 'scratch' else 'to fine-tune'} "
                   f"({lo}-{hi} epochs)")


def token_counts(encode, texts, pairs=None, seed: int = 0) -> list[int]:
    """Token counts of (a seeded sample of at most SAMPLE) examples; ``encode(text,
    pair)`` gives an example's untruncated ids."""
    idx = np.arange(len(texts))
    if len(idx) > SAMPLE:
        idx = np.sort(np.random.default_rng([seed, 4177]).choice(len(texts), SAMPLE,
                                                                  replace=False))
    return [len(encode(texts[i], None if pairs is None else pairs[i])) for i in idx]


def resolve(cfg, *, counts, n_train: int, start: str, cap: int, dev_metric: str | None,
            log=print) -> None:
    """Write the chosen values of cfg's auto settings into ``cfg`` and log them.
    ``start``: 'scratch', 'bert' or 'numformer' (where the model's weights come
    from); ``counts()`` gives the token counts (called only when max_len is auto)."""
    todo = cfg.auto_fields()
    if not todo:
        return
    lines = []
    if "max_len" in todo:
        cfg.max_len, why = choose_max_len(counts(), cap)
        lines.append(f"max_len {cfg.max_len}: {why}")
    if "epochs" in todo:
        cfg.epochs, why = choose_epochs(n_train, "scratch" if start == "scratch"
                                        else "pretrained")
        lines.append(f"epochs {cfg.epochs}: {why}")
    if "lr" in todo:
        cfg.lr = LR[start]
        lines.append(f"lr {cfg.lr:g}: " + {"scratch": "a model trained from scratch",
                                          "bert": "fine-tuning a pretrained BERT",
                                          "numformer": "fine-tuning a numformer run's "
                                                       "encoder"}[start])
    if "keep_best" in todo:
        cfg.keep_best = dev_metric or ""
        lines.append(f"keep_best {cfg.keep_best!r}: " + (
            "the weights of the best dev evaluation are kept, or of a later one within "
            f"--keep-margin {cfg.keep_margin:g} standard errors of it" if dev_metric
            else "no dev split: the last weights are kept"))
    log("chosen from the data (override with the flag of each): " + "; ".join(lines))
