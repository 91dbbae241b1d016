"""Tokens per second of a training step, numformer vs PyTorch eager (see
numformer/bench/train_step.py): one case (weights and batch) for both, the
loss, gradients and parameters after one AdamW step checked equal (dropout 0)
before timing, each side in its own process (torch's never loads numformer's
kernels or runtime settings), torch at its best (fused AdamW; the for-loop
AdamW beside it). Examples:

    python benchmarks/train_step.py --quick                      # article, 1 thread, 3 repeats
    python benchmarks/train_step.py --config article --threads 1 --json out.json
    python benchmarks/train_step.py --config article --threads 2 --no-tune-runtime
    python benchmarks/train_step.py --config mini --dropout 0 --breakdown
    python benchmarks/train_step.py --matrix
"""
import sys

from numformer.bench.train_step import main

if __name__ == "__main__":
    sys.exit(main())
