"""The attention benchmark (numformer/bench/attention.py; `numformer bench attention`
is the same). Each implementation runs in a fresh process per thread count;
torch's side (benchmarks/twins/attention.py) in processes that never load
numformer's kernels or runtime settings. Examples:

    python benchmarks/attention.py                  # the default question: B=32 H=4 D=32
    python benchmarks/attention.py --quick          # under a minute
    python benchmarks/attention.py --check-only --impl mypkg.mymod:attention_forward
    python benchmarks/attention.py --mask causal+padding --pad-fraction 0.25
    python benchmarks/attention.py --H 9 --kv-heads 3 --D 64 --Tq 1 --T 256,1024,2048 \\
        --mask causal --passes forward
    python benchmarks/attention.py --help           # every option
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numformer.bench.attention import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
