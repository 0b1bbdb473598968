"""The backend protocol: requests in, completions out, batch first.

A ``Request`` is one prompt with its own sampling, constraint and optional LoRA adapter; any
mix goes in one ``complete`` call (vLLM takes per-request parameters natively, transformers
groups internally), so strategies never regroup prompts by settings. A ``Completion`` says
why it ended (``finish_reason``: a cut-off JSON answer is "length", not bad output), how many
tokens went in and out, and carries its own error when that request failed while the others
of the call stand.

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

from .errors import BackendError, PartialBatchError

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


@dataclass(frozen=True)
class Request:
    """One prompt and how to answer it. ``adapter`` names a LoRA adapter (a peft folder for
    local engines, a served model name for an OpenAI-compatible server); None = base model."""

    prompt: ChatPrompt
    sampling: Sampling = Sampling()
    constraint: Constraint | None = None
    adapter: str | None = None

    def settings(self) -> tuple:
        """What a batch must share on engines that take one setting per call."""
        return (self.sampling, self.constraint.describe() if self.constraint else None, self.adapter)


FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Completion:
    """One request's answer. ``finish_reason`` "length" means the token budget cut it off;
    "error" means the request failed (``error`` holds why) while the rest of its call stands."""

    text: str = ""
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @classmethod
    def failed(cls, error: BaseException) -> "Completion":
        return cls(finish_reason="error", error=error)


class Backend(ABC):
    """Base class for LLM backends. Subclasses implement ``complete`` (a backend written for the
    older one-setting-per-call ``generate`` still works: the base class groups requests by
    settings for it), and, where the engine can, ``option_logprobs``. ``supports_adapters``
    says whether requests may name a LoRA adapter."""

    name: str = "backend"
    supports_adapters: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.complete is Backend.complete and cls.generate is Backend.generate and not getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"backend {cls.__name__} must implement complete() (or the older generate())")

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

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in order. A request that fails gets a Completion with
        its error (the others stand); only a failure of the whole call raises.

        This default serves backends that implement only ``generate``: one call per distinct
        setting, no token counts, finish reason "stop"."""
        self.check_adapters(requests)
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.settings(), []).append(i)
        for idx in groups.values():
            first = requests[idx[0]]
            try:
                texts: list[Any] = self.generate([requests[i].prompt for i in idx], first.sampling, first.constraint)
            except PartialBatchError as exc:
                texts = exc.results
            for i, t in zip(idx, texts):
                out[i] = Completion.failed(t) if isinstance(t, BaseException) else Completion(text=t)
        return out  # type: ignore[return-value]

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        sampling: Sampling = Sampling(),
        constraint: Constraint | None = None,
    ) -> list[str]:
        """One text per prompt, in order, all with the same settings (``complete`` with one
        setting). A partly failed batch raises PartialBatchError carrying every answer."""
        done = self.complete([Request(p, sampling, constraint) for p in prompts])
        if any(not c.ok for c in done):
            failed = [c.error for c in done if not c.ok]
            raise PartialBatchError(
                f"{len(failed)} of {len(done)} request(s) failed (first: {failed[0]})",
                [c.text if c.ok else c.error for c in done],
            )
        return [c.text for c in done]

    def check_adapters(self, requests: Sequence[Request]) -> None:
        """Refuse requests that name an adapter on a backend that cannot apply one."""
        if not self.supports_adapters and any(r.adapter for r in requests):
            raise BackendError(
                f"backend {self.name!r} cannot apply LoRA adapters per request: use the transformers or vllm "
                "backend (local adapter folders) or an OpenAI-compatible server that serves the adapter by name"
            )

    def adapter_fingerprint(self, adapter: str | None) -> str:
        """Identity of an adapter for cache keys (its files' content for a folder)."""
        return "" if adapter is None else f"adapter:{adapter}"

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        """(len(prompts), len(options)) log-probabilities of each option as the continuation."""
        raise NotImplementedError(f"backend {self.name!r} does not provide option log-probabilities")

    def close(self) -> None:
        """Free engine resources (override where there are any)."""
