"""A few steps of SGD (momentum, Nesterov, weight decay), Adam and AdamW equal
torch.optim's, given the same gradients (skipped where torch is absent)."""

import numpy as np
import pytest

from numformer.nn import Parameter
from numformer.optim import SGD, Adam, AdamW, clip_grad_norm
from numformer.testing import assert_close

torch = pytest.importorskip("torch")

CASES = [
    ("sgd", dict(lr=0.1), dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, weight_decay=0.01),
     dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05),
     dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05)),
    ("adamw", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
     dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
]
OURS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
THEIRS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,ours_kw,theirs_kw", CASES)
def test_matches_torch(rng, dtype, kind, ours_kw, theirs_kw):
    shapes = [(4, 3), (3,), (2, 2, 2)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]

    ps = [Parameter(v.copy()) for v in init]
    opt = OURS[kind](ps, **ours_kw)
    tps = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in init]
    topt = getattr(torch.optim, THEIRS[kind])(tps, **theirs_kw)

    for step, gs in enumerate(grads):
        for p, tp, g in zip(ps, tps, gs):
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ps, tps)):
            assert_close(p.value, tp.detach().numpy(), dtype=dtype,
                         what=f"{kind} step {step + 1} param {i}")


def test_clip_matches_torch(rng):
    shapes = [(5, 4), (4,)]
    gs = [rng.standard_normal(s) * 3 for s in shapes]
    ps = [Parameter(np.zeros(s)) for s in shapes]
    tps = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    for p, tp, g in zip(ps, tps, gs):
        p.grad[...] = g
        tp.grad = torch.from_numpy(g.copy())
    norm = clip_grad_norm(ps, 1.5)
    tnorm = torch.nn.utils.clip_grad_norm_(tps, 1.5)
    assert norm == pytest.approx(float(tnorm), rel=1e-12)
    for p, tp in zip(ps, tps):
        assert_close(p.grad, tp.grad.numpy(), what="clipped grad")
