"""How trained models are prompted: the one source of truth for the trainer and the
``checkpoint`` strategy, so a checkpoint is always asked exactly as it was trained.

``cot`` is the ``cot`` strategy's user message, unchanged (reason, then "Answer: X");
``answer`` is the same question and options asking for the letter alone (the paper's SFT
baseline). Completions: the letter, or the rationale then "Answer: X"."""

from __future__ import annotations

import re
from typing import Any

from steerkit import Dataset, InvalidOptionError, Perspective, Scenario

from . import cot

STYLES = ("answer", "cot")
PROMPT_VERSION = "train-v1"
TASKS = ("vk", "opinionqa", "general")

_ANSWER_ONLY = "Give only the letter of your answer."


def task_of(source: Dataset | Scenario | str) -> str:
    """The prompt format of a dataset, a scenario or a dataset/task name: "vk", "opinionqa" or "general"."""
    if isinstance(source, Scenario):
        return cot.resolve_format("auto", source)
    if isinstance(source, Dataset):
        name = str(source.info.get("task") or source.name)
    else:
        name = str(source)
    name = name.strip().lower()
    return name if name in TASKS else "general"


def _check(style: str, task: str) -> None:
    if style not in STYLES:
        raise InvalidOptionError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if task not in TASKS:
        raise InvalidOptionError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")


def train_prompt(style: str, scenario: Scenario, perspective: Perspective, task: str) -> list[dict[str, str]]:
    """The chat messages (one user turn) for one item."""
    _check(style, task)
    messages = cot.build_prompt(task, scenario, perspective)
    if style == "answer":
        text = messages[0]["content"]
        # the same question and options; only the instruction changes
        if text.count(cot._REASON) != 1:
            raise RuntimeError("the cot prompt changed shape: update train_prompts.train_prompt")
        messages = [{"role": "user", "content": text.replace(cot._REASON, _ANSWER_ONLY)}]
    return messages


def completion(style: str, letter: str, rationale: str | None = None) -> str:
    """The assistant's target text: the letter ("answer"), or the rationale then "Answer: X" ("cot")."""
    if style not in STYLES:
        raise InvalidOptionError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
    if style == "answer":
        return letter
    if not rationale or not str(rationale).strip():
        raise InvalidOptionError("a cot completion needs a rationale")
    return f"{str(rationale).strip()}\nAnswer: {letter}"


def gold_letter(scenario: Scenario) -> str:
    """The gold option letter of a dataset item (``meta['gold']``)."""
    gold: Any = scenario.meta.get("gold")
    if gold is None:
        raise InvalidOptionError(f"scenario {scenario.label!r} has no gold answer (meta['gold']): it cannot be trained on")
    return cot.letters_for(len(scenario.responses))[int(gold)]


_BARE_LETTER = re.compile(r"[\s*_(]*([A-Za-z])[\s*_).]*")


def final_letter(style: str, text: str, letters: str | list[str]) -> str | None:
    """The answer a completion gives, or None: the whole completion as one letter ("answer"),
    or the letter after the last "Answer:" line ("cot", read as the ``cot`` strategy reads it).
    GRPO's reward is 1 exactly when this equals the gold letter."""
    if style == "answer":
        m = _BARE_LETTER.fullmatch(text)
        letter = m.group(1).upper() if m else None
    else:
        matches = list(cot._ANSWER_LINE.finditer(text)) or list(cot._ANSWER_TAIL.finditer(text))
        if not matches:
            return None
        m = matches[-1]
        after = text[m.start():].split(":", 1)[1] if m.re is cot._ANSWER_TAIL else text[m.end():]
        letter = cot.answer_letter(after)
    return letter if letter is not None and letter in letters else None
