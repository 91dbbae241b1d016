"""SmolLM2-135M float32: prefill, decode and fine-tuning (full, LoRA) tokens/s,
numformer (numba) against transformers + PyTorch eager, each side in its own
process per thread count, checked equal before timing (see
numformer/bench/llm.py). Examples:

    python benchmarks/llm.py --quick                      # tiny sizes, 1 thread: a smoke run
    python benchmarks/llm.py --threads 1 2 --json benchmarks/results/llm.json
    python benchmarks/llm.py --threads 1 --phases decode  # one phase
"""
import os
import sys

from numformer.bench.llm_run import main

if __name__ == "__main__":
    os.environ.setdefault("NUMBA_THREADING_LAYER", "omp")
    sys.exit(main())
