"""``numformer attention SENTENCE``: a PNG of every head's attention for one sentence."""

from __future__ import annotations


def run(args) -> int:
    from numformer.commands._common import (CommandError, check_output_file, check_texts,
                                            encode_for, load_or_exit)
    from numformer.nn import attention_maps
    from numformer.train.outputs import plot_attention
    check_texts("SENTENCE", [args.sentence])
    check_output_file("--out", args.out)
    trained = load_or_exit(args.checkpoint)
    ids, km = encode_for(trained, args.sentence)
    maps = attention_maps(trained.model, ids, km)
    layer = args.layer if args.layer >= 0 else len(maps) + args.layer
    if not 0 <= layer < len(maps):
        raise CommandError(f"--layer: expected -{len(maps)}..{len(maps) - 1}, got {args.layer}")
    tok = trained.tokenizer
    tokens = [tok.id_to_token(int(i)) if hasattr(tok, "id_to_token") else
              tok.decode([int(i)]) for i in ids[0]]
    path = plot_attention(maps[layer][0], tokens, args.out,
                          title=f"layer {layer} of {trained.path}: {args.sentence[:60]}")
    print(f"attention of layer {layer} ({maps[layer].shape[1]} heads) written to {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("attention", help="attention-map PNG of a saved model for one sentence")
    p.add_argument("sentence")
    p.add_argument("--layer", type=int, default=-1, help="block index (default: the last)")
    p.add_argument("--out", default="attention.png", help="PNG path (default attention.png)")
    p.add_argument("--checkpoint", "-c", default="runs/mlm", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/mlm)")
    p.set_defaults(func=run)
