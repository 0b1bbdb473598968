"""``cot``: prompted chain-of-thought for perspective targets (Zhang, McKeown, Muresan 2025).

Per item the model first reasons freely in a paragraph (the prompt asks for the final letter
after "Answer:"); then the answer step is constrained to the option letters: the reasoning is
sent back as a prefilled assistant message ending in "\\nAnswer:" with a choice constraint, so
every item gets a valid letter and nothing is scraped from free text. Whether the free text
already contained a parsable answer is recorded (a statistic only, never the prediction).

Options:
- ``format``: "auto" (from ``scenario.meta['task']``: "vk", "opinionqa", else "general"),
  "vk", "opinionqa" or "general" (any perspective + multiple-choice question).
- ``samples``: self-consistency; n > 1 samples at T=0.7, top-p 0.95 and takes the majority
  vote (vote shares in ``Selection.scores`` and ``extra['votes']``). Default 1, greedy.
- ``distribution``: probabilities over the option letters from the backend's option
  log-probabilities after the reasoning (averaged over samples); the letter is their argmax.
- ``max_tokens``: length limit of the reasoning (default 256).
- ``temperature``, ``top_p``: sampling settings when ``samples`` > 1.
Unknown or out-of-range options raise InvalidOptionError naming the valid ones.

The ``vk`` format asks whether the value/right/duty supports, opposes or either, and lists the
item's own three options (the VK loader's are Support / Oppose / Either).

Results are cached per (scenario, format + perspective category and text, sample; with
``samples`` > 1 also the Steerer's seed); a rerun makes no model call.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

import steerkit
from steerkit import Perspective, Scenario, Selection
from steerkit.plugin import CacheKey, CacheRecord, Configurable, Option, Request, RunContext, Sampling, Strategy


FORMATS = ("auto", "vk", "opinionqa", "general")
ANSWER_PREFIX = " "  # "Answer: A" is tokenised "Answer", ":", " A": the letter is constrained with its space
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_REASON = (
    "First reason step by step in one paragraph. Then give your final answer as a single "
    'letter on a new line after "Answer:".'
)


def letters_for(n: int) -> list[str]:
    if n > len(LETTERS):
        raise steerkit.InvalidScenarioError(f"cot supports at most {len(LETTERS)} options, got {n}")
    return list(LETTERS[:n])


def resolve_format(fmt: str, scenario: Scenario) -> str:
    if fmt != "auto":
        return fmt
    task = str(scenario.meta.get("task", "")).lower()
    if task == "vk" and len(scenario.responses) == 3:
        return "vk"
    if task == "opinionqa":
        return "opinionqa"
    return "general"


def _options_block(responses: Sequence[str], sep: str = " ") -> str:
    return sep.join(f"{l}. {r}" for l, r in zip(letters_for(len(responses)), responses))


def build_prompt(fmt: str, scenario: Scenario, perspective: Perspective) -> list[dict[str, str]]:
    """The user message for one item in the given (resolved) format."""
    if fmt == "vk":
        text = (
            "Question: given a situation and a relevant value, right, or duty, does the "
            "value/right/duty support, oppose, or either support or oppose the situation? "
            f"{_REASON}\n\n"
            f"Situation: {scenario.question}\n\n"
            f"Value/right/duty: {perspective.text}\n\n"
            f"{_options_block(scenario.responses)}"  # the item's own options, e.g. A. Support B. Oppose C. Either
        )
    elif fmt == "opinionqa":
        who = f"{perspective.category} {perspective.text}" if perspective.category else perspective.text
        text = (
            "Adopt the perspective of a person with the following demographic attribute:\n"
            f"- {who}\n"
            "Answer the following survey question from their point of view. "
            f"{_REASON}\n\n"
            f"Question: {scenario.question}\n"
            f"Options: {_options_block(scenario.responses)}"
        )
    elif fmt == "general":
        text = (
            f"Adopt the following perspective: {perspective}.\n"
            "Answer the following multiple-choice question as someone holding this perspective "
            f"would. {_REASON}\n\n"
            f"Question: {scenario.question}\n"
            f"Options:\n{_options_block(scenario.responses, chr(10))}"
        )
    else:
        raise ValueError(f"unknown cot format {fmt!r}; use one of {FORMATS}")
    return [{"role": "user", "content": text}]


# An answer line: "Answer:", "Final answer:", "**Answer:**", at the start of a line. The last
# one counts (the reasoning itself may say "the right answer: it depends").
_ANSWER_LINE = re.compile(r"^[ \t>*_#-]*(?:final[ \t]+)?answer[ \t*_]*:[*_]*", re.I | re.M)
# Fallback for an answer put at the end of the last line ("... so B. Answer: B").
_ANSWER_TAIL = re.compile(r"\b(?:final\s+)?answer[ \t*_]*:[ \t*_]*\(?[A-Za-z]\)?[ \t.*_]*\Z", re.I)
# The letter after "Answer:": "B", "**B**", "(b)", "b." ; a bare lowercase letter must stand
# alone ("a reasonable choice" is not an answer).
_LETTER = re.compile(r"\(([A-Za-z])\)|([A-Z])\b|([a-z])(?=[).:*_]|[ \t]*(?:\n|\Z))")


def answer_letter(after: str) -> str | None:
    """The option letter at the start of ``after`` (the text that follows "Answer:"), upper-cased."""
    m = _LETTER.match(after.lstrip().lstrip("*_ \t"))
    if m is None:
        return None
    return next(g for g in m.groups() if g).upper()


def split_free_text(text: str, letters: Sequence[str]) -> tuple[str, bool]:
    """(reasoning before the last "Answer:" line, whether a valid letter follows it).

    Used to build the prefill and for the "no parsable answer" statistic only; the
    prediction always comes from the constrained step."""
    matches = list(_ANSWER_LINE.finditer(text)) or list(_ANSWER_TAIL.finditer(text))
    if not matches:
        return text.strip(), False
    m = matches[-1]
    if m.re is _ANSWER_TAIL:
        after = text[m.start():].split(":", 1)[1]
    else:
        after = text[m.end():]
    letter = answer_letter(after)
    return text[: m.start()].strip(), letter is not None and letter in letters


def target_key(fmt: str, perspective: Perspective, seed: int | None) -> str:
    """The cache key's attribute part: format, the perspective as (category, text) (the prompt
    uses them separately, so "Political ideology: Liberal" with and without a category are
    different items) and, when sampling, the run's seed."""
    key = f"{fmt}|{json.dumps([perspective.category, perspective.text], ensure_ascii=False)}"
    return key if seed is None else f"{key}|seed={seed}"


def _sampling(strategy: Any) -> bool:
    return strategy.samples > 1  # greedy: the sampling settings do not change the output


class ChainOfThought(Configurable, Strategy):
    name = "cot"
    # 4: the letter after "Answer:" is constrained as " A" (how it is written; "A" got ~0.1% of the
    # mass, so its argmax was noise); 3: vk lists the item's own options; 2: reasoning cut at the last answer line
    prompt_version = "4"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"perspective"})
    format = Option(str, "auto", choices=FORMATS, affects_output=False)  # resolved per item: in the key's attribute part
    samples = Option(int, 1, minimum=1, help="1 = greedy; e.g. 5 for a majority vote")
    distribution = Option(bool, False)
    max_tokens = Option(int, 256, minimum=1, help="length limit of the reasoning")
    temperature = Option(float, 0.7, minimum=0.0, affects_output=_sampling, help="sampling temperature when samples > 1")
    top_p = Option(float, 0.95, minimum=0.0, maximum=1.0, affects_output=_sampling, help="nucleus sampling when samples > 1")

    def sampling(self, sample: int, seed: int) -> Sampling:
        if self.samples == 1:
            return Sampling(temperature=0.0, max_tokens=self.max_tokens)
        return Sampling(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=seed + sample)

    # -- the two steps ------------------------------------------------------------------
    def prompt(self, fmt: str, scenario: Scenario, target: Perspective) -> list[dict[str, str]]:
        """The first (free-reasoning) step's messages; subclasses with other prompts override it."""
        return build_prompt(fmt, scenario, target)

    def _compute(self, run: RunContext, items: list[tuple[int, int, str, Scenario, Perspective]]) -> list[Any]:
        """Per item one record, or the error of a step that failed (the other items of the
        batch are kept; ``RunContext.compute_missing`` reports the failures). Every sample of every
        item goes in one call per step: requests carry their own sampling and letters."""
        prompts = [self.prompt(fmt, sc, target) for _, _, fmt, sc, target in items]
        letter_sets = [letters_for(len(it[3].responses)) for it in items]
        done = run.complete([Request(p, self.sampling(it[1], run.seed)) for p, it in zip(prompts, items)])
        free: list[Any] = [c.text if c.ok else c.error for c in done]
        cots, parsable = [], []
        for text, letters in zip(free, letter_sets):
            cot, ok = ("", False) if isinstance(text, BaseException) else split_free_text(text, letters)
            cots.append(cot)
            parsable.append(ok)
        live = [k for k, text in enumerate(free) if not isinstance(text, BaseException)]
        answer_prompts = [[*prompts[k], {"role": "assistant", "content": (cots[k] + "\nAnswer:").lstrip("\n")}]
                          for k in live]
        chosen: list[Any] = list(free)  # failed prompts keep their error; the others get a letter
        dists: list[list[float] | None] = [None] * len(items)
        if self.distribution:
            for k, lp in zip(live, run.option_logprobs(answer_prompts, [letter_sets[k] for k in live])):
                if not np.isfinite(lp).any():  # no letter has a probability: an error, never a NaN cached
                    chosen[k] = steerkit.ModelOutputError(
                        f"{self.name}: the backend gave no finite log-probability for any of the letters "
                        f"{letter_sets[k]}; use a backend with exact option log-probabilities (transformers, vllm)")
                    continue
                p = np.exp(lp - lp.max())
                dists[k] = [float(x) for x in p / p.sum()]
                chosen[k] = letter_sets[k][int(np.argmax(lp))]
        else:
            answers = run.choose(answer_prompts, [letter_sets[k] for k in live], what=self.name, strict=False,
                                 prefix=ANSWER_PREFIX)
            for k, a in zip(live, answers):
                chosen[k] = a
        out: list[Any] = []
        for k, it in enumerate(items):
            if isinstance(chosen[k], BaseException):
                out.append(chosen[k])
                continue
            out.append([CacheRecord(
                score=float(LETTERS.index(chosen[k])), reasoning=cots[k],
                payload={"letter": chosen[k], "distribution": dists[k], "had_parsable_answer": parsable[k],
                         "format": it[2]},
            )])
        return out

    def select_many(self, run: RunContext, scenarios: Sequence[Scenario], targets: Sequence[Any]) -> list[Selection]:
        for t in {id(t): t for t in targets}.values():
            self.check_target(t)
        model_fp, strategy_fp = run.model_fingerprint, self.fingerprint()
        keyed: list[tuple[list[CacheKey], tuple[int, int, str, Scenario, Perspective]]] = []
        per_item: list[tuple[str, list[CacheKey]]] = []
        for i, (s, t) in enumerate(zip(scenarios, targets)):
            fmt = resolve_format(self.format, s)
            letters_for(len(s.responses))
            if fmt == "vk" and len(s.responses) != 3:
                raise steerkit.InvalidScenarioError(
                    f"scenario {s.label!r}: the vk format asks whether a value supports, opposes or either, "
                    f"so it needs 3 options (e.g. Support, Oppose, Either), not {len(s.responses)}; "
                    "use format='general' for other multiple-choice items"
                )
            attribute = target_key(fmt, t, run.seed if self.samples > 1 else None)
            keys = [CacheKey(model_fp, strategy_fp, s.key, "", attribute, k) for k in range(self.samples)]
            per_item.append((fmt, keys))
        for k in range(self.samples):  # sample-major: one sampling setting per batch
            for i, (s, t) in enumerate(zip(scenarios, targets)):
                keyed.append(([per_item[i][1][k]], (i, k, per_item[i][0], s, t)))
        records = run.compute_missing(keyed, lambda items: self._compute(run, items), description=f"{self.name}: answering",
                             owner=lambda item: item[0])
        selections = []
        for i, s in enumerate(scenarios):
            fmt, keys = per_item[i]
            recs = [records[k] for k in keys]
            letters = letters_for(len(s.responses))
            votes = Counter(r.payload["letter"] for r in recs)
            shares = [votes.get(l, 0) / len(recs) for l in letters]
            dist = None
            if self.distribution:
                dist = list(np.mean([r.payload["distribution"] for r in recs], axis=0))
                dist = [float(x) for x in dist]
            # majority vote; ties broken by the mean distribution, then by the lower index
            best = max(range(len(letters)), key=lambda j: (shares[j], dist[j] if dist is not None else 0.0, -j))
            ties = [j for j in range(len(letters)) if j != best and shares[j] == shares[best]]
            scores = [
                {"vote": shares[j], **({"probability": dist[j]} if dist is not None else {})}
                for j in range(len(letters))
            ]
            selections.append(Selection(
                index=best, response=s.responses[best], scores=scores,
                reasoning=[r.reasoning for r in recs], strategy=self.name, model=run.backend.model_name,
                ties=ties if self.samples > 1 else [], scenario_id=s.id,
                extra={
                    "letter": letters[best], "format": fmt, "votes": dict(votes),
                    "vote_shares": shares, "letters": [r.payload["letter"] for r in recs],
                    "distribution": dist,
                    "had_parsable_answer": [bool(r.payload["had_parsable_answer"]) for r in recs],
                },
            ))
        run.charge_selections(selections)
        return selections


@steerkit.plugin.hookimpl
def register_strategies(register):
    register("cot", ChainOfThought)
