"""Few-shot comparative regression (Adams et al., AIES 2025) and its ablations.

- ``comparative-regression``: per (scenario, attribute, sample) ONE prompt shows the question,
  all responses lettered A, B, C... (shuffled, every sample including the first, seeded by the
  seed, scenario, attribute and sample, and mapped back), the attribute's definition and k
  in-context examples as earlier user/assistant turns. The backend constrains
  the answer to the JSON schema ``{"A": {"reasoning": str, "score": 0..100}, ...}`` (reasoning
  first, so the score follows from it); scores are rescaled to [0, 1] and cached, and any
  attribute target is then served by the aligner (Euclidean by default) with no model call.
- ``regression``: the non-comparative ablation, one response per prompt.
- ``zero-shot-comparative``: k = 0.
Prompts, schema and clipping: ``comparative_prompts``; the choice baselines: ``choice_baselines``.

Options (declared, so checked before a model loads and unknown names refused): ``k`` (examples,
default 5), ``samples`` (self-consistency, averaged), ``temperature`` (0 when samples == 1,
else 0.7 unless given), ``definitions`` (name -> definition for your own attributes, or
name -> {"definition": ..., "levels": [...]} to have the pool checked for those label levels;
also ``define(name, text, levels)``), ``example_pool`` (list of labelled scenarios with
``meta['reasonings']``, a path to a JSON file in the steerable format, or an ``ExampleIndex``;
without one a few-shot strategy warns (``ZeroShotFallbackWarning`` and a log line), runs with
k = 0 and says "comparative-regression (zero-shot: k=0)" in its tables and selections),
``shuffle`` (letter order shuffled per prompt, default True), ``seed`` (shuffles and sampling),
``response_chars`` (query responses in all) and ``example_chars`` (each example response).
Bad values raise InvalidOptionError (a missing pool file DatasetError).

An attribute the pool has no (or fewer than k) labelled examples for is scored with the k it
really gets: a warning names it, and its cache key records that k. A model output that still
fails the schema after the retries fails only its own job: every other score is cached and
one ModelOutputError at the end names the failed (scenario, attribute, sample) jobs. A retried
answer (retries sample at T=0.3) records ``{"retries": n, "temperature": t}`` in its cache
payload and is counted in ``run.retried``."""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import jsonschema  # required by outlines, one of steerkit's dependencies
import numpy as np

import steerkit
from steerkit import Scenario
from steerkit.plugin import (
    AttributeStrategy, Configurable, Constraint, Option, Request, ResponseScore, RunContext, Sampling, ScoreJob,
    hookimpl, text_hash,
)

from .attribute_definitions import builtin_definitions
from .comparative_prompts import (
    Prompts, as_definitions, check_scenarios, definition_text, example_turns, parse_scores, score_prompt, score_schema,
)
from .fewshot import ExampleIndex, load_pool

RETRY_TEMPERATURE = 0.3
RETRIES = 2


class ZeroShotFallbackWarning(UserWarning):
    """A few-shot strategy was built without an example pool, so it runs zero-shot (k=0)."""


def pool_kind(pool: Any) -> Any:
    """The ``example_pool`` option's check (an ``Option`` convert); ``setup()`` reads the pool."""
    if pool is None or isinstance(pool, (str, os.PathLike, Sequence, ExampleIndex)):
        return pool
    raise TypeError(f"{type(pool).__name__} is not a pool; pass a list of labelled scenarios, "
                    "a path to a JSON file of them, or an ExampleIndex")


class _AfterOptions(AttributeStrategy):  # subclasses define setup()
    """Runs ``setup()`` once ``Configurable`` has checked and set the declared options (its
    ``__init__`` comes first), so the strategy keeps the signature derived from them."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.setup()


class ComparativeRegression(Configurable, _AfterOptions):
    """Scores all responses of a scenario on one attribute per prompt, few-shot."""

    name = "comparative-regression"
    prompt_version = Prompts.version
    comparative: ClassVar[bool] = True
    default_k: ClassVar[int] = 5

    k = Option(int, None, minimum=0, help="in-context examples; 0 = zero-shot")
    samples = Option(int, 1, minimum=1, affects_output=False, help="1 = greedy; e.g. 5 for self-consistency")
    temperature = Option(float, None, minimum=0.0, help="0 = greedy")
    definitions = Option(None, None, convert=as_definitions, affects_output=False)  # in each attribute's key
    example_pool = Option(None, None, convert=pool_kind, affects_output=False)  # its hash and embedder are keyed
    seed = Option(int, 0, minimum=0, help="any seed, e.g. 0")
    response_chars = Option(int, Prompts.responses_chars, minimum=100, help="characters of all query responses")
    example_chars = Option(int, Prompts.example_response_chars, minimum=50, help="characters per example response")
    shuffle = Option(bool, True)

    def setup(self) -> None:
        """Resolve the defaults that depend on other options, then say loudly (a warning and a
        log line) when a few-shot method runs zero-shot: k becomes 0, the k that really runs."""
        if self.temperature is None:
            self.temperature = 0.7 if self.samples > 1 else 0.0
        pool = load_pool(self.example_pool) if isinstance(self.example_pool, (str, os.PathLike)) else self.example_pool
        self.index: ExampleIndex | None = pool if isinstance(pool, ExampleIndex) else ExampleIndex(pool) if pool else None
        k = self.default_k if self.k is None else self.k
        self.k = k if self.index is not None and self.index.pool else 0
        self.attribute_definitions: dict[str, str] = builtin_definitions()
        self.levels: dict[str, tuple[float, ...]] = {}
        for name, text in (self.definitions or {}).items():
            self.define(name, text)
        self._pending: list[Scenario] = []
        self._warned_k: set[str] = set()
        if k > 0 and self.k == 0:
            message = (
                f"{self.name} got no example_pool, so it runs ZERO-SHOT (k=0), not the few-shot method with "
                f"k={k}; results and the cache record k=0. Pass example_pool=[labelled scenarios] or a path "
                "to a JSON file of them (e.g. helpsteer2/train.json); if zero-shot is what you want, pass k=0 "
                "(or use strategy 'zero-shot-comparative')"
            )
            warnings.warn(message, ZeroShotFallbackWarning, stacklevel=5)  # user -> Steerer -> Configurable -> here
            logging.getLogger("steerkit").warning(message)

    # -- attributes and cache identity --------------------------------------------------
    def define(self, name: str, definition: str | Mapping[str, Any], levels: Sequence[float] | None = None) -> None:
        """Add (or replace) an attribute definition; its hash is part of the cache key.

        ``levels`` (values in [0, 1]) are the label levels the attribute uses: the example
        pool is then checked for them, as for the built-in attributes. ``definition`` may also
        be ``{"definition": text, "levels": [...]}``."""
        if isinstance(definition, Mapping):
            levels = definition.get("levels", levels)
        text = definition_text(name, definition)
        if levels is not None:
            ok = isinstance(levels, Sequence) and not isinstance(levels, str) and len(levels) > 0 and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1 for v in levels)
            if not ok:
                raise steerkit.InvalidOptionError(
                    f"attribute {name!r}: levels={levels!r}; pass a list of label values in [0, 1], e.g. [0, 0.5, 1]"
                )
            self.levels[name] = tuple(float(v) for v in levels)
        self.attribute_definitions[name] = text

    def known_attributes(self) -> Sequence[str]:
        return list(self.attribute_definitions)

    def attribute_key(self, attribute: str) -> str:
        """Name and definition hash, plus the k really used when the pool gives fewer examples
        for this attribute than ``k`` (so the key never claims examples the prompt lacked)."""
        key = f"{attribute}#{text_hash(self.attribute_definitions[attribute])[:12]}"
        k = self.effective_k(attribute)
        return key if k == self.k or not self.uses_examples else f"{key}#k={k}"

    @property
    def uses_examples(self) -> bool:
        return self.k > 0 and self.index is not None and bool(self.index.pool)

    @property
    def label(self) -> str:
        """The method as it runs, for ScoreTable/Selection ``strategy``: a few-shot method run
        without examples says so, so no result passes for few-shot when k was 0."""
        return self.name if self.uses_examples or self.default_k == 0 else f"{self.name} (zero-shot: k=0)"

    def effective_k(self, attribute: str) -> int:
        """Examples a prompt on ``attribute`` gets: k, capped by the pool scenarios labelled with it."""
        return min(self.k, self.index.labelled(attribute)) if self.uses_examples else 0

    def warn_missing_examples(self, attributes: Sequence[str]) -> None:
        """Warn (once per attribute) when the pool cannot give an attribute k examples."""
        for a in attributes:
            k = self.effective_k(a)
            if self.uses_examples and k < self.k and a not in self._warned_k:
                self._warned_k.add(a)
                have = "no" if k == 0 else f"only {k}"
                warnings.warn(
                    f"{self.name}: the example pool has {have} scenario(s) labelled with attribute {a!r}, "
                    f"so {a!r} is scored with k={k} instead of k={self.k} (the cache key records k={k}); "
                    f"add examples labelled with {a!r} to the pool, or pass k={k}",
                    UserWarning, stacklevel=4,
                )

    def cache_options(self) -> dict[str, Any]:
        """The declared options that change outputs, laid out as the keys of existing caches
        (the two length budgets as ``chars``) plus the pool's content hash and embedder."""
        options = super().cache_options()
        few = self.uses_examples
        budgets = [options.pop("response_chars"), options.pop("example_chars")]
        pool, embedder = (self.index.hash, self.index.encoder_name) if few else (None, None)
        return options | {"k": self.k if few else 0, "chars": [budgets[0], budgets[1] if few else None],
                          "pool": pool, "embedder": embedder}

    # -- scoring ------------------------------------------------------------------------
    def score(self, run: RunContext, scenarios: Sequence[Scenario], attributes: Sequence[str]):
        check_scenarios(scenarios)
        self.check_attributes(attributes)
        self.warn_missing_examples(attributes)
        self._pending = list(scenarios)  # embedded in one batch when the first job needs it
        try:
            table = super().score(run, scenarios, attributes)
        finally:
            self._pending = []
        table.strategy = self.label
        return table

    def order(self, job: ScoreJob) -> list[int]:
        """Response indices in the order shown: shuffled for every sample (seeded by the seed,
        the scenario, the attribute and the sample) unless ``shuffle`` is off; the scores are
        mapped back to the responses, so the position of a response cannot favour it."""
        shown = list(job.responses)
        if self.shuffle and len(shown) > 1:
            rng = np.random.default_rng([self.seed, int(job.scenario.key[:8], 16), job.sample,
                                         int(text_hash(job.attribute)[:8], 16)])
            shown = [shown[i] for i in rng.permutation(len(shown))]
        return shown

    def build_prompt(self, job: ScoreJob, shown: Sequence[int]) -> list[dict[str, str]]:
        a = job.attribute
        examples = example_turns(self.index, job.scenario, a, self.k, self.levels.get(a), self.example_chars,
                                 self.comparative) if self.uses_examples else []
        return score_prompt(a, self.attribute_definitions[a], job.scenario, shown, self.comparative,
                            self.response_chars, examples)

    def sampling(self, n: int, sample: int, temperature: float | None = None, attempt: int = 0) -> Sampling:
        t = self.temperature if temperature is None else temperature
        return Sampling(temperature=t, max_tokens=Prompts.tokens_per_response * n + 16,
                        seed=self.seed + 1000 * attempt + sample)

    def score_jobs(self, run: RunContext, jobs: list[ScoreJob]) -> list[list[ResponseScore] | BaseException]:
        """Score a batch: one backend call per attempt, each job's request with its own schema
        and sampling. An answer cut off by the token budget is asked again with twice the
        budget and the same sampling (so the same answer, finished); one that fails the schema
        is resampled at a higher temperature. A job still failing after the retries gets a
        ModelOutputError of its own."""
        if self.uses_examples:
            self.index.embed_queries([*self._pending, *(j.scenario for j in jobs)])
        shown = [self.order(j) for j in jobs]
        prompts = [self.build_prompt(j, s) for j, s in zip(jobs, shown)]
        schemas = [Constraint.json_schema(score_schema(len(s) if self.comparative else None)) for s in shown]
        settings = [self.sampling(len(s), j.sample) for j, s in zip(jobs, shown)]
        results: list[list[ResponseScore] | BaseException | None] = [None] * len(jobs)
        last: dict[int, str] = {}
        resampled = [0] * len(jobs)
        todo = list(range(len(jobs)))
        for attempt in range(RETRIES + 1):
            done = run.complete([Request(prompts[j], settings[j], schemas[j]) for j in todo])
            for j, c in zip(todo, done):
                if not c.ok:  # failed at the backend: that job's error
                    results[j] = c.error
                    continue
                try:
                    scores = parse_scores(c.text, len(shown[j]), self.comparative)
                except (ValueError, jsonschema.ValidationError):
                    last[j] = c.text
                    if c.truncated:  # cut off, not wrong: the same sampling, a larger budget
                        settings[j] = replace(settings[j], max_tokens=2 * settings[j].max_tokens)
                    else:
                        resampled[j] += 1
                        settings[j] = self.sampling(len(shown[j]), jobs[j].sample,
                                                    max(self.temperature, RETRY_TEMPERATURE), resampled[j])
                    continue
                note = {"retries": attempt, "temperature": settings[j].temperature}
                mapped = {r: ResponseScore(sc.score, sc.reasoning, note) for r, sc in zip(shown[j], scores)}
                results[j] = [mapped[r] for r in jobs[j].responses]
            todo = [j for j in todo if results[j] is None]
            if not todo:
                break
        for j in todo:
            results[j] = steerkit.ModelOutputError(
                f"scenario {jobs[j].scenario.label!r} (attribute {jobs[j].attribute!r}, sample {jobs[j].sample}) "
                f"failed the score schema {RETRIES + 1} times, last output {last.get(j, '')[:120]!r} "
                "(a backend with constrained decoding avoids this)"
            )
        return results  # type: ignore[return-value]


class Regression(ComparativeRegression):
    """Non-comparative ablation: one response per prompt."""

    name = "regression"
    comparative: ClassVar[bool] = False


class ZeroShotComparative(ComparativeRegression):
    """Comparative regression with no in-context examples."""

    name = "zero-shot-comparative"
    default_k: ClassVar[int] = 0


@hookimpl
def register_strategies(register):
    register("comparative-regression", ComparativeRegression)
    register("regression", Regression)
    register("zero-shot-comparative", ZeroShotComparative)
