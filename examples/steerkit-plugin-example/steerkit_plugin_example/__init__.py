"""A third-party steerkit plugin, using only the public ``steerkit`` API.

- strategy ``keyword-match``: an attribute strategy that needs no model. An attribute's
  score for a response is the share of the attribute's keywords that the response contains
  (the keywords default to the attribute name itself). No model is called: scores are
  computed locally, then cached and aligned like any other attribute strategy's.
- aligner ``chebyshev``: the largest absolute difference over the target's attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

import steerkit

__version__ = "0.2.0"


class KeywordMatch(steerkit.AttributeStrategy):
    """Score = fraction of an attribute's keywords found in the response (0..1)."""

    name = "keyword-match"
    prompt_version = "1"
    comparative = False  # one job per response

    def __init__(self, keywords: Mapping[str, Sequence[str]] | None = None, **options):
        super().__init__(keywords={k: list(v) for k, v in (keywords or {}).items()}, **options)
        self.keywords = {k: [w.lower() for w in v] for k, v in (keywords or {}).items()}

    def define(self, name: str, definition: str) -> None:
        """Attribute definitions are keyword lists separated by commas or spaces."""
        self.keywords[name] = [w.lower() for w in re.split(r"[,\s]+", definition) if w]
        self.options["keywords"] = {k: list(v) for k, v in self.keywords.items()}

    def attribute_key(self, attribute: str) -> str:
        return attribute + ":" + ",".join(self.keywords.get(attribute, [attribute.lower()]))

    def score_jobs(self, run: steerkit.RunContext, jobs: list[steerkit.ScoreJob]) -> list[list[steerkit.ResponseScore]]:
        out = []
        for job in jobs:
            words = self.keywords.get(job.attribute, [job.attribute.lower()])
            per_job = []
            for r in job.responses:
                text = job.scenario.responses[r].lower()
                hits = [w for w in words if w in text]
                per_job.append(steerkit.ResponseScore(len(hits) / len(words), f"matched {hits}"))
            out.append(per_job)
        return out


def chebyshev(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scores (S, R, A), values (T, A), weights (T, A) -> distances (T, S, R)."""
    mask = (weights > 0)[:, None, None, :]
    diff = np.abs(scores[None, :, :, :] - values[:, None, None, :])
    return np.max(np.where(mask, diff, 0.0), axis=-1)


@steerkit.hookimpl
def register_strategies(register):
    register("keyword-match", KeywordMatch)


@steerkit.hookimpl
def register_aligners(register):
    register("chebyshev", chebyshev)
