"""Alignment accuracy over attribute targets (Adams et al., AIES 2025), vectorised with numpy.

For a target, the *correct* responses of a scenario are those whose gold LABEL vector is
nearest the target (Euclidean over the target's attributes by default; every response at the
minimum distance counts as correct). As in the reference repository's ``score.py``, distances
are compared exactly (no tolerance) and computed with its arithmetic (``reference_distances``:
the same BLAS dot as ``np.linalg.norm``, in the target's key order), so the same responses
tie. Scenarios where all responses tie are excluded for that target. Accuracy of a target =
share of the remaining scenarios whose selected response is correct. Results are reported per
number of attributes in the target (mean and standard error over targets) and overall.

Ties in the PREDICTION (several responses at exactly the predicted minimum distance, computed
the same way, so that a perfect predictor always scores 1), ``ties``: ``expected`` (default)
scores the expected accuracy of a uniform random tie-break, (#tied responses that are
correct) / (#tied responses), so response A is neither credited nor blamed for every tie;
``first`` is the reference's rule (``select_response_index``: the first response at the
exact minimum wins). The tie rate, the share of valid scenarios with a tied prediction, is
reported either way. (The Steerer's own selections treat distances within 1e-9 as tied.)

Target sets (``target_set``): ``sampled`` (the dataset's targets other than high/low),
``high`` / ``low`` (``target_high`` / ``target_low``), ``reference-all`` (the reference
repository's full set, ``sample_targets.get_all_possible_targets``: every level combination
over all attributes with the 0.5 values then removed, i.e. the levels without 0.5 over every
non-empty subset of attributes: 4^1..4^5 over subsets = 3,124 for HelpSteer2), ``all`` (every
full vector over the label levels, 0.5 included: 5^5 = 3,125 for HelpSteer2), ``all-subsets``
(every level combination over every non-empty subset: 6^5 - 1 = 7,775 for HelpSteer2),
``named`` (all of the dataset's targets) or a path to a JSON file of targets."""

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

from .options import choice_option

TARGET_SETS = ("sampled", "high", "low", "reference-all", "all", "all-subsets", "named")
TARGET_SET_NOTES = {
    "reference-all": "the AIES'25 reference repository's full target set: label levels without 0.5 over "
                     "every non-empty attribute subset (3,124 for HelpSteer2)",
    "all": "every full vector over the label levels, 0.5 included (3,125 for HelpSteer2); not the reference's set",
    "all-subsets": "every level combination over every non-empty attribute subset, 0.5 included",
    "sampled": "the dataset's sampled targets (10 per number of attributes)",
    "high": "all attributes at the highest level", "low": "all attributes at the lowest level",
    "named": "all of the dataset's named targets",
}
TIE_RULES = {
    "expected": "a tied prediction (exactly equal distances) scores the expected accuracy of a uniform random "
                "tie-break",
    "first": "a tied prediction goes to the first tied response (the reference's select_response_index)",
}
NEUTRAL = 0.5  # the level the reference removes from its full target set
CHUNK_ELEMENTS = 1_000_000  # targets x scenarios x responses per vectorised block


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


def reference_targets(attributes: Sequence[str], levels: Sequence[float]) -> dict[str, AttributeTarget]:
    """The reference's full set: every combination of levels over all attributes, then each
    target drops its attributes at 0.5 (the all-0.5 combination, left empty, is skipped)."""
    out: dict[str, AttributeTarget] = {}
    for combo in itertools.product(levels, repeat=len(attributes)):
        values = {a: v for a, v in zip(attributes, combo) if v != NEUTRAL}
        if values:
            out[",".join(f"{a}={v:g}" for a, v in values.items())] = AttributeTarget(values)
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
    elif text == "reference-all":
        out = reference_targets(dataset.attributes, label_levels(dataset))
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
        from .attribute_datasets import read_targets

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
def reference_distances(table: ScoreTable, targets: Sequence[AttributeTarget]) -> np.ndarray:
    """(T, S, R) Euclidean distances computed as the reference's ``euclidean_distance`` does,
    ``np.linalg.norm(target - label)`` over the target's attributes in its key order: ``matmul``
    of each difference vector with itself runs the same BLAS dot as ``norm``, so equal
    distances come out equal (and unequal ones unequal) to the last bit, as in the reference.
    Masked responses are at infinity."""
    targets = [steerkit.coerce_target(t) for t in targets]
    width = max((len(t.values) for t in targets), default=0)
    cols = np.zeros((len(targets), width), dtype=int)
    values = np.zeros((len(targets), width))
    used = np.zeros((len(targets), width), dtype=bool)
    for i, t in enumerate(targets):
        for j, (a, v) in enumerate(t.values.items()):
            if a not in table.attributes:
                raise steerkit.UnknownAttributeError(f"target attribute {a!r} is not scored; the table has {table.attributes}")
            cols[i, j], values[i, j], used[i, j] = table.attributes.index(a), v, True
    needed = sorted(set(cols[used].tolist()))
    if needed and not np.all(np.isfinite(table.scores[table.mask][:, needed])):
        raise steerkit.UnknownAttributeError("scores are incomplete for the target's attributes; run score() again")
    scores = np.where(np.isfinite(table.scores), table.scores, 0.0)
    diff = values[:, None, None, :] - np.moveaxis(scores[:, :, cols], 2, 0)  # (T, S, R, width)
    # padding adds 0 * 0 to the dot: no change. C order keeps each vector contiguous, so matmul
    # takes the BLAS dot path as norm does (a strided copy would take numpy's own loop)
    diff = np.ascontiguousarray(np.where(used[:, None, None, :], diff, 0.0))
    out = np.sqrt(np.matmul(diff[..., None, :], diff[..., :, None])[..., 0, 0])
    out[:, ~table.mask] = np.inf
    return out


def _distances(table: ScoreTable, targets: Sequence[Any], aligner: str) -> np.ndarray:
    return reference_distances(table, targets) if aligner == "euclidean" else table.distances_many(targets, aligner)


def exact_ties(distances: np.ndarray) -> np.ndarray:
    """(..., R) responses at exactly the minimum distance (the reference's ``x == min_value``)."""
    return np.isfinite(distances) & (distances == distances.min(axis=-1, keepdims=True))


def gold_correct(gold: ScoreTable, targets: Sequence[Any], aligner: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """(T, S, R) correct-response mask (exact minimum, no tolerance) and (T, S) validity (not
    all responses tied)."""
    tied = exact_ties(_distances(gold, targets, aligner))
    n_responses = gold.mask.sum(axis=1)  # (S,)
    valid = tied.sum(axis=-1) < n_responses[None, :]
    return tied, valid


def first_choice(predicted: ScoreTable, targets: Sequence[Any], aligner: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """The reference's choice: (T, S) first response at the exact minimum predicted distance,
    and the (T, S, R) exact tie mask (for the tie rate). Computed in blocks of targets."""
    targets = list(targets)
    selected = np.zeros((len(targets), *predicted.mask.shape[:1]), dtype=int)
    tied = np.zeros((len(targets), *predicted.mask.shape), dtype=bool)
    blocks = _chunks(len(targets), predicted)
    for start in blocks:
        stop = start + blocks.step
        d = _distances(predicted, targets[start:stop], aligner)
        selected[start:stop], tied[start:stop] = np.argmin(d, axis=-1), exact_ties(d)
    return selected, tied


def accuracy_from_masks(selected: np.ndarray, correct: np.ndarray, valid: np.ndarray,
                        tied: np.ndarray | None = None, ties: str = "expected") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target accuracy (NaN where no scenario is valid), valid and tied-prediction counts.

    ``selected`` (T, S) chosen response indices; ``correct`` (T, S, R); ``valid`` (T, S);
    ``tied`` (T, S, R), optional: the responses the prediction could not tell apart (the
    selected one among them). With ``ties="expected"`` a scenario with more than one tied
    response scores the share of them that is correct; with ``"first"`` only the selected
    response counts (ties are then only counted)."""
    check_ties(ties)
    selected = np.asarray(selected, dtype=int)
    credit = np.take_along_axis(correct, selected[..., None], axis=-1)[..., 0].astype(float)
    n_tied = np.zeros(valid.shape[0], dtype=int)
    if tied is not None:
        tied = np.asarray(tied, dtype=bool)
        size = tied.sum(axis=-1)
        is_tie = size > 1
        if ties == "expected":
            share = (tied & correct).sum(axis=-1) / np.maximum(size, 1)
            credit = np.where(is_tie, share, credit)
        n_tied = (is_tie & valid).sum(axis=1)
    credit = np.where(valid, credit, 0.0)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_valid > 0, credit.sum(axis=1) / np.maximum(n_valid, 1), np.nan)
    return acc, n_valid, n_tied


def check_ties(ties: str) -> str:
    return choice_option("alignment accuracy", "ties", ties, TIE_RULES)


@dataclass
class AlignmentReport:
    """Per-target accuracies and their summary."""

    names: list[str]
    targets: list[AttributeTarget]
    accuracy: np.ndarray  # (T,) NaN where the target has no valid scenario
    n_valid: np.ndarray  # (T,)
    n_scenarios: int
    n_tied: np.ndarray | None = None  # (T,) valid scenarios whose prediction was a tie
    ties: str = "expected"  # the predicted-tie rule (TIE_RULES)
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
                               None if self.n_tied is None else self.n_tied[rows], self.ties)

    def to_dict(self, per_target: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_scenarios": self.n_scenarios,
            "n_targets": len(self.targets),
            "mean_accuracy": num(self.mean),
            "se": num(self.se),
            "tie_rate": num(self.tie_rate),
            "ties": self.ties,
            "ties_rule": TIE_RULES[self.ties],
            "gold_ties": "exact (no tolerance), as the reference's score.py",
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
                        aligner: str = "euclidean", tied: np.ndarray | None = None,
                        ties: str = "expected") -> AlignmentReport:
    """Accuracy of given selections (T, S) against the gold labels; ``tied`` (T, S, R), when
    given, marks predicted ties, scored by the ``ties`` rule (``accuracy_from_masks``)."""
    check_ties(ties)
    names, tlist = list(targets), list(targets.values())
    selected = np.asarray(selected, dtype=int)
    if selected.shape != (len(tlist), len(gold)):
        raise ValueError(f"selections have shape {selected.shape}; expected {(len(tlist), len(gold))}")
    if tied is not None:
        tied = _pad(np.asarray(tied, dtype=bool), gold.mask.shape[1])
    report = _scored_in_chunks(gold, names, tlist, aligner, ties, lambda start, stop, _: (
        selected[start:stop], None if tied is None else tied[start:stop]))
    if tied is None:
        report.n_tied = None
    return report


def _scored_in_chunks(gold: ScoreTable, names: list[str], tlist: list[AttributeTarget], gold_aligner: str, ties: str,
                      choose: Any) -> AlignmentReport:
    """Accuracy per target, a chunk of targets at a time (memory): ``choose(start, stop,
    chunk)`` gives the chunk's (T, S) selections and (T, S, R) predicted ties (or None)."""
    acc = np.empty(len(tlist))
    n_valid = np.empty(len(tlist), dtype=int)
    n_tied = np.zeros(len(tlist), dtype=int)
    step = _chunks(len(tlist), gold).step
    for start in range(0, len(tlist), step):
        stop = start + step
        chunk = tlist[start:stop]
        selected, tied = choose(start, stop, chunk)
        correct, valid = gold_correct(gold, chunk, gold_aligner)
        acc[start:stop], n_valid[start:stop], n_tied[start:stop] = accuracy_from_masks(
            selected, correct, valid, tied, ties)
    return AlignmentReport(names, tlist, acc, n_valid, len(gold), n_tied, ties)


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
                   aligner: str = "euclidean", gold_aligner: str | None = None,
                   ties: str = "expected") -> AlignmentReport:
    """Align the predicted table to every target (no model calls) and score the choices.

    ``gold_aligner`` defaults to ``aligner`` when it uses weights (so weighted targets are
    judged with the same weights), else Euclidean, as in the paper. The choice and its ties
    are the reference's (``first_choice``); ``ties`` says how a tie is credited."""
    check_ties(ties)
    if gold_aligner is None:
        fn = steerkit.plugin.lookup("aligner", aligner)
        gold_aligner = aligner if getattr(fn, "uses_weights", False) else "euclidean"
    names, tlist = list(targets), list(targets.values())
    def choose(start: int, stop: int, chunk: list[AttributeTarget]) -> tuple[np.ndarray, np.ndarray]:
        selected, tied = first_choice(predicted, chunk, aligner)
        return selected, _pad(tied, gold.mask.shape[1])

    return _scored_in_chunks(gold, names, tlist, gold_aligner, ties, choose)
