"""Clipping by the global norm; learning-rate schedules at known steps."""

import math

import numpy as np
import pytest

from numformer.nn import Parameter
from numformer.optim import (SGD, Schedule, clip_grad_norm, constant, grad_norm, make_schedule,
                             warmup_cosine, warmup_linear)
from numformer.testing import assert_close


def grads(*arrays):
    ps = []
    for a in arrays:
        p = Parameter(np.zeros(np.shape(a)))
        p.grad[...] = a
        ps.append(p)
    return ps


def test_clip_scales_to_max_norm_and_returns_the_norm_before():
    ps = grads([3.0, 0.0], [[0.0], [4.0]])  # global norm 5
    norm = clip_grad_norm(ps, 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)
    coef = 1.0 / (5.0 + 1e-6)
    assert_close(ps[0].grad, np.array([3.0 * coef, 0.0]), what="clipped grad 0")
    assert_close(ps[1].grad, np.array([[0.0], [4.0 * coef]]), what="clipped grad 1")
    assert grad_norm(ps) == pytest.approx(1.0, rel=1e-6)


def test_clip_leaves_small_gradients_alone():
    ps = grads([0.3, -0.4])
    assert clip_grad_norm(ps, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(ps[0].grad, [0.3, -0.4])


def test_clip_float32_and_accepts_optimizer():
    p = Parameter(np.zeros(1000, dtype=np.float32))
    p.grad[...] = 1.0  # norm sqrt(1000)
    opt = SGD([p], lr=0.1)
    norm = clip_grad_norm(opt, 2.0)
    assert norm == pytest.approx(math.sqrt(1000), rel=1e-12)
    assert p.grad.dtype == np.float32
    assert float(np.linalg.norm(p.grad.astype(np.float64))) == pytest.approx(2.0, rel=1e-5)


def test_clip_nonfinite():
    ps = grads([np.inf, 1.0])
    assert math.isinf(clip_grad_norm(ps, 1.0))
    assert ps[0].grad[1] == 1.0  # untouched
    with pytest.raises(FloatingPointError, match="inf"):
        clip_grad_norm(ps, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(ps, 0.0)


# schedules ----------------------------------------------------------------------

def test_constant():
    s = constant(0.1)
    assert [s(t) for t in (1, 2, 1000)] == [0.1, 0.1, 0.1]
    w = constant(0.1, warmup_steps=4)
    assert [w(t) for t in (1, 2, 4, 5, 99)] == pytest.approx([0.025, 0.05, 0.1, 0.1, 0.1])


def test_warmup_linear_known_values():
    s = warmup_linear(1.0, warmup_steps=10, total_steps=110, final_lr=0.0)
    # warm-up t/10; decay 1 - (t - 10)/100
    for t, want in [(1, 0.1), (5, 0.5), (10, 1.0), (11, 0.99), (60, 0.5), (109, 0.01),
                    (110, 0.0), (500, 0.0)]:
        assert s(t) == pytest.approx(want, abs=1e-12), t
    f = warmup_linear(1.0, 0, 4, final_lr=0.2)
    assert [f(t) for t in (1, 2, 3, 4, 5)] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.2])


def test_warmup_cosine_known_values():
    s = warmup_cosine(2.0, warmup_steps=4, total_steps=104, final_lr=0.0)
    # after warm-up: 2 * (1 + cos(pi q)) / 2, q = (t - 4) / 100
    for t, want in [(2, 1.0), (4, 2.0), (54, 1.0), (29, 1.0 + math.cos(math.pi / 4)),
                    (104, 0.0), (200, 0.0)]:
        assert s(t) == pytest.approx(want, abs=1e-12), t
    g = warmup_cosine(1.0, 0, 10, final_lr=0.1)
    assert g(5) == pytest.approx(0.55)  # q = 0.5: midway between peak and final
    assert g(10) == pytest.approx(0.1)


def test_apply_sets_the_rate_of_the_next_step():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=0.0)
    s = warmup_linear(1.0, 2, 4)
    seen = []
    for _ in range(4):
        seen.append(s.apply(opt))
        assert opt.lr == seen[-1]
        opt.step()
    assert seen == pytest.approx([0.5, 1.0, 0.5, 0.0])


def test_make_schedule_and_dict():
    s = make_schedule("cosine", 0.5, warmup_steps=2, total_steps=10, final_lr=0.05)
    assert Schedule(**s.to_dict())(7) == s(7)
    assert make_schedule("constant", 0.3, total_steps=5)(100) == 0.3


@pytest.mark.parametrize("bad,match", [
    (lambda: make_schedule("step", 0.1), "schedule"),
    (lambda: warmup_linear(0.1, 10, 5), "total_steps"),
    (lambda: warmup_cosine(0.1, 0, None), "total_steps"),
    (lambda: warmup_linear(0.1, -1, 5), "warmup_steps"),
    (lambda: constant(-0.1), "peak_lr"),
    (lambda: constant(0.1)(0), "step"),
])
def test_schedule_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
