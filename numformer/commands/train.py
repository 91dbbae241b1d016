"""``numformer train {mlm,classify,lm}``: train on the embedded default or real data.

Every setting of numformer.train.TrainConfig is a flag (``--dim 256``,
``--norm-first``/``--no-norm-first``); ``--config FILE`` (TOML or JSON) sets
many at once, and flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import sys

from numformer.train.config import (TASK_DEFAULTS, TASKS, TrainConfig, check_settings,
                                    read_config_file)
from numformer.train.settings import ConfigError, flag_of


def add_config_flags(p: argparse.ArgumentParser, skip=("task",)) -> None:
    for f in TrainConfig.fields():
        if f.name in skip:
            continue
        default = f.default
        help_text = f.metadata.get("help")
        if isinstance(default, bool):
            p.add_argument(flag_of(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag_of(f.name), dest=f.name, type=type(default), default=None,
                           metavar=type(default).__name__.upper(), help=help_text)


def config_from_args(task: str, args, check_paths: bool = True) -> TrainConfig:
    """The TrainConfig of the command line: the task's defaults, then the --config file,
    then the flags. Every error (a ValueError) names the flag, or the file and its
    setting; the file's settings are checked on their own first, so a bad value there is
    an error even when a flag overrides it. With ``check_paths``, --data, --eval-data and
    --out are checked too, before any data is read."""
    settings = dict(TASK_DEFAULTS[task])
    file_settings, source = {}, ""
    if args.config:
        source = f"config file {args.config}"
        file_settings = read_config_file(args.config)
        try:
            check_settings(file_settings, task, source)
        except ConfigError as e:
            raise ValueError(e.for_cli()) from None
        if file_settings.get("task", task) != task:
            raise ValueError(f"{source}: task: the file is for {file_settings['task']!r}, the "
                             f"command line trains {task!r}")
        settings.update(file_settings)
    flags = {f.name: getattr(args, f.name) for f in TrainConfig.fields()
             if getattr(args, f.name, None) is not None}
    settings.update(flags)
    settings["task"] = task
    try:
        cfg = TrainConfig(**settings)
        if check_paths:
            from numformer.train.task_base import check_inputs
            check_inputs(cfg, out=True)
    except ConfigError as e:
        if e.field in file_settings and e.field not in flags:
            e = e.with_source(source)  # the file's own setting: its name, the file's
        raise ValueError(e.for_cli()) from None
    return cfg


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
