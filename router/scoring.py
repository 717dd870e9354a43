"""The quality/cost trade-off, ranked best-first:

    score = alpha * success + (1 - alpha) * (1 - cost_normalised)

``success`` is a probability (already in [0, 1]); cost is min-max normalised over the candidate
models of each query. Keeping success un-stretched won cross-validation: min-max on success
too exaggerates tiny differences between models that are all likely wrong (e.g. trivia) and
buys expensive models for nothing."""

from __future__ import annotations

import numpy as np


def _minmax(values: np.ndarray) -> np.ndarray:
    low = values.min(axis=-1, keepdims=True)
    span = values.max(axis=-1, keepdims=True) - low
    return np.divide(values - low, span, out=np.zeros_like(values), where=span > 1e-12)


def tradeoff_scores(success: np.ndarray, cost: np.ndarray, alpha: float) -> np.ndarray:
    """Scores in [0, 1] for each (query, candidate); higher is better."""
    success = np.clip(success, 0.0, 1.0)
    return alpha * success + (1.0 - alpha) * (1.0 - _minmax(cost))


def rank(success: np.ndarray, cost: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate order best-first per query (ties: higher success, then lower cost).

    Works on shape (n_models,) or (n_queries, n_models); returns (order, scores).
    """
    scores = tradeoff_scores(success, cost, alpha)
    keys = (cost, -success, -np.round(scores, 12))  # np.lexsort: last key is primary
    order = np.lexsort(keys, axis=-1)
    return order, scores


def pick(success: np.ndarray, cost: np.ndarray, alpha: float) -> np.ndarray:
    """Index of the best candidate for each query, shape (n_queries,)."""
    return rank(success, cost, alpha)[0][:, 0]
