"""benchmarks/fleet/cascade_bounds.py: the least any cascade could cost at a target accuracy."""

from __future__ import annotations

from benchmarks.fleet.cascade_bounds import bounds, cheapest_combination, oracle


def _item(task, first, then, first_cost, then_cost, logprob):
    return {"id": f"{task}/{first}{then}{logprob}", "task": task, "first_score": first, "then_score": then,
            "first_cost": first_cost, "then_cost": then_cost, "logprobs": [logprob], "finish_reason": "stop"}


def test_the_oracle_escalates_only_gains_and_the_cheapest_first():
    items = [
        _item("t", 0, 1, 1.0, 9.0, -0.1),  # a gain, dear
        _item("t", 0, 1, 1.0, 3.0, -0.1),  # a gain, cheap
        _item("t", 1, 1, 1.0, 5.0, -0.1),  # the first is right already
        _item("t", 0, 0, 1.0, 5.0, -0.1),  # nobody is right: never worth escalating
    ]
    assert oracle(items, 2) == (2, 4.0 + 3.0)
    assert oracle(items, 3) == (3, 4.0 + 3.0 + 9.0)
    assert oracle(items, 4) is None


def test_the_cheapest_combination_is_exact_over_tasks():
    per_task = {"a": [(1, 1.0, "cheap"), (3, 10.0, "dear")], "b": [(0, 0.0, "none"), (2, 3.0, "some")]}
    assert cheapest_combination(per_task, 3) == (3, 4.0, {"a": "cheap", "b": "some"})
    assert cheapest_combination(per_task, 4) == (5, 13.0, {"a": "dear", "b": "some"})
    assert cheapest_combination(per_task, 6) is None


def test_a_confidence_that_separates_right_from_wrong_makes_a_threshold_as_good_as_the_oracle():
    right_and_sure = [_item("t", 1, 1, 1.0, 4.0, -0.01) for _ in range(5)]
    wrong_and_unsure = [_item("t", 0, 1, 1.0, 4.0, -2.0) for _ in range(5)]
    result = bounds(right_and_sure + wrong_and_unsure, tolerance=0.0)
    by_rule = {row["rule"]: row for row in result["bounds"]}
    assert by_rule["oracle"]["cost_ratio"] == by_rule["one threshold (mean)"]["cost_ratio"] == 30 / 40
    assert by_rule["one threshold (mean)"]["accuracy"] == 1.0
    assert by_rule["per-task, no cascade"]["cost_ratio"] == 1.0  # the second model alone
