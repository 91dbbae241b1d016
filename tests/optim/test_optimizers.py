"""SGD, Adam, AdamW: one step against the closed form (written out here),
convergence on a quadratic, no_decay groups, state_dict round trips."""

import math

import numpy as np
import pytest

from numformer.nn import Linear, Module, Parameter
from numformer.optim import SGD, Adam, AdamW, no_decay_auto
from numformer.testing import assert_close


def make(rng, dtype=np.float64):
    """Two Parameters (a matrix and a vector) with random values and gradients."""
    W = Parameter(rng.standard_normal((3, 4)).astype(dtype))
    b = Parameter(rng.standard_normal(4).astype(dtype))
    W.grad[...] = rng.standard_normal((3, 4))
    b.grad[...] = rng.standard_normal(4)
    return [W, b]


# one step against the closed form ------------------------------------------------

@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_two_steps_closed_form(rng, nesterov):
    W, b = make(rng)
    p0 = W.value.copy()
    g1 = W.grad.copy()
    lr, mu, wd = 0.1, 0.9, 0.01
    opt = SGD([W, b], lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    opt.step()
    # step 1: buffer = g1 + wd p0
    d1 = g1 + wd * p0
    buf1 = d1
    p1 = p0 - lr * (d1 + mu * buf1 if nesterov else buf1)
    assert_close(W.value, p1, what="SGD step 1")
    # step 2 with a new gradient
    g2 = rng.standard_normal(W.shape)
    W.grad[...] = g2
    opt.step()
    d2 = g2 + wd * p1
    buf2 = mu * buf1 + d2
    p2 = p1 - lr * (d2 + mu * buf2 if nesterov else buf2)
    assert_close(W.value, p2, what="SGD step 2")
    assert opt.t == 2


def test_sgd_plain_step(rng):
    W, b = make(rng)
    p0, g = b.value.copy(), b.grad.copy()
    SGD([W, b], lr=0.5).step()
    assert_close(b.value, p0 - 0.5 * g, what="plain SGD")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,decoupled", [(Adam, False), (AdamW, True)])
def test_adam_first_step_closed_form(rng, dtype, cls, decoupled):
    W, b = make(rng, dtype)
    p0 = W.value.astype(np.float64)
    g = W.grad.astype(np.float64)
    lr, b1, b2, eps, wd = 1e-2, 0.8, 0.95, 1e-6, 0.1
    opt = cls([W, b], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    opt.step()
    if decoupled:
        p = p0 * (1 - lr * wd)
        gg = g
    else:
        p = p0
        gg = g + wd * p0
    m = (1 - b1) * gg
    v = (1 - b2) * gg ** 2
    mhat = m / (1 - b1)
    vhat = v / (1 - b2)
    expected = p - lr * mhat / (np.sqrt(vhat) + eps)
    assert W.value.dtype == dtype
    assert_close(W.value, expected, dtype=dtype, what=f"{cls.__name__} step 1")
    assert_close(opt.state["m"][0], m, dtype=dtype, what="m")
    assert_close(opt.state["v"][0], v, dtype=dtype, what="v")


def test_adam_second_step_bias_correction(rng):
    (W,) = make(rng)[:1]
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    opt = Adam([W], lr=lr, betas=(b1, b2), eps=eps)
    p, g1 = W.value.copy(), W.grad.copy()
    opt.step()
    g2 = rng.standard_normal(W.shape)
    W.grad[...] = g2
    p1 = W.value.copy()
    opt.step()
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1 ** 2 + (1 - b2) * g2 ** 2
    expected = p1 - lr * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps)
    assert_close(W.value, expected, what="Adam step 2")
    assert not np.allclose(p, p1)


# convergence ------------------------------------------------------------------

def quadratic(rng, n=6):
    """f(x) = 1/2 (x - x*)^T A (x - x*), A SPD with condition number 10."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.linspace(1.0, 10.0, n)) @ Q.T
    xstar = rng.standard_normal(n)
    return A, xstar


@pytest.mark.parametrize("make_opt,steps", [
    (lambda ps: SGD(ps, lr=0.05), 400),
    (lambda ps: SGD(ps, lr=0.02, momentum=0.9), 400),
    (lambda ps: SGD(ps, lr=0.02, momentum=0.9, nesterov=True), 400),
    (lambda ps: Adam(ps, lr=0.05), 1500),
    (lambda ps: AdamW(ps, lr=0.05, weight_decay=0.0), 1500),
])
def test_converges_on_quadratic(rng, make_opt, steps):
    A, xstar = quadratic(rng)
    x = Parameter(np.zeros(len(xstar)))
    opt = make_opt([x])
    f0 = 0.5 * xstar @ A @ xstar
    for _ in range(steps):
        x.grad[...] = A @ (x.value - xstar)
        opt.step()
    err = np.abs(x.value - xstar).max()
    f = 0.5 * (x.value - xstar) @ A @ (x.value - xstar)
    assert err < 1e-3, f"{opt!r}: max |x - x*| = {err:.3e} after {steps} steps (f0={f0:.3g})"
    assert f < 1e-6 * f0


def test_adamw_decay_alone_is_geometric(rng):
    """Zero gradient: Adam's update is 0 / (0 + eps) = 0, so AdamW only decays,
    p_t = p_0 (1 - lr wd)^t exactly; L2 Adam instead sees g = wd p and moves
    by about lr per step (its update is normalised)."""
    p0 = rng.standard_normal(5)
    x, y = Parameter(p0.copy()), Parameter(p0.copy())
    optw, opta = AdamW([x], lr=0.01, weight_decay=0.5), Adam([y], lr=0.01, weight_decay=0.5)
    for _ in range(100):
        optw.step()
        opta.step()
    assert_close(x.value, p0 * (1 - 0.01 * 0.5) ** 100, what="AdamW pure decay")
    # Adam-L2 normalises the decay term away: each step moves |p| by about lr,
    # far from the geometric factor (1 - 0.005)^100 = 0.61
    assert np.all(np.abs(y.value - x.value) > 1e-2), (y.value, x.value)


# groups and no_decay ---------------------------------------------------------

class Tiny(Module):
    def __init__(self, rng):
        super().__init__()
        self.fc = Linear(3, 2, rng=rng, dtype=np.float64)


def test_no_decay_auto_skips_biases():
    rng = np.random.default_rng(0)
    m = Tiny(rng)
    for p in m.parameters():
        p.grad[...] = 0.0  # only the decay moves anything
    w0, b0 = m.fc.weight.value.copy(), m.fc.bias.value.copy()
    m.fc.bias.value[...] = 1.0
    opt = AdamW(m, lr=0.1, weight_decay=0.5, no_decay="auto")
    assert [g.names for g in opt.groups] == [["fc.weight"], ["fc.bias"]]
    assert [g.weight_decay for g in opt.groups] == [0.5, 0.0]
    opt.step()
    # zero gradient: Adam's update is 0 / (0 + eps) = 0, the weight only decays
    assert_close(m.fc.weight.value, w0 * (1 - 0.1 * 0.5), what="decayed weight")
    assert_close(m.fc.bias.value, np.ones(2), what="exempt bias")
    assert not np.allclose(b0, 1.0)


def test_no_decay_predicate_and_explicit_groups(rng):
    W, b = make(rng)
    opt = SGD([("w", W), ("b", b)], lr=0.1, weight_decay=0.2, no_decay=lambda n, p: n == "w")
    assert [g.names for g in opt.groups] == [["b"], ["w"]]
    assert [g.weight_decay for g in opt.groups] == [0.2, 0.0]
    opt2 = SGD([{"params": [W], "weight_decay": 0.3}, {"params": [b]}], lr=0.1, weight_decay=0.1)
    assert [g.weight_decay for g in opt2.groups] == [0.3, 0.1]
    assert no_decay_auto("x", b) and not no_decay_auto("x", W)


@pytest.mark.parametrize("bad,match", [
    (lambda W, b: SGD([W, W], lr=0.1), "more than once"),
    (lambda W, b: SGD([], lr=0.1), "at least one"),
    (lambda W, b: SGD(W, lr=0.1), "single Parameter"),
    (lambda W, b: SGD([W, "x"], lr=0.1), r"params\[1\]"),
    (lambda W, b: SGD([W], lr=-1.0), "lr"),
    (lambda W, b: SGD([W], lr=0.1, momentum=1.0), "momentum"),
    (lambda W, b: SGD([W], lr=0.1, nesterov=True), "nesterov"),
    (lambda W, b: Adam([W], betas=(0.9, 1.0)), "betas"),
    (lambda W, b: Adam([W], eps=0.0), "eps"),
    (lambda W, b: AdamW([W], weight_decay=-0.1), "weight_decay"),
    (lambda W, b: AdamW([W], no_decay="bias"), "no_decay"),
    (lambda W, b: AdamW([{"params": [W], "lr": 0.1}]), "weight_decay"),
])
def test_bad_arguments(rng, bad, match):
    W, b = make(rng)
    with pytest.raises(ValueError, match=match):
        bad(W, b)


def test_follows_astype(rng):
    """A Parameter converted to float32 after the optimizer was built still steps,
    and its moments follow its dtype."""
    W, b = make(rng)
    opt = Adam([W, b], lr=0.01)
    opt.step()
    W.astype(np.float32)
    b.astype(np.float32)
    opt.step()
    assert W.value.dtype == np.float32 and opt.state["m"][0].dtype == np.float32


# state_dict ---------------------------------------------------------------------

OPTS = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: SGD(ps, lr=0.1),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
]


def _run(opt, params, grads):
    for g in grads:
        for p, gi in zip(params, g):
            p.grad[...] = gi
        opt.step()


@pytest.mark.parametrize("make_opt", OPTS)
def test_state_dict_round_trip_continues_identically(tmp_path, rng, make_opt):
    params = make(rng)
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(6)]
    init = [p.value.copy() for p in params]

    # reference: 6 steps without interruption
    ref = [Parameter(v.copy()) for v in init]
    _run(make_opt(ref), ref, grads)

    # 3 steps, save (npz, no pickle), new optimizer, load, 3 more steps
    a = [Parameter(v.copy()) for v in init]
    opt = make_opt(a)
    _run(opt, a, grads[:3])
    sd = opt.state_dict()
    for k, v in sd.items():
        assert isinstance(v, (np.ndarray, int, float)) and not isinstance(v, bool), (k, type(v))
    np.savez(tmp_path / "opt.npz", **sd)
    loaded = dict(np.load(tmp_path / "opt.npz", allow_pickle=False))
    b = [Parameter(p.value.copy()) for p in a]
    opt2 = make_opt(b)
    opt2.lr = 123.0  # overwritten by the load
    opt2.load_state_dict(loaded)
    assert opt2.t == 3 and opt2.lr == opt.lr
    _run(opt2, b, grads[3:])
    for x, y in zip(b, ref):
        np.testing.assert_array_equal(x.value, y.value)


def test_state_dict_is_a_copy(rng):
    params = make(rng)
    opt = Adam(params)
    opt.step()
    sd = opt.state_dict()
    sd["m.0"][...] = 99.0
    assert not np.any(opt.state["m"][0] == 99.0)


def test_load_state_dict_errors(rng):
    params = make(rng)
    opt = Adam(params, lr=0.01)
    opt.step()
    sd = opt.state_dict()

    wrong_shape = dict(sd, **{"v.1": np.zeros(5)})
    with pytest.raises(ValueError, match=r"v\.1 \(1\): expected shape \(4,\), got \(5,\)"):
        Adam(make(rng)).load_state_dict(wrong_shape)

    missing = {k: v for k, v in sd.items() if k != "m.0"}
    with pytest.raises(ValueError, match=r"missing keys \['m\.0'\]"):
        Adam(make(rng)).load_state_dict(missing)

    with pytest.raises(ValueError, match="unexpected keys"):
        Adam(make(rng)[:1]).load_state_dict(sd)  # one Parameter, the state has two

    with pytest.raises(ValueError, match="missing keys"):
        SGD(make(rng), lr=0.1, momentum=0.9).load_state_dict(sd)  # Adam state into SGD

    with pytest.raises(ValueError, match="expected a float array"):
        Adam(make(rng)).load_state_dict(dict(sd, **{"m.0": np.zeros((3, 4), dtype=np.int64)}))

    with pytest.raises(ValueError, match="t: expected a number"):
        Adam(make(rng)).load_state_dict(dict(sd, t=np.zeros(2)))

    # a failed load changes nothing
    target = Adam(make(rng), lr=0.5)
    with pytest.raises(ValueError):
        target.load_state_dict(wrong_shape)
    assert target.t == 0 and target.lr == 0.5 and not target.state["m"][0].any()


def test_sgd_momentum_mismatch_is_reported(rng):
    sd = SGD(make(rng), lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(ValueError, match="momentum"):
        SGD(make(rng), lr=0.1).load_state_dict(sd)


def test_zero_grad_and_repr(rng):
    params = make(rng)
    opt = AdamW(params, no_decay="auto")
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)
    assert "AdamW" in repr(opt) and math.isclose(opt.betas[1], 0.999)


# the backend switch ------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adam_through_each_backend_matches_closed_form(rng, backend):
    """The update goes through kernels.op("adam") of the backend in effect (the Numba
    twin once registered, else the reference); either way it is the closed form."""
    from numformer import get_backend, set_backend
    old = get_backend()
    try:
        set_backend(backend)
        W = Parameter(rng.standard_normal((70, 33)).astype(np.float32))  # not a block multiple
        W.grad[...] = rng.standard_normal(W.shape)
        p0, g = W.value.astype(np.float64), W.grad.astype(np.float64)
        AdamW([W], lr=0.01, weight_decay=0.1).step()
    finally:
        set_backend(old)
    expected = p0 * (1 - 0.01 * 0.1) - 0.01 * g / (np.sqrt(g * g) + 1e-8)  # m^ = g, v^ = g^2
    assert_close(W.value, expected, dtype=np.float32, what=f"AdamW step ({backend})")


def test_adam_calls_the_kernel_op(rng, monkeypatch):
    from numformer import kernels
    from numformer.ops import adam as ref
    calls = []

    class Spy:
        @staticmethod
        def adam_step(*args, **kw):
            calls.append(kw["step"])
            return ref.adam_step(*args, **kw)

    monkeypatch.setattr(kernels, "op", lambda name, backend=None: Spy if name == "adam" else None)
    params = make(rng)
    opt = Adam(params)
    opt.step()
    opt.step()
    assert calls == [1, 1, 2, 2]  # two Parameters, steps 1 and 2
