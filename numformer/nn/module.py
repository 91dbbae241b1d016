"""Module and Parameter: the state around the pure ops.

A Parameter holds a value and the gradient accumulated into it. A Module
registers the Parameters, sub-Modules and fixed buffers assigned to it as
attributes, and gives them names ("blocks.0.attn.Wqkv"). Layers accumulate
(``p.grad += ...``), so a Parameter used twice (an MLM decoder tied to the
token embedding) receives the sum; ``zero_grad()`` is explicit.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from numformer.ops._checks import FLOAT_DTYPES


class Parameter:
    """A trainable array and its gradient (same shape and dtype)."""

    __slots__ = ("value", "grad")

    def __init__(self, value: np.ndarray):
        value = np.asarray(value)
        if value.dtype not in FLOAT_DTYPES:
            raise ValueError(f"Parameter: expected dtype float32 or float64, got {value.dtype}")
        self.value = np.ascontiguousarray(value)
        self.grad = np.zeros_like(self.value)

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
        self.grad.fill(0)

    def astype(self, dtype) -> None:
        """Convert value and grad in place of this Parameter (tied users see it too)."""
        self.value = self.value.astype(dtype)
        self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


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

    def _pop_cache(self):
        """The cache of the last forward; backward without forward is an error."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a forward pass "
                               f"(or twice for one forward)")
        object.__setattr__(self, "_cache", None)
        return cache

    def _set_cache(self, cache) -> None:
        object.__setattr__(self, "_cache", cache)

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
