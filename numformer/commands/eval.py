"""``numformer eval RUN``: evaluate a saved model on its held-out data (or another
dataset; ``--test FILE``: a labelled file of the user's, read as the run read
its own, predicted as ``predict --file`` does)."""

from __future__ import annotations

import json
import sys


def eval_file(args) -> int:
    """The run's metrics on a labelled file of the user's (--test FILE)."""
    from numformer.commands._common import CommandError, load_or_exit
    from numformer.commands.predict_file import predict_arrays, read_inputs
    from numformer.data.files import DataError
    from numformer.data.tabular import Rows
    from numformer.data.user_data import to_data
    from numformer.train import metrics as M
    if args.dataset is not None or args.data is not None:
        raise CommandError(f"--test: evaluates on one file; give it without "
                           f"{'--dataset' if args.dataset is not None else '--data'}")
    trained = load_or_exit(args.checkpoint, expect=("classify", "regress"))
    _, lines, texts, pairs, labels, what = read_inputs(
        trained, args.test, args.format, args.header, args.text_column, args.text_pair_column,
        args.label_column, labelled=True, flag="--test")
    print(f"read {what}", file=sys.stderr)
    kind = trained.meta["task"]
    names = trained.meta.get("class_names")
    rows = Rows(str(args.test), texts, pairs, labels, lines)
    try:
        y = to_data(rows, kind, names if kind == "classify" else None).labels
    except DataError as e:
        raise CommandError(str(e)) from None
    out = predict_arrays(trained, texts, pairs)
    if kind == "regress":
        print(json.dumps({f"test_{k}": v for k, v in M.regression_scores(out, y).items()},
                         indent=1))
        return 0
    nll, acc, cm = M.classification_scores(out, y)
    print(json.dumps({"test_loss": nll, "test_accuracy": acc}, indent=1))
    _print_confusion("test", cm, names)
    return 0


def _print_confusion(name, cm, class_names) -> None:
    from numformer.train import metrics as M
    acc = M.per_class_accuracy(cm)
    print(f"{name} per class: " + ", ".join(f"{c} {a:.3f}" for c, a in zip(class_names, acc)))
    print(M.format_confusion(cm, [c[:8] for c in class_names]))


def run(args) -> int:
    from numformer.commands._common import CommandError, load_or_exit
    file_flags = [f for f, v in (("--format", args.format), ("--header", args.header),
                                 ("--text-column", args.text_column),
                                 ("--text-pair-column", args.text_pair_column),
                                 ("--label-column", args.label_column)) if v is not None]
    if args.test is not None:
        return eval_file(args)
    if file_flags:
        raise CommandError(f"{file_flags[0]}: a setting of --test FILE; without it the run is "
                           f"evaluated on its own held-out data")
    from numformer.train.config import TrainConfig
    from numformer.train.settings import ConfigError, flag_of
    from numformer.train.tasks import make_task
    trained = load_or_exit(args.checkpoint)
    settings = trained.train_config.to_dict()
    if args.dataset is not None:
        settings["dataset"] = args.dataset
    if args.data is not None:
        settings["data"] = args.data
    try:
        cfg = TrainConfig(**settings)
        task = make_task(cfg, log=lambda *a: None, tokenizer=trained.tokenizer)
    except ConfigError as e:
        if e.field not in ("data", "dataset"):  # not a flag of eval: the run's own setting
            raise CommandError(f"{e} (a setting of the training run)") from None
        came = ""
        if getattr(args, e.field) is None and settings[e.field]:
            came = f" (the training run's; give {flag_of(e.field)})"
        raise CommandError(e.for_cli() + came) from None
    except (ValueError, FileNotFoundError) as e:
        print(f"numformer eval: {e}", file=sys.stderr)
        return 2
    task.model = trained.model
    from numformer.nn.module import no_grad
    with no_grad():  # the task's loss module is not the model's: no cache for it either
        metrics = task.evaluate()
    print(json.dumps(metrics, indent=1))
    for name, (pred, y) in getattr(task, "last_predictions", {}).items():  # a regression
        print(f"{name}: predicted score (label) of the first {min(5, len(y))} of {len(y)}: " +
              ", ".join(f"{p:.3f} ({t:g})" for p, t in zip(pred[:5], y[:5])))
    if hasattr(task, "last_confusion"):
        for name, cm in task.last_confusion.items():
            _print_confusion(name, cm, task.class_names)
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--dataset", help="evaluate on another dataset (default: the training one)")
    p.add_argument("--data", help="path of that dataset")
    from numformer.train.config import FILE_FORMATS, FILE_HEADERS
    g = p.add_argument_group("a labelled file of your own (classify and regress runs)")
    g.add_argument("--test", metavar="FILE",
                   help="evaluate on this CSV, TSV or JSON-lines file, or folder of class "
                        "folders (its labels must be the run's classes)")
    g.add_argument("--format", choices=FILE_FORMATS, help="the file's format (default: the run's)")
    g.add_argument("--header", choices=FILE_HEADERS,
                   help="a header row (default: the run's setting)")
    g.add_argument("--text-column", metavar="COL",
                   help="the text column, a name or a 0-based index (default: the run's)")
    g.add_argument("--text-pair-column", metavar="COL",
                   help="the second text of a pair (default: the run's)")
    g.add_argument("--label-column", metavar="COL", help="the label column (default: the run's)")
    p.set_defaults(func=run)
