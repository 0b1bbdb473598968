"""Choice baselines for the attribute strategies (Adams et al., AIES 2025): the model picks one
response letter under a choice constraint, with no scores to align.

- ``prompt-aligned``: the target is described in the system prompt (per attribute a level word
  and the value on the 0-1 scale) and the model picks a letter.
- ``unaligned``: the model picks a letter with no target (any target kind is accepted).

Both shuffle the letters per scenario (options ``seed``, ``shuffle``) and map the answer back,
like the scoring strategies; ``definitions`` adds or replaces attribute definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

import steerkit
from steerkit import AttributeTarget, Scenario, Selection
from steerkit.plugin import CacheKey, CacheRecord, Configurable, Option, RunContext, Strategy, hookimpl, text_hash

from .attribute_definitions import builtin_definitions
from .comparative_prompts import LETTERS, Prompts, as_definitions, check_scenarios, clip, definition_text, level_word


def _shuffled(strategy: Any) -> bool:
    return strategy.shuffle  # the seed only orders the letters


class _Choice(Configurable, Strategy):
    """The model picks one response letter under a choice constraint (cached per target).

    The letters are shuffled per scenario (seeded by ``seed`` and the scenario, the same order
    for every target) and the answer mapped back, so a model that favours "A" does not favour
    the first response: the position bias the scoring strategies remove is removed here too.
    An answer outside the letters fails only its own scenario: the others are cached and one
    ModelOutputError names the failures. Counters are charged per scenario."""

    prompt_version = Prompts.choice_version
    # the definitions reach the system prompt, whose hash is in every cache key: not in the fingerprint
    definitions = Option(None, None, convert=as_definitions, affects_output=False)
    seed = Option(int, 0, minimum=0, affects_output=_shuffled, help="any seed, e.g. 0")
    shuffle = Option(bool, True)

    @property
    def attribute_definitions(self) -> dict[str, str]:
        """The built-in definitions with the user's added or replaced."""
        return builtin_definitions() | {n: definition_text(n, d) for n, d in (self.definitions or {}).items()}

    def system(self, target: Any) -> str:
        raise NotImplementedError

    def describe(self, target: Any) -> str:
        raise NotImplementedError

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
            answers = run.choose(prompts, letters, what=self.name, strict=False)
            out: list[list[CacheRecord] | BaseException] = []
            for (_, s, _, t), order, ls, a in zip(items, shown, letters, answers):
                if isinstance(a, BaseException):
                    out.append(steerkit.ModelOutputError(f"scenario {s.label!r} (target {self.describe(t)}): {a}"))
                else:
                    out.append([CacheRecord(float(order[ls.index(a)]), "", {"letter": a, "order": order})])
            return out

        records = run.compute_missing(keyed, compute, description=f"{self.name}: choosing", owner=lambda item: item[0])
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


class PromptAligned(_Choice):
    """Baseline: the attribute target in the system prompt, per attribute a level word
    (high/moderate/low) and the value itself, so every distinct target gets its own prompt."""

    name = "prompt-aligned"
    target_kinds: ClassVar[frozenset[str]] = frozenset({"attributes"})

    def check_target(self, target: Any) -> None:
        super().check_target(target)
        known = self.attribute_definitions
        unknown = [a for a in target.attributes if a not in known]
        if unknown:
            raise steerkit.UnknownAttributeError(
                f"strategy {self.name!r} has no definition for {unknown}; known attributes: "
                f"{sorted(known)}. Pass definitions={{'name': 'definition'}}."
            )

    def describe(self, target: AttributeTarget) -> str:
        return ", ".join(f"{a}={v:g}" for a, v in target.values.items())

    def system(self, target: AttributeTarget) -> str:
        known = self.attribute_definitions
        lines = "\n".join(
            Prompts.preference_line.format(word=level_word(v).capitalize(), attribute=a, value=v, definition=known[a])
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


@hookimpl
def register_strategies(register):
    register("prompt-aligned", PromptAligned)
    register("unaligned", Unaligned)
