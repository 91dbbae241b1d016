"""Optimizers, gradient clipping and learning-rate schedules.

    opt = AdamW(model, lr=3e-4, weight_decay=0.01, no_decay="auto")
    sched = warmup_cosine(3e-4, warmup_steps=100, total_steps=2000)
    for batch in batches:
        model.zero_grad()
        ... forward, backward ...
        norm = clip_grad_norm(model, 1.0)
        sched.apply(opt)         # opt.lr for step opt.t + 1
        opt.step()
    np.savez(path, **opt.state_dict())              # arrays and numbers only
    opt.load_state_dict(dict(np.load(path)))        # validated

Optimizers own their state (moments, the step count ``t``) and read
``Parameter.grad``; they never zero it (``model.zero_grad()`` or
``opt.zero_grad()`` is explicit).
"""

from numformer.optim.adam import Adam, AdamW
from numformer.optim.base import Optimizer, ParamGroup, no_decay_auto
from numformer.optim.clip import clip_grad_norm, grad_norm
from numformer.optim.schedules import (Schedule, constant, make_schedule, warmup_cosine,
                                       warmup_linear)
from numformer.optim.sgd import SGD

__all__ = ["Optimizer", "ParamGroup", "no_decay_auto", "SGD", "Adam", "AdamW",
           "clip_grad_norm", "grad_norm", "Schedule", "constant", "warmup_linear",
           "warmup_cosine", "make_schedule"]
