"""The papers' metrics for choice tasks (VK, OpinionQA), on top of scikit-learn and scipy.

Each follows the reference code it is compared with (README, "Evaluation"):
- ``choice_metrics``: accuracy, class-balanced accuracy and macro-F1 with scikit-learn's
  defaults (classes present in gold or predictions), as Modular Pluralism's evaluation script.
- ``vk_binary_metrics``: the CoT/RLVR paper's binary VK (gold Supports/Opposes only; a
  predicted Either is wrong). ``vk_binary_mp_metrics``: Modular Pluralism's variant, which also
  drops items predicted Either.
- ``js_distance``: mean Jensen-Shannon distance with scipy's default natural-log base (in
  [0, sqrt(ln 2)]), as Modular Pluralism's ``evaluate_distributions.py``.
- ``mcnemar``: McNemar's test between two runs on the same items (exact binomial by default,
  or chi-square with continuity correction).
- ``majority_baseline`` / ``random_baseline``: the baselines every report shows. The majority
  baseline takes the class prior of the evaluated items' own gold labels (an oracle prior).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

VK_LABELS = ("Supports", "Opposes", "Either")
VK_EITHER = 2


def choice_metrics(gold: Sequence[int], pred: Sequence[int], labels: Sequence[int] | None = None) -> dict[str, Any]:
    """Accuracy, class-balanced accuracy and macro-F1 of predicted option indices.

    scikit-learn's semantics throughout: balanced accuracy averages recall over the classes
    present in gold; macro-F1 over the classes present in gold or predictions (``labels``
    None), so a class absent from a small subset neither counts as a zero nor inflates the
    score. Empty input gives NaN metrics and n = 0."""
    gold = np.asarray(list(gold), dtype=int)
    pred = np.asarray(list(pred), dtype=int)
    if gold.shape != pred.shape:
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if len(gold) == 0:
        return {"n": 0, "accuracy": float("nan"), "balanced_accuracy": float("nan"), "macro_f1": float("nan")}
    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class never occurs in gold; that is expected
        warnings.simplefilter("ignore", UserWarning)
        from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

        bacc = balanced_accuracy_score(gold, pred)
    return {
        "n": int(len(gold)),
        "accuracy": float(accuracy_score(gold, pred)),
        "balanced_accuracy": float(bacc),
        "macro_f1": float(f1_score(gold, pred, labels=None if labels is None else list(labels),
                                   average="macro", zero_division=0)),
    }


def vk_binary_metrics(gold: Sequence[int], pred: Sequence[int], either: int = VK_EITHER) -> dict[str, Any]:
    """VK binary as the CoT/RLVR paper defines it (Zhang et al. 2025, Table 1): the items whose
    GOLD label is Supports or Opposes; a prediction of Either on them is simply wrong.

    Balanced accuracy is scikit-learn's (recall averaged over the gold classes present);
    macro-F1 averages over the binary classes present in gold or predictions (Either is never
    one of them, so predicting it costs recall, not an extra zero-F1 class)."""
    gold = np.asarray(list(gold), dtype=int)
    pred = np.asarray(list(pred), dtype=int)
    mask = gold != either
    g, p = gold[mask], pred[mask]
    labels = sorted(c for c in set(g.tolist()) | set(p.tolist()) if c != either)
    out = choice_metrics(g, p, labels=labels or None)
    out["predicted_either"] = int((p == either).sum())
    out["definition"] = BINARY_DEFINITION
    return out


def vk_binary_mp_metrics(gold: Sequence[int], pred: Sequence[int], either: int = VK_EITHER) -> dict[str, Any]:
    """Modular Pluralism's binary VK (Feng et al. 2024, evaluate_steerable_valuekaleidoscope.py):
    drops items whose gold OR predicted label is Either, then scikit-learn's defaults. Higher
    than the paper's binary for the same predictions (it forgives every predicted Either)."""
    gold = np.asarray(list(gold), dtype=int)
    pred = np.asarray(list(pred), dtype=int)
    mask = (gold != either) & (pred != either)
    out = choice_metrics(gold[mask], pred[mask])
    out["dropped_predicted_either"] = int(((gold != either) & (pred == either)).sum())
    out["definition"] = BINARY_MP_DEFINITION
    return out


BINARY_DEFINITION = ("binary (Zhang et al. 2025): items whose gold label is Supports/Opposes; "
                     "a predicted Either counts as wrong")
BINARY_MP_DEFINITION = ("binary_mp (Modular Pluralism, Feng et al. 2024): items whose gold and "
                        "predicted labels are both Supports/Opposes")


def _as_distribution(p: Sequence[float]) -> np.ndarray:
    """The values, checked (scipy normalises them; normalising here too would move last digits)."""
    arr = np.asarray(list(p), dtype=float)
    if arr.ndim != 1 or len(arr) == 0 or np.any(arr < 0) or not np.isfinite(arr).all() or arr.sum() <= 0:
        raise ValueError(f"not a probability distribution: {list(p)}")
    return arr


JS_BASE = "e"  # scipy's default (natural log), as Modular Pluralism's evaluate_distributions.py


def js_distance(pred: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Mean (and per-item) Jensen-Shannon distance between paired distributions, with scipy's
    default natural-log base, as Modular Pluralism computes it: ``jensenshannon(gold, pred)``
    on the distributions as given (scipy normalises them itself).

    Items may have different numbers of options; each pair must match in length."""
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predicted distributions but {len(gold)} gold ones")
    from scipy.spatial.distance import jensenshannon

    per_item = []
    for p, q in zip(pred, gold):
        p, q = _as_distribution(p), _as_distribution(q)
        if len(p) != len(q):
            raise ValueError(f"distributions of different length: {len(p)} vs {len(q)}")
        per_item.append(float(jensenshannon(q, p)))
    return {
        "n": len(per_item),
        "mean": float(np.mean(per_item)) if per_item else float("nan"),
        "per_item": per_item,
    }


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], exact: bool = True) -> dict[str, Any]:
    """McNemar's test on paired correctness.

    b = items A got right and B wrong, c = the reverse. ``exact``: two-sided binomial test of
    min(b, c) in b + c trials at p = 0.5; otherwise chi-square (1 d.f.) with continuity
    correction, (|b - c| - 1)^2 / (b + c)."""
    a = np.asarray(list(correct_a), dtype=bool)
    b_ = np.asarray(list(correct_b), dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired runs differ in length: {len(a)} vs {len(b_)}")
    from scipy import stats

    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    n = b + c
    if n == 0:
        statistic, p = 0.0, 1.0
    elif exact:
        statistic = float(min(b, c))
        p = float(stats.binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
    else:
        statistic = float((abs(b - c) - 1) ** 2 / n)
        p = float(stats.chi2.sf(statistic, df=1))
    return {
        "n": int(len(a)), "a_only": b, "b_only": c, "both": int((a & b_).sum()),
        "neither": int((~a & ~b_).sum()), "statistic": statistic, "p_value": min(1.0, p),
        "method": "exact binomial" if exact else "chi-square (continuity corrected)",
    }


def majority_baseline(gold: Sequence[int], n_options: Sequence[int], reference: Sequence[int] | None = None) -> list[int]:
    """Predict the most common gold index of ``reference`` (default: ``gold`` itself) for every
    item; where an item has fewer options than that index, its own option 0."""
    ref = list(reference) if reference is not None else list(gold)
    if not ref:
        return []
    counts = Counter(ref)
    top = min(counts, key=lambda k: (-counts[k], k))  # most common, ties to the lower index
    return [top if top < n else 0 for n in n_options]


def random_baseline(n_options: Sequence[int], seed: int = 0) -> tuple[list[int], float]:
    """Uniform random predictions (seeded) and the expected accuracy, mean(1 / n_options)."""
    rng = np.random.default_rng(seed)
    n = np.asarray(list(n_options), dtype=int)
    preds = [int(rng.integers(k)) for k in n]
    expected = float(np.mean(1.0 / n)) if len(n) else float("nan")
    return preds, expected


MAJORITY_NOTE = (
    "majority (oracle class prior): predicts the most common gold label of the evaluated items "
    "themselves, so it knows the test set's class prior"
)


def baseline_report(gold: Sequence[int], n_options: Sequence[int], task: str | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """Metrics of the majority and random baselines (VK adds both binary variants)."""
    gold = list(gold)
    out: dict[str, Any] = {}
    maj = majority_baseline(gold, n_options)
    rnd, expected = random_baseline(n_options, seed)
    for name, preds in (("majority", maj), ("random", rnd)):
        m = choice_metrics(gold, preds)
        if task == "vk":
            m["binary"] = vk_binary_metrics(gold, preds)
            m["binary_mp"] = vk_binary_mp_metrics(gold, preds)
        out[name] = m
    out["majority"]["note"] = MAJORITY_NOTE
    out["random"]["expected_accuracy"] = expected
    return out
