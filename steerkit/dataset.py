"""Datasets: lists of scenarios plus what evaluation needs (targets, perspectives, gold).

Attribute datasets (HelpSteer2, MIC) carry per-response ``labels`` on each scenario and named
attribute targets. Perspective datasets (VK, OpinionQA) carry one perspective per item, the
options as the scenario's responses and the gold option index in ``meta['gold']``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .types import AttributeTarget, Perspective, Scenario


@dataclass
class Dataset:
    name: str
    scenarios: list[Scenario]
    attributes: list[str] = field(default_factory=list)
    targets: dict[str, AttributeTarget] = field(default_factory=dict)
    perspectives: list[Perspective] | None = None  # one per scenario, for perspective tasks
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scenarios)

    def head(self, n: int | None) -> "Dataset":
        """The first ``n`` items (all when n is None)."""
        if n is None or n >= len(self):
            return self
        return Dataset(
            self.name, self.scenarios[:n], list(self.attributes), dict(self.targets),
            self.perspectives[:n] if self.perspectives is not None else None, dict(self.info),
        )

    @property
    def gold(self) -> list[int | None]:
        return [s.meta.get("gold") for s in self.scenarios]

    def examples(self) -> Sequence[Scenario]:
        """Scenarios usable as in-context examples (datasets may override via info['pool'])."""
        return self.info.get("pool", [])
