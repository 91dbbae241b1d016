"""Attention forward and forward+backward, numformer (NumPy, Numba) vs PyTorch (see
numformer/bench/attention.py; torch's side is benchmarks/twins/attention.py, run
in a process that never loads numformer's kernels or runtime settings). Examples:

    python benchmarks/attention.py                  # 1 and 2 threads, T = 20 ... 1024
    python benchmarks/attention.py --quick          # 1 thread, T = 64, 256, 2 repeats
    python benchmarks/attention.py --threads 1 --T 128,512 --repeats 3
"""
import sys

from numformer.bench.attention import main

if __name__ == "__main__":
    sys.exit(main())
