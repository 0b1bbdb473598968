"""The backend protocol: chat prompts in, completions out, batch first.

A backend is cheap to construct (it checks that the model exists and knows its fingerprint)
and loads weights lazily on first use, so cached work and input errors never load a model.

Conventions every adapter follows:
- a prompt is a list of ``{"role", "content"}`` messages; if the last message has role
  ``assistant`` the backend continues that message (prefill) instead of opening a new turn;
- ``constraint`` uses the engine's native structured output (outlines, vLLM's
  StructuredOutputsParams, ``response_format``), never regex-scraping afterwards;
- ``option_logprobs`` returns log-probabilities of each option string as the next token(s),
  for distributional scoring.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Message = Mapping[str, str]
ChatPrompt = Sequence[Message]


@dataclass(frozen=True)
class Constraint:
    """What the output must look like: a JSON schema, a regex, or one of a list of choices."""

    kind: Literal["json", "regex", "choice"]
    value: Any

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any]) -> "Constraint":
        return cls("json", dict(schema))

    @classmethod
    def regex(cls, pattern: str) -> "Constraint":
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: Sequence[str]) -> "Constraint":
        if len(options) < 1:
            raise ValueError("a choice constraint needs at least one option")
        return cls("choice", tuple(options))

    def describe(self) -> str:
        value = json.dumps(self.value, sort_keys=True) if self.kind == "json" else str(self.value)
        return f"{self.kind}:{value}"


@dataclass(frozen=True)
class Sampling:
    """Sampling settings. temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class Backend(ABC):
    """Base class for LLM backends. Subclasses implement ``generate`` (and, where the engine
    can, ``option_logprobs``)."""

    name: str = "backend"

    def __init__(self, model: str | None = None, **options: Any):
        self.model = model
        self.options = options

    @property
    def model_name(self) -> str:
        return str(self.model)

    @abstractmethod
    def fingerprint(self) -> str:
        """Identity of backend + model weights, cheap to compute without loading the model."""

    @property
    def loaded(self) -> bool:
        return True

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        sampling: Sampling = Sampling(),
        constraint: Constraint | None = None,
    ) -> list[str]:
        """One completion per prompt, in order."""

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        """(len(prompts), len(options)) log-probabilities of each option as the continuation."""
        raise NotImplementedError(f"backend {self.name!r} does not provide option log-probabilities")

    def close(self) -> None:
        """Free engine resources (override where there are any)."""
