"""benchmarks/fleet/routes_summary.py: routes against their members, paired on the same questions."""

from __future__ import annotations

import json

import pytest

from benchmarks.fleet.routes_summary import mcnemar_p, summary
from fleet.config import parse_fleet

FLEET = parse_fleet({
    "models": [{"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1"} for n in ("a", "b")],
    "routes": [{"name": "ps", "type": "plan_solve", "planner": "a", "solver": "b"}],
})


def test_mcnemar_is_exact_and_two_sided():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 3) == pytest.approx(0.25)  # 2 * (1/2)^3
    assert mcnemar_p(5, 0) == mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_p(10, 1) == pytest.approx(2 * 12 / 2**11)


def _query(model, i, score, cost):
    return {"model": model, "id": f"gsm8k/{i}", "task": "gsm8k", "score": score, "seconds": 1.0,
            "completion_tokens": 10, "config_cost": cost, "measured_cost": cost}


def test_a_route_that_loses_to_its_solver_on_paired_questions_says_so(tmp_path):
    queries = [_query("b", i, 1, 1.0) for i in range(10)]
    queries += [_query("ps", i, int(i < 2), 2.0) for i in range(10)]  # wrong on 8 the solver got
    queries += [_query("a", i, 0, 0.5) for i in range(10)]
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    text = summary(tmp_path, FLEET, "gsm8k", [])
    assert "| ps | plan_solve route | 0.200" in text
    assert "| ps | b | 10 | 0 | 8 | 0.008 | 2.0x | route loses |" in text
    assert "| ps | a | 10 | 2 | 0 | 0.500 | 4.0x | no measurable difference |" in text
