"""Data-parallel training over MPI against one process (numformer.distributed).

Each run is a subprocess (``mpiexec -n 2 python tests/distributed/worker.py``,
or the worker alone as the one process) with a timeout, so a deadlock fails
the test instead of hanging the suite. Skipped where mpi4py or mpiexec is
missing. Tiny models, a dozen steps: the machine has 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("worker.py")
TIMEOUT = 240  # seconds per run: a first run compiles kernels on a busy machine


def _mpiexec() -> str | None:
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.is_file() else shutil.which("mpiexec")


def _have_mpi4py() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not (_have_mpi4py() and _mpiexec()),
                                reason="needs mpi4py and an mpiexec (pip install mpi4py mpich)")

TINY = dict(dim=16, n_heads=2, n_layers=1, d_ff=32, max_len=16, batch_size=8, max_steps=12,
            dropout=0.1, progress=False, threads=1, eval_every=0, warmup=2)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_LOCAL", "HYDRA_"))}
    env["NUMBA_THREADING_LAYER"] = "omp"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _command(n: int, spec: Path) -> list[str]:
    cmd = [sys.executable, str(WORKER), str(spec)]
    return [_mpiexec(), "-n", str(n), *cmd] if n > 1 else cmd


def run(tmp: Path, name: str, n: int, settings: dict, **spec) -> list[dict]:
    """The worker's per-rank results of one run of ``n`` processes."""
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "out": str(out)}
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps({"settings": settings, "result": str(out / "res"), **spec}))
    try:
        p = subprocess.run(_command(n, spec_path), env=_env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name}: {n} process(es) did not finish in {TIMEOUT} s (a deadlock?); "
                    f"output: {e.stdout!r} {e.stderr!r}")
    assert p.returncode == 0, f"{name}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return [json.loads((out / f"res.rank{r}.json").read_text()) for r in range(n)]


def assert_close(a, b, rtol, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: {a.shape} vs {b.shape}"
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
    i = int(rel.argmax())
    assert rel.max() <= rtol, (f"{what}: max relative difference {rel.max():.3g} at step {i + 1} "
                               f"({a[i]!r} vs {b[i]!r}); first pairs {list(zip(a[:4], b[:4]))}")


def assert_same_weights(ranks):
    digests = {r["digest"] for r in ranks}
    assert len(digests) == 1, f"the ranks' parameters differ after the run: {digests}"


CASES = {
    "mlm": dict(task="mlm", limit=200),
    "classify": dict(task="classify", limit=200, max_len=24),
    "lm": dict(task="lm"),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_two_ranks_equal_one_process(tmp_path, task):
    settings = {**TINY, **CASES[task]}
    one = run(tmp_path, "one", 1, settings)[0]
    two = run(tmp_path, "two", 2, settings)
    assert [r["size"] for r in two] == [2, 2] and one["size"] == 1
    assert len(one["losses"]) == 12
    assert_close(two[0]["losses"], one["losses"], 1e-6, f"{task}: 2 ranks vs 1 process")
    assert_same_weights(two)
    # each rank ran its own half: 4 rows of 8 per step
    counts = [[p["count"] for p in r["parts"]] for r in two]
    assert all(len(c) == 12 for c in counts)
    if task == "mlm":  # the ranks' masked counts differ, so a mean of means would be wrong
        assert any(a != b for a, b in zip(*counts)), counts
        total = [p["count"] for p in one["parts"]]
        assert [a + b for a, b in zip(*counts)] == total
    if task == "classify":  # rows padded to the global batch's length
        assert any(p["padded"] for r in two for p in r["parts"])


def test_float64_two_ranks_equal_one_process(tmp_path):
    settings = {**TINY, **CASES["mlm"], "max_steps": 10}
    one = run(tmp_path, "one", 1, settings, dtype="float64")[0]
    two = run(tmp_path, "two", 2, settings, dtype="float64")
    assert_close(two[0]["losses"], one["losses"], 1e-12, "float64 mlm: 2 ranks vs 1 process")
    assert_same_weights(two)


def test_accumulation_1x4_equals_2x2(tmp_path):
    settings = {**TINY, **CASES["classify"], "max_steps": 10}
    one = run(tmp_path, "one", 1, {**settings, "grad_accum": 4})[0]
    two = run(tmp_path, "two", 2, {**settings, "grad_accum": 2})
    assert len(one["parts"]) == 40 and all(len(r["parts"]) == 20 for r in two)
    assert_close(two[0]["losses"], one["losses"], 1e-6, "1 rank x 4 vs 2 ranks x 2")
    assert_same_weights(two)


def test_resume_two_rank_checkpoint_on_one_and_two_ranks(tmp_path):
    settings = {**TINY, **CASES["mlm"], "schedule": "constant", "warmup": 0, "eval_every": 2}
    full = run(tmp_path, "full", 2, {**settings, "max_steps": 6})[0]
    run(tmp_path, "first", 2, {**settings, "max_steps": 4})
    ck = json.loads((tmp_path / "first" / "train_config.json").read_text())
    assert ck["world_size"] == 2
    for n in (1, 2):
        shutil.copytree(tmp_path / "first", tmp_path / f"resumed{n}")
        got = run(tmp_path, f"resumed{n}", n, {**settings, "max_steps": 6}, resume=True)[0]
        assert got["steps"] == [1, 2, 3, 4, 5, 6]
        assert_close(got["losses"][4:], full["losses"][4:], 1e-6,
                     f"steps 5-6 resumed on {n} rank(s) vs the uninterrupted 2-rank run")


def test_zero1_equals_plain_data_parallel_and_its_checkpoint_needs_no_zero(tmp_path):
    """--zero 1 (moments sharded, reduce-scatter + all-gather): the losses of the
    unsharded 2-rank run, and a checkpoint that one process without ZeRO resumes."""
    settings = {**TINY, **CASES["mlm"], "schedule": "constant", "warmup": 0, "eval_every": 2,
                "max_steps": 6}
    plain = run(tmp_path, "plain", 2, settings)[0]
    zero = run(tmp_path, "zero", 2, {**settings, "zero": 1})
    assert_close(zero[0]["losses"], plain["losses"], 1e-6, "zero 1 vs zero 0 on 2 ranks")
    assert_same_weights(zero)
    run(tmp_path, "first", 2, {**settings, "zero": 1, "max_steps": 4})
    shutil.copytree(tmp_path / "first", tmp_path / "resumed")
    got = run(tmp_path, "resumed", 1, settings, resume=True)[0]
    assert_close(got["losses"][4:], plain["losses"][4:], 1e-6,
                 "steps 5-6 of a ZeRO checkpoint resumed on 1 process without ZeRO")


def test_an_error_on_one_rank_ends_every_rank_with_its_message(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    settings = {**TINY, **CASES["lm"], "max_steps": 100000, "time_limit": 3.0, "out": str(out)}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"settings": settings, "result": str(out / "res"), "fail": [1, 3]}))
    try:
        p = subprocess.run(_command(2, spec), env=_env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rank 0 kept waiting for the failed rank 1 ({TIMEOUT} s)")
    assert p.returncode != 0
    assert ("numformer: rank 1 of 2 failed, stopping all ranks: RuntimeError: a deliberate "
            "failure at part 3") in p.stderr, p.stderr


def test_killed_rank_ends_the_others_and_leaves_the_checkpoint(tmp_path):
    from numformer.train.checkpoint import load_checkpoint
    out = tmp_path / "run"
    out.mkdir()
    settings = {**TINY, **CASES["mlm"], "max_steps": 100000, "eval_every": 2, "time_limit": 3.0,
                "out": str(out)}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"settings": settings, "result": str(out / "res"), "pid": True}))
    p = subprocess.Popen(_command(2, spec), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        ck = out / "checkpoint.npz"
        deadline = time.monotonic() + TIMEOUT
        while not (ck.is_file() and (out / "res.pid1").is_file()):
            assert p.poll() is None, f"the run ended early: {p.stdout.read()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        time.sleep(1.0)  # a few more steps and checkpoints
        os.kill(int((out / "res.pid1").read_text()), signal.SIGKILL)
        t0 = time.monotonic()
        try:
            output, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("rank 0 did not end within 30 s of rank 1's death (a hang)")
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert elapsed < 10, f"rank 0 took {elapsed:.1f} s to end"
    assert p.returncode != 0
    assert "BAD TERMINATION" in output and "signal 9" in output.lower(), output
    saved = load_checkpoint(ck)  # whole: written to a temporary and renamed
    step = saved["meta"]["state"]["step"]
    assert step >= 2 and step % 2 == 0 and saved["meta"]["world_size"] == 2
