"""Adam and AdamW: the optimizer state around ``kernels.op("adam").adam_step``.

The per-array arithmetic is ``numformer.ops.adam.adam_step`` (or its Numba
twin ``numformer.kernels.adam``, chosen by the backend switch at every step):
with g the gradient, t the step (1-based), wd the group's weight decay,

    Adam  (L2):       g <- g + wd * p
    AdamW (decoupled): p <- p * (1 - lr * wd)
    m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

as in torch.optim.Adam / AdamW. m and v start at zero and have each
Parameter's shape and dtype.
"""

from __future__ import annotations

from numformer import kernels
from numformer.nn.module import Parameter
from numformer.optim.base import NoDecay, Optimizer, ParamGroup


class Adam(Optimizer):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, no_decay=None).

    weight_decay is L2 (added to the gradient, then scaled by the adaptive
    step); use AdamW for decoupled decay. See ``numformer.optim.base`` for the
    forms ``params`` and ``no_decay`` take.
    """

    _buffer_names = ("m", "v")
    _hyper = ("beta1", "beta2", "eps")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 no_decay: NoDecay | str | None = None):
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas}")
        if not float(eps) > 0:
            raise ValueError(f"eps: expected a number > 0, got {eps}")
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay, no_decay)

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2

    def step(self) -> None:
        self._op = kernels.op("adam")  # resolved per step: follows set_backend()
        super().step()

    def _update(self, i: int, p: Parameter, group: ParamGroup) -> None:
        self._op.adam_step(p.value, p.grad, self.state["m"][i], self.state["v"][i], lr=self.lr,
                           beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                           weight_decay=group.weight_decay, step=self.t,
                           decoupled=self.decoupled)


class AdamW(Adam):
    """AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, no_decay=None).

    Decoupled weight decay (Loshchilov & Hutter): p <- p (1 - lr wd) before the
    Adam step. ``no_decay="auto"`` exempts biases and LayerNorm parameters.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01,
                 no_decay: NoDecay | str | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, no_decay)
