"""Steerer: the one entry point. Names are resolved and inputs validated when you call, before
any model loads; the backend loads weights on first real use; the cache sits underneath."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .backend import Backend
from .cache import ScoreCache
from .errors import InvalidOptionError, InvalidTargetError, UnsupportedTargetError
from .host import lookup, registry
from .scoretable import ScoreTable
from .strategy import AttributeStrategy, RunContext, Strategy
from .types import Scenario, Selection, coerce_target

DEFAULT_STRATEGY = "comparative-regression"


class Steerer:
    """Select responses that fit an alignment target.

    >>> s = Steerer(strategy="comparative-regression", backend="transformers")
    >>> s.select("How do I ...?", ["Answer A", "Answer B"], {"helpfulness": 1.0})
    """

    def __init__(
        self,
        strategy: str | Strategy = DEFAULT_STRATEGY,
        backend: str | Backend = "transformers",
        model: str | None = None,
        *,
        cache: bool | str | os.PathLike[str] | ScoreCache = True,
        aligner: str = "euclidean",
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = True,
        backend_options: Mapping[str, Any] | None = None,
        **strategy_options: Any,
    ):
        lookup("aligner", aligner)  # unknown names fail here, listing the known ones
        self.aligner = aligner
        if isinstance(strategy, Strategy):
            self.strategy = strategy
        else:
            factory = lookup("strategy", strategy)
            if "seed" not in strategy_options and takes_option(factory, "seed"):
                strategy_options["seed"] = seed  # one seed: shuffles and sampling follow Steerer(seed=...)
            check_options(strategy, factory, strategy_options)
            self.strategy = factory(**strategy_options)
        # close() frees only what this Steerer built; a backend or cache passed in stays the caller's.
        self._owns_backend = not isinstance(backend, Backend)
        required = self.strategy.required_model()  # e.g. a trained checkpoint serves its own weights
        if isinstance(backend, Backend):
            if required is not None and not same_model(backend.model, required):
                raise InvalidOptionError(
                    f"strategy {self.strategy.name!r} runs on {required}, but the backend passed in "
                    f"serves {backend.model!r}: pass the backend name instead (e.g. backend=\"{backend.name}\")"
                )
            self.backend = backend
        else:
            if required is not None and model is not None and not same_model(model, required):
                raise InvalidOptionError(
                    f"strategy {self.strategy.name!r} runs on {required}, not on model={model!r}: leave the model out"
                )
            model = required if required is not None else model
            self.backend = lookup("backend", backend)(model=model, **dict(backend_options or {}))
        self._owns_cache = not isinstance(cache, ScoreCache)
        if cache is True:
            self.cache: ScoreCache | None = ScoreCache()
        elif cache is False or cache is None:
            self.cache = None
        elif isinstance(cache, ScoreCache):
            self.cache = cache
        else:
            self.cache = ScoreCache(Path(cache))
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self.last_run: RunContext | None = None

    # -- public API ---------------------------------------------------------------------
    def select(self, question: str, responses: Sequence[str], target: Any, *, id: str | None = None) -> Selection:
        """Pick the response to ``question`` that best fits ``target``."""
        scenario = Scenario(question, responses, id=id)  # a string or None is refused, not split
        return self.select_many([scenario], target)[0]

    def select_many(self, scenarios: Iterable[Any], target: Any) -> list[Selection]:
        """Batched selection over many scenarios (all their prompts share batches).

        ``target`` is one target for all scenarios, or a list with one target per scenario
        (e.g. a different perspective per item)."""
        scenarios = [Scenario.coerce(s) for s in scenarios]
        if isinstance(target, (list, tuple)):
            if len(target) != len(scenarios):
                raise InvalidTargetError(
                    f"{len(target)} targets for {len(scenarios)} scenarios: pass one target, or one per scenario"
                )
            targets = [coerce_target(t) for t in target]
        else:
            one = coerce_target(target)
            targets = [one] * len(scenarios)
        for t in {id(t): t for t in targets}.values():
            self.strategy.check_target(t)
        run = self._run()
        selections = self.strategy.select_many(run, scenarios, targets)
        for sel in selections:
            sel.model = sel.model or self.backend.model_name
        return selections

    def score(self, scenarios: Iterable[Any], attributes: Sequence[str] | Mapping[str, str]) -> ScoreTable:
        """Score every response on every attribute (cached); align the table to any target later."""
        if not isinstance(self.strategy, AttributeStrategy):
            raise UnsupportedTargetError(
                f"strategy {self.strategy.name!r} does not score attributes; use an attribute "
                f"strategy such as {sorted(n for n, f in registry('strategy').items() if _is_attribute(f))}"
            )
        if isinstance(attributes, Mapping):
            define = getattr(self.strategy, "define", None)
            if define is None:
                raise UnsupportedTargetError(f"strategy {self.strategy.name!r} does not take attribute definitions")
            for name, definition in attributes.items():
                define(name, definition)
            attributes = list(attributes)
        scenarios = [Scenario.coerce(s) for s in scenarios]
        self.strategy.check_attributes(attributes)
        return self.strategy.score(self._run(), scenarios, attributes)

    @property
    def model_calls(self) -> int:
        """Model calls made by the last select/score call."""
        return self.last_run.model_calls if self.last_run else 0

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt tokens, output tokens) the last select/score call sent to and got from the model."""
        return (self.last_run.prompt_tokens, self.last_run.output_tokens) if self.last_run else (0, 0)

    @property
    def retried(self) -> int:
        """Scores the last select/score call had to ask the model for again (bad output)."""
        return self.last_run.retried if self.last_run else 0

    def _run(self) -> RunContext:
        self.last_run = RunContext(
            self.backend, self.cache, progress=self.progress, batch_size=self.batch_size,
            seed=self.seed, aligner=self.aligner,
        )
        return self.last_run

    def close(self) -> None:
        """Free the backend and cache this Steerer created (not ones passed in)."""
        if self._owns_backend:
            self.backend.close()
        if self.cache is not None and self._owns_cache:
            self.cache.close()

    def __enter__(self) -> "Steerer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def same_model(given: Any, required: str) -> bool:
    """Whether a model name or path names ``required`` (paths compared resolved)."""
    if given is None:
        return False
    a, b = Path(str(given)).expanduser(), Path(required).expanduser()
    if a.exists() and b.exists():
        return a.resolve() == b.resolve()
    return str(given) == required


def takes_option(factory: Any, name: str) -> bool:
    """Whether a strategy factory accepts the keyword ``name`` (False if it cannot be inspected)."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def check_options(name: str, factory: Any, options: Mapping[str, Any]) -> None:
    """InvalidOptionError for options a strategy factory has no parameter for, naming the ones
    it takes (a typo must not become a TypeError deep inside, or be dropped). Factories that
    take ``**options`` check their own."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise InvalidOptionError(
            f"strategy {name!r} got unknown options {unknown}; it takes {', '.join(names) or 'no options'}"
        )


def _is_attribute(factory: Any) -> bool:
    return isinstance(factory, type) and issubclass(factory, AttributeStrategy)
