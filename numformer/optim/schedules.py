"""Learning-rate schedules: the learning rate as a function of the step.

Steps count from 1, like the optimizer's step count ``t`` after the step
(and Adam's bias correction): ``schedule(t)`` is the rate of the t-th
update. Before each ``optimizer.step()`` call ``schedule.apply(optimizer)``,
which sets ``optimizer.lr = schedule(optimizer.t + 1)``; the schedule holds
no state, so a resumed run (the optimizer's ``t`` restored) continues on
the same curve.

With W warm-up steps, S total steps, peak rate P and final rate F:

    t <= W:      P * t / W                          (linear warm-up; none if W = 0)
    W < t <= S:  progress q = (t - W) / (S - W)
                 constant: P
                 linear:   P + (F - P) * q
                 cosine:   F + (P - F) * (1 + cos(pi * q)) / 2
    t > S:       F for linear and cosine, P for constant
"""

from __future__ import annotations

import math

DECAYS = ("constant", "linear", "cosine")


class Schedule:
    """A warm-up then a decay; callable on the 1-based step. Build it with
    ``constant``, ``warmup_linear``, ``warmup_cosine`` or ``make_schedule``."""

    def __init__(self, peak_lr: float, warmup_steps: int = 0, total_steps: int | None = None,
                 decay: str = "constant", final_lr: float = 0.0):
        if decay not in DECAYS:
            raise ValueError(f"decay: expected one of {DECAYS}, got {decay!r}")
        if not float(peak_lr) >= 0:
            raise ValueError(f"peak_lr: expected a number >= 0, got {peak_lr}")
        if not float(final_lr) >= 0:
            raise ValueError(f"final_lr: expected a number >= 0, got {final_lr}")
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"warmup_steps: expected an integer >= 0, got {warmup_steps}")
        if decay != "constant":
            if total_steps is None or int(total_steps) != total_steps or total_steps < 1:
                raise ValueError(f"total_steps: expected an integer >= 1 for a {decay} decay, "
                                 f"got {total_steps}")
            if total_steps < warmup_steps:
                raise ValueError(f"total_steps: expected >= warmup_steps={warmup_steps}, "
                                 f"got {total_steps}")
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.decay = decay
        self.final_lr = float(final_lr)

    def __call__(self, step: int) -> float:
        if int(step) != step or step < 1:
            raise ValueError(f"step: expected an integer >= 1 (steps count from 1), got {step}")
        W, P, F = self.warmup_steps, self.peak_lr, self.final_lr
        if step <= W:
            return P * step / W
        if self.decay == "constant":
            return P
        S = self.total_steps
        if step >= S:
            return F
        q = (step - W) / (S - W)
        if self.decay == "linear":
            return P + (F - P) * q
        return F + (P - F) * 0.5 * (1.0 + math.cos(math.pi * q))

    def apply(self, optimizer) -> float:
        """Set ``optimizer.lr`` for its next step (``t + 1``) and return it."""
        lr = self(optimizer.t + 1)
        optimizer.lr = lr
        return lr

    def to_dict(self) -> dict:
        """Plain values (a config file can store them); ``Schedule(**d)`` rebuilds it."""
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay, "final_lr": self.final_lr}

    def __repr__(self) -> str:
        return "Schedule(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def constant(lr: float, warmup_steps: int = 0) -> Schedule:
    """``lr`` at every step (after an optional linear warm-up)."""
    return Schedule(lr, warmup_steps, None, "constant")


def warmup_linear(peak_lr: float, warmup_steps: int, total_steps: int,
                  final_lr: float = 0.0) -> Schedule:
    """Linear warm-up to ``peak_lr``, then linear decay to ``final_lr`` at ``total_steps``."""
    return Schedule(peak_lr, warmup_steps, total_steps, "linear", final_lr)


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int,
                  final_lr: float = 0.0) -> Schedule:
    """Linear warm-up to ``peak_lr``, then half a cosine down to ``final_lr`` at ``total_steps``."""
    return Schedule(peak_lr, warmup_steps, total_steps, "cosine", final_lr)


def make_schedule(name: str, lr: float, warmup_steps: int = 0, total_steps: int | None = None,
                  final_lr: float = 0.0) -> Schedule:
    """By name, for command lines: "constant", "linear" or "cosine"."""
    if name not in DECAYS:
        raise ValueError(f"schedule: expected one of {DECAYS}, got {name!r}")
    return Schedule(lr, warmup_steps, total_steps if name != "constant" else None, name,
                    final_lr)
