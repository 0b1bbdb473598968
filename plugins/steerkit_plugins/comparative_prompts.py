"""The prompts of the comparative strategies and their choice baselines: texts, the score
schema, clipping, attribute definitions and the few-shot example turns.

Kept apart from the strategies so the cache-relevant texts live in one place: bump
``Prompts.version`` when a scoring prompt changes and ``Prompts.choice_version`` when a choice
prompt does (each is part of its strategies' cache key).

Length budget (SmolLM2 has an 8,192-token context; its tokenizer gives ~3.5-4 characters per
English token). Texts are clipped by characters, before any tokenizer is needed:
query question 1,500; query responses 6,000 in all (at most 3,000 each); per example the
question 400 and each response 500; example reasonings and generated reasonings 200.
Worst case with k = 5 two-response examples is ~5,000 prompt tokens; measured on HelpSteer2
eval items (SmolLM2 tokenizer): 2,400-3,000 tokens with k = 5, 1,100-1,450 with k = 2,
response_chars = 2000, example_chars = 300. The output needs ~80 tokens per response."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema  # required by outlines, one of steerkit's dependencies

import steerkit
from steerkit import Scenario
from steerkit.plugin import ResponseScore

from .fewshot import ExampleIndex

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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


def definition_text(name: str, definition: Any) -> str:
    """The stripped text of one definition, given as text or ``{"definition": text, ...}``."""
    if not isinstance(name, str) or not name.strip():
        raise steerkit.InvalidTargetError(f"attribute names must be non-empty strings, got {name!r}")
    if isinstance(definition, Mapping):
        definition = definition.get("definition", "")
    if not isinstance(definition, str) or not definition.strip():
        raise steerkit.InvalidTargetError(f"attribute {name!r} needs a non-empty definition")
    return definition.strip()


def as_definitions(value: Any) -> dict[str, Any]:
    """The ``definitions`` option's check (an ``Option`` convert): attribute name -> definition
    text or ``{"definition": text, "levels": [...]}``; every text is checked now, before a model loads."""
    if not isinstance(value, Mapping):
        raise TypeError("pass a mapping of attribute names to definitions, e.g. {'warmth': 'How warm the response feels.'}")
    for name, definition in value.items():
        definition_text(name, definition)
    return dict(value)


class Prompts:
    """Every prompt text of the comparative strategies and the choice baselines, in one place."""

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


def parse_scores(text: str, n: int, comparative: bool) -> list[ResponseScore]:
    """Scores of the ``n`` shown responses in letter order; raises ValueError (or a
    jsonschema.ValidationError) when the text fails the schema.

    The structure and the integer 0-100 range are checked; a reasoning longer than the
    schema's maxLength is clipped, not refused (not every server enforces lengths)."""
    data = json.loads(text)
    jsonschema.validate(data, score_schema(n if comparative else None, max_reasoning=None))
    items = [data[LETTERS[j]] for j in range(n)] if comparative else [data]
    return [ResponseScore(int(item["score"]) / 100.0, clip(item["reasoning"], Prompts.reasoning_chars))
            for item in items]


def score_prompt(attribute: str, definition: str, scenario: Scenario, shown: Sequence[int], comparative: bool,
                 response_chars: int, examples: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages scoring the ``shown`` responses (in that order) on one attribute."""
    system = Prompts.score_system.format(
        attribute=attribute, definition=definition,
        task=Prompts.task_comparative if comparative else Prompts.task_single,
        form=(Prompts.form_comparative if comparative else Prompts.form_single).format(),
    )
    question = clip(scenario.question, Prompts.question_chars)
    each = min(Prompts.response_chars, response_chars // max(1, len(shown)))
    texts = [clip(scenario.responses[r], each) for r in shown]
    if comparative:
        user = Prompts.user_comparative.format(question=question, responses=Prompts.lettered(texts), attribute=attribute)
    else:
        user = Prompts.user_single.format(question=question, response=texts[0], attribute=attribute)
    return [{"role": "system", "content": system}, *examples, {"role": "user", "content": user}]


def example_turns(index: ExampleIndex, query: Scenario, attribute: str, k: int, levels: Sequence[float] | None,
                  example_chars: int, comparative: bool) -> list[dict[str, str]]:
    """The k in-context examples for ``query`` as earlier user/assistant turns: the pool's
    labels as 0-100 scores with the annotators' reasonings (a level sentence when missing)."""
    turns: list[dict[str, str]] = []
    a = attribute
    for i in index.select(query, a, k, levels=levels):
        ex = index.pool[i]
        q = clip(ex.question, Prompts.example_question_chars)
        reasons = ex.meta.get("reasonings") or [{} for _ in ex.responses]
        outs = []
        for r, resp in enumerate(ex.responses):
            value = (ex.labels or [{}])[r].get(a)
            if value is None:
                continue
            why = (reasons[r] or {}).get(a) or Prompts.fallback_reasoning.format(word=level_word(value), attribute=a)
            outs.append((clip(resp, example_chars),
                         {"reasoning": clip(why, Prompts.reasoning_chars), "score": int(round(100 * float(value)))}))
        if not outs:
            continue
        if comparative:
            outs = outs[: len(LETTERS)]
            turns.append({"role": "user", "content": Prompts.user_comparative.format(
                question=q, responses=Prompts.lettered([t for t, _ in outs]), attribute=a)})
            turns.append({"role": "assistant", "content": json.dumps({LETTERS[j]: o for j, (_, o) in enumerate(outs)})})
        else:
            for text, o in outs:
                turns.append({"role": "user", "content": Prompts.user_single.format(question=q, response=text, attribute=a)})
                turns.append({"role": "assistant", "content": json.dumps(o)})
    return turns
