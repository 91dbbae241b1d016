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

The README's measurements (on a quiet machine):

    python benchmarks/attention.py                                  # (a) the default question
    python benchmarks/attention.py --mask causal+padding --pad-fraction 0.25 \
        --name attention_causal_padding                             # (b)
    python benchmarks/attention.py --B 1 --H 9 --kv-heads 3 --D 64 --Tq 1 \
        --T 128,256,512,1024,2048 --mask causal --passes forward \
        --name attention_decode_smollm2                             # (c) SmolLM2 GQA decode
    python benchmarks/attention.py --D 64 --T 512,2048 --mask none,causal \
        --impls numba,torch-flash --name attention_peak_D64         # (d) % of peak, 1, 2 thr
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numformer.bench.attention import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
