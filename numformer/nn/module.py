"""Module and Parameter: the state around the pure ops.

A Parameter holds a value and the gradient accumulated into it. A Module
registers the Parameters, sub-Modules and fixed buffers assigned to it as
attributes, and gives them names ("blocks.0.attn.Wqkv"). Layers accumulate
(``p.grad += ...``), so a Parameter used twice (an MLM decoder tied to the
token embedding) receives the sum; ``zero_grad()`` is explicit.

Frozen Parameters (``requires_grad = False``, ``Module.freeze(pattern)``)
have no gradient buffer (``grad is None``): layers skip them
(``accumulate(p, g)``), optimizers hold no state for them, clipping skips
them; ``state_dict`` still saves their values.

Caches: a layer's forward keeps what its backward needs (``_set_cache``) and
the backward takes it (``_pop_cache``). A cache belongs to one forward: a
backward without its forward, or after a second training forward replaced
the first's cache, is an error that says so. Inference keeps no cache: in
eval mode (``model.eval()``) or under ``with numformer.no_grad():`` a
forward stores nothing, so evaluation holds no activations.
"""

from __future__ import annotations

import fnmatch
import weakref
from typing import Iterator

import numpy as np

from numformer.grad_mode import _GRAD_ENABLED, is_grad_enabled, no_grad  # noqa: F401
from numformer.ops._checks import FLOAT_DTYPES

def accumulate(p: "Parameter", g) -> None:
    """``p.grad += g``, or nothing when ``p`` is frozen (no gradient buffer)."""
    if p.grad is not None:
        p.grad += g


class Parameter:
    """A trainable array and its gradient (same shape and dtype).

    ``requires_grad=False`` freezes it: ``grad`` is None (no buffer), and
    setting ``requires_grad`` back to True gives it a zero gradient.
    """

    __slots__ = ("value", "grad")

    def __init__(self, value: np.ndarray, requires_grad: bool = True):
        value = np.asarray(value)
        if value.dtype not in FLOAT_DTYPES:
            raise ValueError(f"Parameter: expected dtype float32 or float64, got {value.dtype}")
        self.value = np.ascontiguousarray(value)
        self.grad = np.zeros_like(self.value) if requires_grad else None

    @property
    def requires_grad(self) -> bool:
        return self.grad is not None

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if not flag:
            self.grad = None
        elif self.grad is None:
            self.grad = np.zeros_like(self.value)

    @property
    def frozen(self) -> bool:
        return self.grad is None

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return self.value.size

    def zero_grad(self) -> None:
        if self.grad is not None:
            self.grad.fill(0)

    def astype(self, dtype) -> None:
        """Convert value and grad in place of this Parameter (tied users see it too)."""
        self.value = self.value.astype(dtype)
        if self.grad is not None:
            self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        frozen = ", frozen" if self.grad is None else ""
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{frozen})"


class Module:
    """Base class of every layer, block and model.

    Subclasses implement ``forward(...)`` (keeping what backward needs in
    ``self._cache``) and ``backward(dout)`` (accumulating into their
    Parameters' ``grad`` and returning the gradient of the input).
    """

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        # why _cache is None, for the error (None | "eval" | "no_grad"), or
        # "replaced" when a second forward overwrote an unconsumed cache
        object.__setattr__(self, "_cache_state", None)
        object.__setattr__(self, "_parent", None)  # (weakref to the first owner, name)

    # registration ---------------------------------------------------------
    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before "
                               f"assigning attributes")
        for registry in (self._params, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            owner = value.__dict__.get("_parent")
            if owner is None or owner[0]() is None:  # its path follows its first owner
                object.__setattr__(value, "_parent", (weakref.ref(self), name))
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A fixed array (not trained, not in state_dict) that follows astype()."""
        setattr(self, name, value)
        self._buffers[name] = True

    # traversal ------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, mod in self._modules.items():
            yield from mod.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs; a shared Parameter appears once, under its first name."""
        seen: set[int] = set()
        for prefix, mod in self.named_modules():
            for name, p in mod._params.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def trainable_parameters(self) -> list[Parameter]:
        """The Parameters that are not frozen."""
        return [p for p in self.parameters() if p.grad is not None]

    def _all_parameter_names(self) -> Iterator[tuple[str, Parameter]]:
        """Every (name, Parameter), a tied Parameter under each of its names."""
        for prefix, mod in self.named_modules():
            for name, p in mod._params.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def _set_requires_grad(self, pattern, flag: bool, what: str) -> list[str]:
        patterns = [] if pattern is None else [pattern] if isinstance(pattern, str) \
            else list(pattern)
        if pattern is not None and not (patterns and all(isinstance(q, str) for q in patterns)):
            raise ValueError(f"{what}: expected None, a glob or a non-empty list of globs, "
                             f"got {pattern!r}")
        hits: dict[int, Parameter] = {}
        for name, p in self._all_parameter_names():
            if not patterns or any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
                hits[id(p)] = p
        names = [n for n, p in self.named_parameters() if id(p) in hits]  # canonical names
        if patterns and not hits:
            known = [n for n, _ in self.named_parameters()]
            shown = ", ".join(known[:6]) + (", ..." if len(known) > 6 else "")
            raise ValueError(f"{what}: pattern {pattern!r} matches no parameter name of "
                             f"{type(self).__name__} (names are like {shown})")
        for p in hits.values():
            p.requires_grad = flag
        return names

    def freeze(self, pattern=None) -> list[str]:
        """Freeze the Parameters whose names match ``pattern`` (a glob such as
        ``"body.tok.*"``, or a list of globs; None: all): no gradient buffer,
        no optimizer state. A tied Parameter matches under any of its names.
        Returns the names frozen; a pattern matching nothing is an error."""
        return self._set_requires_grad(pattern, False, "freeze")

    def unfreeze(self, pattern=None) -> list[str]:
        """Undo ``freeze`` for the matching Parameters (their gradients start at zero)."""
        return self._set_requires_grad(pattern, True, "unfreeze")

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # state ----------------------------------------------------------------
    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def astype(self, dtype) -> "Module":
        """Convert every Parameter and buffer to ``dtype`` (float32 or float64), in place."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"astype: expected float32 or float64, got {dtype}")
        for p in self.parameters():
            p.astype(dtype)
        for m in self.modules():
            for name in m._buffers:
                object.__setattr__(m, name, getattr(m, name).astype(dtype))
        return self

    @property
    def dtype(self) -> np.dtype:
        ps = self.parameters()
        return ps[0].dtype if ps else np.dtype(np.float32)

    def seed(self, seed) -> "Module":
        """Reset the random generator of every module that has one (dropout), each
        from (seed, its position), so a forward pass can be repeated exactly.
        ``seed`` is an int or a tuple of ints (e.g. (run seed, step))."""
        base = [int(s) for s in np.atleast_1d(seed)]
        for i, m in enumerate(self.modules()):
            if isinstance(getattr(m, "rng", None), np.random.Generator):
                object.__setattr__(m, "rng", np.random.default_rng([*base, i]))
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every Parameter's value, by name (tied Parameters once)."""
        return {name: p.value.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the Parameters (cast to each Parameter's dtype).

        Raises ValueError listing missing names, unexpected names and shape
        mismatches (``strict=False`` ignores missing and unexpected ones).
        """
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [f"{n}: expected {own[n].shape}, got {tuple(np.shape(state[n]))}"
                      for n in own if n in state and tuple(np.shape(state[n])) != own[n].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing {missing}")
        if strict and unexpected:
            problems.append(f"unexpected {unexpected}")
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + ", ".join(problems))
        for name, p in own.items():
            if name in state:
                arr = np.asarray(state[name])
                if arr.dtype not in (np.float32, np.float64):  # float16 would be a silent cast
                    raise ValueError(f"load_state_dict: {name}: expected dtype float32 or "
                                     f"float64, got {arr.dtype}")
                p.value[...] = arr

    # calling --------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dout):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def path(self) -> str:
        """Where this module sits in its model, e.g. "MaskedLM.body.encoder.blocks.0.attn"
        (the class name alone for a top-level module)."""
        names = []
        m = self
        while m.__dict__.get("_parent") is not None:
            parent = m._parent[0]()
            if parent is None:
                break
            names.append(m._parent[1])
            m = parent
        return ".".join([type(m).__name__, *reversed(names)])

    def _describe(self) -> str:
        where = self.path()
        return type(self).__name__ if where == type(self).__name__ else \
            f"{type(self).__name__} ({where})"

    def clear_caches(self) -> "Module":
        """Drop the cache of every module in this one (e.g. after a failed backward)."""
        for m in self.modules():
            object.__setattr__(m, "_cache", None)
            object.__setattr__(m, "_cache_state", None)
        return self

    def _set_cache(self, cache) -> None:
        """Keep what the backward needs, for one backward. In eval mode or under
        ``no_grad()`` nothing is kept. A training forward over a cache that no
        backward took marks it, so that the next backward fails instead of
        differentiating the later pass as if it were the earlier one."""
        if not self.training or not _GRAD_ENABLED.get():
            object.__setattr__(self, "_cache", None)
            object.__setattr__(self, "_cache_state", "eval" if not self.training else "no_grad")
            return
        replaced = self._cache is not None
        object.__setattr__(self, "_cache", cache)
        object.__setattr__(self, "_cache_state", "replaced" if replaced else None)

    def _pop_cache(self):
        """The cache of the last forward, taken (a second backward finds none)."""
        cache, state = self._cache, self._cache_state
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_cache_state", None)
        if state == "replaced":
            # the model's other caches are of that same mix of passes: drop them all,
            # so that the next forward and backward start clean
            m = self
            while m.__dict__.get("_parent") is not None and m._parent[0]() is not None:
                m = m._parent[0]()
            m.clear_caches()
            raise RuntimeError(
                f"{self._describe()}.backward: a second forward replaced the first forward's "
                f"cache before its backward, so this backward would differentiate the wrong "
                f"pass; call backward after each training forward, and run forwards that "
                f"need no gradient under numformer.no_grad() or in eval mode (every cache of "
                f"the model has been dropped)")
        if cache is None:
            why = {"eval": ": the last forward ran in eval mode, which keeps no cache (call "
                           "model.train() before a forward that needs a backward)",
                   "no_grad": ": the last forward ran under numformer.no_grad(), which keeps "
                              "no cache"}.get(state, " called without a forward pass since the "
                                                     "last backward (a backward without its "
                                                     "forward, or twice for one forward)")
            raise RuntimeError(f"{self._describe()}.backward{why}")
        return cache

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class ModuleList(Module):
    """An indexable list of modules, named "0", "1", ..."""

    def __init__(self, modules=()):
        super().__init__()
        object.__setattr__(self, "_list", [])
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> None:
        setattr(self, str(len(self._list)), m)
        self._list.append(m)

    def __getitem__(self, i):
        return self._list[i]

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self):
        return iter(self._list)
