"""What the sub-commands that read a trained model share."""

from __future__ import annotations

import math

DEFAULT_RUNS = {"mlm": "runs/mlm", "classify": "runs/classify", "lm": "runs/lm"}


def add_checkpoint_arg(p, task: str) -> None:
    p.add_argument("--checkpoint", "-c", default=DEFAULT_RUNS[task], metavar="PATH",
                   help=f"checkpoint file or run folder (default: {DEFAULT_RUNS[task]}, where "
                        f"'numformer train {task}' writes)")


class CommandError(Exception):
    """A problem with what the user asked for: ``numformer`` prints it and exits with 2."""


def check_int(flag: str, value, lo: int = 1) -> None:
    """A command's integer flag is >= lo, or CommandError naming the flag."""
    if value < lo:
        raise CommandError(f"{flag}: expected an integer >= {lo}, got {value}")


def check_float(flag: str, value, lo: float = 0.0) -> None:
    """A command's number flag is finite and >= lo, or CommandError naming the flag."""
    if not math.isfinite(value) or value < lo:
        raise CommandError(f"{flag}: expected a finite number >= {lo:g}, got {value}")


def check_texts(name: str, texts) -> None:
    """Every text has a non-space character, or CommandError naming which."""
    for i, t in enumerate(texts, 1):
        if not t.strip():
            which = f"{name} {i}" if len(texts) > 1 else name
            raise CommandError(f"{which}: expected a non-empty text, got {t!r}")


def check_output_file(flag: str, path) -> None:
    """An output file's path is not a folder and its folder can be made, or CommandError."""
    from pathlib import Path
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{flag}: expected a file to write, got a folder: {path}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"{flag}: cannot write {path}: {parent} is a file")


def load_or_exit(path, expect: tuple[str, ...] | None = None):
    """load_trained(path), or CommandError (one line, exit code 2)."""
    from numformer.train.load import load_trained
    try:
        trained = load_trained(path)
    except (FileNotFoundError, ValueError) as e:
        raise CommandError(str(e)) from None
    if expect and trained.meta.get("task") not in expect:
        raise CommandError(f"{trained.path} holds a {trained.meta.get('task')!r} model; this "
                           f"command needs one of {list(expect)}")
    return trained


def encode_for(trained, text: str):
    """ids (1, T) and key mask for a sentence, as the model was trained (<cls> for classifiers)."""
    import numpy as np
    from numformer.train.task_base import encode_example
    ids = encode_example(trained.tokenizer, text, trained.train_config.max_len,
                         add_cls=trained.meta.get("task") == "classify")[None, :]  # (1, T)
    return ids, np.ones(ids.shape, dtype=bool)
