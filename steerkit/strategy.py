"""Strategies and the run context they work in.

A strategy turns scenarios and a target into selections. The host gives it a ``RunContext``:
the backend (which loads lazily), the cache, counters and progress. ``RunContext.compute_missing``
does the bookkeeping every strategy needs: skip what is stored before any prompt is built,
send the rest in batches, commit each batch as it arrives (and, when a batch is interrupted,
every item whose prompts were already answered), keep every success when some items fail, and
charge calls, hits and misses to the scenario each item belongs to.

``AttributeStrategy`` is the base for strategies that score responses on attributes (the
scores then align to any attribute target without the model); ``Strategy`` alone serves
strategies that choose directly (prompted choice, chain-of-thought over a perspective)."""

from __future__ import annotations

import hashlib
import json
import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np

from .backend import Backend, ChatPrompt, Completion, Constraint, Request, Sampling
from .cache import CacheKey, CacheRecord, ScoreCache
from .errors import (
    CacheError, InvalidOptionError, ModelOutputError, PartialBatchError, UnknownAttributeError, UnsupportedTargetError,
)
from .progress import progress_bar
from .scoretable import ScoreTable
from .types import AttributeTarget, Scenario, Selection, Target, text_hash

Item = TypeVar("Item")
FAILURES_SHOWN = 5  # failed items named in the error message


@dataclass
class Usage:
    """Model calls, cache hits and cache misses charged to one owner (usually a scenario)."""

    model_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0


class RunContext:
    """What a strategy may use during one call: backend, cache, counters, progress."""

    def __init__(
        self,
        backend: Backend,
        cache: ScoreCache | None = None,
        *,
        progress: bool = True,
        batch_size: int | None = None,
        seed: int = 0,
        aligner: str = "euclidean",
    ):
        self.backend = backend
        self.cache = cache
        self.progress = progress
        self.batch_size = batch_size or getattr(backend, "preferred_batch_size", 8)
        self.seed = seed
        self.aligner = aligner
        self.model_calls = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.retried = 0  # scores used in this run whose generation needed retries (cached or new)
        self.prompt_tokens = 0  # tokens sent to the model in this run (as the backends count them)
        self.output_tokens = 0  # tokens the model wrote
        self.usage_by: dict[Hashable, Usage] = {}
        self.started = time.perf_counter()
        self._answers: dict[tuple, Any] | None = None  # this batch's answers so far (inside ``compute_missing``)
        self._replay: dict[tuple, Any] | None = None  # answers to serve instead of the backend

    @property
    def model_fingerprint(self) -> str:
        return self.backend.fingerprint()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer requests (any mix of prompts, samplings, constraints and adapters) through
        the backend: one model call per request, tokens in and out summed on the run.

        A backend that runs requests in micro-batches one after another says how it splits
        them (``backend.micro_batches(requests)``: index lists); they are sent one micro-batch
        at a time and, inside ``compute_missing``, each answer is kept as it arrives, so an interrupt
        loses only the requests in flight. A failed request comes back as a Completion with its
        error; the others stand."""
        if not requests:
            return []
        requests = list(requests)
        keys = [_request_key(r) for r in requests]
        if self._replay is not None:
            return [self._replayed(k) for k in keys]
        self.backend.check_adapters(requests)
        outputs: list[Completion] = [Completion.failed(RuntimeError("not sent"))] * len(requests)
        for idx in self._micro_batches(requests):
            self.model_calls += len(idx)
            got = self.backend.complete([requests[i] for i in idx])
            if len(got) != len(idx):
                raise RuntimeError(f"backend {self.backend.name} returned {len(got)} completions for {len(idx)} requests")
            for i, c in zip(idx, got):
                outputs[i] = c
                self.prompt_tokens += c.prompt_tokens
                self.output_tokens += c.output_tokens
                if self._answers is not None and c.ok:
                    self._answers[keys[i]] = c
        return outputs

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        sampling: Sampling = Sampling(),
        constraint: Constraint | None = None,
        *,
        strict: bool = True,
        adapter: str | None = None,
    ) -> list[Any]:
        """Texts for prompts that share one setting (``complete`` underneath).

        A failed request raises ``PartialBatchError`` (carrying every answer) unless
        ``strict=False``: then its exception stands in place of its text, so a strategy keeps
        the other answers (for ``compute_missing``) and reports the rest."""
        done = self.complete([Request(p, sampling, constraint, adapter) for p in prompts])
        return texts_or_errors(done, strict=strict)

    def _micro_batches(self, requests: list[Request]) -> list[list[int]]:
        """Request indices per backend micro-batch; one batch if the backend does not say."""
        plan = getattr(self.backend, "micro_batches", None)
        if plan is None or len(requests) == 1:
            return [list(range(len(requests)))]
        return plan(requests)

    def _replayed(self, key: tuple) -> Any:
        if key not in self._replay:  # type: ignore[operator]
            raise _Unanswered("this prompt was not answered before the interrupt")
        return self._replay[key]  # type: ignore[index]

    def choose(
        self, prompts: Sequence[ChatPrompt], options: Sequence[str] | Sequence[Sequence[str]], what: str = "", *,
        strict: bool = True, prefix: str = "", adapter: str | None = None,
    ) -> list[Any]:
        """One of its options per prompt, greedy, under a choice constraint. ``options`` is one
        list for every prompt or one list per prompt (any mix goes in one backend call).

        ``prefix`` goes before every option in the constraint, the way the model writes it there:
        after "Answer:" a letter is the token " A", not "A" (which gets a tiny share of the
        probability), so ``prefix=" "``; the option is returned without it.

        A backend that returns anything else is broken: ModelOutputError, never a guess. With
        ``strict=False`` that error, or the backend's error for that prompt, is returned in place
        of the answer (for ``compute_missing``), so the other answers of the batch are kept."""
        per_prompt = _per_prompt(options, len(prompts))
        requests = [
            Request(p, Sampling(temperature=0.0, max_tokens=_choice_budget(opts, prefix)),
                    Constraint.choice([prefix + o for o in opts]), adapter)
            for p, opts in zip(prompts, per_prompt)
        ]
        out: list[Any] = []
        for c, opts in zip(self.complete(requests), per_prompt):
            if not c.ok:
                if strict:
                    raise c.error  # type: ignore[misc]
                out.append(c.error)
                continue
            a = c.text.strip()
            if a in opts:
                out.append(a)
                continue
            err = ModelOutputError(
                f"{what + ': ' if what else ''}backend {self.backend.name} returned {a!r} under a "
                f"choice constraint {list(opts)}; use a backend with constrained decoding"
            )
            if strict:
                raise err
            out.append(err)
        return out

    def option_logprobs(
        self, prompts: Sequence[ChatPrompt], options: Sequence[str] | Sequence[Sequence[str]]
    ) -> Any:
        """Log-probabilities of the options per prompt, sent by micro-batch like ``complete``.
        One option list for all prompts gives a (prompts, options) array; one list per prompt
        gives a list of 1-d arrays (prompts with the same list share a backend call)."""
        if options and not isinstance(options[0], str):
            per_prompt = _per_prompt(options, len(prompts))
            rows: list[Any] = [None] * len(prompts)
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, opts in enumerate(per_prompt):
                groups.setdefault(tuple(opts), []).append(i)
            for opts, idx in groups.items():
                for i, row in zip(idx, self.option_logprobs([prompts[i] for i in idx], list(opts))):
                    rows[i] = row
            return rows
        if not prompts:
            return np.zeros((0, len(options)))
        prompts = list(prompts)
        keys = [_answer_key("option_logprobs", p, tuple(options)) for p in prompts]
        if self._replay is not None:
            return np.array([self._replayed(k) for k in keys])
        result = np.zeros((len(prompts), len(options)))
        probes = [Request(p, Sampling(max_tokens=1)) for p in prompts]
        for idx in self._micro_batches(probes):
            self.model_calls += len(idx)
            result[idx] = self.backend.option_logprobs([prompts[i] for i in idx], list(options))
            if self._answers is not None:
                self._answers.update((keys[i], result[i].copy()) for i in idx)
        return result

    def compute_missing(
        self,
        keyed_items: Sequence[tuple[Sequence[CacheKey], Item]],
        compute: Callable[[list[Item]], Sequence[Sequence[CacheRecord] | BaseException]],
        description: str = "working",
        *,
        owner: Callable[[Item], Hashable] | None = None,
    ) -> dict[CacheKey, CacheRecord]:
        """Return records for every key, computing only items whose keys are not all stored.

        ``keyed_items`` pairs each unit of work with the cache keys it produces; ``compute``
        takes a batch of items and returns, per item, one record per key (same order), or an
        exception instance when that item failed (e.g. its output failed the schema after
        retries). Each batch's successes are committed before the next batch starts; failed
        items are collected and, after the last batch, one ModelOutputError names them all (its
        ``failures`` attribute holds the (item, exception) pairs). A rerun then computes only the
        failed items. An exception *raised* by ``compute`` (an interrupt, a backend failure)
        stops the run: earlier batches stay committed, and so does every item of this batch whose
        prompts were all answered before it: ``compute`` runs again on each such item alone,
        served the answers kept by ``generate``/``option_logprobs`` instead of the backend (no
        model call), and its records are stored. So ``compute`` should get its model output only
        through the run context, as strategies do anyway.

        ``owner`` maps an item to whoever it is charged to, usually its scenario's index in the
        strategy's input. Cache hits and misses are charged per key; a batch's model calls are
        shared evenly among the items it computed (exact when every item costs the same number
        of calls, e.g. one prompt per item; retries are spread over their batch). Read the totals
        with ``usage(owner)`` or fill selections with ``charge_selections``. A strategy that
        answers one scenario per item (e.g. cot) calls
        ``run.compute_missing(keyed, compute, owner=lambda item: item_scenario_index)`` and then
        ``run.charge_selections(selections)``."""
        all_keys = [k for keys, _ in keyed_items for k in keys]
        found = self.cache.get_many(all_keys) if self.cache is not None else {}
        todo = []
        for keys, item in keyed_items:
            hits = sum(1 for k in keys if k in found)
            self.cache_hits += hits
            self.cache_misses += len(keys) - hits
            if hits < len(keys):
                todo.append((keys, item))
            if owner is not None:
                u = self.usage_by.setdefault(owner(item), Usage())
                u.cache_hits += hits
                u.cache_misses += len(keys) - hits
        if not todo:
            return found
        failures: list[tuple[Item, BaseException]] = []
        with progress_bar(description, total=len(todo), enabled=self.progress) as advance:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                before = (self.model_calls, self.prompt_tokens, self.output_tokens)
                outer, self._answers = self._answers, ({} if self.cache is not None else None)
                try:
                    results = compute([item for _, item in batch])
                except BaseException:
                    self._salvage(batch, compute)
                    raise
                finally:
                    self._answers = outer
                if len(results) != len(batch):
                    raise RuntimeError(f"compute returned {len(results)} results for {len(batch)} items")
                rows = []
                for (keys, item), records in zip(batch, results):
                    if isinstance(records, BaseException):
                        failures.append((item, records))
                        continue
                    if len(records) != len(keys):
                        raise RuntimeError("compute returned a different number of records than keys")
                    rows.extend(zip(keys, records))
                if self.cache is not None:
                    self.cache.put_many(rows)
                found.update(rows)
                if owner is not None:
                    spent = (self.model_calls - before[0], self.prompt_tokens - before[1], self.output_tokens - before[2])
                    self._share_calls([item for _, item in batch], owner, spent)
                advance(len(batch))
        if failures:
            raise self._failed(failures, len(todo), description)
        return found

    cached = compute_missing  # the 0.1 name, kept for one release

    def _salvage(self, batch: list[tuple[Sequence[CacheKey], Any]], compute: Callable[[list[Any]], Sequence[Any]]) -> None:
        """Store the items of an interrupted batch whose prompts were all answered, by running
        ``compute`` on each alone against the kept answers (an unanswered prompt raises)."""
        if not self._answers or self.cache is None:
            return
        self._replay, self._answers = self._answers, None
        rows: list[tuple[CacheKey, CacheRecord]] = []
        try:
            for keys, item in batch:
                try:
                    records = compute([item])[0]
                except Exception:  # a prompt still in flight, or the item fails alone: not stored
                    continue
                if not isinstance(records, BaseException) and len(records) == len(keys):
                    rows.extend(zip(keys, records))
            with suppress(CacheError):  # the interrupt is what the caller must see, not this
                self.cache.put_many(rows)
        finally:
            self._replay = None

    def _share_calls(self, items: list[Any], owner: Callable[[Any], Hashable], spent: tuple[int, int, int]) -> None:
        """Share a batch's calls and tokens evenly among its items (the remainder to the first)."""
        for field_name, amount in zip(("model_calls", "prompt_tokens", "output_tokens"), spent):
            base, extra = divmod(amount, len(items))
            for j, item in enumerate(items):
                u = self.usage_by.setdefault(owner(item), Usage())
                setattr(u, field_name, getattr(u, field_name) + base + (1 if j < extra else 0))

    def _failed(self, failures: list[tuple[Any, BaseException]], attempted: int, description: str) -> ModelOutputError:
        shown = "; ".join(str(exc) for _, exc in failures[:FAILURES_SHOWN])
        more = f"; and {len(failures) - FAILURES_SHOWN} more" if len(failures) > FAILURES_SHOWN else ""
        if self.cache is not None and self.cache.read_only:
            after = (f"The cache {self.cache.path} is read-only, so nothing new was saved: pass a writable "
                     "cache to keep the successes.")
        elif self.cache is not None:
            after = (f"The other {attempted - len(failures)} computed item(s) are saved in the cache "
                     f"{self.cache.path}: a rerun recomputes only the {len(failures)} failed one(s).")
        else:
            after = "No cache is in use, so a rerun recomputes everything: pass a cache to keep the successes."
        err = ModelOutputError(f"{description}: {len(failures)} of {attempted} item(s) failed: {shown}{more}. {after}")
        err.failures = failures  # type: ignore[attr-defined]
        return err

    def usage(self, owner: Hashable) -> Usage:
        """Calls, hits and misses charged to ``owner`` by ``compute_missing(..., owner=...)`` so far."""
        return self.usage_by.get(owner, Usage())

    def charge_selections(self, selections: Sequence[Selection]) -> None:
        """Set each selection's counters from the usage of its position (the scenario index
        used as ``owner``), and an equal share of the elapsed time."""
        share = self.elapsed / max(1, len(selections))
        for i, sel in enumerate(selections):
            u = self.usage(i)
            sel.model_calls, sel.cache_hits, sel.cache_misses = u.model_calls, u.cache_hits, u.cache_misses
            sel.prompt_tokens, sel.output_tokens = u.prompt_tokens, u.output_tokens
            sel.seconds = share


class _Unanswered(Exception):
    """A replayed prompt that the backend had not answered (see ``RunContext.compute_missing``)."""


def texts_or_errors(done: Sequence[Completion], *, strict: bool = True) -> list[Any]:
    """Each completion's text, or its error in its place; ``strict`` raises PartialBatchError
    (carrying them all) when any request failed."""
    out = [c.text if c.ok else c.error for c in done]
    failed = [c.error for c in done if not c.ok]
    if failed and strict:
        if len(done) == 1:
            raise failed[0]  # type: ignore[misc]
        raise PartialBatchError(f"{len(failed)} of {len(done)} request(s) failed (first: {failed[0]})", out)
    return out


def _per_prompt(options: Sequence[Any], n: int) -> list[Sequence[str]]:
    if options and not isinstance(options[0], str):
        if len(options) != n:
            raise ValueError(f"{len(options)} option lists for {n} prompts")
        return [list(o) for o in options]
    return [list(options)] * n


def _choice_budget(options: Sequence[str], prefix: str) -> int:
    """Tokens enough for the longest option (a letter is one or two tokens; a number a few)."""
    return max(2, max(len(prefix + o) for o in options))


def _request_key(r: Request) -> tuple:
    return _answer_key("complete", r.prompt, r.sampling, r.constraint, r.adapter)


def _answer_key(kind: str, prompt: ChatPrompt, *args: Any) -> tuple:
    parts = [a.describe() if isinstance(a, Constraint) else repr(a) for a in args]
    return (kind, json.dumps(list(prompt), sort_keys=True, default=str), *parts)


def options_hash(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Strategy(ABC):
    """Base class of every steering strategy.

    Subclasses set ``name``, ``prompt_version`` (bump it when a prompt changes: it is part of
    the cache key) and ``target_kinds`` ({"attributes"}, {"perspective"} or both)."""

    name: ClassVar[str] = "strategy"
    prompt_version: ClassVar[str] = "1"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"attributes", "perspective"})

    def __init__(self, **options: Any):
        self.options = options

    def fingerprint(self) -> str:
        """Name, prompt version and options that change outputs (part of every cache key)."""
        return f"{self.name}@{self.prompt_version}:{options_hash(self.cache_options())}"

    def cache_options(self) -> dict[str, Any]:
        return dict(self.options)

    def required_model(self) -> str | None:
        """The model this strategy must run on (a trained checkpoint's folder), or None when any
        model will do. The Steerer loads it when the user names no model and refuses another one."""
        return None

    def check_target(self, target: Target) -> None:
        """Raise before any model loads if this strategy cannot serve ``target``."""
        kind = "attributes" if isinstance(target, AttributeTarget) else "perspective"
        if kind not in self.target_kinds:
            wanted = " or ".join(sorted(self.target_kinds))
            example = "{'care': 0.8}" if "attributes" in self.target_kinds else "Perspective('Right to life')"
            raise UnsupportedTargetError(
                f"strategy {self.name!r} takes {wanted} targets, not a {kind} target "
                f"({target}); pass e.g. {example}, or pick a strategy that takes {kind} targets"
            )

    @abstractmethod
    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Target]) -> list[Selection]:
        """One selection per scenario; ``targets[i]`` is the target for ``scenarios[i]``."""


@dataclass(frozen=True)
class ScoreJob:
    """One prompt's worth of scoring: some responses of a scenario, one attribute, one sample."""

    scenario_index: int
    scenario: Scenario
    attribute: str
    sample: int
    responses: tuple[int, ...]


@dataclass(frozen=True)
class ResponseScore:
    score: float  # in [0, 1]
    reasoning: str = ""
    payload: dict[str, Any] = field(default_factory=dict)  # stored with the score (e.g. retries)


class AttributeStrategy(Strategy):
    """A strategy that scores each response on each attribute; selection is alignment.

    Subclasses implement ``score_jobs`` (a batch of jobs -> per job, one ResponseScore per
    response it covers, or an exception instance when that job failed: the other jobs are
    kept). ``samples`` > 1 averages that many samples per attribute. A score whose payload has
    ``retries`` > 0 is counted in ``run.retried``."""

    target_kinds: ClassVar[frozenset[str]] = frozenset({"attributes"})
    comparative: ClassVar[bool] = True  # one prompt scores all responses of a scenario

    def __init__(self, samples: int = 1, **options: Any):
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
            raise InvalidOptionError(
                f"samples={samples!r}: pass a whole number >= 1 (1 = greedy; e.g. samples=5 for self-consistency)"
            )
        super().__init__(**options)
        self.samples = int(samples)

    def known_attributes(self) -> Sequence[str] | None:
        """Attributes this strategy can score, or None for any."""
        return None

    def attribute_key(self, attribute: str) -> str:
        """Cache key part for an attribute (include its definition so a new one re-scores)."""
        return attribute

    def check_attributes(self, attributes: Iterable[str]) -> None:
        known = self.known_attributes()
        if known is None:
            return
        unknown = [a for a in attributes if a not in known]
        if unknown:
            raise UnknownAttributeError(
                f"strategy {self.name!r} has no definition for {unknown}; known attributes: "
                f"{sorted(known)}. Pass definitions for your own attributes "
                "(attributes={'name': 'definition'})."
            )

    def check_target(self, target: Target) -> None:
        super().check_target(target)
        assert isinstance(target, AttributeTarget)
        self.check_attributes(target.attributes)

    def jobs_for(self, index: int, scenario: Scenario, attribute: str, sample: int) -> list[ScoreJob]:
        everyone = tuple(range(len(scenario.responses)))
        if self.comparative:
            return [ScoreJob(index, scenario, attribute, sample, everyone)]
        return [ScoreJob(index, scenario, attribute, sample, (r,)) for r in everyone]

    @abstractmethod
    def score_jobs(self, run: RunContext, jobs: list[ScoreJob]) -> list[list[ResponseScore] | BaseException]:
        """Score a batch of jobs; per job, one ResponseScore per index in ``job.responses``
        (or the exception that job failed with)."""

    def score(self, run: RunContext, scenarios: Sequence[Scenario], attributes: Sequence[str]) -> ScoreTable:
        """Fill a ScoreTable, taking what is cached and computing the rest in batches."""
        attributes = list(dict.fromkeys(attributes))  # a repeated name would make a second, empty column
        self.check_attributes(attributes)
        model_fp, strategy_fp = run.model_fingerprint, self.fingerprint()
        keyed: list[tuple[list[CacheKey], ScoreJob]] = []
        for a in attributes:  # attribute-major: prompts sharing a definition sit together
            akey = self.attribute_key(a)
            for sample in range(self.samples):
                for i, s in enumerate(scenarios):
                    for job in self.jobs_for(i, s, a, sample):
                        keys = [
                            CacheKey(model_fp, strategy_fp, s.key, text_hash(s.responses[r]), akey, sample)
                            for r in job.responses
                        ]
                        keyed.append((keys, job))
        calls_before, tokens_before = run.model_calls, (run.prompt_tokens, run.output_tokens)
        hits_before, misses_before = run.cache_hits, run.cache_misses
        records = run.compute_missing(
            keyed,
            lambda jobs: [
                per_job if isinstance(per_job, BaseException)
                else [CacheRecord(rs.score, rs.reasoning, dict(rs.payload)) for rs in per_job]
                for per_job in self.score_jobs(run, jobs)
            ],
            description=f"{self.name}: scoring",
            owner=lambda job: job.scenario_index,
        )
        table = ScoreTable.empty(scenarios, attributes, strategy=self.name, model=run.backend.model_name)
        sums = np.zeros_like(table.scores)
        counts = np.zeros_like(table.scores)
        for keys, job in keyed:
            a = attributes.index(job.attribute)
            for r, key in zip(job.responses, keys):
                rec = records[key]
                if rec.score is None:
                    continue
                if rec.payload.get("retries"):
                    run.retried += 1
                sums[job.scenario_index, r, a] += rec.score
                counts[job.scenario_index, r, a] += 1
                if job.sample == 0:
                    table.reasonings[job.scenario_index][r][a] = rec.reasoning
        with np.errstate(invalid="ignore", divide="ignore"):
            table.scores = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        table.model_calls = run.model_calls - calls_before
        table.prompt_tokens = run.prompt_tokens - tokens_before[0]
        table.output_tokens = run.output_tokens - tokens_before[1]
        table.cache_hits = run.cache_hits - hits_before
        table.cache_misses = run.cache_misses - misses_before
        table.seconds = run.elapsed
        return table

    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Target]) -> list[Selection]:
        attributes = list(dict.fromkeys(a for t in targets for a in t.attributes))  # type: ignore[union-attr]
        table = self.score(run, scenarios, attributes)
        selections: list[Selection] = [None] * len(scenarios)  # type: ignore[list-item]
        groups: dict[int, list[int]] = {}
        distinct: dict[int, Target] = {}
        for i, t in enumerate(targets):
            groups.setdefault(id(t), []).append(i)
            distinct[id(t)] = t
        for tid, rows in groups.items():
            sub = table.subset(rows)
            for i, sel in zip(rows, sub.selections(distinct[tid], run.aligner)):
                selections[i] = sel
        run.charge_selections(selections)  # calls, hits and misses of each scenario's own jobs
        return selections
