"""``numformer eval RUN``: evaluate a saved model on its held-out data (or another)."""

from __future__ import annotations

import json
import sys


def run(args) -> int:
    from numformer.commands._common import CommandError, load_or_exit
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
        from numformer.train import metrics as M
        for name, cm in task.last_confusion.items():
            acc = M.per_class_accuracy(cm)
            print(f"{name} per class: " + ", ".join(f"{c} {a:.3f}"
                                                  for c, a in zip(task.class_names, acc)))
            print(M.format_confusion(cm, [c[:8] for c in task.class_names]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a saved model")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--dataset", help="evaluate on another dataset (default: the training one)")
    p.add_argument("--data", help="path of that dataset")
    p.set_defaults(func=run)
