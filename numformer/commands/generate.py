"""``numformer generate``: sample text from a causal LM checkpoint."""

from __future__ import annotations


def run(args) -> int:
    from numformer.commands._common import (CommandError, check_float, check_int,
                                            load_or_exit)
    from numformer.train.generate import generate, never_sampled
    check_int("--length", args.length, lo=0)
    check_float("--temperature", args.temperature)
    if args.top_k is not None:
        check_int("--top-k", args.top_k)
    check_int("--seed", args.seed, lo=0)
    if not args.prompt:
        raise CommandError("--prompt: expected a non-empty text, got ''")
    trained = load_or_exit(args.checkpoint, expect=("lm",))
    tok = trained.tokenizer
    prompt = tok.encode(args.prompt)
    ids = generate(trained.model, prompt, args.length, args.temperature, args.top_k,
                   seed=args.seed, use_cache=not args.no_cache, exclude=never_sampled(tok))
    print(tok.decode(ids))
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a causal language model")
    p.add_argument("--prompt", default="\n", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="new tokens (bytes) to sample")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the whole window for every token (no key-value cache)")
    p.add_argument("--checkpoint", "-c", default="runs/lm", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/lm)")
    p.set_defaults(func=run)
