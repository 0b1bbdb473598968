"""Distance aligners: given scores (S, R, A) and targets (T, A) with per-target weights
(T, A; 0 for attributes a target does not mention), return distances (T, S, R).
Vectorised over targets, scenarios and responses at once."""

from __future__ import annotations

import numpy as np

import steerkit


def _diff(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    return scores[None, :, :, :] - values[:, None, None, :]


def euclidean(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Euclidean distance over the target's attributes (the paper's aligner)."""
    mask = (weights > 0).astype(float)[:, None, None, :]
    return np.sqrt(np.sum(mask * _diff(scores, values) ** 2, axis=-1))


def weighted_euclidean(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Euclidean distance with the target's weights on each squared difference."""
    return np.sqrt(np.sum(weights[:, None, None, :] * _diff(scores, values) ** 2, axis=-1))


weighted_euclidean.uses_weights = True  # type: ignore[attr-defined]


def manhattan(scores: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of absolute differences over the target's attributes."""
    mask = (weights > 0).astype(float)[:, None, None, :]
    return np.sum(mask * np.abs(_diff(scores, values)), axis=-1)


@steerkit.plugin.hookimpl
def register_aligners(register):
    register("euclidean", euclidean)
    register("weighted-euclidean", weighted_euclidean)
    register("manhattan", manhattan)
