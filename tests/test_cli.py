"""The numformer command."""

import subprocess
import sys

import numpy as np

from numformer import cli, gradcheck_suite, ops
from numformer.gradcheck import check_op


def test_gradcheck_command_passes_and_prints_a_table():
    r = subprocess.run([sys.executable, "-m", "numformer", "gradcheck", "--only", "model/*",
                        "op/attention_mask"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "norm rel" in r.stdout and "masked-LM post-LN + loss" in r.stdout
    assert "FAIL" not in r.stdout and "all within tolerance" in r.stdout


def test_gradcheck_command_exits_nonzero_on_a_failure(monkeypatch, capsys):
    def wrong():
        x = np.random.default_rng(0).standard_normal((2, 4))
        return check_op(ops.relu_forward, lambda d, m: d, dict(x=x), ["x"], title="broken relu")
    monkeypatch.setitem(gradcheck_suite.CASES, "op/broken", wrong)
    assert cli.main(["gradcheck", "--only", "op/broken", "op/relu"]) == 1
    out = capsys.readouterr().out
    assert "broken relu" in out and "FAIL" in out and "FAILURES above" in out


def test_gradcheck_command_unknown_pattern(capsys):
    assert cli.main(["gradcheck", "--only", "nothing/*"]) == 2
    assert "no check matches" in capsys.readouterr().err


def test_gradcheck_list(capsys):
    assert cli.main(["gradcheck", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert names == list(gradcheck_suite.CASES)
