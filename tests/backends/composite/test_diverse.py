"""diverse with scripted members: sampling, partial failure, dedupe, vote, n choices, cancellation."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from backends.composite import DiverseBackend, DiverseSettings, Sampler
from backends.errors import BackendError, BackendTimeout, ContextLengthExceeded, RequestError
from backends.fake import FakeBackend
from backends.types import GenerationRequest, Message, SamplingParams

QUESTION = GenerationRequest(messages=(Message("user", "What is 3 + 4?"),), params=SamplingParams(max_tokens=32))


def by_seed(answers: dict[int, str]):
    """A reply per sample seed (a sample's seed is its position when the request has none)."""
    return lambda request: answers[request.params.seed]


def _route(samplers, embed=None, **settings) -> DiverseBackend:
    return DiverseBackend("dv", samplers, embed, DiverseSettings(**settings))


async def test_samples_vary_seed_and_temperature_and_the_majority_wins():
    model = FakeBackend("m", by_seed({0: "so #### 7", 1: "I think #### 8", 2: "thus #### 7", 3: "#### 7 done"}))
    other = FakeBackend("o", "#### 8")
    samplers = [Sampler(model, 0.0), Sampler(model, 0.7), Sampler(model, 0.7), Sampler(model, 0.7),
                Sampler(other, 0.5, seed=99)]
    answer = await _route(samplers).chat(QUESTION)
    assert answer.text == "so #### 7"
    assert [r.params.seed for r in model.requests] == [0, 1, 2, 3]
    assert [r.params.temperature for r in model.requests] == [0.0, 0.7, 0.7, 0.7]
    assert other.requests[0].params.seed == 99 and other.requests[0].params.max_tokens == 32
    trace = answer.trace
    assert trace is not None and trace.kind == "diverse"
    assert trace.details["votes"] == {"7": 3, "8": 2} and trace.details["winner"] == "7"
    assert trace.summary["samples"] == 5 and trace.summary["distinct_ratio"] == 1.0
    assert trace.summary["agreement"] == pytest.approx(3 / 5)
    assert answer.usage == trace.usage and answer.usage.completion_tokens == sum(
        c.usage.completion_tokens for c in trace.calls
    )


async def test_a_request_seed_offsets_every_samples_seed():
    model = FakeBackend("m", "#### 1")
    await _route([Sampler(model)] * 3).chat(GenerationRequest(prompt="x", params=SamplingParams(seed=10)))
    assert [r.params.seed for r in model.requests] == [10, 11, 12]


async def test_near_duplicates_are_found_by_embedding():
    texts = {0: "The sum is 7. #### 7", 1: "The sum is 7! #### 7", 2: "Adding gives 7. #### 7", 3: "#### 9",
             4: "#### 9 again"}
    model = FakeBackend("m", by_seed(texts))
    vectors = {texts[0]: [1, 0, 0], texts[1]: [1, 0.01, 0], texts[2]: [0, 1, 0], texts[3]: [0, 0, 1],
               texts[4]: [0, 0.1, 1]}
    embedded: list[list[str]] = []

    def embed(batch: list[str]):
        embedded.append(batch)
        return np.array([vectors[t] for t in batch])

    answer = await _route([Sampler(model)] * 5, embed, dedupe_threshold=0.95).chat(QUESTION)
    trace = answer.trace
    assert trace is not None and embedded == [list(texts.values())]
    assert trace.summary["distinct"] == 3 and trace.distinct_ratio == pytest.approx(3 / 5)
    assert trace.details["votes"] == {"7": 3, "9": 2} and trace.details["dedupe"] == "embedding"
    assert [s.get("duplicate_of") for s in trace.details["samples"]] == [None, 0, None, None, 3]
    once = await _route([Sampler(model)] * 5, embed, count_duplicates=False).chat(QUESTION)
    assert once.trace is not None and once.trace.details["votes"] == {"7": 2, "9": 1}


async def test_a_broken_embedding_falls_back_to_text_dedupe():
    def broken(batch):
        raise RuntimeError("no model")

    model = FakeBackend("m", "#### 7")
    answer = await _route([Sampler(model)] * 3, broken).chat(QUESTION)
    assert answer.trace is not None and answer.trace.details["dedupe"].startswith("text (embedding failed")
    assert answer.trace.summary["distinct"] == 1 and answer.trace.distinct_ratio == pytest.approx(1 / 3)


async def test_n_distinct_choices_winner_first():
    model = FakeBackend("m", by_seed({0: "#### 1", 1: "#### 2", 2: "#### 2", 3: "so #### 2", 4: "#### 3"}))
    answer = await _route([Sampler(model)] * 5).chat(
        GenerationRequest(messages=QUESTION.messages, params=QUESTION.params, n=3)
    )
    texts = [answer.text, *(c.text for c in answer.extra_choices)]
    assert texts == ["#### 2", "so #### 2", "#### 1"]  # the duplicate '#### 2' is not offered twice
    few = await _route([Sampler(FakeBackend("s", "same"))] * 3).chat(
        GenerationRequest(messages=QUESTION.messages, n=3)
    )
    assert few.text == "same" and few.extra_choices == ()  # up to n: only one distinct sample exists


async def test_failed_and_slow_samples_are_left_out():
    good = FakeBackend("good", "#### 7")
    bad = FakeBackend("bad", error=BackendError("boom"))
    slow = FakeBackend("slow", "#### 9", first_chunk_delay=5)
    answer = await _route([Sampler(bad), Sampler(slow), Sampler(good)], sample_timeout=0.1).chat(QUESTION)
    assert answer.text == "#### 7"
    trace = answer.trace
    assert trace is not None and [c.error for c in trace.calls] == ["backend_error", "backend_timeout", None]
    assert trace.summary["succeeded"] == 1 and slow.cancelled == 1
    assert "boom" in trace.details["samples"][0]["error"]


async def test_all_samples_failing_is_a_clear_error_of_their_kind():
    same = [Sampler(FakeBackend("a", error=ContextLengthExceeded("too long"))),
            Sampler(FakeBackend("b", error=ContextLengthExceeded("too long too")))]
    with pytest.raises(ContextLengthExceeded, match="all 2 samples failed: a: too long; b: too long too"):
        await _route(same).chat(QUESTION)
    slow = [Sampler(FakeBackend("s", first_chunk_delay=5))] * 2
    with pytest.raises(BackendTimeout):
        await _route(slow, sample_timeout=0.05).chat(QUESTION)
    mixed = [Sampler(FakeBackend("a", error=BackendError("x"))), Sampler(FakeBackend("b", first_chunk_delay=5))]
    with pytest.raises(BackendError, match="all 2 samples failed"):
        await _route(mixed, sample_timeout=0.05).chat(QUESTION)


async def test_cancelling_the_answer_cancels_every_sample():
    members = [FakeBackend(f"m{i}", first_chunk_delay=10) for i in range(3)]
    task = asyncio.create_task(_route([Sampler(m) for m in members]).chat(QUESTION))
    while not all(m.requests for m in members):  # every sample is under way
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m.cancelled for m in members] == [1, 1, 1]


async def test_the_stream_carries_the_voted_answer_then_the_final_chunk():
    model = FakeBackend("m", by_seed({0: "#### 4", 1: "#### 5", 2: "#### 5"}))
    chunks = [c async for c in _route([Sampler(model)] * 3).stream_chat(QUESTION)]
    assert [c.text for c in chunks] == ["#### 5", ""]
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.trace is not None and final.usage == final.trace.usage
    with pytest.raises(RequestError):
        await anext(_route([Sampler(model)] * 3).stream_chat(GenerationRequest(prompt="x", n=2)))


async def test_capabilities_follow_the_members():
    small, large = FakeBackend("s", context_length=512), FakeBackend("l", context_length=4096)
    route = _route([Sampler(small), Sampler(large), Sampler(large)])
    assert route.context_length == 512 and route.max_choices == 3 and route.available
    assert [m.name for m in route.members] == ["s", "l"]
    assert (await route.health()).ok


class _Broken(FakeBackend):
    """A member that breaks the backend contract: raises a plain exception, health included."""

    async def chat(self, request):
        raise RuntimeError("llama_decode returned -3")

    async def health(self):
        raise RuntimeError("no health today")


async def test_a_member_raising_a_plain_exception_costs_one_sample_and_health_says_so():
    good = FakeBackend("good", "#### 7")
    route = _route([Sampler(_Broken("bad", "")), Sampler(good), Sampler(good)])
    answer = await route.chat(QUESTION)
    assert answer.text == "#### 7"
    failed = [c for c in answer.trace.calls if c.error]
    assert [(c.model, c.error) for c in failed] == [("bad", "backend_error")]
    health = await route.health()
    assert health.ok and "bad: health check failed: RuntimeError: no health today" in health.detail


async def test_samples_that_agree_first_stand_and_the_rest_are_never_drawn():
    model = FakeBackend("m", by_seed({0: "so #### 7", 1: "yes #### 7", 2: "#### 8", 3: "#### 8", 4: "#### 8"}))
    answer = await _route([Sampler(model, 0.0)] + [Sampler(model, 0.7)] * 4, stop_when_agreed=2).chat(QUESTION)
    assert answer.text == "so #### 7"
    assert [r.params.seed for r in model.requests] == [0, 1]
    assert answer.trace is not None and answer.trace.summary["samples"] == 2
    assert answer.trace.summary["stopped_early"] is True
    assert answer.usage == answer.trace.usage  # two answers charged, not five


@pytest.mark.parametrize("first_two", [("#### 7", "#### 8"), ("hello there", "hello there"), ("#### 7", None)])
async def test_samples_that_disagree_or_commit_to_nothing_draw_the_rest_and_vote(first_two):
    replies = {0: first_two[0], 1: first_two[1], 2: "#### 8", 3: "#### 8", 4: "so #### 8"}
    model = FakeBackend("m", by_seed({k: v for k, v in replies.items() if v is not None}))
    broken = FakeBackend("b", error=BackendTimeout("slow"))
    samplers = [Sampler(model, 0.0), Sampler(broken if first_two[1] is None else model, 0.7, seed=1)]
    samplers += [Sampler(model, 0.7)] * 3
    answer = await _route(samplers, stop_when_agreed=2).chat(QUESTION)
    assert sorted(r.params.seed for r in model.requests) == ([0, 2, 3, 4] if first_two[1] is None else [0, 1, 2, 3, 4])
    assert answer.trace is not None and answer.trace.summary["stopped_early"] is False
    assert answer.text == "#### 8"


async def test_n_choices_draw_every_sample_even_when_the_first_agree():
    model = FakeBackend("m", by_seed({0: "#### 7", 1: "so #### 7", 2: "#### 8"}))
    answer = await _route([Sampler(model, 0.0), Sampler(model, 0.7), Sampler(model, 0.7)],
                          stop_when_agreed=2).chat(replace(QUESTION, n=2))
    assert len(model.requests) == 3 and len(answer.extra_choices) == 1


def test_stopping_early_needs_two_samples_and_fewer_than_all():
    model = FakeBackend("m", "#### 7")
    with pytest.raises(ValueError, match="at least 2"):
        DiverseSettings(stop_when_agreed=1)
    with pytest.raises(ValueError, match="fewer than the samples"):
        _route([Sampler(model)] * 2, stop_when_agreed=2)
