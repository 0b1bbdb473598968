"""Declared strategy options: the cache identity is derived from them, not kept in sync by hand.

A strategy lists its settings as class attributes, ``k = Option(int, 5, minimum=0)``; each
one is checked when the strategy is built (and when assigned later), an unknown keyword is
refused with the list of valid ones, and ``cache_options()`` (so ``fingerprint()``) holds
every declared option whose ``affects_output`` is true. A new output-changing setting is
therefore in the cache key unless it says it is not. Opt-in: put ``Configurable`` first in
the bases, ``class Mine(Configurable, AttributeStrategy)``; strategies without declarations
keep their own ``cache_options()``."""

from __future__ import annotations

import copy
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidOptionError

class Option:
    """One declared setting: its type, default and range, and whether it changes outputs.

    ``affects_output`` is a bool or ``fn(strategy) -> bool`` (e.g. a temperature matters only
    when sampling); ``convert`` normalises a value after the type check (and may raise
    ValueError or TypeError, reported as InvalidOptionError with ``help``)."""

    def __init__(self, type: type | None = None, default: Any = None, *,
                 affects_output: bool | Callable[[Any], bool] = True, minimum: float | None = None,
                 maximum: float | None = None, choices: Sequence[str] | Mapping[str, str] | None = None,
                 convert: Callable[[Any], Any] | None = None, help: str = ""):
        self.type, self.default, self.affects_output = type, default, affects_output
        self.minimum, self.maximum, self.choices, self.convert, self.help = minimum, maximum, choices, convert, help
        self.name = "option"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = self.check(getattr(obj, "name", type(obj).__name__), value)

    def affects(self, obj: Any) -> bool:
        return bool(self.affects_output(obj) if callable(self.affects_output) else self.affects_output)

    def check(self, owner: str, value: Any) -> Any:
        """The value, converted, or InvalidOptionError naming the option and the fix."""
        if value is None and self.default is None:
            return None
        t, ok, want = self.type, True, ""
        if t is bool:
            ok, want = isinstance(value, bool), "pass true or false"
        elif t is int:
            whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
            ok = whole and not isinstance(value, bool)
            want, value = "pass a whole number", int(value) if ok else value
        elif t is float:
            ok, want = not isinstance(value, bool) and isinstance(value, numbers.Real), "pass a number"
            value = float(value) if ok else value
        elif t is not None:
            ok, want = isinstance(value, t), f"pass a {t.__name__}"
        if ok and self.choices is not None and value not in self.choices:
            named = isinstance(self.choices, Mapping)
            listed = (f"{c} ({d})" for c, d in self.choices.items()) if named else self.choices
            ok, want = False, f"pass one of {', '.join(map(str, listed))}"
        if ok and t in (int, float):
            lo, hi = self.minimum, self.maximum
            if (lo is not None and not value >= lo) or (hi is not None and not value <= hi):
                ok = False
            if lo is not None or hi is not None:
                want += f" >= {lo:g}" if hi is None else f" <= {hi:g}" if lo is None else f" in [{lo:g}, {hi:g}]"
        if ok and self.convert is not None:
            try:
                value = self.convert(value)
            except (ValueError, TypeError) as exc:
                ok, want = False, str(exc)
        if not ok:
            hint = f" ({self.help})" if self.help else ""
            verdict = "" if t is bool or self.choices is not None else " is not allowed"  # the first-party wording
            raise InvalidOptionError(f"{owner}: {self.name}={value!r}{verdict}; {want}{hint}")
        return value


def declared_options(cls: type) -> dict[str, Option]:
    """Every ``Option`` of ``cls`` and its bases, by name (a subclass may redeclare one)."""
    found: dict[str, Option] = {}
    for klass in reversed(cls.__mro__):
        found.update((n, v) for n, v in vars(klass).items() if isinstance(v, Option))
    return found


class Configurable:
    """Mixin (first in the bases) that builds a strategy from its declared ``Option``\\s."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A signature listing the options, so ``inspect.signature(cls)`` (the Steerer's option
        checks and ``seed`` forwarding) sees them."""
        super().__init_subclass__(**kwargs)
        if any("__init__" in vars(k) for k in cls.__mro__[: cls.__mro__.index(Configurable)]):
            cls.__signature__ = None  # type: ignore[attr-defined]  # its own __init__ says what it takes
            return
        declared = declared_options(cls)
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o.default) for n, o in declared.items()]
        params += [p.replace(kind=p.KEYWORD_ONLY) for n, p in _named_parameters(cls).items() if n not in declared]
        cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]

    def __init__(self, **values: Any):
        declared = declared_options(type(self))
        mine = {n: values.pop(n) for n in list(values) if n in declared}
        passed_on = _named_parameters(type(self))
        unknown = sorted(set(values) - set(passed_on))
        if unknown:
            valid = ", ".join(sorted(set(declared) | set(passed_on))) or "no options"
            owner = getattr(self, "name", type(self).__name__)
            raise InvalidOptionError(f"{owner} got unknown options {unknown}; it takes {valid}")
        for n, opt in declared.items():  # checked before the base class runs (nothing loads first)
            setattr(self, n, mine[n] if n in mine else copy.deepcopy(opt.default))
        # an option a base class also takes (AttributeStrategy's samples) reaches it as declared
        super().__init__(**values, **{n: getattr(self, n) for n in declared if n in passed_on})

    @property
    def options(self) -> dict[str, Any]:
        """Every declared option's current value (eval results record them)."""
        return {n: getattr(self, n) for n in declared_options(type(self))} | self.__dict__.get("_extra_options", {})

    @options.setter
    def options(self, extra: dict[str, Any]) -> None:  # what a base class's __init__ stores
        self.__dict__["_extra_options"] = dict(extra)

    def cache_options(self) -> dict[str, Any]:
        """The declared options that change outputs: the strategy's cache identity."""
        return {n: getattr(self, n) for n, opt in declared_options(type(self)).items() if opt.affects(self)}


def _named_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters the ``__init__``\\s after ``Configurable`` in ``cls``'s MRO take by
    name (down to the first one without ``**kwargs``): what it passes on to the base class."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__[cls.__mro__.index(Configurable) + 1:]:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                found.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found
