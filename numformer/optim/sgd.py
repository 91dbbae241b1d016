"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

Per Parameter, with g its gradient, lr the learning rate, mu the momentum,
wd the group's weight decay and b the momentum buffer (zeros at the start):

    g <- g + wd * p                     (L2 weight decay, added to the gradient)
    b <- mu * b + g                     (if mu > 0)
    d <- g + mu * b   if nesterov  else  b        (d = g when mu = 0)
    p <- p - lr * d

This is torch.optim.SGD with dampening 0 (its buffer starts at g, ours at
zero, and mu * 0 + g = g, so the two agree from the first step).
"""

from __future__ import annotations

import numpy as np

from numformer.nn.module import Parameter
from numformer.optim.base import NoDecay, Optimizer, ParamGroup


class SGD(Optimizer):
    """SGD(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, no_decay=None).

    See ``numformer.optim.base`` for the forms ``params`` and ``no_decay`` take.
    """

    _hyper = ("momentum", "nesterov")

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, no_decay: NoDecay | str | None = None):
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov: expected momentum > 0 with nesterov=True, got momentum=0")
        self._buffer_names = ("momentum_buffer",) if momentum > 0 else ()
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(params, lr, weight_decay, no_decay)

    def _update(self, i: int, p: Parameter, group: ParamGroup) -> None:
        dt = p.value.dtype.type
        g = p.grad
        if group.weight_decay:
            g = g + dt(group.weight_decay) * p.value
        if self.momentum:
            b = self.state["momentum_buffer"][i]
            b *= dt(self.momentum)
            b += g
            d = g + dt(self.momentum) * b if self.nesterov else b
        else:
            d = g
        p.value -= dt(self.lr) * d

    def load_state_dict(self, sd: dict) -> None:
        if "momentum" in sd and bool(np.asarray(sd["momentum"]).item()) != bool(self.momentum):
            raise ValueError(f"SGD.load_state_dict: the state has momentum={sd['momentum']}, this "
                             f"optimizer momentum={self.momentum}; momentum on/off cannot change "
                             f"on load (the buffers differ)")
        super().load_state_dict(sd)
