"""``numformer train {mlm,classify,regress,lm}``: train on the embedded default or real data.

``numformer train TASK --help`` lists the flags TASK reads with its defaults.
Every setting of numformer.train.TrainConfig is a flag (``--dim 256``,
``--norm-first``/``--no-norm-first``); ``--config FILE`` (TOML or JSON) sets
many at once, and flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import sys

from numformer.train.config import (AUTO, AUTO_TASKS, DATASETS, TASK_DEFAULTS, TASKS,
                                    TrainConfig, check_settings, read_config_file)
from numformer.train.settings import ConfigError, flag_of


# The flags' sections in the help, by TrainConfig field (the rest are "run").
SECTIONS = {
    "data": ("dataset", "data", "train", "dev", "test", "format", "header", "text_column",
             "label_column", "text_pair_column", "pair_swap", "max_len", "vocab_size",
             "min_freq", "word_dropout", "eval_fraction", "eval_data", "limit", "mask_prob"),
    "model": ("dim", "n_heads", "n_layers", "d_ff", "dropout", "norm_first", "activation",
              "positional", "pooling", "pair_encoder", "tie_weights", "arch", "n_kv_heads",
              "init", "lora_rank", "lora_alpha"),
    "optimisation": ("optimizer", "lr", "weight_decay", "beta1", "beta2", "momentum", "warmup",
                     "schedule", "clip", "label_smoothing", "regress_loss", "batch_size",
                     "epochs", "max_steps", "time_limit", "eval_every", "keep_best",
                     "keep_margin"),
}
# Settings only some tasks read (the others' help leaves them out).
ONLY = {"train": AUTO_TASKS, "dev": AUTO_TASKS, "test": AUTO_TASKS, "format": AUTO_TASKS,
        "header": AUTO_TASKS, "text_column": AUTO_TASKS, "label_column": AUTO_TASKS,
        "text_pair_column": AUTO_TASKS, "pair_swap": AUTO_TASKS, "word_dropout": AUTO_TASKS, "pooling": AUTO_TASKS,
        "eval_data": ("lm",), "mask_prob": ("mlm",), "init": ("classify", "regress", "lm"),
        "lora_rank": ("lm",), "lora_alpha": ("lm",), "regress_loss": ("regress",),
        "pair_encoder": ("regress",), "tie_weights": ("mlm", "lm"),
        "vocab_size": ("mlm", *AUTO_TASKS), "min_freq": ("mlm", *AUTO_TASKS)}


def _show(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "''" if value == "" else str(value)


def _help(f, task) -> str:
    """A field's help line with the task's default and, for a fixed set, the choices."""
    text = f.metadata.get("help") or ""
    value = TASK_DEFAULTS[task].get(f.name, f.default) if task else f.default
    default = _show(value)
    if task in AUTO_TASKS and f.name in AUTO and value == AUTO[f.name]:
        default = f"{default}, i.e. {f.metadata.get('auto', 'chosen from the data')}"
    choices = f.metadata.get("choices")
    if f.name == "dataset":
        choices = tuple(DATASETS[task]) if task else tuple(sorted({d for t in DATASETS.values()
                                                                    for d in t}))
    extra = f"; one of {', '.join(_show(c) for c in choices)}" if choices else ""
    return f"{text} (default: {default}{extra})".replace("%", "%%")


def add_config_flags(p: argparse.ArgumentParser, skip=("task",), task: str | None = None,
                     sections: bool = False) -> None:
    """A flag per TrainConfig field: help, default (``task``'s when given) and the
    choices from the field's metadata; a value outside the choices is refused at
    parse time. With ``task``, only the flags that task reads; with ``sections``,
    grouped as data / model / optimisation / run."""
    groups = {}
    if sections:
        groups = {name: p.add_argument_group(name) for name in (*SECTIONS, "run")}
    for f in TrainConfig.fields():
        if f.name in skip or (task and task not in ONLY.get(f.name, TASKS)):
            continue
        where = p
        if sections:
            where = groups[next((k for k, names in SECTIONS.items() if f.name in names), "run")]
        default = f.default
        # (the datasets depend on the task: checked with the task's list after parsing)
        choices = None if f.name == "dataset" else f.metadata.get("choices")
        if isinstance(default, bool):
            where.add_argument(flag_of(f.name), dest=f.name,
                               action=argparse.BooleanOptionalAction, default=None,
                               help=_help(f, task))
        else:
            where.add_argument(flag_of(f.name), dest=f.name, type=type(default), default=None,
                               choices=choices, metavar=type(default).__name__.upper(),
                               help=_help(f, task))


TASK_HELP = {
    "mlm": "a masked language model (BERT-style) on the embedded French Europarl sample, "
           "Europarl, IMDb's unlabelled reviews or any text file or folder",
    "classify": "a text (or text-pair) classifier on the embedded SST-2, SST-2/5, IMDb or "
                "your own CSV, TSV, JSON lines or folder of class folders (--data)",
    "regress": "a score per text or text pair (mean squared error; Pearson and Spearman) "
               "from your own file (--train/--data)",
    "lm": "a causal language model: a byte-level char LM (--arch gpt or llama) from scratch, "
          "or SmolLM2 fine-tuned (--init smollm2, --lora-rank R)",
}


def task_parser(task: str) -> argparse.ArgumentParser:
    """The parser whose help is ``numformer train TASK --help``: the flags that task
    reads, with its defaults."""
    p = argparse.ArgumentParser(
        prog=f"numformer train {task}",
        usage=f"numformer train {task} [-h] [--config FILE] [--resume [CHECKPOINT]] "
              f"[--FLAG VALUE ...]", description=f"numformer train {task}: "
        f"{TASK_HELP[task]}.\n\n" + _DOC_TAIL,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_flags(p)
    add_config_flags(p, task=task, sections=True)
    return p


class TaskHelp(argparse.Action):
    """-h/--help: the help of the task named before or after it (mlm when none is),
    printed by run() once the whole command line is parsed."""

    def __init__(self, option_strings, dest, default=False, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)


def _common_flags(p) -> None:
    p.add_argument("--config", metavar="FILE", help="settings from a TOML or JSON file")
    p.add_argument("--resume", nargs="?", const=True, metavar="CHECKPOINT",
                   help="continue from OUT/checkpoint.npz (or the given checkpoint), with its "
                        "tokenizer; its data, seed and model settings must be the same")


_DOC_TAIL = ("Every flag is a setting of numformer.train.TrainConfig; --config FILE (TOML or "
             "JSON) sets many at once and the flags given win over it. A flag not given "
             "keeps the default shown.")


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
    if args.help:  # -h/--help (TaskHelp)
        task_parser(args.task).print_help()
        sys.exit(0)
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
    p = sub.add_parser("train", help="train a masked-LM, a classifier, a regressor or a causal "
                                     "LM", add_help=False, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=TaskHelp,
                   help="this task's flags with their defaults and choices")
    p.add_argument("task", nargs="?", default="mlm", choices=TASKS,
                   help="mlm (default), classify, regress or lm")
    _common_flags(p)
    add_config_flags(p)
    p.set_defaults(func=run)
