"""cascade with scripted members: the first answer stands when confident, else the larger model
answers; the trace, usage, streaming and config wiring."""

from __future__ import annotations

import pytest

from backends.composite import CascadeBackend, CascadeSettings
from backends.composite.cascade import (
    FIRST_FAILED,
    LOW_CONFIDENCE,
    NO_LOGPROBS,
    confidence,
    escalation_reason,
)
from backends.errors import BackendError
from backends.fake import FakeBackend
from backends.types import GenerationRequest, Message, SamplingParams, TokenLogprob
from fleet.composites import build_route
from fleet.config import parse_fleet

QUESTION = GenerationRequest(
    messages=(Message("user", "Capital of Australia?"),), params=SamplingParams(max_tokens=16, temperature=0.7)
)


def _cascade(first: FakeBackend, then: FakeBackend, threshold: float = -0.5) -> CascadeBackend:
    return CascadeBackend("cascade", first, then, CascadeSettings(threshold=threshold))


def test_confidence_is_the_mean_token_logprob_and_the_rule_names_its_reason():
    assert confidence([TokenLogprob("a", -0.2), TokenLogprob("b", -0.4)]) == pytest.approx(-0.3)
    assert confidence([-1.0, -3.0]) == pytest.approx(-2.0)
    assert confidence([]) is None and confidence(None) is None
    assert escalation_reason([-0.1], -0.5) is None
    assert escalation_reason([-0.9], -0.5) == LOW_CONFIDENCE
    assert escalation_reason(None, -0.5) == NO_LOGPROBS
    # the lowest token decides with signal "min": a sure preamble does not hide an unsure letter
    assert confidence([-0.01, -0.01, -1.2], "min") == pytest.approx(-1.2)
    assert escalation_reason([-0.01, -0.01, -1.2], -0.5) is None
    assert escalation_reason([-0.01, -0.01, -1.2], -0.5, "min") == LOW_CONFIDENCE


def test_settings_refuse_a_positive_threshold():
    with pytest.raises(ValueError, match="at most 0"):
        CascadeSettings(threshold=0.5)
    with pytest.raises(ValueError, match="signal"):
        CascadeSettings(threshold=-0.5, signal="median")


async def test_a_confident_first_answer_stands_and_the_larger_model_is_not_asked():
    first = FakeBackend("small", "Canberra", logprob=-0.1)
    then = FakeBackend("big", "Canberra is the capital")
    answer = await _cascade(first, then).chat(QUESTION)
    assert answer.text == "Canberra" and then.calls == 0
    asked = first.requests[0]
    assert asked.params.temperature == 0.0 and asked.params.logprobs  # greedy, with logprobs
    assert answer.trace is not None and answer.trace.summary["escalated"] is None
    assert answer.trace.summary["confidence"] == pytest.approx(-0.1)
    assert [call.model for call in answer.trace.calls] == ["small"]


async def test_an_unsure_first_answer_goes_to_the_larger_model_and_both_are_charged():
    first = FakeBackend("small", "Sydney maybe", logprob=-2.0)
    then = FakeBackend("big", "Canberra")
    answer = await _cascade(first, then).chat(QUESTION)
    assert answer.text == "Canberra"
    assert then.requests[0] is QUESTION  # the original request, sampling as the client asked
    assert answer.trace is not None and answer.trace.summary["escalated"] == LOW_CONFIDENCE
    assert [call.model for call in answer.trace.calls] == ["small", "big"]
    assert answer.usage.completion_tokens == 2 + 1


async def test_a_first_model_without_logprobs_or_failing_always_escalates():
    answer = await _cascade(FakeBackend("small", "Canberra"), FakeBackend("big", "Canberra!")).chat(QUESTION)
    assert answer.text == "Canberra!" and answer.trace is not None
    assert answer.trace.summary["escalated"] == NO_LOGPROBS
    broken = FakeBackend("small", "x", error=BackendError("down"))
    answer = await _cascade(broken, FakeBackend("big", "Canberra!")).chat(QUESTION)
    assert answer.trace is not None and answer.trace.summary["escalated"] == FIRST_FAILED


async def test_the_larger_models_failure_is_the_answers():
    first = FakeBackend("small", "Sydney", logprob=-3.0)
    with pytest.raises(BackendError, match="down"):
        await _cascade(first, FakeBackend("big", "x", error=BackendError("down"))).chat(QUESTION)


async def test_streams_carry_the_standing_answer_whole_or_the_larger_models_stream():
    sure = _cascade(FakeBackend("s", "Canberra", logprob=-0.1), FakeBackend("b", "x"))
    kept = [c async for c in sure.stream_chat(QUESTION)]
    assert len(kept) == 1 and kept[0].text == "Canberra" and kept[0].finish_reason == "stop"
    assert kept[0].trace is not None and kept[0].usage is not None
    then = FakeBackend("b", "It is Canberra")
    streamed = [c async for c in _cascade(FakeBackend("s", "Sydney", logprob=-3.0), then).stream_chat(QUESTION)]
    assert "".join(c.text for c in streamed) == "It is Canberra"
    assert streamed[0].trace is not None and streamed[0].trace.summary["escalated"] == LOW_CONFIDENCE
    last = streamed[-1]
    assert last.finish_reason == "stop" and last.trace is not None and len(last.trace.calls) == 2
    assert last.usage is not None and last.usage.completion_tokens == 1 + 3


def test_a_cascade_route_is_configured_validated_and_built():
    models = [
        {"name": "small", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
        {"name": "big", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
    ]
    route = {"name": "small-then-big", "type": "cascade", "first": "small", "then": "big", "threshold": -0.4}
    fleet = parse_fleet({"models": models, "routes": [route]})
    members = {"small": FakeBackend("small"), "big": FakeBackend("big")}
    built = build_route(fleet.routes[0], members, None)
    assert isinstance(built, CascadeBackend) and built.settings.threshold == -0.4
    assert built.settings.signal == "mean"
    by_min = parse_fleet({"models": models, "routes": [{**route, "signal": "min"}]})
    assert build_route(by_min.routes[0], members, None).settings.signal == "min"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="threshold"):
        parse_fleet({"models": models, "routes": [{**route, "threshold": 0.3}]})
    with pytest.raises(ValueError, match="not a model of this fleet"):
        parse_fleet({"models": models, "routes": [{**route, "then": "ghost"}]})
