"""ScoreTable: attribute scores for many scenarios, aligned to any target without a model.

Scores live in one numpy array (scenarios x responses x attributes) with a mask for ragged
response counts, so re-aligning thousands of targets is a few vectorised array operations."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidTargetError, ScoreTableError, SteerkitError, UnknownAttributeError
from .types import AttributeTarget, Scenario, Selection, coerce_target

TIE_TOLERANCE = 1e-9


@dataclass
class Alignment:
    """Result of aligning one target: the chosen index per scenario and the evidence."""

    target: AttributeTarget
    aligner: str
    indices: np.ndarray  # (S,) chosen response per scenario; lowest index wins a tie
    distances: np.ndarray  # (S, R) distance of each response to the target; inf where masked
    tied: np.ndarray  # (S, R) bool: responses at the minimum distance

    @property
    def has_tie(self) -> np.ndarray:
        """(S,) True where more than one response is at the minimum distance."""
        return self.tied.sum(axis=1) > 1


@dataclass
class ScoreTable:
    """Per-response attribute scores in [0, 1] for a list of scenarios."""

    scenarios: list[Scenario]
    attributes: list[str]
    scores: np.ndarray  # (S, R_max, A) float; NaN where masked
    mask: np.ndarray  # (S, R_max) bool: True where a response exists
    reasonings: list[list[list[str]]] = field(default_factory=list)  # [s][r][a]
    strategy: str = ""
    model: str = ""
    cache_hits: int = 0
    cache_misses: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        shape = np.shape(self.scores)
        if len(shape) != 3:
            raise ScoreTableError(
                f"ScoreTable scores must be a 3-d array (scenarios x responses x attributes), got shape {shape}"
            )
        s, r, a = shape
        if np.shape(self.mask) != (s, r) or a != len(self.attributes) or s != len(self.scenarios):
            raise ScoreTableError(
                f"ScoreTable shapes do not fit: scores {shape}, mask {np.shape(self.mask)}, "
                f"{len(self.scenarios)} scenarios, {len(self.attributes)} attributes; build tables with "
                "ScoreTable.empty(scenarios, attributes) or Steerer.score()"
            )

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, scenarios: Sequence[Scenario], attributes: Sequence[str], **info: Any) -> "ScoreTable":
        r_max = max((len(s.responses) for s in scenarios), default=0)
        mask = np.zeros((len(scenarios), r_max), dtype=bool)
        for i, s in enumerate(scenarios):
            mask[i, : len(s.responses)] = True
        scores = np.full((len(scenarios), r_max, len(attributes)), np.nan)
        reasonings = [[["" for _ in attributes] for _ in s.responses] for s in scenarios]
        return cls(list(scenarios), list(attributes), scores, mask, reasonings, **info)

    @classmethod
    def from_labels(cls, scenarios: Sequence[Scenario], attributes: Sequence[str] | None = None) -> "ScoreTable":
        """The gold table: each scenario's labels as scores (for evaluation and the oracle)."""
        if attributes is None:
            first = next((s.labels for s in scenarios if s.labels), None)
            if not first:
                raise UnknownAttributeError("these scenarios carry no labels")
            attributes = list(first[0])
        table = cls.empty(scenarios, attributes, strategy="labels", model="gold")
        for i, s in enumerate(scenarios):
            if s.labels is None:
                raise UnknownAttributeError(f"scenario {s.label!r} has no labels")
            for r, lab in enumerate(s.labels):
                for a, name in enumerate(attributes):
                    if name in lab and lab[name] is not None:
                        table.scores[i, r, a] = float(lab[name])
        return table

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.scenarios)

    @property
    def complete(self) -> bool:
        return bool(np.all(np.isfinite(self.scores[self.mask])))

    def response_scores(self, i: int) -> list[dict[str, float]]:
        n = len(self.scenarios[i].responses)
        return [
            {a: float(self.scores[i, r, k]) for k, a in enumerate(self.attributes)} for r in range(n)
        ]

    def response_reasonings(self, i: int) -> list[str]:
        if not self.reasonings:
            return []
        out = []
        for per_attr in self.reasonings[i]:
            parts = [f"{a}: {t}" for a, t in zip(self.attributes, per_attr) if t]
            out.append(" | ".join(parts))
        return out

    def subset(self, rows: Sequence[int]) -> "ScoreTable":
        """The table restricted to some scenarios (same attributes)."""
        if list(rows) == list(range(len(self))):
            return self
        rows = list(rows)
        return ScoreTable(
            [self.scenarios[i] for i in rows], list(self.attributes), self.scores[rows], self.mask[rows],
            [self.reasonings[i] for i in rows] if self.reasonings else [], self.strategy, self.model,
        )

    # -- alignment ----------------------------------------------------------------------
    def _target_arrays(self, targets: Sequence[AttributeTarget], use_weights: bool) -> tuple[np.ndarray, np.ndarray]:
        values = np.zeros((len(targets), len(self.attributes)))
        weights = np.zeros_like(values)
        index = {a: k for k, a in enumerate(self.attributes)}
        for t, target in enumerate(targets):
            for name, v in target.values.items():
                if name not in index:
                    raise UnknownAttributeError(
                        f"target attribute {name!r} was not scored; this table has "
                        f"{self.attributes}. Score it first: steerer.score(scenarios, [{name!r}, ...])"
                    )
                values[t, index[name]] = v
                weights[t, index[name]] = target.weight_of(name) if use_weights else 1.0
        return values, weights

    def distances_many(self, targets: Iterable[Any], aligner: str = "euclidean") -> np.ndarray:
        """(T, S, R) distances of every response to every target; inf where masked."""
        from .host import get_aligner

        targets = [_as_attribute_target(t) for t in targets]
        fn = get_aligner(aligner)
        uses_weights = getattr(fn, "uses_weights", False)
        if not uses_weights:
            _warn_if_weights_ignored(targets, aligner)
        values, weights = self._target_arrays(targets, uses_weights)
        used = weights.sum(axis=0) > 0
        if np.any(~np.isfinite(self.scores[self.mask][:, used])):
            missing = [a for a, u in zip(self.attributes, used) if u and np.any(~np.isfinite(self.scores[..., self.attributes.index(a)][self.mask]))]
            raise UnknownAttributeError(f"scores for {missing} are incomplete; run score() again to fill them")
        scores = np.where(np.isfinite(self.scores), self.scores, 0.0)
        out = np.empty((len(targets), *self.mask.shape))
        chunk = max(1, int(2_000_000 // max(1, scores.size)))
        for start in range(0, len(targets), chunk):
            stop = start + chunk
            out[start:stop] = fn(scores, values[start:stop], weights[start:stop])
        out[:, ~self.mask] = np.inf
        return out

    def align(self, target: Any, aligner: str = "euclidean") -> Alignment:
        """Pick, for every scenario, the response nearest ``target``. No model calls."""
        target = _as_attribute_target(target)
        d = self.distances_many([target], aligner)[0]
        indices, tied = pick_nearest(d)
        return Alignment(target, aligner, indices, d, tied)

    def align_many(self, targets: Iterable[Any], aligner: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
        """Vectorised over targets: (T, S) chosen indices and (T, S, R) tie masks."""
        d = self.distances_many(list(targets), aligner)
        return pick_nearest(d)

    def selections(self, target: Any, aligner: str = "euclidean") -> list[Selection]:
        """One Selection per scenario for ``target``, built from this table alone."""
        al = self.align(target, aligner)
        out = []
        for i, s in enumerate(self.scenarios):
            idx = int(al.indices[i])
            n = len(s.responses)
            out.append(
                Selection(
                    index=idx,
                    response=s.responses[idx],
                    scores=self.response_scores(i),
                    reasoning=self.response_reasonings(i),
                    strategy=self.strategy,
                    model=self.model,
                    ties=[int(j) for j in np.flatnonzero(al.tied[i]) if j != idx],
                    distances=[float(x) for x in al.distances[i, :n]],
                    scenario_id=s.id,
                )
            )
        return out

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the table as one JSON file (scores, mask, reasonings, scenarios)."""
        path = Path(path)
        data = {
            "attributes": self.attributes,
            "scores": np.where(np.isfinite(self.scores), self.scores, -1.0).tolist(),
            "mask": self.mask.tolist(),
            "reasonings": self.reasonings,
            "strategy": self.strategy,
            "model": self.model,
            "scenarios": [
                {"question": s.question, "responses": list(s.responses), "id": s.id,
                 "labels": list(s.labels) if s.labels else None}
                for s in self.scenarios
            ],
        }
        path.write_text(json.dumps(data))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ScoreTable":
        """Read a table written by ``save``; a missing or foreign file is a ScoreTableError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ScoreTableError(
                f"score table file {path} does not exist: pass the path that ScoreTable.save() wrote"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ScoreTableError(
                f"cannot read the score table {path} ({type(exc).__name__}: {exc}); pass a file written by ScoreTable.save()"
            ) from None
        try:
            scores = np.asarray(data["scores"], dtype=float)
            scenarios = [Scenario(d["question"], d["responses"], id=d.get("id"), labels=d.get("labels")) for d in data["scenarios"]]
            mask = np.asarray(data["mask"], dtype=bool)
            attributes, reasonings = data["attributes"], data["reasonings"]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SteerkitError):
                raise
            raise ScoreTableError(
                f"{path} is not a steerkit score table ({type(exc).__name__}: {exc}); pass a file written by ScoreTable.save()"
            ) from None
        scores[scores < 0] = np.nan
        return cls(scenarios, attributes, scores, mask, reasonings, data.get("strategy", ""), data.get("model", ""))


def pick_nearest(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmin over the last axis with deterministic tie-breaking (lowest index) and a tie mask."""
    best = np.min(distances, axis=-1, keepdims=True)
    tied = np.isfinite(distances) & (distances <= best + TIE_TOLERANCE)
    indices = np.argmax(tied, axis=-1)
    return indices, tied


def _warn_if_weights_ignored(targets: Sequence[AttributeTarget], aligner: str) -> None:
    """Weights that would change the result must not vanish silently into an unweighted aligner."""
    for t in targets:
        if t.weights and len({t.weight_of(a) for a in t.attributes}) > 1:
            warnings.warn(
                f"target ({t}) has weights {t.weights}, but aligner {aligner!r} does not use weights "
                "(it only sees which attributes the target names); pass aligner=\"weighted-euclidean\" "
                "(--aligner weighted-euclidean) to apply them",
                UserWarning,
                stacklevel=4,
            )
            return


def _as_attribute_target(target: Any) -> AttributeTarget:
    target = coerce_target(target)
    if not isinstance(target, AttributeTarget):
        raise InvalidTargetError(
            "score tables align to attribute targets (a dict of values in [0, 1]); "
            f"got the perspective {str(target)!r}"
        )
    return target
