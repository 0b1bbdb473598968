"""Alignment accuracy over attribute targets (Adams et al., AIES 2025), vectorised with numpy.

For a target, the *correct* responses of a scenario are those whose gold LABEL vector is
nearest the target (Euclidean over the target's attributes by default; every response at the
minimum distance counts as correct, so ties are allowed). Scenarios where all responses tie
are excluded for that target. Accuracy of a target = share of the remaining scenarios whose
selected response is correct. Results are reported per number of attributes in the target
(mean and standard error over targets) and overall (mean over targets).

Ties in the PREDICTION (several responses at the predicted minimum distance) are not settled
by the selection's deterministic tie-break (always the lowest index, which would credit or
blame response A): such a scenario scores the expected accuracy of a uniform random
tie-break, (#tied responses that are correct) / (#tied responses). The tie rate, the share of
valid scenarios with a tied prediction, is reported per target and overall.

Target sets (``target_set``): ``sampled`` (the dataset's targets other than high/low),
``high`` / ``low`` (``target_high`` / ``target_low``), ``all`` (every full vector over the
label levels: 5^5 = 3,125 for HelpSteer2), ``all-subsets`` (every level combination over every
non-empty subset of attributes: 6^5 - 1 = 7,775 for HelpSteer2), ``named`` (all of the
dataset's targets) or a path to a JSON file of targets."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

import steerkit
from steerkit import AttributeTarget, Dataset, ScoreTable

TARGET_SETS = ("sampled", "high", "low", "all", "all-subsets", "named")
CHUNK_ELEMENTS = 4_000_000  # targets x scenarios x responses per vectorised block


# -- target sets ------------------------------------------------------------------------
def label_levels(dataset: Dataset) -> list[float]:
    """The label levels of a dataset (``info['levels']`` or the distinct label values)."""
    levels = dataset.info.get("levels")
    if levels:
        return [float(v) for v in levels]
    vals = {round(float(v), 9) for s in dataset.scenarios for l in (s.labels or ()) for v in l.values()}
    if not vals:
        raise steerkit.DatasetError(f"dataset {dataset.name!r} has no labels to take levels from")
    return sorted(vals)


def all_targets(attributes: Sequence[str], levels: Sequence[float], subsets: bool = False) -> dict[str, AttributeTarget]:
    """Every combination of levels over all attributes (or over every non-empty subset)."""
    out: dict[str, AttributeTarget] = {}
    sizes = range(1, len(attributes) + 1) if subsets else [len(attributes)]
    for n in sizes:
        for names in itertools.combinations(attributes, n):
            for values in itertools.product(levels, repeat=n):
                key = ",".join(f"{a}={v:g}" for a, v in zip(names, values))
                out[key] = AttributeTarget(dict(zip(names, values)))
    return out


def resolve_targets(dataset: Dataset, spec: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, AttributeTarget]:
    """Name -> target for a target-set name, a JSON file or a mapping of targets."""
    if isinstance(spec, Mapping):
        return {str(k): v if isinstance(v, AttributeTarget) else steerkit.coerce_target(v) for k, v in spec.items()}  # type: ignore[misc]
    text = str(spec)
    named = dataset.targets
    if text == "sampled":
        out = {k: t for k, t in named.items() if k not in ("target_high", "target_low")}
    elif text in ("high", "low"):
        key = f"target_{text}"
        if key in named:
            out = {key: named[key]}
        else:
            levels = label_levels(dataset)
            v = max(levels) if text == "high" else min(levels)
            out = {key: AttributeTarget({a: v for a in dataset.attributes})}
    elif text in ("all", "all-subsets"):
        out = all_targets(dataset.attributes, label_levels(dataset), subsets=text == "all-subsets")
    elif text == "named":
        out = dict(named)
    else:
        path = Path(text)
        if not path.is_file():
            raise steerkit.InvalidTargetError(
                f"--targets {text!r} is neither one of {', '.join(TARGET_SETS)} nor an existing JSON file"
            )
        from .datasets_attributes import read_targets

        out = read_targets(path)
    if not out:
        raise steerkit.InvalidTargetError(f"target set {text!r} is empty for dataset {dataset.name!r}")
    unknown = sorted({a for t in out.values() for a in t.attributes} - set(dataset.attributes))
    if unknown:
        raise steerkit.UnknownAttributeError(
            f"targets use {unknown}, which dataset {dataset.name!r} does not label; it has {dataset.attributes}"
        )
    return out


def per_attribute_targets(dataset: Dataset) -> dict[str, AttributeTarget]:
    """One-attribute targets at the highest and lowest level, for the high-vs-low polar plot."""
    levels = label_levels(dataset)
    out = {}
    for a in dataset.attributes:
        out[f"{a}=high"] = AttributeTarget({a: max(levels)})
        out[f"{a}=low"] = AttributeTarget({a: min(levels)})
    return out


# -- the metric -------------------------------------------------------------------------
def gold_correct(gold: ScoreTable, targets: Sequence[Any], aligner: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """(T, S, R) correct-response mask and (T, S) validity (not all responses tied)."""
    _, tied = gold.align_many(targets, aligner)
    n_responses = gold.mask.sum(axis=1)  # (S,)
    valid = tied.sum(axis=-1) < n_responses[None, :]
    return tied, valid


def accuracy_from_masks(selected: np.ndarray, correct: np.ndarray, valid: np.ndarray,
                        tied: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target accuracy (NaN where no scenario is valid), valid and tied-prediction counts.

    ``selected`` (T, S) chosen response indices; ``correct`` (T, S, R); ``valid`` (T, S);
    ``tied`` (T, S, R), optional: the responses the prediction could not tell apart (the
    selected one among them). A scenario with more than one tied response scores the share
    of them that is correct (the expected accuracy of a uniform random tie-break)."""
    selected = np.asarray(selected, dtype=int)
    credit = np.take_along_axis(correct, selected[..., None], axis=-1)[..., 0].astype(float)
    n_tied = np.zeros(valid.shape[0], dtype=int)
    if tied is not None:
        tied = np.asarray(tied, dtype=bool)
        size = tied.sum(axis=-1)
        is_tie = size > 1
        share = (tied & correct).sum(axis=-1) / np.maximum(size, 1)
        credit = np.where(is_tie, share, credit)
        n_tied = (is_tie & valid).sum(axis=1)
    credit = np.where(valid, credit, 0.0)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_valid > 0, credit.sum(axis=1) / np.maximum(n_valid, 1), np.nan)
    return acc, n_valid, n_tied


@dataclass
class AlignmentReport:
    """Per-target accuracies and their summary."""

    names: list[str]
    targets: list[AttributeTarget]
    accuracy: np.ndarray  # (T,) NaN where the target has no valid scenario
    n_valid: np.ndarray  # (T,)
    n_scenarios: int
    n_tied: np.ndarray | None = None  # (T,) valid scenarios whose prediction was a tie
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_attributes(self) -> np.ndarray:
        return np.array([len(t.values) for t in self.targets])

    def by_n_attributes(self) -> dict[int, dict[str, float]]:
        return summarize(self.accuracy, self.n_attributes)

    @property
    def mean(self) -> float:
        ok = np.isfinite(self.accuracy)
        return float(self.accuracy[ok].mean()) if ok.any() else float("nan")

    @property
    def se(self) -> float:
        return _sem(self.accuracy)

    @property
    def tie_rate(self) -> float:
        """Share of (target, valid scenario) pairs whose prediction was a tie."""
        if self.n_tied is None:
            return float("nan")
        total = int(np.sum(self.n_valid))
        return float(np.sum(self.n_tied)) / total if total else float("nan")

    def subset(self, rows: Sequence[int]) -> "AlignmentReport":
        """The report for some of its targets (by position)."""
        rows = list(rows)
        return AlignmentReport([self.names[i] for i in rows], [self.targets[i] for i in rows],
                               self.accuracy[rows], self.n_valid[rows], self.n_scenarios,
                               None if self.n_tied is None else self.n_tied[rows])

    def to_dict(self, per_target: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_scenarios": self.n_scenarios,
            "n_targets": len(self.targets),
            "mean_accuracy": num(self.mean),
            "se": num(self.se),
            "tie_rate": num(self.tie_rate),
            "by_n_attributes": {str(k): v for k, v in self.by_n_attributes().items()},
        }
        if per_target:
            tied = self.n_tied if self.n_tied is not None else [None] * len(self.targets)
            out["targets"] = [
                {"name": n, "values": dict(t.values), **({"weights": dict(t.weights)} if t.weights else {}),
                 "n_attributes": len(t.values), "accuracy": num(a), "n_valid": int(v),
                 "n_tied": None if k is None else int(k)}
                for n, t, a, v, k in zip(self.names, self.targets, self.accuracy, self.n_valid, tied)
            ]
        return out


def num(x: float | None) -> float | None:
    """A float for JSON: None for missing, NaN or infinite values."""
    return None if x is None or not np.isfinite(x) else float(x)




def _sem(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan") if len(v) == 0 else 0.0
    return float(stats.sem(v))


def summarize(accuracy: np.ndarray, n_attributes: np.ndarray) -> dict[int, dict[str, float]]:
    """Mean accuracy, standard error and count of targets per number of attributes."""
    out = {}
    for n in sorted(set(int(x) for x in n_attributes)):
        a = accuracy[n_attributes == n]
        ok = a[np.isfinite(a)]
        out[n] = {"mean": num(float(ok.mean())) if len(ok) else None, "se": num(_sem(a)),
                  "n_targets": int(len(a)), "n_scored": int(len(ok))}
    return out


def _chunks(n_targets: int, table: ScoreTable) -> range:
    step = max(1, CHUNK_ELEMENTS // max(1, table.mask.size))
    return range(0, n_targets, step)


def evaluate_selections(gold: ScoreTable, targets: Mapping[str, AttributeTarget], selected: np.ndarray,
                        aligner: str = "euclidean", tied: np.ndarray | None = None) -> AlignmentReport:
    """Accuracy of given selections (T, S) against the gold labels; ``tied`` (T, S, R), when
    given, marks predicted ties (scored as a uniform random tie-break)."""
    names, tlist = list(targets), list(targets.values())
    selected = np.asarray(selected, dtype=int)
    if selected.shape != (len(tlist), len(gold)):
        raise ValueError(f"selections have shape {selected.shape}; expected {(len(tlist), len(gold))}")
    if tied is not None:
        tied = _pad(np.asarray(tied, dtype=bool), gold.mask.shape[1])
    acc = np.empty(len(tlist))
    n_valid = np.empty(len(tlist), dtype=int)
    n_tied = np.zeros(len(tlist), dtype=int)
    step = _chunks(len(tlist), gold).step
    for start in range(0, len(tlist), step):
        stop = start + step
        correct, valid = gold_correct(gold, tlist[start:stop], aligner)
        acc[start:stop], n_valid[start:stop], n_tied[start:stop] = accuracy_from_masks(
            selected[start:stop], correct, valid, None if tied is None else tied[start:stop])
    return AlignmentReport(names, tlist, acc, n_valid, len(gold), n_tied if tied is not None else None)


def _pad(mask: np.ndarray, width: int) -> np.ndarray:
    """A (T, S, R') mask widened (False) or cut to R = ``width`` responses."""
    if mask.shape[-1] >= width:
        return mask[..., :width]
    return np.concatenate([mask, np.zeros((*mask.shape[:-1], width - mask.shape[-1]), dtype=bool)], axis=-1)


def tied_from_selections(selections: Sequence[Sequence[Any]], width: int) -> np.ndarray:
    """(T, S, R) tie mask from Selection objects: the chosen index plus ``Selection.ties``."""
    out = np.zeros((len(selections), len(selections[0]) if selections else 0, width), dtype=bool)
    for t, row in enumerate(selections):
        for s, sel in enumerate(row):
            out[t, s, [sel.index, *sel.ties]] = True
    return out


def evaluate_table(predicted: ScoreTable, gold: ScoreTable, targets: Mapping[str, AttributeTarget],
                   aligner: str = "euclidean", gold_aligner: str | None = None) -> AlignmentReport:
    """Align the predicted table to every target (no model calls) and score the choices.

    ``gold_aligner`` defaults to ``aligner`` when it uses weights (so weighted targets are
    judged with the same weights), else Euclidean, as in the paper."""
    if gold_aligner is None:
        fn = steerkit.lookup("aligner", aligner)
        gold_aligner = aligner if getattr(fn, "uses_weights", False) else "euclidean"
    names, tlist = list(targets), list(targets.values())
    acc = np.empty(len(tlist))
    n_valid = np.empty(len(tlist), dtype=int)
    n_tied = np.empty(len(tlist), dtype=int)
    step = _chunks(len(tlist), gold).step
    for start in range(0, len(tlist), step):
        stop = start + step
        chunk = tlist[start:stop]
        selected, tied = predicted.align_many(chunk, aligner)
        correct, valid = gold_correct(gold, chunk, gold_aligner)
        acc[start:stop], n_valid[start:stop], n_tied[start:stop] = accuracy_from_masks(
            selected, correct, valid, _pad(tied, gold.mask.shape[1]))
    return AlignmentReport(names, tlist, acc, n_valid, len(gold), n_tied)
