from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from router import RoutingDecision, RoutingError, load_router
from router.routing import BlendRouter

QUESTIONS = [
    "Write a python function to check whether a number is even or not.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "who sang the song i will always love you first",
    "Which of the following is a renewable resource?",
]


@pytest.fixture(scope="module")
def router(small_artifact_dir: Path) -> BlendRouter:
    return load_router(small_artifact_dir)


def _price(router: BlendRouter, model: str) -> float:
    return float(router.manifest["prices"][model])  # type: ignore[index]


def test_decision_is_a_complete_frozen_value(router: BlendRouter) -> None:
    decision = router.route(QUESTIONS[0], alpha=0.5)
    assert isinstance(decision, RoutingDecision)
    assert decision.model == decision.ranked[0]
    assert sorted(decision.ranked) == sorted(router.models)
    assert set(decision.scores) == set(router.models)
    assert decision.artifact_version == router.version
    assert decision.alpha == 0.5
    assert isinstance(decision.cluster, int) and not decision.out_of_distribution
    with pytest.raises(AttributeError):
        decision.model = "other"  # type: ignore[misc]
    json.dumps(decision.to_dict())


@pytest.mark.parametrize("question", QUESTIONS)
def test_alpha_one_picks_highest_predicted_success(router: BlendRouter, question: str) -> None:
    decision = router.route(question, alpha=1.0)
    assert decision.success[decision.model] == max(decision.success.values())
    ordered = [decision.success[m] for m in decision.ranked]
    assert ordered == sorted(ordered, reverse=True)


@pytest.mark.parametrize("question", QUESTIONS)
def test_alpha_zero_picks_cheapest(router: BlendRouter, question: str) -> None:
    decision = router.route(question, alpha=0.0)
    cheapest = min(_price(router, m) for m in router.models)
    assert _price(router, decision.model) == cheapest
    prices = [_price(router, m) for m in decision.ranked]
    assert prices == sorted(prices)


def test_default_alpha_comes_from_the_artifact(router: BlendRouter) -> None:
    assert router.route(QUESTIONS[1]).alpha == router.default_alpha


def test_candidates_restrict_the_choice(router: BlendRouter) -> None:
    allowed = {"gemma-2-9b-it", "qwen2.5-7b-instruct", "not-in-artifact"}
    for question in QUESTIONS:
        decision = router.route(question, alpha=1.0, candidates=allowed)
        assert decision.model in allowed
        assert set(decision.ranked) == {"gemma-2-9b-it", "qwen2.5-7b-instruct"}


def test_no_known_candidate_is_an_error(router: BlendRouter) -> None:
    with pytest.raises(RoutingError, match="none of the candidates"):
        router.route(QUESTIONS[0], candidates=["gpt-9"])


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_out_of_range_is_an_error(router: BlendRouter, alpha: float) -> None:
    with pytest.raises(RoutingError, match="alpha"):
        router.route(QUESTIONS[0], alpha=alpha)


def test_empty_query_is_out_of_distribution(router: BlendRouter) -> None:
    decision = router.route("", alpha=1.0)
    assert decision.out_of_distribution
    assert decision.model == router.default_model
    assert decision.cluster is None


def test_far_query_goes_to_the_configured_default(artifact_copy: Path) -> None:
    manifest = json.loads((artifact_copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["ood"] = {"threshold": 0.999, "default_model": "gemma-2-9b-it"}
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    strict = load_router(artifact_copy)
    decision = strict.route(QUESTIONS[0], alpha=1.0)
    assert decision.out_of_distribution and decision.model == "gemma-2-9b-it"
    assert decision.ranked[0] == "gemma-2-9b-it" and len(decision.ranked) == 9
    restricted = strict.route(QUESTIONS[0], alpha=1.0, candidates=["qwen2.5-7b-instruct", "codegemma-7b"])
    assert restricted.out_of_distribution and restricted.model in {"qwen2.5-7b-instruct", "codegemma-7b"}


def test_in_distribution_query_is_not_flagged(router: BlendRouter) -> None:
    assert not any(router.route(q).out_of_distribution for q in QUESTIONS)


def test_route_is_thread_safe(router: BlendRouter) -> None:
    expected = [router.route(q, alpha=0.7) for q in QUESTIONS]
    results: list[list[RoutingDecision]] = []

    def work() -> None:
        results.append([router.route(q, alpha=0.7) for q in QUESTIONS * 5])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(batch == expected * 5 for batch in results)
