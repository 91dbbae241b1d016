"""``--threads N`` holds NumPy's BLAS to N threads as well as Numba's kernels."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("threadpoolctl")

CHILD = """
import json, sys
from threadpoolctl import threadpool_info
from numformer.train import run
from numformer.train.config import TrainConfig
cfg = TrainConfig.for_task("classify", threads=int(sys.argv[1]))
run._setup_runtime(cfg)
out = {"blas": [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]}
import numformer
if numformer.get_backend() == "numba":
    import numba
    out["numba"] = numba.get_num_threads()
print(json.dumps(out))
"""


def _threads_after_setup(threads: int) -> dict:
    """A fresh process whose BLAS and Numba start at 2 threads sets up a run's runtime."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2", OMP_NUM_THREADS="2",
               NUMBA_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_threads_1_holds_blas_and_numba_to_one_thread():
    got = _threads_after_setup(1)
    assert got["blas"], "NumPy loaded no BLAS library threadpoolctl can see"
    assert got["blas"] == [1] * len(got["blas"])
    assert got.get("numba", 1) == 1


def test_threads_0_leaves_blas_as_it_was():
    got = _threads_after_setup(0)
    assert got["blas"] == [2] * len(got["blas"])


def test_limit_blas_threads_refuses_a_count_below_one():
    from numformer import _runtime
    with pytest.raises(ValueError, match="n: expected a thread count >= 1, got 0"):
        _runtime.limit_blas_threads(0)
