"""Synthetic chain-of-thought data, STaR-style (Zelikman et al. 2022), as the steerable-pluralism
study uses it (Zhang, McKeown, Muresan 2025; ``papers.md`` §1) for ``steerkit train synthetic-cot``.

A teacher (any steerkit backend) reasons with the ``cot`` prompt; its letter comes from the
constrained answer step after the reasoning ("Answer: X", as the checkpoint strategy reads it).
When the letter is the gold one the reasoning is kept. Otherwise the teacher is told the
correct option and asked to rationalise it: reason so that the conclusion comes at the end,
not the start. The study trains on both; ``verify=True`` adds STaR's own filter (a
rationalisation counts only if, after the original prompt without the hint, it leads the
teacher's constrained answer to the gold letter).

Results go into the score cache like scores (key: teacher fingerprint, ``star`` version and
options, scenario, perspective, gold), so a rerun makes no model call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steerkit import InvalidScenarioError, Perspective, Scenario
from steerkit.plugin import CacheKey, CacheRecord, RunContext, Sampling, ScoreCache

from .checkpoint import reasoned_answers
from .cot import build_prompt, letters_for, resolve_format, split_free_text, target_key

STAR_VERSION = "1"
KEPT, RATIONALISED, FAILED = "kept", "rationalised", "failed"


@dataclass(frozen=True)
class StarRationale:
    """One item's training rationale (without its "Answer:" line) and how it was obtained."""

    rationale: str
    status: str  # "kept": the teacher was right; "rationalised": written from the gold; "failed": none usable
    answer: str  # the teacher's own first answer letter
    gold: str

    @property
    def usable(self) -> bool:
        return self.status != FAILED

    @property
    def rationalised(self) -> bool:
        return self.status == RATIONALISED


def rationalisation_prompt(fmt: str, scenario: Scenario, perspective: Perspective, gold: int) -> list[dict[str, str]]:
    """The cot question plus the correct option, asking for reasoning that arrives at it last."""
    letter = letters_for(len(scenario.responses))[gold]
    text = build_prompt(fmt, scenario, perspective)[0]["content"] + (
        f"\n\nThe correct answer is {letter}. {scenario.responses[gold]}. Write the reasoning that leads "
        "to it: reason step by step in one paragraph, without stating the answer or this hint at the "
        "start, so that the conclusion comes only at the end. Then give the answer as a single letter "
        'on a new line after "Answer:".'
    )
    return [{"role": "user", "content": text}]


def star_rationales(
    backend: Any,
    items: Sequence[tuple[Scenario, Perspective, int]],
    cache: ScoreCache | str | os.PathLike[str] | bool | None = True,
    *,
    task: str = "auto",
    max_tokens: int = 256,
    verify: bool = False,
    progress: bool = True,
    batch_size: int | None = None,
) -> list[StarRationale]:
    """One ``StarRationale`` per (scenario, perspective, gold index) item, in order.

    ``cache``: True for the default score cache, a path or ScoreCache, or None/False for none.
    ``task``: the prompt format ("auto" reads ``scenario.meta['task']``, or "vk", "opinionqa",
    "general"). Generation is greedy, ``max_tokens`` per reasoning."""
    owned = not isinstance(cache, ScoreCache) and cache not in (None, False)  # True or a path
    if cache is True:
        cache = ScoreCache()  # the default score cache, as Steerer(cache=True)
    elif cache is False:
        cache = None
    elif cache is not None and not isinstance(cache, ScoreCache):
        cache = ScoreCache(cache)
    run = RunContext(backend, cache, progress=progress, batch_size=batch_size)
    strategy_fp = f"star@{STAR_VERSION}:max_tokens={int(max_tokens)}:verify={bool(verify)}"
    keyed = []
    for i, (scenario, perspective, gold) in enumerate(items):
        fmt = resolve_format(task, scenario)
        letters = letters_for(len(scenario.responses))
        if fmt == "vk" and len(scenario.responses) != 3:
            raise InvalidScenarioError(f"scenario {scenario.label!r}: the vk format needs 3 options")
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(letters):
            raise InvalidScenarioError(
                f"scenario {scenario.label!r}: gold must be an option index 0..{len(letters) - 1}, got {gold!r}"
            )
        key = CacheKey(run.model_fingerprint, strategy_fp, scenario.key, "",
                       f"{target_key(fmt, perspective, None)}|gold={letters[gold]}")
        keyed.append(([key], (i, fmt, scenario, perspective, gold)))
    sampling = Sampling(temperature=0.0, max_tokens=int(max_tokens))

    def compute(batch: list[tuple[int, str, Scenario, Perspective, int]]) -> list[Any]:
        prompts = [build_prompt(fmt, s, p) for _, fmt, s, p, _ in batch]
        letter_sets = [letters_for(len(s.responses)) for _, _, s, _, _ in batch]
        golds = [letters[g] for letters, (*_, g) in zip(letter_sets, batch)]
        reasonings = [split_free_text(t, ls)[0] for t, ls in zip(run.generate(prompts, sampling), letter_sets)]
        answers = reasoned_answers(run, prompts, reasonings, letter_sets, "star")
        out: list[Any] = [None] * len(batch)
        wrong = []
        for k, (reasoning, answer) in enumerate(zip(reasonings, answers)):
            if isinstance(answer, BaseException):
                out[k] = answer
            elif answer == golds[k] and reasoning:
                out[k] = [CacheRecord(1.0, reasoning, {"status": KEPT, "answer": answer, "gold": golds[k]})]
            else:
                wrong.append(k)
        if wrong:
            hinted = [rationalisation_prompt(batch[k][1], batch[k][2], batch[k][3], batch[k][4]) for k in wrong]
            texts = run.generate(hinted, sampling)
            rationales = [split_free_text(t, letter_sets[k])[0] for t, k in zip(texts, wrong)]
            checks: list[Any] = [None] * len(wrong)
            if verify:
                checks = reasoned_answers(run, [prompts[k] for k in wrong], rationales,
                                          [letter_sets[k] for k in wrong], "star: verify")
            for k, rationale, check in zip(wrong, rationales, checks):
                ok = bool(rationale) and (not verify or check == golds[k])
                status = RATIONALISED if ok else FAILED
                payload = {"status": status, "answer": answers[k], "gold": golds[k]}
                if verify:
                    payload["verified_answer"] = check if isinstance(check, str) else None
                out[k] = [CacheRecord(1.0 if ok else 0.0, rationale, payload)]
        return out

    try:
        records = run.compute_missing(keyed, compute, description="star: rationales", owner=lambda item: item[0])
    finally:
        if owned and isinstance(cache, ScoreCache):  # opened here, closed here (as Steerer.close does)
            cache.close()
    result = []
    for keys, _ in keyed:
        rec = records[keys[0]]
        status = rec.payload["status"]
        result.append(StarRationale(rec.reasoning if status != FAILED else "", status, rec.payload["answer"],
                                    rec.payload["gold"]))
    return result
