"""The checker itself: it must pass correct backward passes and catch wrong ones."""

import numpy as np
import pytest

from numformer import nn, ops
from numformer.gradcheck import check_module, check_op, compare, numeric_grad
from numformer.gradcheck_suite import CASES


@pytest.mark.parametrize("name", list(CASES))
def test_every_op_layer_and_model_passes(name):
    report = CASES[name]()
    assert report.rows, f"{name}: no tensor was checked"
    report.assert_ok()
    # float64 central differences on a correct backward land far below the tolerance
    assert report.worst_norm_rel < 1e-8, report.table()


def _wrong_layernorm_backward(dout, cache):
    xhat, gamma, rstd = cache
    dx, dg, db = ops.layernorm_backward(dout, cache)
    # drop the variance path: a classic subtle bug
    dxhat = dout * gamma
    dx_wrong = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True))
    return dx_wrong, dg, db


def test_checker_fails_on_wrong_backward(rng):
    x = rng.standard_normal((3, 4, 5))
    report = check_op(ops.layernorm_forward, _wrong_layernorm_backward,
                      dict(x=x, g=rng.standard_normal(5), b=rng.standard_normal(5)),
                      ["x", "g", "b"])
    assert not report.ok
    rows = {r.name: r for r in report.rows}
    assert not rows["x"].ok and rows["x"].norm_rel > 1e-3
    assert rows["g"].ok and rows["b"].ok  # the parameter gradients were right
    with pytest.raises(AssertionError, match="x: norm rel"):
        report.assert_ok()


def test_checker_catches_a_bug_an_all_ones_upstream_hides(rng):
    """Subtracting mean(dp) instead of sum(dp * p) agrees with the true softmax backward
    when dp is all ones (both give zero), so only a random upstream gradient sees it."""
    def wrong(dp, p):
        return p * (dp - dp.mean(axis=-1, keepdims=True))
    x = rng.standard_normal((2, 6))
    p, _ = ops.softmax_forward(x)
    ones = np.ones_like(p)
    np.testing.assert_allclose(wrong(ones, p), ops.softmax_backward(ones, p), atol=1e-15)
    report = check_op(ops.softmax_forward, wrong, dict(x=x), ["x"])
    assert not report.ok and report.rows[0].norm_rel > 1e-3


def test_checker_catches_wrong_module_parameter_gradient(rng):
    lin = nn.Linear(3, 4, rng=0, init_std=1.0)
    orig = lin.backward

    def bad_backward(dout):
        dx = orig(dout)
        lin.bias.grad *= 2.0
        return dx
    lin.backward = bad_backward
    report = check_module(lin, rng.standard_normal((2, 3)))
    rows = {r.name: r for r in report.rows}
    assert not rows["bias"].ok and rows["weight"].ok and rows["input[0]"].ok


def test_checker_catches_dropped_repeated_ids(rng):
    """The fancy-index bug: dW[ids] += dout keeps one of the repeated ids."""
    def fancy_backward(dout, cache):
        ids, wshape, dtype = cache
        dW = np.zeros(wshape, dtype)
        dW[ids.reshape(-1)] += dout.reshape(-1, wshape[1])
        return dW
    ids = np.array([[1, 1, 2], [0, 1, 3]])
    report = check_op(ops.embedding_forward, fancy_backward,
                      dict(ids=ids, W=rng.standard_normal((4, 3))), ["W"])
    assert not report.ok
    assert report.rows[0].worst[0] == 1  # the repeated row


def test_numeric_grad_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 3.0]])
    g = numeric_grad(lambda: float(np.sum(np.sin(x) * x)), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-9)
    assert np.array_equal(x, [[0.5, -1.0], [2.0, 3.0]])  # restored


def test_compare_reports_worst_index_and_values():
    a = np.zeros((2, 3))
    n = np.zeros((2, 3))
    n[1, 2] = 1e-3
    a[1, 2] = 2e-3
    row = compare("t", a, n, tol=1e-7)
    assert row.worst == (1, 2) and not row.ok
    assert row.analytic == pytest.approx(2e-3) and row.numeric == pytest.approx(1e-3)
    assert row.norm_rel == pytest.approx(0.5)
    assert row.max_abs == pytest.approx(1e-3)


def test_compare_rejects_shape_mismatch():
    with pytest.raises(AssertionError, match="shape"):
        compare("t", np.zeros(3), np.zeros(4), 1e-7)


def test_check_op_rejects_unknown_wrt(rng):
    with pytest.raises(ValueError, match="not one of the inputs"):
        check_op(ops.softmax_forward, ops.softmax_backward, dict(x=rng.standard_normal(3)), ["y"])
