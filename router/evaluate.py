"""Accuracy/cost of routing picks, the baselines, and the alpha sweep.

Convention (the benchmark's): accuracy = mean score of the picked model; cost = summed cost of
the picked models over the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from router.scoring import pick

DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(a * 0.1, 1) for a in range(11))


@dataclass(frozen=True)
class Summary:
    accuracy: float
    cost: float
    share: dict[str, float]


def summarize(picks: np.ndarray, scores: np.ndarray, costs: np.ndarray, models: Sequence[str]) -> Summary:
    rows = np.arange(len(picks))
    counts = np.bincount(picks, minlength=len(models)) / max(1, len(picks))
    return Summary(
        accuracy=float(scores[rows, picks].mean()),
        cost=float(costs[rows, picks].sum()),
        share={m: float(c) for m, c in zip(models, counts, strict=True)},
    )


def baseline_picks(
    train_acc: np.ndarray,
    prices: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    seed: int = 0,
    known: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Picks of the reference routers: random, cheapest, best single model (by training
    accuracy ``train_acc``), oracle (cheapest correct model). With ``known`` (rows x models),
    each row's pick is among the models scored on it: the best single model is then the best
    one measured there."""
    n, m = scores.shape
    rng = np.random.default_rng(seed)
    if known is None:
        known, random = np.ones((n, m), dtype=bool), rng.integers(0, m, size=n)
    else:
        random = np.where(known, rng.random((n, m)), -1.0).argmax(axis=1)
    by_price = np.lexsort((-train_acc, prices))  # cheapest first, ties: the more accurate
    by_accuracy = np.argsort(-train_acc, kind="stable")
    correct = (scores >= 0.5) & known
    masked = np.where(correct, costs, np.inf)
    cheapest_known = np.where(known, costs, np.inf).argmin(axis=1)
    oracle = np.where(correct.any(axis=1), masked.argmin(axis=1), cheapest_known)
    return {
        "random": random,
        "cheapest": _first_known(by_price, known),
        "best single": _first_known(by_accuracy, known),
        "oracle": oracle,
    }


def _first_known(order: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per row, the first model of ``order`` that is known on it."""
    ranked = known[:, order]
    return order[ranked.argmax(axis=1)]


def sweep(
    success: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    models: Sequence[str],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    eligible: np.ndarray | None = None,
) -> list[tuple[float, Summary]]:
    """Summary of the router at each alpha, from predicted success probabilities."""
    return [
        (float(a), summarize(pick(success, costs, float(a), eligible), scores, costs, models)) for a in alphas
    ]


def mean_summary(summaries: Sequence[Summary]) -> Summary:
    """Average of per-fold summaries (accuracy, summed cost and shares averaged over folds)."""
    models = list(summaries[0].share)
    return Summary(
        accuracy=float(np.mean([s.accuracy for s in summaries])),
        cost=float(np.mean([s.cost for s in summaries])),
        share={m: float(np.mean([s.share[m] for s in summaries])) for m in models},
    )
