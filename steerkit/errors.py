"""One exception hierarchy, so callers can catch ``SteerkitError`` and every message says
what is wrong and how to fix it. Errors about input are raised before any model loads."""

from __future__ import annotations

from collections.abc import Iterable


class SteerkitError(Exception):
    """Base of every error steerkit raises on purpose."""


class InvalidScenarioError(SteerkitError, ValueError):
    """A scenario is malformed: empty text, fewer than two responses, duplicates."""


class InvalidTargetError(SteerkitError, ValueError):
    """An alignment target is malformed: values outside [0, 1], NaN, negative weights."""


class InvalidOptionError(SteerkitError, ValueError):
    """A strategy, backend or command option is unknown or out of range."""


class UnsupportedTargetError(SteerkitError, TypeError):
    """A strategy was given a kind of target it cannot serve."""


class UnknownAttributeError(SteerkitError, KeyError):
    """An attribute has no definition, or is missing from a score table."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownPluginError(SteerkitError, LookupError):
    """A strategy, backend, aligner, dataset or trainer name is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        listed = ", ".join(self.known) or "(none registered)"
        super().__init__(
            f"unknown {kind} {name!r}. Known {_plural(kind)}: {listed}. "
            f"Run `steerkit plugins` to see what is installed."
        )


def _plural(kind: str) -> str:
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


class ModelNotFoundError(SteerkitError, FileNotFoundError):
    """A model path or name cannot be resolved without the network."""


class CacheError(SteerkitError):
    """The score cache cannot be opened or is not a steerkit cache."""


class ScoreTableError(SteerkitError, ValueError):
    """A score table's arrays do not fit its scenarios, or its saved file cannot be read."""


class ModelOutputError(SteerkitError, RuntimeError):
    """The model's output failed its schema even after retries."""


class DatasetError(SteerkitError, ValueError):
    """A dataset file is missing or not in a known format."""


class BackendError(SteerkitError, RuntimeError):
    """A backend could not be loaded or reached."""


class PartialBatchError(BackendError):
    """Some requests of a batch failed while others were answered. ``results`` holds, per
    request in order, its output or the exception it failed with, so the answers already
    computed (and paid for) are kept: ``RunContext.generate(..., strict=False)`` hands them on."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


class CheckpointError(SteerkitError):
    """A trained checkpoint folder is missing, unfinished, or not a steerkit checkpoint."""
