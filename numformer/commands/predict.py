"""``numformer predict TEXT...``: classify sentences, score them (a regression run),
or fill in <mask> tokens; ``--file FILE`` predicts every row of a file
(numformer.commands.predict_file). A run trained on text pairs (--text-pair-column) reads
its TEXT arguments two by two: ``numformer predict -c RUN "a 1" "b 1" "a 2" "b 2"``
(trained with --pair-swap: each pair scored in both orders, averaged, as its
evaluation was)."""

from __future__ import annotations

import numpy as np


def _softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _pairs(trained) -> bool:
    """The run was trained on text pairs (its checkpoint says so; older ones by the flag)."""
    return bool(trained.meta.get("text_pairs", bool(trained.train_config.text_pair_column)))


def _predict_pairs(trained, texts) -> int:
    """Scores or classes of (a, b) pairs, the TEXT arguments taken two by two."""
    from numformer.commands._common import CommandError
    from numformer.train.task_base import encode_pair
    if len(texts) % 2:
        raise CommandError(f"TEXT: this run was trained on text pairs; expected an even number "
                           f"of texts (a b a b ...), got {len(texts)}")
    def outputs(a, b):  # (1, K)
        ids, tt = encode_pair(trained.tokenizer, a, b, trained.train_config.max_len)
        return trained.model(ids[None, :], np.ones((1, len(ids)), dtype=bool),
                             token_type_ids=tt[None, :]).astype(np.float64)

    swap = trained.train_config.pair_swap  # trained on both orders: score both, averaged
    for a, b in zip(texts[::2], texts[1::2]):
        if not swap:
            _show(trained, outputs(a, b), f"{a} | {b}")
        elif trained.meta["task"] == "regress":  # the mean of the two orders' scores
            _print_score(0.5 * (_score(trained, outputs(a, b)) + _score(trained, outputs(b, a))),
                         f"{a} | {b}")
        else:  # the mean of the two orders' probabilities, shown as log-probabilities
            p = 0.5 * (_softmax(outputs(a, b)) + _softmax(outputs(b, a)))
            _show(trained, np.log(p), f"{a} | {b}")
    return 0


def _score(trained, out) -> float:
    """A regression run's output (1, 1) as a score in the labels' units."""
    from numformer.train.regress_task import to_score
    return float(to_score(out[0, 0], trained.meta))


def _print_score(score: float, text) -> None:
    print(f"{score:.4f}  | {text}")


def _show(trained, out, text) -> None:
    if trained.meta["task"] == "regress":
        _print_score(_score(trained, out), text)
        return
    p = _softmax(out)[0]
    names = trained.meta.get("class_names") or [str(i) for i in range(len(p))]
    k = int(p.argmax())
    print(f"{names[k]} ({p[k]:.3f})  " +
          "  ".join(f"{n}: {q:.3f}" for n, q in zip(names, p)) + f"  | {text}")


def run(args) -> int:
    from numformer.commands._common import (CommandError, check_int, check_texts, encode_for,
                                            load_or_exit)
    from numformer.train.task_base import encode_example
    if args.file is not None:
        if args.text:
            raise CommandError(f"TEXT: give texts or --file, not both (got {len(args.text)} "
                               f"texts and --file {args.file})")
        from numformer.commands.predict_file import run as run_file
        return run_file(args)
    file_flags = [f for f, v in (("--output", args.output), ("--format", args.format),
                                 ("--header", args.header), ("--text-column", args.text_column),
                                 ("--text-pair-column", args.text_pair_column)) if v is not None]
    if file_flags:
        raise CommandError(f"{file_flags[0]}: a setting of --file; without --file the texts "
                           f"are the command line's")
    if not args.text:
        raise CommandError("TEXT: expected texts to predict, or --file FILE")
    check_int("--top", args.top)
    check_texts("TEXT", args.text)
    trained = load_or_exit(args.checkpoint, expect=("classify", "mlm", "regress"))
    model, tok = trained.model, trained.tokenizer
    if trained.meta["task"] != "mlm" and _pairs(trained):
        return _predict_pairs(trained, args.text)
    for text in args.text:
        if trained.meta["task"] == "regress":
            ids = encode_example(tok, text, trained.train_config.max_len, add_cls=True)[None, :]
            _show(trained, model(ids, np.ones(ids.shape, dtype=bool)), text)
            continue
        ids, km = encode_for(trained, text)
        if trained.meta["task"] == "classify":
            _show(trained, model(ids, km), text)
        else:
            positions = np.flatnonzero(ids[0] == tok.mask_id)
            if positions.size == 0:
                print(f"no <mask> in: {text}")
                continue
            p = _softmax(model(ids, km, positions))
            for pos, row in zip(positions, p):
                best = np.argsort(-row)[:args.top]
                print(f"<mask> at token {pos}: " +
                      ", ".join(f"{tok.id_to_token(int(i))} ({row[i]:.3f})" for i in best))
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify or score sentences (or pairs), or fill in "
                                       "<mask>, with a saved model")
    p.add_argument("text", nargs="*", help="sentences (for a masked-LM, containing <mask>)")
    p.add_argument("--checkpoint", "-c", default="runs/classify", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/classify)")
    p.add_argument("--top", type=int, default=5, help="candidates per <mask> (masked-LM)")
    from numformer.train.config import FILE_FORMATS, FILE_HEADERS
    g = p.add_argument_group("a file of texts (classify and regress runs): one prediction a "
                             "row, as CSV")
    g.add_argument("--file", metavar="FILE", help="a CSV, TSV or JSON-lines file, or a folder "
                                                  "of *.txt files (one text a file)")
    g.add_argument("--output", "-o", metavar="FILE.csv",
                   help="write the predictions here (default: standard output)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    g.add_argument("--format", choices=FILE_FORMATS, help="the file's format (default: the run's)")
    g.add_argument("--header", choices=FILE_HEADERS,
                   help="a header row (default: the run's setting)")
    g.add_argument("--text-column", metavar="COL",
                   help="the text column, a name or a 0-based index (default: the run's, else "
                        "found by name or content)")
    g.add_argument("--text-pair-column", metavar="COL",
                   help="the second text of a pair (default: the run's)")
    g.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="texts a forward pass (default 64)")
    p.set_defaults(func=run)
