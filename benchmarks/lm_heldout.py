"""Held-out bits per character of a causal LM before any training: the number a
fine-tuning run starts from.

It builds the lm task exactly as ``numformer train lm`` does with the same
flags (same text, same held-out tail, same windows, same tokenizer) and runs
its evaluation on the untouched model, e.g. SmolLM2-135M-Instruct on the last
10% of tinyshakespeare in windows of 256 tokens:

    python benchmarks/lm_heldout.py --init smollm2 --dataset text \\
        --data ../shared/data/english_lm/tinyshakespeare.txt --max-len 256 --threads 1

Not a timing benchmark; it prints the metrics as JSON (and the seconds taken).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="smollm2", help="smollm2 or a Llama .gguf file")
    p.add_argument("--dataset", default="text")
    p.add_argument("--data", required=True, help="the text file")
    p.add_argument("--max-len", type=int, default=256, help="tokens per window")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="the held-out tail")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the metrics here")
    args = p.parse_args(argv)
    from numformer import nn
    from numformer.train import run
    from numformer.train.config import TrainConfig
    from numformer.train.lm_task import LMTask
    cfg = TrainConfig.for_task("lm", init=args.init, dataset=args.dataset, data=args.data,
                               max_len=args.max_len, eval_fraction=args.eval_fraction,
                               threads=args.threads)
    run._setup_runtime(cfg)
    task = LMTask(cfg, log=lambda *a: print(*a, file=sys.stderr))
    task.model.eval()
    t = time.perf_counter()
    with nn.no_grad():
        metrics = task.evaluate()
    out = {"init": args.init, "data": args.data, "max_len": args.max_len,
           "held_out_tokens": int(len(task.held)), "held_out_characters": len(task.held_text),
           **metrics, "seconds": round(time.perf_counter() - t, 1)}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
