"""The rules a setting of TrainConfig obeys, kept as data beside each field.

Each field of TrainConfig is declared with ``setting(default, help, rule)``:
the rule (``Int``, ``Float``, ``Choice``, ``Flag``, ``Text``) checks the
value's type, range and finiteness and says what it expected. The metadata
of the field holds ``help`` (one line), ``rule`` and, for a choice,
``choices``, so the checks, the messages and the command-line help come
from one place.

Errors are ``ConfigError`` (a ValueError) carrying the field name; the
Python API shows the field name (``eval_fraction: expected ...``) and the
command line the flag the user typed (``--eval-fraction: expected ...``),
through ``ConfigError.for_cli()``.
"""

from __future__ import annotations

import dataclasses
import math
import re


def flag_of(name: str) -> str:
    """The command-line flag of a TrainConfig field: ``eval_fraction`` -> ``--eval-fraction``."""
    return "--" + name.replace("_", "-")


class ConfigError(ValueError):
    """A bad setting: ``field`` names it, ``detail`` says what was expected and what came.

    ``refs`` are other field names the detail mentions (``for_cli`` turns them
    into flags too); ``source`` (a config file) prefixes the message.
    """

    def __init__(self, field: str, detail: str, refs: tuple = (), source: str = ""):
        self.field, self.detail, self.refs, self.source = field, detail, tuple(refs), source
        super().__init__(f"{source}: {field}: {detail}" if source else f"{field}: {detail}")

    def with_source(self, source: str) -> "ConfigError":
        return ConfigError(self.field, self.detail, self.refs, source)

    def for_cli(self) -> str:
        """The message with flags for field names (a config file keeps its own names)."""
        if self.source:
            return str(self)
        detail = self.detail
        for r in self.refs:
            detail = re.sub(rf"(?<![\w-]){re.escape(r)}(?![\w-])", flag_of(r), detail)
        return f"{flag_of(self.field)}: {detail}"


def _show(v) -> str:
    return repr(v) if not isinstance(v, float) else (str(v) if math.isfinite(v) else repr(v))


class Rule:
    kind = object

    def problem(self, value):
        """None when ``value`` is fine, else the text 'expected ..., got ...'."""
        raise NotImplementedError

    def coerce(self, value):
        return value


class Int(Rule):
    """An integer (never a bool) >= ``lo``."""
    kind = int

    def __init__(self, lo: int = 0, why: str = ""):
        self.lo, self.why = lo, why

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < self.lo:
            why = f" ({self.why})" if self.why else ""
            return f"expected an integer >= {self.lo}{why}, got {_show(value)}"
        return None


class Float(Rule):
    """A finite number in a range; ints are accepted and made floats, bools are not."""
    kind = float

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return (f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                    f"{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"a finite number {'>' if self.lo_open else '>='} {self.lo:g}"
        return "a finite number"

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected {self.describe()}, got {_show(value)}"
        v = float(value)
        ok = math.isfinite(v)
        if ok and self.lo is not None:
            ok = v > self.lo if self.lo_open else v >= self.lo
        if ok and self.hi is not None:
            ok = v < self.hi if self.hi_open else v <= self.hi
        return None if ok else f"expected {self.describe()}, got {_show(v)}"

    def coerce(self, value):
        return float(value)


class Choice(Rule):
    """One of a few strings."""
    kind = str

    def __init__(self, *options: str):
        self.options = options

    def problem(self, value):
        if value not in self.options:
            return f"expected one of {', '.join(map(repr, self.options))}, got {_show(value)}"
        return None


class OrAuto(Rule):
    """``rule``'s values, or ``sentinel``: "chosen from the data" (TrainConfig says
    which tasks accept it)."""

    def __init__(self, rule: Rule, sentinel):
        self.rule, self.sentinel = rule, sentinel
        self.kind = rule.kind

    def problem(self, value):
        if not isinstance(value, bool) and value == self.sentinel:
            return None
        return self.rule.problem(value)

    def coerce(self, value):
        return self.rule.coerce(value)


class Flag(Rule):
    kind = bool

    def problem(self, value):
        return None if isinstance(value, bool) else f"expected true or false, got {_show(value)}"


class Text(Rule):
    kind = str

    def problem(self, value):
        return None if isinstance(value, str) else f"expected a string, got {_show(value)}"


def setting(default, help: str, rule: Rule | None = None, **extra):
    """A dataclass field with its one-line help and its rule in the metadata."""
    meta = {"help": help, "rule": rule}
    if isinstance(rule, Choice):
        meta["choices"] = rule.options
    meta.update(extra)
    return dataclasses.field(default=default, metadata=meta)


def rule_of(f: dataclasses.Field) -> Rule:
    """A field's rule; a field declared without one is checked by its default's type."""
    rule = f.metadata.get("rule")
    if rule is not None:
        return rule
    return {bool: Flag(), int: Int(lo=-(2 ** 63)), float: Float()}.get(type(f.default), Text())


def check_value(f: dataclasses.Field, value):
    """``value`` made the field's type (an int for a float field), or ConfigError."""
    rule = rule_of(f)
    why = rule.problem(value)
    if why is not None:
        raise ConfigError(f.name, why)
    return rule.coerce(value)
