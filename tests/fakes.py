"""A fake backend for fast unit tests of the host (never used to claim a strategy works:
every strategy and adapter also has tests against the real embedded model)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

import steerkit


def minimal_instance(schema: dict, rng: np.random.Generator) -> object:
    """A value that satisfies a simple JSON schema (objects, integers, numbers, strings, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: minimal_instance(v, rng) for k, v in schema.get("properties", {}).items()}
    if kind == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 100)
        return int(rng.integers(lo, hi + 1))
    if kind == "number":
        return float(rng.uniform(schema.get("minimum", 0.0), schema.get("maximum", 1.0)))
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), rng)]
    if kind == "boolean":
        return True
    return "fake text"


class FakeBackend(steerkit.plugin.Backend):
    """``micro_batch_size`` makes it say it runs prompts that many at a time, one batch after
    another (as the transformers backend does); ``fail_after`` makes it raise ``failure`` on
    the micro-batch that would take it past that many answered prompts (an interrupt, a crash)."""

    name = "fake"

    def __init__(self, model: str | None = "fake-model", responder: Callable | None = None, *,
                 micro_batch_size: int | None = None, fail_after: int | None = None,
                 failure: BaseException | None = None, **options):
        super().__init__(model or "fake-model", **options)
        self.responder = responder
        self.prompts_seen: list = []
        self.rng = np.random.default_rng(0)
        self.micro_batch_size = micro_batch_size
        self.fail_after = fail_after
        self.failure = failure if failure is not None else KeyboardInterrupt()
        self.call_sizes: list[int] = []  # prompts per generate call

    def fingerprint(self) -> str:
        return f"fake:{self.model}"

    def micro_batches(self, requests: Sequence) -> list[list[int]]:
        size = self.micro_batch_size or max(1, len(requests))
        return [list(range(start, min(start + size, len(requests)))) for start in range(0, len(requests), size)]

    def complete(self, requests: Sequence) -> list:
        if self.fail_after is not None and len(self.prompts_seen) + len(requests) > self.fail_after:
            raise self.failure
        self.call_sizes.append(len(requests))
        out = []
        for r in requests:
            p, constraint = r.prompt, r.constraint
            self.prompts_seen.append(p)
            if self.responder is not None:
                text = self.responder(p, constraint)
            elif constraint is None:
                text = "fake reasoning. Answer: A"
            elif constraint.kind == "choice":
                text = constraint.value[0]
            elif constraint.kind == "json":
                text = json.dumps(minimal_instance(constraint.value, self.rng))
            else:
                text = ""
            if isinstance(text, BaseException):  # a responder may fail one request
                out.append(steerkit.plugin.Completion.failed(text))
                continue
            words = len(text.split())
            cut = words > r.sampling.max_tokens
            out.append(steerkit.plugin.Completion(
                text=" ".join(text.split()[: r.sampling.max_tokens]) if cut else text,
                finish_reason="length" if cut else "stop",
                prompt_tokens=sum(len(m["content"].split()) for m in p), output_tokens=min(words, r.sampling.max_tokens),
            ))
        return out

    def option_logprobs(self, prompts, options):
        self.prompts_seen.extend(prompts)
        logits = np.arange(len(options), 0, -1, dtype=float)
        lp = logits - np.log(np.exp(logits).sum())
        return np.tile(lp, (len(prompts), 1))
