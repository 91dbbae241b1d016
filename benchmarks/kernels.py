"""Layernorm, softmax cross-entropy, Adam/AdamW and embedding scatter-add:
numformer (NumPy, Numba) vs PyTorch (see numformer/bench/kernels.py). Examples:

    python benchmarks/kernels.py                     # 1 and 2 threads, all ops
    python benchmarks/kernels.py --quick             # 1 thread, small cases, 3 repeats
    python benchmarks/kernels.py --threads 1 --ops layernorm,adam --repeats 5
"""
import sys

from numformer.bench.kernels import main

if __name__ == "__main__":
    sys.exit(main())
