"""The optimizer base: parameter groups, the step count, state_dict.

An optimizer takes the Parameters to train in any of these forms:

    model                                  a Module (its named_parameters())
    model.parameters()                     a list of Parameter
    model.named_parameters()               (name, Parameter) pairs
    [{"params": [...], "weight_decay": 0.0}, {"params": [...]}]   explicit groups

and, with ``no_decay``, splits them into a decayed and a non-decayed group:
``no_decay="auto"`` exempts every Parameter with fewer than 2 dimensions
(biases, LayerNorm gamma/beta), or pass a predicate ``(name, param) -> bool``.
Parameters given without names are named "0", "1", ... in order.

It reads ``Parameter.grad`` and updates ``Parameter.value`` in place; the
moments and the step count live in the optimizer. A frozen Parameter
(``grad is None``, see ``Module.freeze``) is skipped and holds no state:
its buffers are None, and state_dict has no entry for it (freezing or
unfreezing after the optimizer was built takes effect at the next step). One learning rate,
``optimizer.lr``, applies to every group (a schedule sets it before each
step, see ``numformer.optim.schedules``).

``state_dict()`` is flat and holds only NumPy arrays and Python numbers, so
``np.savez(path, **opt.state_dict())`` stores it without pickle and
``opt.load_state_dict(dict(np.load(path)))`` restores it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from numformer.nn.module import Module, Parameter

NoDecay = Callable[[str, Parameter], bool]


def no_decay_auto(name: str, p: Parameter) -> bool:
    """The usual exemption from weight decay: vectors and scalars (biases, LayerNorm
    gamma/beta). Matrices, embeddings included, are decayed."""
    return p.value.ndim < 2


class ParamGroup:
    """Parameters sharing hyper-parameters (for now: weight decay)."""

    __slots__ = ("params", "names", "weight_decay")

    def __init__(self, params: list[Parameter], names: list[str], weight_decay: float):
        self.params = params
        self.names = names
        self.weight_decay = float(weight_decay)

    def __repr__(self) -> str:
        return f"ParamGroup(n_params={len(self.params)}, weight_decay={self.weight_decay})"


def _named(params) -> list[tuple[str, Parameter]]:
    """Normalise a Module / iterable of Parameter / of (name, Parameter) to named pairs."""
    if isinstance(params, Module):
        return list(params.named_parameters())
    if isinstance(params, Parameter):
        raise ValueError("params: expected an iterable of Parameter (or a Module), "
                         "got a single Parameter; wrap it in a list")
    out = []
    for i, item in enumerate(params):
        if isinstance(item, Parameter):
            out.append((str(i), item))
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], Parameter)):
            out.append(item)
        else:
            raise ValueError(f"params[{i}]: expected a Parameter or a (name, Parameter) pair, "
                             f"got {type(item).__name__}")
    return out


def build_groups(params, weight_decay: float, no_decay: NoDecay | str | None) -> list[ParamGroup]:
    """The parameter groups of an optimizer (see the module docstring)."""
    if no_decay == "auto":
        no_decay = no_decay_auto
    elif no_decay is not None and not callable(no_decay):
        raise ValueError(f"no_decay: expected None, 'auto' or a callable (name, param) -> bool, "
                         f"got {no_decay!r}")
    if not isinstance(params, (Module, Parameter)):
        params = list(params)
    if isinstance(params, list) and params and all(isinstance(g, dict) for g in params):
        if no_decay is not None:
            raise ValueError("no_decay: give either explicit groups (dicts) or no_decay, not both")
        groups = []
        for gi, g in enumerate(params):
            unknown = sorted(set(g) - {"params", "weight_decay"})
            if unknown or "params" not in g:
                raise ValueError(f"params[{gi}]: expected a dict with 'params' and optionally "
                                 f"'weight_decay', got keys {sorted(g)}")
            named = _named(g["params"])
            groups.append(ParamGroup([p for _, p in named], [n for n, _ in named],
                                     g.get("weight_decay", weight_decay)))
    else:
        named = _named(params)
        if no_decay is None:
            groups = [ParamGroup([p for _, p in named], [n for n, _ in named], weight_decay)]
        else:
            flags = [bool(no_decay(n, p)) for n, p in named]
            dec = [(n, p) for (n, p), f in zip(named, flags) if not f]
            nod = [(n, p) for (n, p), f in zip(named, flags) if f]
            groups = [ParamGroup([p for _, p in dec], [n for n, _ in dec], weight_decay),
                      ParamGroup([p for _, p in nod], [n for n, _ in nod], 0.0)]
    seen: set[int] = set()
    total = 0
    for g in groups:
        if g.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {g.weight_decay}")
        for n, p in zip(g.names, g.params):
            if id(p) in seen:
                raise ValueError(f"params: Parameter {n!r} appears more than once")
            seen.add(id(p))
            total += 1
    if total == 0:
        raise ValueError("params: expected at least one Parameter, got none")
    return groups


def _number(name: str, value) -> float:
    """A plain number from a Python number or a 0-d array (what np.load gives back)."""
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValueError(f"load_state_dict: {name}: expected a number, got "
                         f"{type(value).__name__} with shape {arr.shape} and dtype {arr.dtype}")
    return arr.item()


class Optimizer:
    """Base class: groups, step count ``t`` (steps taken), ``lr``, zero_grad, state_dict.

    Subclasses define ``_buffer_names`` (per-Parameter state arrays, created
    as zeros of the Parameter's shape and dtype), ``_hyper`` (names of scalar
    hyper-parameters saved in state_dict) and ``_update(i, p, group)``.
    """

    _buffer_names: tuple[str, ...] = ()
    _hyper: tuple[str, ...] = ()

    def __init__(self, params, lr: float, weight_decay: float = 0.0,
                 no_decay: NoDecay | str | None = None):
        if not float(lr) >= 0:
            raise ValueError(f"lr: expected a number >= 0, got {lr}")
        self.lr = float(lr)
        self.groups = build_groups(params, weight_decay, no_decay)
        self.t = 0
        self.state: dict[str, list[np.ndarray | None]] = {
            b: [None] * len(self.params) for b in self._buffer_names}
        self._sync_state()

    def _sync_state(self) -> None:
        """Buffers for the trainable Parameters (zeros when new), none for frozen ones."""
        for i, p in enumerate(self.params):
            for b in self._buffer_names:
                if p.grad is None:
                    self.state[b][i] = None
                elif self.state[b][i] is None:
                    self.state[b][i] = np.zeros_like(p.value)

    # the parameters -------------------------------------------------------
    @property
    def params(self) -> list[Parameter]:
        """Every Parameter, in group order (the index used in state_dict)."""
        return [p for g in self.groups for p in g.params]

    @property
    def names(self) -> list[str]:
        return [n for g in self.groups for n in g.names]

    def zero_grad(self) -> None:
        for p in self.params:
            p.zero_grad()  # frozen ones have no gradient to zero

    # stepping -------------------------------------------------------------
    def step(self) -> None:
        """One update of every Parameter from its ``grad``; ``t`` counts it."""
        self.t += 1
        self._sync_state()
        i = 0
        for g in self.groups:
            for p in g.params:
                if p.grad is None:  # frozen: no update, no state
                    i += 1
                    continue
                if p.grad.shape != p.value.shape:
                    raise ValueError(f"{self.names[i]}: grad shape {p.grad.shape} != value "
                                     f"shape {p.value.shape}")
                for b in self._buffer_names:  # follow a Parameter converted with astype()
                    if self.state[b][i].dtype != p.value.dtype:
                        self.state[b][i] = self.state[b][i].astype(p.value.dtype)
                self._update(i, p, g)
                i += 1

    def _update(self, i: int, p: Parameter, group: ParamGroup) -> None:  # pragma: no cover
        raise NotImplementedError

    # state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Flat dict of NumPy arrays and Python numbers (npz-safe, no pickle):
        ``t``, ``lr``, the hyper-parameters, ``group.<g>.size`` and
        ``group.<g>.weight_decay``, and ``<buffer>.<i>`` for the i-th Parameter
        (trainable ones only: a frozen Parameter has no state)."""
        self._sync_state()
        sd: dict = {"t": int(self.t), "lr": float(self.lr)}
        for h in self._hyper:
            sd[h] = float(getattr(self, h))
        for gi, g in enumerate(self.groups):
            sd[f"group.{gi}.size"] = len(g.params)
            sd[f"group.{gi}.weight_decay"] = float(g.weight_decay)
        for b in self._buffer_names:
            for i, arr in enumerate(self.state[b]):
                if arr is not None:
                    sd[f"{b}.{i}"] = arr.copy()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Restore what ``state_dict()`` gave (also after an npz round trip).

        Raises ValueError naming missing or unexpected keys, a different number
        of groups or Parameters, and every buffer whose shape differs from its
        Parameter's. Nothing is changed unless everything is valid.
        """
        kind = type(self).__name__
        params = self.params
        trainable = [i for i, p in enumerate(params) if p.grad is not None]
        expected = {"t", "lr", *self._hyper}
        expected |= {f"group.{gi}.{k}" for gi in range(len(self.groups))
                     for k in ("size", "weight_decay")}
        expected |= {f"{b}.{i}" for b in self._buffer_names for i in trainable}
        missing = sorted(expected - set(sd))
        unexpected = sorted(set(sd) - expected)
        if missing or unexpected:
            frozen = len(params) - len(trainable)
            hint = f", {frozen} of them frozen" if frozen else ""
            raise ValueError(f"{kind}.load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected} (is this the state of a {kind} over the same "
                             f"{len(params)} Parameters in {len(self.groups)} groups{hint}, "
                             f"frozen alike?)")
        for gi, g in enumerate(self.groups):
            size = _number(f"group.{gi}.size", sd[f"group.{gi}.size"])
            if size != len(g.params):
                raise ValueError(f"{kind}.load_state_dict: group {gi}: expected {len(g.params)} "
                                 f"Parameters, the state has {size}")
        bad = []
        buffers = {}
        for b in self._buffer_names:
            for i in trainable:
                p = params[i]
                arr = sd[f"{b}.{i}"]
                if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                    got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                    bad.append(f"{b}.{i} ({self.names[i]}): expected a float array, got {got}")
                elif arr.shape != p.value.shape:
                    bad.append(f"{b}.{i} ({self.names[i]}): expected shape {p.value.shape}, "
                               f"got {arr.shape}")
                else:
                    buffers[(b, i)] = arr
        if bad:
            raise ValueError(f"{kind}.load_state_dict: " + "; ".join(bad))
        t = _number("t", sd["t"])
        if t < 0 or t != int(t):
            raise ValueError(f"{kind}.load_state_dict: t: expected an integer >= 0, got {t}")
        numbers = {k: float(_number(k, sd[k])) for k in ("lr", *self._hyper)}
        wds = [float(_number(f"group.{gi}.weight_decay", sd[f"group.{gi}.weight_decay"]))
               for gi in range(len(self.groups))]
        # everything is valid: apply
        self.t = int(t)
        self.lr = numbers["lr"]
        for h in self._hyper:
            setattr(self, h, type(getattr(self, h))(numbers[h]))
        for g, wd in zip(self.groups, wds):
            g.weight_decay = wd
        self._sync_state()
        for (b, i), arr in buffers.items():
            self.state[b][i] = arr.astype(params[i].value.dtype, copy=True)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{h}={getattr(self, h)}" for h in self._hyper)
        groups = ", ".join(repr(g) for g in self.groups)
        return f"{type(self).__name__}(lr={self.lr}, {hyper}, t={self.t}, groups=[{groups}])"
