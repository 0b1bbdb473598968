"""A third-party steerkit plugin, using only ``steerkit`` and ``steerkit.plugin``.

- strategy ``keyword-match``: an attribute strategy that needs no model. An attribute's
  score for a response is the share of the attribute's keywords that the response contains
  (the keywords default to the attribute name itself). Scores are computed locally, then
  cached and aligned like any other attribute strategy's. Its one setting, ``keywords``, is a
  declared ``Option``: it is checked when the strategy is built, and it is part of the cache
  key without any code here saying so.
- aligner ``chebyshev``: the largest absolute difference over the target's attributes.
"""

from __future__ import annotations

import re

import numpy as np

from steerkit.plugin import AttributeStrategy, Configurable, Option, ResponseScore, RunContext, ScoreJob, hookimpl

__version__ = "0.3.0"


def _keyword_lists(value: dict) -> dict[str, list[str]]:
    if not all(isinstance(v, (list, tuple)) and all(isinstance(w, str) for w in v) for v in value.values()):
        raise ValueError('pass {"attribute": ["keyword", ...]}')
    return {k: [w.lower() for w in v] for k, v in value.items()}


class KeywordMatch(Configurable, AttributeStrategy):
    """Score = fraction of an attribute's keywords found in the response (0..1)."""

    name = "keyword-match"
    comparative = False  # one job per response
    keywords = Option(dict, {}, convert=_keyword_lists, help="attribute -> keywords it looks for")

    def define(self, name: str, definition: str) -> None:
        """``Steerer.score(..., attributes={name: "kw1, kw2"})``: the new keywords re-key the cache."""
        self.keywords[name] = [w.lower() for w in re.split(r"[,\s]+", definition) if w]

    def words(self, attribute: str) -> list[str]:
        return self.keywords.get(attribute, [attribute.lower()])

    def score_jobs(self, run: RunContext, jobs: list[ScoreJob]) -> list[list[ResponseScore]]:
        out = []
        for job in jobs:
            words, per_job = self.words(job.attribute), []
            for r in job.responses:
                hits = [w for w in words if w in job.scenario.responses[r].lower()]
                per_job.append(ResponseScore(len(hits) / len(words), f"matched {hits}"))
            out.append(per_job)
        return out


def chebyshev(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scores (S, R, A), values (T, A), weights (T, A) -> distances (T, S, R)."""
    mask = (weights > 0)[:, None, None, :]
    diff = np.abs(scores[None, :, :, :] - values[:, None, None, :])
    return np.max(np.where(mask, diff, 0.0), axis=-1)


@hookimpl
def register_strategies(register):
    register("keyword-match", KeywordMatch)


@hookimpl
def register_aligners(register):
    register("chebyshev", chebyshev)
