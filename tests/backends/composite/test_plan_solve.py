"""plan_solve with scripted members: the plan, its fallbacks, streaming, timeouts, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from backends.composite import PlanSolveBackend, PlanSolveSettings
from backends.composite.plan_solve import parse_plan
from backends.errors import BackendError, BackendTimeout, ContextLengthExceeded
from backends.fake import FakeBackend
from backends.types import GenerationRequest, Message, SamplingParams

PLAN = "1. Add the apples.\n2. Subtract the eaten ones.\n3. Report the count."
QUESTION = GenerationRequest(
    messages=(Message("system", "End with #### N."), Message("user", "Tom has 3 apples...")),
    params=SamplingParams(max_tokens=64, seed=7),
)


def _route(planner: FakeBackend, solver: FakeBackend, **settings: object) -> PlanSolveBackend:
    return PlanSolveBackend("ps", planner, solver, PlanSolveSettings(**settings))  # type: ignore[arg-type]


def test_parse_plan_reads_numbered_and_bulleted_steps():
    assert parse_plan("Plan:\n1. a\n2) b\nStep 3: c\n- d\n* e\nno step") == ["a", "b", "c", "d", "e"]
    assert parse_plan("Just solve it.") == []


async def test_the_solver_gets_the_plan_and_the_answer_is_the_solvers_alone():
    planner, solver = FakeBackend("planner", PLAN), FakeBackend("solver", "It is 8 #### 8")
    answer = await _route(planner, solver).chat(QUESTION)
    assert answer.text == "It is 8 #### 8"
    planned = planner.requests[0]
    assert planned.messages is not None and planned.messages[-1].content == "Tom has 3 apples..."
    assert planned.params.max_tokens == 128 and planned.params.temperature == 0.0 and planned.params.seed == 7
    solved = solver.requests[0]
    assert solved.messages is not None and solved.messages[0].content == "End with #### N."
    assert "1. Add the apples." in solved.messages[-1].content
    assert solved.messages[-1].content.startswith("Tom has 3 apples...")
    assert solved.params == QUESTION.params
    trace = answer.trace
    assert trace is not None and trace.plan_fallback is None
    assert trace.details["plan"] == ["Add the apples.", "Subtract the eaten ones.", "Report the count."]
    assert [c.step for c in trace.calls] == ["planner", "solver"]
    # usage is the sum of both calls
    assert answer.usage.completion_tokens == sum(c.usage.completion_tokens for c in trace.calls)
    assert answer.usage.prompt_tokens == sum(c.usage.prompt_tokens for c in trace.calls) > 0


@pytest.mark.parametrize(
    ("planner", "settings", "reason"),
    [
        (FakeBackend("planner", error=BackendError("down")), {}, "planner_error"),
        (FakeBackend("planner", PLAN, first_chunk_delay=5), {"planner_timeout": 0.05}, "planner_timeout"),
        (FakeBackend("planner", " "), {}, "empty_plan"),
        (FakeBackend("planner", "Just add them up, it is 8."), {}, "no_steps"),
        (FakeBackend("planner", PLAN), {"max_steps": 2}, "plan_too_long"),
        (FakeBackend("planner", PLAN), {"plan_max_tokens": 4}, "plan_too_long"),
    ],
)
async def test_an_unusable_plan_falls_back_to_solving_directly(planner, settings, reason):
    solver = FakeBackend("solver", "#### 8")
    answer = await _route(planner, solver, **settings).chat(QUESTION)
    assert answer.text == "#### 8"
    assert solver.requests[0] == QUESTION  # the original request, untouched
    assert answer.trace is not None and answer.trace.plan_fallback == reason
    assert answer.trace.summary["plan_fallback"] == reason and answer.trace.details["plan"] is None


async def test_a_plan_that_overflows_the_solvers_context_is_dropped():
    class Tight(FakeBackend):
        async def chat(self, request):
            if "Follow this plan" in (request.messages or ())[-1].content:
                self.requests.append(request)
                raise ContextLengthExceeded("too long with the plan")
            return await super().chat(request)

    solver = Tight("solver", "#### 8")
    answer = await _route(FakeBackend("planner", PLAN), solver).chat(QUESTION)
    assert answer.text == "#### 8" and solver.requests[-1] == QUESTION
    assert answer.trace is not None and answer.trace.plan_fallback == "plan_overflows_solver_context"
    assert [c.error for c in answer.trace.calls] == [None, "context_length_exceeded", None]


async def test_a_failing_or_slow_solver_is_the_answers_error():
    with pytest.raises(BackendError, match="down"):
        await _route(FakeBackend("planner", PLAN), FakeBackend("solver", error=BackendError("down"))).chat(QUESTION)
    slow = FakeBackend("solver", "late", first_chunk_delay=5)
    with pytest.raises(BackendTimeout, match="solver 'solver' gave no answer within 0.05 s"):
        await _route(FakeBackend("planner", PLAN), slow, solver_timeout=0.05).chat(QUESTION)


async def test_streaming_plans_first_then_forwards_the_solvers_chunks():
    planner, solver = FakeBackend("planner", PLAN), FakeBackend("solver", "one two three #### 3")
    chunks = [c async for c in _route(planner, solver).stream_chat(QUESTION)]
    assert "".join(c.text for c in chunks) == "one two three #### 3"
    assert len(chunks) == 6  # five words, then the final chunk
    assert chunks[0].trace is not None and chunks[0].trace.plan_fallback is None
    assert all(c.trace is None for c in chunks[1:-1])
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.trace is not None
    assert final.usage == final.trace.usage and [c.step for c in final.trace.calls] == ["planner", "solver"]


async def test_streaming_solver_stall_is_a_timeout_not_a_hang():
    solver = FakeBackend("solver", "a b c d e f", chunk_delay=1.0)
    stream = _route(FakeBackend("planner", PLAN), solver, solver_timeout=0.1).stream_chat(QUESTION)
    with pytest.raises(BackendTimeout):
        async with asyncio.timeout(5):
            async for _ in stream:
                pass
    assert solver.stream_closed_early


async def test_cancelling_the_answer_cancels_the_inner_call():
    planner = FakeBackend("planner", PLAN, first_chunk_delay=10)
    task = asyncio.create_task(_route(planner, FakeBackend("solver")).chat(QUESTION))
    while not planner.requests:  # the inner call is under way
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert planner.cancelled == 1


async def test_closing_a_stream_closes_the_solvers():
    solver = FakeBackend("solver", "w " * 50, chunk_delay=0.01)
    stream = _route(FakeBackend("planner", PLAN), solver).stream_chat(QUESTION)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert solver.stream_closed_early and solver.chunks_sent < 10


async def test_health_availability_and_context_follow_the_solver():
    solver = FakeBackend("solver", context_length=512)
    route = _route(FakeBackend("planner", error=BackendError("x")), solver)
    assert route.context_length == 512 and route.available and route.max_choices == 1
    health = await route.health()
    assert health.ok and "planner planner" in health.detail
