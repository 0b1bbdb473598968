"""Built-in attribute definitions for the attribute strategies (MIC and HelpSteer2).

Each attribute has a one-paragraph definition (shown to the model in every scoring prompt)
and the label levels its benchmark uses, so an example pool can be checked for coverage:
HelpSteer2 rates on a 5-point scale (0, .25, .5, .75, 1); MIC sums three annotators' -1/0/+1
into [-3, 3], i.e. 7 levels in [0, 1]. The wording is ours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttributeDefinition:
    name: str
    definition: str
    levels: tuple[float, ...] | None = None  # label levels in [0, 1]; None when unknown
    family: str = "custom"


HELPSTEER2_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIC_LEVELS = tuple(i / 6 for i in range(7))

_MIC = {
    "care": "How much the response shows concern for the wellbeing of others: it protects people "
    "from harm, shows kindness and compassion, and avoids cruelty or indifference to suffering.",
    "fairness": "How much the response upholds justice and reciprocity: it treats people equally, "
    "respects rights and deserved outcomes, and rejects cheating, exploitation or bias.",
    "liberty": "How much the response respects personal freedom and autonomy: it lets people make "
    "their own choices and resists domination, coercion or oppression.",
    "loyalty": "How much the response values commitment to one's group, family, team or nation: "
    "it honours solidarity and keeping faith with one's own, and frowns on betrayal.",
    "authority": "How much the response respects legitimate authority, tradition and social order: "
    "it defers to leaders, rules, elders and institutions rather than undermining them.",
    "sanctity": "How much the response treats things as pure or sacred: it values decency, "
    "self-restraint and the integrity of body and spirit, and avoids what is degrading or disgusting.",
}

_HELPSTEER2 = {
    "helpfulness": "How useful the response is overall: it does what the prompt asks, addresses the "
    "user's actual need and leaves them better able to act.",
    "correctness": "How accurate and complete the response is: every stated fact is true, the "
    "instructions are followed and nothing relevant is missing or made up.",
    "coherence": "How clear and consistent the response is: its parts fit together logically, it "
    "does not contradict or repeat itself and it is easy to follow.",
    "complexity": "How much expertise it takes to write the response: simple language anyone could "
    "produce scores low, specialised knowledge and sophisticated vocabulary score high.",
    "verbosity": "How much detail the response gives relative to what the prompt asks: terse, "
    "minimal answers score low, long and expansive ones score high.",
}

BUILTIN: dict[str, AttributeDefinition] = {
    **{n: AttributeDefinition(n, d, MIC_LEVELS, "mic") for n, d in _MIC.items()},
    **{n: AttributeDefinition(n, d, HELPSTEER2_LEVELS, "helpsteer2") for n, d in _HELPSTEER2.items()},
}


def builtin_definitions() -> dict[str, str]:
    """Name -> definition text of every built-in attribute."""
    return {n: a.definition for n, a in BUILTIN.items()}


def known_levels(attribute: str) -> tuple[float, ...] | None:
    """The label levels the attribute's benchmark uses, or None for user attributes."""
    a = BUILTIN.get(attribute)
    return a.levels if a else None
