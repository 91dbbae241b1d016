"""Layernorm, softmax cross-entropy, Adam/AdamW, embedding scatter-add and dropout:
numformer (NumPy, Numba) vs PyTorch (see numformer/bench/kernels.py; torch's
side is benchmarks/twins/kernels.py, run in a process that never loads
numformer's kernels or runtime settings). Examples:

    python benchmarks/kernels.py                     # 1 and 2 threads, all ops
    python benchmarks/kernels.py --quick             # 1 thread, small cases, 3 repeats
    python benchmarks/kernels.py --threads 1 --ops layernorm,adam --repeats 5
"""
import sys

from numformer.bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
