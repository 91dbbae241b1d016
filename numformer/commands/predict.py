"""``numformer predict TEXT...``: classify sentences, or fill in <mask> tokens."""

from __future__ import annotations

import numpy as np


def _softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def run(args) -> int:
    from numformer.commands._common import check_int, check_texts, encode_for, load_or_exit
    check_int("--top", args.top)
    check_texts("TEXT", args.text)
    trained = load_or_exit(args.checkpoint, expect=("classify", "mlm"))
    model, tok = trained.model, trained.tokenizer
    for text in args.text:
        ids, km = encode_for(trained, text)
        if trained.meta["task"] == "classify":
            p = _softmax(model(ids, km))[0]
            names = trained.meta.get("class_names") or [str(i) for i in range(len(p))]
            k = int(p.argmax())
            print(f"{names[k]} ({p[k]:.3f})  " +
                  "  ".join(f"{n}: {q:.3f}" for n, q in zip(names, p)) + f"  | {text}")
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
    p = sub.add_parser("predict", help="classify sentences or fill in <mask> with a saved model")
    p.add_argument("text", nargs="+", help="sentences (for a masked-LM, containing <mask>)")
    p.add_argument("--checkpoint", "-c", default="runs/classify", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/classify)")
    p.add_argument("--top", type=int, default=5, help="candidates per <mask> (masked-LM)")
    p.set_defaults(func=run)
