"""Tokens per second of a training step, numformer vs PyTorch eager (see
numformer/bench/train_step.py). Example:

    python benchmarks/train_step.py --config article --threads 1 --json benchmarks/results/train_step_article_1t.json
"""
import sys

from numformer.bench.train_step import main

if __name__ == "__main__":
    sys.exit(main())
