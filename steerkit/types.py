"""Validated value types at the API boundary: scenarios, targets and selections.

Validation happens when these are built, so bad input fails before any model is loaded."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import InvalidScenarioError, InvalidTargetError


def text_hash(*parts: str) -> str:
    """Stable short hash of some texts (the cache key uses these)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class Scenario:
    """A question (or situation) with at least two distinct candidate responses.

    ``labels`` (optional) holds gold attribute values per response, for evaluation;
    ``meta`` holds anything a dataset wants to carry along (ids, gold answers)."""

    question: str
    responses: tuple[str, ...]
    id: str | None = None
    labels: tuple[Mapping[str, float], ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise InvalidScenarioError(
                f"scenario {self.id or ''} has an empty question: give the question or situation text".replace("  ", " ")
            )
        responses = _response_tuple(self.responses, self.id or self.question[:60])
        object.__setattr__(self, "responses", responses)
        if len(responses) < 2:
            raise InvalidScenarioError(
                f"scenario {self.label!r} has {len(responses)} response(s): "
                "steering needs at least two candidate responses to choose between"
            )
        for i, r in enumerate(responses):
            if r is not None and not isinstance(r, str):
                raise InvalidScenarioError(
                    f"scenario {self.label!r}: response {i} is a {type(r).__name__} ({r!r}); "
                    "responses must be strings"
                )
            if r is None or not r.strip():
                raise InvalidScenarioError(
                    f"scenario {self.label!r}: response {i} is empty; every response needs text"
                )
        seen: dict[str, int] = {}
        for i, r in enumerate(responses):
            key = r.strip()
            if key in seen:
                raise InvalidScenarioError(
                    f"scenario {self.label!r}: responses {seen[key]} and {i} are identical; "
                    "remove the duplicate (a choice between equal texts is meaningless)"
                )
            seen[key] = i
        if self.labels is not None:
            labels = tuple(dict(l) for l in self.labels)
            if len(labels) != len(responses):
                raise InvalidScenarioError(
                    f"scenario {self.label!r}: {len(labels)} label sets for {len(responses)} responses"
                )
            object.__setattr__(self, "labels", labels)

    @property
    def label(self) -> str:
        return self.id or self.question[:60]

    @property
    def key(self) -> str:
        """Hash of the question and all responses in order (comparative scores depend on all)."""
        return text_hash(self.question, *self.responses)

    @classmethod
    def coerce(cls, value: "Scenario | Mapping[str, Any] | Sequence[Any]") -> "Scenario":
        if isinstance(value, Scenario):
            return value
        if isinstance(value, Mapping):
            if "responses" not in value:
                raise InvalidScenarioError(
                    f"scenario dict {dict(value)!r:.80} has no 'responses': give a list of at least two response strings"
                )
            question = value.get("question", value.get("prompt"))
            return cls(
                question=question,
                responses=value.get("responses"),
                id=value.get("id"),
                labels=value.get("labels"),
                meta=dict(value.get("meta", {})),
            )
        if isinstance(value, Sequence) and len(value) == 2 and not isinstance(value, str):
            return cls(question=value[0], responses=value[1])
        raise InvalidScenarioError(
            f"cannot read a scenario from {type(value).__name__}: pass steerkit.Scenario, "
            "a dict with 'question' and 'responses', or a (question, responses) pair"
        )


def _response_tuple(value: Any, label: str) -> tuple[Any, ...]:
    """The responses as a tuple; one string or None is a mistake, not a list of characters."""
    if isinstance(value, str) or value is None or not isinstance(value, Iterable) or isinstance(value, Mapping):
        got = f"one string ({value[:40]!r})" if isinstance(value, str) else f"{value!r:.40}"
        raise InvalidScenarioError(
            f"scenario {label!r}: responses must be a list of at least two strings, not {got}; "
            "e.g. responses=['Yes, tell them.', 'No, keep quiet.']"
        )
    return tuple(value)


@dataclass(frozen=True)
class AttributeTarget:
    """Desired attribute values in [0, 1], with optional non-negative weights."""

    values: Mapping[str, float]
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.values, Mapping):
            raise InvalidTargetError(
                "an attribute target maps attribute names to values in [0, 1], e.g. {'care': 0.8}; "
                f"got {type(self.values).__name__} {self.values!r}"
            )
        if not self.values:
            raise InvalidTargetError(
                "an attribute target needs at least one attribute, e.g. {'care': 0.8}"
            )
        values: dict[str, float] = {}
        for name, v in self.values.items():
            if not isinstance(name, str) or not name.strip():
                raise InvalidTargetError(f"target attribute names must be non-empty strings, got {name!r}")
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise InvalidTargetError(f"target value for {name!r} is {v!r}; use a number in [0, 1]") from None
            if math.isnan(fv) or not 0.0 <= fv <= 1.0:
                raise InvalidTargetError(
                    f"target value for {name!r} is {v!r}; values must lie in [0, 1] (not NaN)"
                )
            values[name] = fv
        object.__setattr__(self, "values", values)
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise InvalidTargetError(
                    f"target weights must map attribute names to numbers, e.g. {{'care': 2.0}}; "
                    f"got {type(self.weights).__name__} {self.weights!r}"
                )
            weights: dict[str, float] = {}
            for name, w in self.weights.items():
                if name not in values:
                    raise InvalidTargetError(
                        f"weight given for {name!r}, which is not in the target {sorted(values)}"
                    )
                try:
                    fw = float(w)
                except (TypeError, ValueError):
                    fw = math.nan
                if math.isnan(fw) or fw < 0 or isinstance(w, bool):
                    raise InvalidTargetError(
                        f"weight for {name!r} is {w!r}; weights must be non-negative numbers"
                    )
                weights[name] = fw
            if weights and sum(weights.values()) == 0:
                raise InvalidTargetError("all target weights are zero; at least one must be positive")
            object.__setattr__(self, "weights", weights)

    @property
    def attributes(self) -> list[str]:
        return list(self.values)

    def weight_of(self, name: str) -> float:
        return 1.0 if not self.weights else self.weights.get(name, 1.0)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.values.items())


@dataclass(frozen=True)
class Perspective:
    """A perspective to steer toward: a value/right/duty or a demographic group.

    ``category`` optionally names the kind (e.g. "Political ideology" for OpinionQA)."""

    text: str
    category: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidTargetError(
                "a perspective target needs text, e.g. Perspective('Right to life')"
            )

    def __str__(self) -> str:
        return f"{self.category}: {self.text}" if self.category else self.text


Target = Union[AttributeTarget, Perspective]


def coerce_target(target: Any) -> Target:
    """Accept the friendly forms: a dict of values, a perspective string, or the types."""
    if isinstance(target, (AttributeTarget, Perspective)):
        return target
    if isinstance(target, Mapping):
        if "values" in target and isinstance(target["values"], Mapping):
            return AttributeTarget(target["values"], target.get("weights"))
        return AttributeTarget(target)
    if isinstance(target, str):
        return Perspective(target)
    raise InvalidTargetError(
        f"cannot read a target from {type(target).__name__}: pass a dict of attribute values "
        "in [0, 1], steerkit.AttributeTarget, a perspective string or steerkit.Perspective"
    )


@dataclass
class Selection:
    """The chosen response for one scenario and target, with the evidence for it."""

    index: int
    response: str
    scores: list[dict[str, float]]  # per response, per attribute (or per option for perspectives)
    reasoning: list[str]  # per response (attribute strategies) or one entry (perspective strategies)
    strategy: str
    model: str
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0  # tokens sent to the model for this scenario (0 when all was cached)
    output_tokens: int = 0
    ties: list[int] = field(default_factory=list)  # other indices that tied with `index`
    distances: list[float] | None = None
    scenario_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
