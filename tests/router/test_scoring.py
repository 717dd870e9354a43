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


def test_an_ineligible_candidate_ranks_last_and_does_not_stretch_the_cost_scale():
    success = np.array([[0.60, 0.74, 0.0]])
    cost = np.array([[1.0, 2.0, 6.0]])  # the third: a costly candidate never measured here
    eligible = np.array([[True, True, False]])
    # all three normalised together, the costly one squeezes the others' cost gap: the pricier wins
    assert pick(success, cost, 0.8).tolist() == [1]
    # judged without it, the trade-off between the two measured candidates is what it was
    order, scores = rank(success, cost, 0.8, eligible)
    assert order.tolist() == [[0, 1, 2]] and scores[0, 2] == -1.0
    assert pick(success, cost, 0.8, eligible).tolist() == [pick(success[:, :2], cost[:, :2], 0.8)[0]] == [0]
