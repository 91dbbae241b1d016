"""``numformer neighbors WORD...``: cosine nearest neighbours in a model's embedding."""

from __future__ import annotations

import sys


def run(args) -> int:
    from numformer.commands._common import CommandError, check_int, check_texts, load_or_exit
    from numformer.train.outputs import nearest_neighbors
    check_int("-k", args.k)
    check_texts("WORD", args.word)
    trained = load_or_exit(args.checkpoint)
    tok = trained.tokenizer
    if not hasattr(tok, "token_to_id"):
        raise CommandError(f"{trained.path}: this model's tokenizer has no word vocabulary")
    E = trained.model.body.tok.weight.value
    words = tok.tokens()
    status = 0
    for word in args.word:
        try:
            near = nearest_neighbors(E, words, word.lower(), k=args.k, exclude=words[:5])
        except KeyError as e:
            print(f"numformer neighbors: {e.args[0]}", file=sys.stderr)
            status = 1
            continue
        print(f"{word}: " + ", ".join(f"{w} ({s:.3f})" for w, s in near))
    return status


def register(sub) -> None:
    p = sub.add_parser("neighbors", help="nearest neighbours of words in a model's embedding")
    p.add_argument("word", nargs="+")
    p.add_argument("-k", type=int, default=10, help="how many (default 10)")
    p.add_argument("--checkpoint", "-c", default="runs/mlm", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/mlm)")
    p.set_defaults(func=run)
