"""``numformer train {mlm,classify,lm}``: train on the embedded default or real data.

Every setting of numformer.train.TrainConfig is a flag (``--dim 256``,
``--norm-first``/``--no-norm-first``); ``--config FILE`` (TOML or JSON) sets
many at once, and flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import sys

from numformer.train.config import TASK_DEFAULTS, TASKS, TrainConfig, read_config_file

def add_config_flags(p: argparse.ArgumentParser, skip=("task",)) -> None:
    for f in TrainConfig.fields():
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(TrainConfig, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, dest=f.name, type=type(default), default=None,
                           metavar=type(default).__name__.upper())


def config_from_args(task: str, args) -> TrainConfig:
    settings = dict(TASK_DEFAULTS[task])
    if args.config:
        settings.update(read_config_file(args.config))
    for f in TrainConfig.fields():
        v = getattr(args, f.name, None)
        if v is not None:
            settings[f.name] = v
    settings["task"] = task
    return TrainConfig.from_dict(settings, source=args.config or "flags")


def run(args) -> int:
    """0: finished; 2: bad settings, data, --out or checkpoint; 3: diverged (NaN
    loss or gradient); 130 / 143: stopped by SIGINT / SIGTERM after saving."""
    from numformer.train.interrupt import EXIT_CODES
    from numformer.train.loop import TrainingDiverged
    from numformer.train.run import train
    try:
        cfg = config_from_args(args.task, args)
    except (ValueError, FileNotFoundError) as e:
        print(f"numformer train: {e}", file=sys.stderr)
        return 2
    try:
        summary = train(cfg, resume=args.resume or False)
    except TrainingDiverged as e:
        print(f"numformer train: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:  # bad data, bad checkpoint, bad --out
        print(f"numformer train: {e}", file=sys.stderr)
        return 2
    if summary.get("interrupted"):
        print(f"numformer train: interrupted by {summary['interrupted']}; checkpoint saved in "
              f"{cfg.out} (continue with --resume)", file=sys.stderr)
        return EXIT_CODES.get(summary["interrupted"], 1)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a masked-LM, a classifier or a causal LM",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", default="mlm", choices=TASKS,
                   help="mlm (default), classify or lm")
    p.add_argument("--config", metavar="FILE", help="settings from a TOML or JSON file")
    p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="continue from OUT/checkpoint.npz (or the given checkpoint), with its "
                        "tokenizer; its data, seed and model settings must be the same")
    add_config_flags(p)
    p.set_defaults(func=run)
