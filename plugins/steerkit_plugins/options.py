"""Strategy option checks shared by the first-party strategies.

A misspelt option (``sample=5`` for ``samples=5``) must not be accepted silently: it would run
something other than what the user asked for. Every check raises InvalidOptionError naming
the option, what was wrong and the fix, before any model loads."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import steerkit


def option_names(cls: type) -> list[str]:
    """The keyword options ``cls(...)`` takes, read from its ``__init__`` signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def refuse_unknown(strategy: Any, options: Mapping[str, Any]) -> None:
    """InvalidOptionError when ``options`` (the ``**options`` a strategy's ``__init__`` caught)
    is not empty, listing the options the strategy does take."""
    if options:
        valid = option_names(type(strategy))
        raise steerkit.InvalidOptionError(
            f"{strategy.name} got unknown options {sorted(options)}; it takes "
            f"{', '.join(valid) if valid else 'no options'}"
        )


def int_option(strategy: str, name: str, value: Any, minimum: int, hint: str) -> int:
    """A whole-number option, or InvalidOptionError naming the option and the fix."""
    ok = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not ok or value < minimum:
        raise steerkit.InvalidOptionError(
            f"{strategy}: {name}={value!r} is not allowed; pass a whole number >= {minimum} ({hint})"
        )
    return int(value)


def float_option(strategy: str, name: str, value: Any, minimum: float, hint: str, maximum: float | None = None) -> float:
    """A number option in [minimum, maximum], or InvalidOptionError naming the option and the fix."""
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= minimum
    if not bad and maximum is not None and not value <= maximum:
        bad = True
    if bad:
        span = f">= {minimum:g}" if maximum is None else f"in [{minimum:g}, {maximum:g}]"
        raise steerkit.InvalidOptionError(f"{strategy}: {name}={value!r} is not allowed; pass a number {span} ({hint})")
    return float(value)


def choice_option(owner: str, name: str, value: Any, choices: Sequence[str] | Mapping[str, str]) -> str:
    """One of ``choices`` (names, or name -> what it means), or InvalidOptionError listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = (", ".join(f"{c} ({d})" for c, d in choices.items()) if isinstance(choices, Mapping)
                  else ", ".join(choices))
        raise steerkit.InvalidOptionError(f"{owner}: {name}={value!r}; pass one of {listed}")
    return value


def bool_option(strategy: str, name: str, value: Any) -> bool:
    """A true/false option (a string "yes" or a number is refused, not guessed)."""
    if not isinstance(value, bool):
        raise steerkit.InvalidOptionError(f"{strategy}: {name}={value!r}; pass true or false")
    return value
