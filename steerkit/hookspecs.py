"""Hook specifications. Each hook takes a ``register`` callback (the pattern of simonw/llm),
so a plugin registers any number of things with one function."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("steerkit")
hookimpl = pluggy.HookimplMarker("steerkit")


@hookspec
def register_strategies(register):
    """register(name, factory): factory(**options) -> steerkit.Strategy"""


@hookspec
def register_backends(register):
    """register(name, factory): factory(model=None, **options) -> steerkit.Backend"""


@hookspec
def register_aligners(register):
    """register(name, fn): fn(scores[S,R,A], values[T,A], weights[T,A]) -> distances[T,S,R]"""


@hookspec
def register_datasets(register):
    """register(name, loader): loader(path=None, **options) -> steerkit.Dataset"""


@hookspec
def register_trainers(register):
    """register(name, factory): factory(**options) -> a trainer with .train(...)"""


@hookspec
def register_classifiers(register):
    """register(name, factory): factory(**options) -> a text classifier (e.g. moderation)"""


@hookspec
def register_commands(cli):
    """Add click commands to the ``steerkit`` command group (a plugin that raises here is
    reported and skipped; a command name that is already taken keeps its first owner)."""
