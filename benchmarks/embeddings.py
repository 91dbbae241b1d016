"""Sentence-embedding throughput of all-MiniLM-L6-v2, numformer vs PyTorch (see
numformer/bench/embeddings.py; torch's side is benchmarks/twins/embeddings.py,
run on the same batches in a process that never loads numformer's kernels or
runtime settings). Example:

    python benchmarks/embeddings.py                       # 1 and 2 threads
    python benchmarks/embeddings.py --quick               # 1 thread, 64 sentences
    python benchmarks/embeddings.py --threads 1 --n 64
"""
import sys

from numformer.bench.embeddings import main

if __name__ == "__main__":
    sys.exit(main())
