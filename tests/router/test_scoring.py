from __future__ import annotations

import numpy as np

from router.data import query_costs
from router.scoring import pick, rank, tradeoff_scores


def test_quality_extreme_follows_success() -> None:
    success = np.array([[0.2, 0.9, 0.5]])
    cost = np.array([[1.0, 9.0, 2.0]])
    assert pick(success, cost, 1.0).tolist() == [1]


def test_cost_extreme_follows_price_and_breaks_ties_by_success() -> None:
    success = np.array([[0.2, 0.9, 0.5]])
    cost = np.array([[1.0, 9.0, 1.0]])
    order, _ = rank(success, cost, 0.0)
    assert order[0].tolist() == [2, 0, 1]


def test_scores_are_normalised_to_unit_interval() -> None:
    scores = tradeoff_scores(np.array([0.1, 0.4, 0.7]), np.array([3.0, 2.0, 1.0]), 0.5)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert np.allclose(scores, [0.05, 0.45, 0.85])


def test_cost_convention_of_the_benchmark() -> None:
    costs = query_costs(["one two three", ""], np.array([0.9, 0.1]))
    assert np.allclose(costs[0], [0.9 * (1.3 * 3 + 256) / 1e6, 0.1 * (1.3 * 3 + 256) / 1e6])
    assert np.allclose(costs[1], [0.9 * 256 / 1e6, 0.1 * 256 / 1e6])
