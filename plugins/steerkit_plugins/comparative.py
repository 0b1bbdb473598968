"""Few-shot comparative regression (Adams et al., AIES 2025) and its ablations and baselines.

- ``comparative-regression``: per (scenario, attribute, sample) ONE prompt shows the question,
  all responses lettered A, B, C... (shuffled, every sample including the first, seeded by
  the seed, scenario, attribute and sample, and mapped back), the attribute's
  definition and k in-context examples as earlier user/assistant turns. The backend constrains
  the answer to the JSON schema ``{"A": {"reasoning": str, "score": 0..100}, ...}`` (reasoning
  first, so the score follows from it); scores are rescaled to [0, 1] and cached, and any
  attribute target is then served by the aligner (Euclidean by default) with no model call.
- ``regression``: the non-comparative ablation, one response per prompt.
- ``zero-shot-comparative``: k = 0.
- ``prompt-aligned``: the target is described in the system prompt (a level word and the
  value on the 0-1 scale per attribute) and the model picks a letter (choice constraint).
  ``unaligned``: the model picks a letter with no target. Both shuffle the letters per
  scenario (options ``seed``, ``shuffle``) and map the answer back, like the scoring strategies.

Options of the scoring strategies: ``k`` (examples, default 5), ``samples`` (self-consistency,
averaged), ``temperature`` (0 when samples == 1, else 0.7 unless given), ``definitions``
(name -> definition for your own attributes, or name -> {"definition": ..., "levels": [...]}
to have the pool checked for those label levels; also ``define(name, text, levels)``),
``example_pool`` (list of labelled scenarios with ``meta['reasonings']``, a path to a JSON file
in the steerable format, or an ``ExampleIndex``; without one a few-shot strategy runs zero-shot:
it warns (``ZeroShotFallbackWarning`` and a log line) and its tables and selections name the
strategy "comparative-regression (zero-shot: k=0)", its cache key k=0),
``shuffle`` (letter order shuffled per prompt, default True), ``seed`` (shuffles and sampling)
and the length budgets ``response_chars`` (query responses in all) and ``example_chars`` (each
example response). Bad values raise InvalidOptionError (a missing pool file DatasetError).

An attribute the pool has no (or fewer than k) labelled examples for is scored with the k it
really gets: a warning names it, and its cache key records that k. A model output that still
fails the schema after the retries fails only its own job: every other score is cached and
one ModelOutputError at the end names the failed (scenario, attribute, sample) jobs. A retried
answer (retries sample at T=0.3) records ``{"retries": n, "temperature": t}`` in its cache
payload and is counted in ``run.retried``.

Length budget (SmolLM2 has an 8,192-token context; its tokenizer gives ~3.5-4 characters per
English token). Texts are clipped by characters, before any tokenizer is needed:
query question 1,500; query responses 6,000 in all (at most 3,000 each); per example the
question 400 and each response 500; example reasonings and generated reasonings 200.
Worst case with k = 5 two-response examples is ~5,000 prompt tokens; measured on HelpSteer2
eval items (SmolLM2 tokenizer): 2,400-3,000 tokens with k = 5, 1,100-1,450 with k = 2,
response_chars = 2000, example_chars = 300. The output needs ~80 tokens per response."""

from __future__ import annotations

import json
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
from steerkit import AttributeTarget, Scenario, Selection
from steerkit.plugin import (
    AttributeStrategy, CacheKey, CacheRecord, Constraint, Request, ResponseScore, RunContext, Sampling, ScoreJob, Strategy, text_hash,
)

from .attributes import builtin_definitions
from .fewshot import ExampleIndex, load_pool
from .options import bool_option, float_option, int_option, refuse_unknown

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RETRY_TEMPERATURE = 0.3
RETRIES = 2


def check_scenarios(scenarios: Sequence[Scenario]) -> None:
    """Every scenario must fit the letters A-Z (raised before any model call)."""
    for s in scenarios:
        if len(s.responses) > len(LETTERS):
            raise steerkit.InvalidScenarioError(
                f"scenario {s.label!r} has {len(s.responses)} responses; the lettered prompts "
                f"take at most {len(LETTERS)}: split it into smaller scenarios"
            )


def clip(text: str, limit: int) -> str:
    """Cut a text to ``limit`` characters, marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(0, limit - 6)].rstrip() + " [...]"


def level_word(value: float) -> str:
    return "high" if value >= 2 / 3 else "low" if value <= 1 / 3 else "moderate"


def definitions_option(strategy: str, definitions: Any) -> Mapping[str, Any]:
    """The ``definitions`` option: a mapping of attribute name to definition (or nothing)."""
    if definitions is not None and not isinstance(definitions, Mapping):
        raise steerkit.InvalidOptionError(
            f"{strategy}: definitions must map attribute names to definitions, e.g. "
            "{'warmth': 'How warm the response feels.'}"
        )
    return definitions or {}


def definition_text(name: str, definition: Any) -> str:
    """The stripped text of one definition, given as text or ``{"definition": text, ...}``."""
    if isinstance(definition, Mapping):
        definition = definition.get("definition", "")
    if not isinstance(definition, str) or not definition.strip():
        raise steerkit.InvalidTargetError(f"attribute {name!r} needs a non-empty definition")
    return definition.strip()


class ZeroShotFallbackWarning(UserWarning):
    """A few-shot strategy was built without an example pool, so it runs zero-shot (k=0)."""


def warn_zero_shot(strategy: str, k: int) -> None:
    """Say loudly (a warning and a log line) that a few-shot method runs zero-shot."""
    message = (
        f"{strategy} got no example_pool, so it runs ZERO-SHOT (k=0), not the few-shot method with "
        f"k={k}; results and the cache record k=0. Pass example_pool=[labelled scenarios] or a path "
        "to a JSON file of them (e.g. helpsteer2/train.json); if zero-shot is what you want, pass k=0 "
        "(or use strategy 'zero-shot-comparative')"
    )
    warnings.warn(message, ZeroShotFallbackWarning, stacklevel=4)  # user -> Steerer -> __init__ -> here
    logging.getLogger("steerkit").warning(message)


class Prompts:
    """Every prompt text of this module, in one place. Bump ``version`` when a scoring prompt
    changes and ``choice_version`` when a choice prompt does: each is part of the cache key of
    its strategies."""

    version = "3"  # 3: every sample shuffled (shuffle option); target values in prompt-aligned
    choice_version = "choice-1"  # choice baselines: own version; letters shuffled per scenario
    question_chars = 1500
    responses_chars = 6000
    response_chars = 3000
    example_question_chars = 400
    example_response_chars = 500
    reasoning_chars = 200  # one sentence; every generated token is costly under constraints on CPU
    tokens_per_response = 80  # generation budget per response (reasoning <= 200 chars + score)

    score_system = (
        "You are a careful annotator. You rate responses to a user's request on one attribute.\n\n"
        "Attribute: {attribute}\nDefinition: {definition}\n\n"
        "{task} Scores run from 0 (the response shows none of the attribute) to 100 (it shows "
        "the most of it); use the whole range. Answer only with JSON in this form: {form}"
    )
    task_comparative = (
        "Compare the responses with each other. For each response, first write one sentence of "
        "reasoning about this attribute, then give an integer score."
    )
    task_single = "First write one sentence of reasoning about this attribute, then give an integer score."
    form_comparative = '{{"A": {{"reasoning": "...", "score": 0-100}}, "B": {{...}}, ...}}'
    form_single = '{{"reasoning": "...", "score": 0-100}}'
    user_comparative = "Request:\n{question}\n\n{responses}\n\nRate every response on {attribute}."
    user_single = "Request:\n{question}\n\nResponse:\n{response}\n\nRate the response on {attribute}."
    fallback_reasoning = "The response shows a {word} degree of {attribute}."

    choice_system_aligned = (
        "You choose the response that best fits these preferences:\n{preferences}\n"
        "Answer with the letter of that response only."
    )
    choice_system_unaligned = "You choose the best response. Answer with the letter of that response only."
    choice_user = "Request:\n{question}\n\n{responses}\n\nWhich response do you choose? Answer with one letter."
    preference_line = "- {word} {attribute} ({value:g} on a 0-1 scale): {definition}"

    @staticmethod
    def lettered(responses: Sequence[str]) -> str:
        return "\n\n".join(f"Response {LETTERS[i]}:\n{r}" for i, r in enumerate(responses))


def score_schema(n: int | None, max_reasoning: int | None = Prompts.reasoning_chars) -> dict[str, Any]:
    """The output schema: per letter {reasoning, score} (n responses) or one object (n None).

    The backend gets ``maxLength`` on the reasoning (it bounds generation); parsing uses
    ``max_reasoning=None`` and clips instead, because a server that only promises JSON (an
    OpenAI-compatible endpoint in JSON-object mode) does not enforce lengths."""
    reasoning: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_reasoning is not None:
        reasoning["maxLength"] = max_reasoning
    one = {
        "type": "object",
        "properties": {
            "reasoning": reasoning,
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["reasoning", "score"],
        "additionalProperties": False,
    }
    if n is None:
        return one
    letters = list(LETTERS[:n])
    return {"type": "object", "properties": {l: one for l in letters}, "required": letters, "additionalProperties": False}


class ComparativeRegression(AttributeStrategy):
    """Scores all responses of a scenario on one attribute per prompt, few-shot."""

    name = "comparative-regression"
    prompt_version = Prompts.version
    comparative: ClassVar[bool] = True
    default_k: ClassVar[int] = 5

    def __init__(
        self,
        k: int | None = None,
        samples: int = 1,
        temperature: float | None = None,
        definitions: Mapping[str, Any] | None = None,
        example_pool: Sequence[Any] | str | os.PathLike[str] | ExampleIndex | None = None,
        seed: int = 0,
        response_chars: int = Prompts.responses_chars,
        example_chars: int = Prompts.example_response_chars,
        shuffle: bool = True,
        **options: Any,
    ):
        refuse_unknown(self, options)
        super().__init__(samples=samples)
        self.k = self.default_k if k is None else int_option(self.name, "k", k, 0, "in-context examples; 0 = zero-shot")
        self.temperature = (
            float_option(self.name, "temperature", temperature, 0.0, "0 = greedy")
            if temperature is not None else (0.7 if self.samples > 1 else 0.0)
        )
        self.seed = int_option(self.name, "seed", seed, 0, "any seed, e.g. 0")
        self.response_chars = int_option(self.name, "response_chars", response_chars, 100, "characters of all query responses")
        self.example_chars = int_option(self.name, "example_chars", example_chars, 50, "characters per example response")
        self.shuffle = bool_option(self.name, "shuffle", shuffle)
        self.definitions: dict[str, str] = builtin_definitions()
        self.levels: dict[str, tuple[float, ...]] = {}
        for name, text in definitions_option(self.name, definitions).items():
            self.define(name, text)
        if isinstance(example_pool, (str, os.PathLike)):
            example_pool = load_pool(example_pool)
        if isinstance(example_pool, ExampleIndex):
            self.index: ExampleIndex | None = example_pool
        elif example_pool is None or (isinstance(example_pool, Sequence) and not example_pool):
            self.index = None
        elif isinstance(example_pool, Sequence):
            self.index = ExampleIndex(example_pool)
        else:
            raise steerkit.InvalidOptionError(
                f"{self.name}: example_pool={type(example_pool).__name__} is not a pool; pass a list of "
                "labelled scenarios, a path to a JSON file of them, or an ExampleIndex"
            )
        self._pending: list[Scenario] = []
        self._warned_k: set[str] = set()
        if self.k > 0 and not self.uses_examples:
            warn_zero_shot(self.name, self.k)
        # the k that really runs (0 without a pool): eval results record these options
        self.options = {"k": self.k if self.uses_examples else 0, "samples": self.samples, "temperature": self.temperature, "seed": self.seed,
                        "shuffle": self.shuffle, "response_chars": self.response_chars,
                        "example_chars": self.example_chars}

    # -- attributes and cache identity --------------------------------------------------
    def define(self, name: str, definition: str | Mapping[str, Any], levels: Sequence[float] | None = None) -> None:
        """Add (or replace) an attribute definition; its hash is part of the cache key.

        ``levels`` (values in [0, 1]) are the label levels the attribute uses: the example
        pool is then checked for them, as for the built-in attributes. ``definition`` may also
        be ``{"definition": text, "levels": [...]}``."""
        if isinstance(definition, Mapping):
            levels = definition.get("levels", levels)
        if not isinstance(name, str) or not name.strip():
            raise steerkit.InvalidTargetError(f"attribute names must be non-empty strings, got {name!r}")
        text = definition_text(name, definition)
        if levels is not None:
            ok = isinstance(levels, Sequence) and not isinstance(levels, str) and len(levels) > 0 and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1 for v in levels)
            if not ok:
                raise steerkit.InvalidOptionError(
                    f"attribute {name!r}: levels={levels!r}; pass a list of label values in [0, 1], e.g. [0, 0.5, 1]"
                )
            self.levels[name] = tuple(float(v) for v in levels)
        self.definitions[name] = text

    def known_attributes(self) -> Sequence[str]:
        return list(self.definitions)

    def attribute_key(self, attribute: str) -> str:
        """Name and definition hash, plus the k really used when the pool gives fewer examples
        for this attribute than ``k`` (so the key never claims examples the prompt lacked)."""
        key = f"{attribute}#{text_hash(self.definitions[attribute])[:12]}"
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
        if not self.uses_examples:
            return 0
        assert self.index is not None
        return min(self.k, self.index.labelled(attribute))

    def warn_missing_examples(self, attributes: Sequence[str]) -> None:
        """Warn (once per attribute) when the pool cannot give an attribute k examples."""
        if not self.uses_examples:
            return
        for a in attributes:
            k = self.effective_k(a)
            if k < self.k and a not in self._warned_k:
                self._warned_k.add(a)
                have = "no" if k == 0 else f"only {k}"
                warnings.warn(
                    f"{self.name}: the example pool has {have} scenario(s) labelled with attribute {a!r}, "
                    f"so {a!r} is scored with k={k} instead of k={self.k} (the cache key records k={k}); "
                    f"add examples labelled with {a!r} to the pool, or pass k={k}",
                    UserWarning, stacklevel=4,
                )

    def cache_options(self) -> dict[str, Any]:
        return {
            "k": self.k if self.uses_examples else 0,
            "temperature": self.temperature,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "chars": [self.response_chars, self.example_chars if self.uses_examples else None],
            "pool": self.index.hash if self.uses_examples else None,
            "embedder": self.index.encoder_name if self.uses_examples else None,
        }

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

    def examples(self, job: ScoreJob) -> list[dict[str, str]]:
        """The in-context examples as earlier user/assistant turns."""
        if not self.uses_examples:
            return []
        assert self.index is not None
        turns: list[dict[str, str]] = []
        a = job.attribute
        for i in self.index.select(job.scenario, a, self.k, levels=self.levels.get(a)):
            ex = self.index.pool[i]
            q = clip(ex.question, Prompts.example_question_chars)
            reasons = ex.meta.get("reasonings") or [{} for _ in ex.responses]
            outs = []
            for r, resp in enumerate(ex.responses):
                value = (ex.labels or [{}])[r].get(a)
                if value is None:
                    continue
                why = (reasons[r] or {}).get(a) or Prompts.fallback_reasoning.format(word=level_word(value), attribute=a)
                outs.append((clip(resp, self.example_chars),
                             {"reasoning": clip(why, Prompts.reasoning_chars), "score": int(round(100 * float(value)))}))
            if not outs:
                continue
            if self.comparative:
                if len(outs) > len(LETTERS):
                    outs = outs[: len(LETTERS)]
                turns.append({"role": "user", "content": Prompts.user_comparative.format(
                    question=q, responses=Prompts.lettered([t for t, _ in outs]), attribute=a)})
                turns.append({"role": "assistant", "content": json.dumps({LETTERS[j]: o for j, (_, o) in enumerate(outs)})})
            else:
                for text, o in outs:
                    turns.append({"role": "user", "content": Prompts.user_single.format(question=q, response=text, attribute=a)})
                    turns.append({"role": "assistant", "content": json.dumps(o)})
        return turns

    def build_prompt(self, job: ScoreJob, shown: Sequence[int]) -> list[dict[str, str]]:
        a = job.attribute
        system = Prompts.score_system.format(
            attribute=a, definition=self.definitions[a],
            task=Prompts.task_comparative if self.comparative else Prompts.task_single,
            form=(Prompts.form_comparative if self.comparative else Prompts.form_single).format(),
        )
        question = clip(job.scenario.question, Prompts.question_chars)
        each = min(Prompts.response_chars, self.response_chars // max(1, len(shown)))
        texts = [clip(job.scenario.responses[r], each) for r in shown]
        if self.comparative:
            user = Prompts.user_comparative.format(question=question, responses=Prompts.lettered(texts), attribute=a)
        else:
            user = Prompts.user_single.format(question=question, response=texts[0], attribute=a)
        return [{"role": "system", "content": system}, *self.examples(job), {"role": "user", "content": user}]

    def sampling(self, n: int, sample: int, temperature: float | None = None, attempt: int = 0) -> Sampling:
        t = self.temperature if temperature is None else temperature
        return Sampling(
            temperature=t, max_tokens=Prompts.tokens_per_response * n + 16,
            seed=self.seed + 1000 * attempt + sample,
        )

    def parse(self, text: str, shown: Sequence[int]) -> list[ResponseScore]:
        """Scores in ``shown`` order; raises ValueError when the text fails the schema.

        The structure and the integer 0-100 range are checked; a reasoning longer than the
        schema's maxLength is clipped, not refused (not every server enforces lengths)."""
        data = json.loads(text)
        if self.comparative:
            jsonschema.validate(data, score_schema(len(shown), max_reasoning=None))
            items = [data[LETTERS[j]] for j in range(len(shown))]
        else:
            jsonschema.validate(data, score_schema(None, max_reasoning=None))
            items = [data]
        return [ResponseScore(int(item["score"]) / 100.0, clip(item["reasoning"], Prompts.reasoning_chars))
                for item in items]

    def score_jobs(self, run: RunContext, jobs: list[ScoreJob]) -> list[list[ResponseScore] | BaseException]:
        """Score a batch: one backend call per attempt, each job's request with its own schema
        and sampling. An answer cut off by the token budget is asked again with twice the
        budget and the same sampling (so the same answer, finished); one that fails the schema
        is resampled at a higher temperature. A job still failing after the retries gets a
        ModelOutputError of its own."""
        if self.uses_examples:
            assert self.index is not None
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
                    scores = self.parse(c.text, shown[j])
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


# -- choice baselines ---------------------------------------------------------------------
class _Choice(Strategy):
    """The model picks one response letter under a choice constraint (cached per target).

    The letters are shuffled per scenario (seeded by ``seed`` and the scenario, the same order
    for every target) and the answer mapped back, so a model that favours "A" does not favour
    the first response: the position bias the scoring strategies remove is removed here too.
    An answer outside the letters fails only its own scenario: the others are cached and one
    ModelOutputError names the failures. Counters are charged per scenario."""

    prompt_version = Prompts.choice_version

    def __init__(self, definitions: Mapping[str, Any] | None = None, seed: int = 0, shuffle: bool = True,
                 **options: Any):
        refuse_unknown(self, options)
        definitions = definitions_option(self.name, definitions)
        super().__init__()
        self.seed = int_option(self.name, "seed", seed, 0, "any seed, e.g. 0")
        self.shuffle = bool_option(self.name, "shuffle", shuffle)
        self.definitions = builtin_definitions()
        for name, text in definitions.items():
            self.definitions[name] = definition_text(name, text)

    def system(self, target: Any) -> str:
        raise NotImplementedError

    def cache_options(self) -> dict[str, Any]:
        return {"shuffle": True, "seed": self.seed} if self.shuffle else {"shuffle": False}

    def order(self, scenario: Scenario) -> list[int]:
        """Response indices in the order they are lettered A, B, C..."""
        shown = list(range(len(scenario.responses)))
        if self.shuffle:
            rng = np.random.default_rng([self.seed, int(scenario.key[:8], 16)])
            shown = [int(i) for i in rng.permutation(len(shown))]
        return shown

    def prompt(self, scenario: Scenario, system: str, shown: Sequence[int]) -> list[dict[str, str]]:
        each = min(Prompts.response_chars, Prompts.responses_chars // len(shown))
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": Prompts.choice_user.format(
                question=clip(scenario.question, Prompts.question_chars),
                responses=Prompts.lettered([clip(scenario.responses[r], each) for r in shown]))},
        ]

    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Any]) -> list[Selection]:
        check_scenarios(scenarios)
        for t in {id(t): t for t in targets}.values():
            self.check_target(t)
        model_fp, fp = run.model_fingerprint, self.fingerprint()
        keyed = []
        for i, (s, t) in enumerate(zip(scenarios, targets)):
            system = self.system(t)
            key = CacheKey(model_fp, fp, s.key, "", f"{self.describe(t)}#{text_hash(system)[:12]}", 0)
            keyed.append(([key], (i, s, system, t)))

        def compute(items: list[tuple[int, Scenario, str, Any]]) -> list[list[CacheRecord] | BaseException]:
            shown = [self.order(s) for _, s, _, _ in items]
            letters = [list(LETTERS[:len(s.responses)]) for _, s, _, _ in items]
            prompts = [self.prompt(s, system, order) for (_, s, system, _), order in zip(items, shown)]
            out: list[list[CacheRecord] | BaseException] = []
            for (_, s, _, t), order, ls, a in zip(items, shown, letters, run.choose(prompts, letters, what=self.name,
                                                                                    strict=False)):
                if isinstance(a, BaseException):
                    out.append(steerkit.ModelOutputError(f"scenario {s.label!r} (target {self.describe(t)}): {a}"))
                else:
                    out.append([CacheRecord(float(order[ls.index(a)]), "", {"letter": a, "order": order})])
            return out

        records = run.cached(keyed, compute, description=f"{self.name}: choosing", owner=lambda item: item[0])
        selections = []
        for (keys, _), s in zip(keyed, scenarios):
            rec = records[keys[0]]
            idx = int(rec.score)  # type: ignore[arg-type]
            selections.append(Selection(
                index=idx, response=s.responses[idx],
                scores=[{"chosen": 1.0 if j == idx else 0.0} for j in range(len(s.responses))],
                reasoning=[], strategy=self.name, model=run.backend.model_name, scenario_id=s.id,
                extra={"letter": rec.payload.get("letter"), "order": rec.payload.get("order")},
            ))
        run.charge_selections(selections)
        return selections

    def describe(self, target: Any) -> str:
        raise NotImplementedError


class PromptAligned(_Choice):
    """Baseline: the attribute target in the system prompt, per attribute a level word
    (high/moderate/low) and the value itself, so every distinct target gets its own prompt."""

    name = "prompt-aligned"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"attributes"})

    def check_target(self, target: Any) -> None:
        super().check_target(target)
        unknown = [a for a in target.attributes if a not in self.definitions]
        if unknown:
            raise steerkit.UnknownAttributeError(
                f"strategy {self.name!r} has no definition for {unknown}; known attributes: "
                f"{sorted(self.definitions)}. Pass definitions={{'name': 'definition'}}."
            )

    def describe(self, target: AttributeTarget) -> str:
        return ", ".join(f"{a}={v:g}" for a, v in target.values.items())

    def system(self, target: AttributeTarget) -> str:
        lines = "\n".join(
            Prompts.preference_line.format(word=level_word(v).capitalize(), attribute=a, value=v,
                                           definition=self.definitions[a])
            for a, v in target.values.items()
        )
        return Prompts.choice_system_aligned.format(preferences=lines)


class Unaligned(_Choice):
    """Baseline: the model picks what it prefers; the target is ignored (any kind accepted)."""

    name = "unaligned"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"attributes", "perspective"})

    def describe(self, target: Any) -> str:
        return "unaligned"

    def system(self, target: Any) -> str:
        return Prompts.choice_system_unaligned


@steerkit.hookimpl
def register_strategies(register):
    register("comparative-regression", ComparativeRegression)
    register("regression", Regression)
    register("zero-shot-comparative", ZeroShotComparative)
    register("prompt-aligned", PromptAligned)
    register("unaligned", Unaligned)
