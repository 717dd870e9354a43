"""The quality/cost trade-off, ranked best-first:

    score = alpha * success + (1 - alpha) * (1 - cost_normalised)

``success`` is a probability (already in [0, 1]); cost is min-max normalised over the candidate
models of each query. With ``eligible`` (per query and candidate), only eligible candidates are
normalised and ranked; the others score -1 and rank last. A candidate never measured on a kind
of question is not eligible for it, so an expensive specialist elsewhere (a composite route
measured on maths) does not stretch the cost scale, and so the trade-off, of the others.

Keeping success un-stretched won cross-validation: min-max on success
too exaggerates tiny differences between models that are all likely wrong (e.g. trivia) and
buys expensive models for nothing."""

from __future__ import annotations

import numpy as np


def _minmax(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    low = np.where(eligible, values, np.inf).min(axis=-1, keepdims=True)
    span = np.where(eligible, values, -np.inf).max(axis=-1, keepdims=True) - low
    return np.divide(values - low, span, out=np.zeros_like(values), where=eligible & (span > 1e-12))


def tradeoff_scores(
    success: np.ndarray, cost: np.ndarray, alpha: float, eligible: np.ndarray | None = None
) -> np.ndarray:
    """Scores in [0, 1] for each eligible (query, candidate), -1 for the others; higher is better."""
    success = np.clip(success, 0.0, 1.0)
    eligible = np.ones(np.shape(cost), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    scores = alpha * success + (1.0 - alpha) * (1.0 - _minmax(cost, eligible))
    return np.where(eligible, scores, -1.0)


def rank(
    success: np.ndarray, cost: np.ndarray, alpha: float, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate order best-first per query (ties: higher success, then lower cost).

    Works on shape (n_models,) or (n_queries, n_models); returns (order, scores).
    """
    scores = tradeoff_scores(success, cost, alpha, eligible)
    keys = (cost, -success, -np.round(scores, 12))  # np.lexsort: last key is primary
    order = np.lexsort(keys, axis=-1)
    return order, scores


def pick(
    success: np.ndarray, cost: np.ndarray, alpha: float, eligible: np.ndarray | None = None
) -> np.ndarray:
    """Index of the best candidate for each query, shape (n_queries,)."""
    return rank(success, cost, alpha, eligible)[0][:, 0]
