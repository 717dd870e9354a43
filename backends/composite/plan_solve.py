"""plan_solve: a planner model writes a short plan, a solver model follows it and answers.

The planner sees the task (the last user turn, or the raw prompt) and is asked for a numbered
plan of at most ``max_steps`` lines, within ``plan_max_tokens`` and ``planner_timeout``. The
solver sees the original request with the plan appended to its last user turn, and its answer is
the composite's answer: streamed chunk by chunk, after the planner has finished.

A plan that is unusable (the planner failed or timed out, wrote nothing, wrote no steps, or wrote
too many or ran out of tokens) is dropped and the solver answers the original request directly;
the trace says why (``plan_fallback``). A solver failure is the answer's failure; the calls
made so far are in the request's ledger (``GenerationRequest.ledger``), so the plan is still
charged. Nothing of the plan reaches the answer's text; the trace carries it for clients that ask.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from backends.base import Backend
from backends.composite.calls import (
    MemberPair,
    call_member,
    close_stream,
    error_code,
    next_before,
    written,
)
from backends.errors import ContextLengthExceeded, SmallfleetError
from backends.types import (
    Completion,
    CompositeTrace,
    GenerationRequest,
    InnerCall,
    Message,
    SamplingParams,
    StreamChunk,
    Usage,
)

KIND = "plan_solve"
DEFAULT_PLAN_MAX_TOKENS = 128
DEFAULT_MAX_STEPS = 8
DEFAULT_PLANNER_TEMPERATURE = 0.0
DEFAULT_PLANNER_TIMEOUT = 30.0
DEFAULT_SOLVER_TIMEOUT = 300.0
DEFAULT_PLANNER_PROMPT = (
    "You are a planner. Do not solve the task and do not state its answer. Break it into at most "
    "{max_steps} short steps or sub-questions that lead to the answer. Reply with only a numbered "
    "list, one step per line."
)
DEFAULT_SOLVER_PROMPT = (
    "Follow this plan:\n{plan}\n\nWork through the plan step by step, then give the final answer."
)

# Why a plan was dropped (the trace's ``plan_fallback``).
PLANNER_ERROR = "planner_error"
PLANNER_TIMEOUT = "planner_timeout"
EMPTY_PLAN = "empty_plan"
NO_STEPS = "no_steps"
PLAN_TOO_LONG = "plan_too_long"
PLAN_OVERFLOWS_SOLVER = "plan_overflows_solver_context"

_STEP = re.compile(r"^\s*(?:(?:step\s*)?\d{1,2}\s*[.):]|[-*\u2022])\s*(.*\S)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PlanSolveSettings:
    plan_max_tokens: int = DEFAULT_PLAN_MAX_TOKENS
    max_steps: int = DEFAULT_MAX_STEPS
    planner_temperature: float = DEFAULT_PLANNER_TEMPERATURE
    planner_timeout: float = DEFAULT_PLANNER_TIMEOUT
    solver_timeout: float = DEFAULT_SOLVER_TIMEOUT
    planner_prompt: str = DEFAULT_PLANNER_PROMPT  # may use {max_steps}
    solver_prompt: str = DEFAULT_SOLVER_PROMPT  # must use {plan}

    def __post_init__(self) -> None:
        if self.plan_max_tokens < 1 or self.max_steps < 1:
            raise ValueError("plan_max_tokens and max_steps must be at least 1")
        if min(self.planner_timeout, self.solver_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if "{plan}" not in self.solver_prompt:
            raise ValueError("solver_prompt must contain {plan}")


def parse_plan(text: str) -> list[str]:
    """The steps of a numbered or bulleted list, in order (``1. x``, ``2)``, ``Step 3:``, ``- x``)."""
    return [step.strip("* ").strip() for step in _STEP.findall(text) if step.strip("* ").strip()]


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """The planner's call and the plan it gave, or why there is none."""

    call: InnerCall
    steps: tuple[str, ...] = ()
    text: str = ""
    fallback: str | None = None
    detail: str = ""


def task_of(request: GenerationRequest) -> str:
    """What the planner plans for: the last user turn of a chat, or the raw prompt."""
    if request.messages is None:
        return request.prompt or ""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return request.messages[-1].content


def with_plan(request: GenerationRequest, block: str) -> GenerationRequest:
    """``request`` with ``block`` appended to its last user turn (or before a raw prompt)."""
    if request.messages is None:
        return replace(request, prompt=f"{block}\n\n{request.prompt}")
    messages = list(request.messages)
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if users:
        last = messages[users[-1]]
        messages[users[-1]] = Message("user", f"{last.content}\n\n{block}")
    else:
        messages.append(Message("user", block))
    return replace(request, messages=tuple(messages))


def _unusable(
    text: str, steps: list[str], finish_reason: str, settings: PlanSolveSettings
) -> tuple[str, str] | None:
    """Why a planner's answer cannot serve as a plan (reason, detail), or None when it can."""
    if not text.strip():
        return EMPTY_PLAN, "the planner wrote nothing"
    if finish_reason == "length":
        return PLAN_TOO_LONG, f"the plan did not end within {settings.plan_max_tokens} tokens"
    if not steps:
        return NO_STEPS, "the planner wrote no list of steps"
    if len(steps) > settings.max_steps:
        return PLAN_TOO_LONG, f"{len(steps)} steps; at most {settings.max_steps} are allowed"
    return None


class PlanSolveBackend(MemberPair):
    """A Backend built from a planner and a solver backend (the fleet owns their lifecycle).

    The solver must be reachable; without the planner it still answers (directly)."""

    max_choices = 1
    main_role, helper_role = "solver", "planner"

    def __init__(
        self, name: str, planner: Backend, solver: Backend, settings: PlanSolveSettings = PlanSolveSettings()
    ) -> None:
        self.name = name
        self.planner = planner
        self.solver = solver
        self.settings = settings

    # -- what the fleet sees ------------------------------------------------
    def _pair(self) -> tuple[Backend, Backend]:
        return self.solver, self.planner

    @property
    def context_length(self) -> int | None:
        return self.solver.context_length

    # -- generation ---------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> Completion:
        plan = await self.plan(request)
        solver_request, plan = self._solver_request(request, plan)
        timeout = self.settings.solver_timeout
        result = await call_member(self.name, "solver", self.solver, solver_request, timeout)
        calls = [result.call]
        if isinstance(result.error, ContextLengthExceeded) and plan.fallback is None:
            plan = self._overflowed(plan, result.error)
            result = await call_member(self.name, "solver", self.solver, request, timeout)
            calls.append(result.call)
        if result.completion is None:
            assert result.error is not None
            raise result.error
        trace = self._trace(plan, *calls)
        answer = result.completion
        return Completion(answer.text, answer.finish_reason, trace.usage, trace=trace)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        plan = await self.plan(request)
        solver_request, plan = self._solver_request(request, plan)
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.settings.solver_timeout
        failed: tuple[InnerCall, ...] = ()
        chunks = self.solver.stream_chat(solver_request)
        try:
            try:
                chunk = await self._next(chunks, deadline)
            except ContextLengthExceeded as exc:
                if plan.fallback is not None:
                    raise
                await close_stream(chunks)
                plan = self._overflowed(plan, exc)
                failed = (self._solver_call(request, Usage(), started, exc.code),)
                chunks = self.solver.stream_chat(request)
                chunk = await self._next(chunks, deadline)
            early = self._trace(plan, *failed)  # known before the answer: the plan, or why there is none
            first = True
            while chunk.finish_reason is None:
                yield replace(chunk, trace=early) if first else chunk
                first = False
                chunk = await self._next(chunks, deadline)
            trace = self._trace(plan, *failed, self._solver_call(request, chunk.usage or Usage(), started))
            yield StreamChunk(chunk.text, chunk.finish_reason, trace.usage, trace=trace)
        except SmallfleetError as exc:
            self._solver_call(request, Usage(), started, error_code(exc))  # into the ledger, with the plan's
            raise
        finally:
            await close_stream(chunks)

    async def _next(self, chunks: AsyncIterator[StreamChunk], deadline: float) -> StreamChunk:
        limit = self.settings.solver_timeout
        return await next_before(chunks, deadline, self.name, "solver", self.solver.name, limit)

    def _solver_call(
        self, request: GenerationRequest, usage: Usage, started: float, error: str | None = None
    ) -> InnerCall:
        seconds = time.perf_counter() - started
        return written(request, InnerCall(self.solver.name, "solver", usage, seconds, error))

    # -- the plan -----------------------------------------------------------
    def planner_request(self, request: GenerationRequest) -> GenerationRequest:
        settings = self.settings
        system = settings.planner_prompt.replace("{max_steps}", str(settings.max_steps))
        params = SamplingParams(
            max_tokens=settings.plan_max_tokens,
            temperature=settings.planner_temperature,
            seed=request.params.seed,
        )
        messages = (Message("system", system), Message("user", task_of(request)))
        return GenerationRequest(messages=messages, params=params, ledger=request.ledger)

    async def plan(self, request: GenerationRequest) -> PlanOutcome:
        """Ask the planner; a usable plan, or the reason there is none (never raises a model error)."""
        settings = self.settings
        result = await call_member(
            self.name, "planner", self.planner, self.planner_request(request), settings.planner_timeout
        )
        if result.completion is None:
            assert result.error is not None
            timed_out = result.call.error == "backend_timeout"
            reason = PLANNER_TIMEOUT if timed_out else PLANNER_ERROR
            return PlanOutcome(result.call, fallback=reason, detail=result.error.message)
        text = result.completion.text
        steps = parse_plan(text)
        unusable = _unusable(text, steps, result.completion.finish_reason, settings)
        if unusable is not None:
            reason, detail = unusable
            return PlanOutcome(result.call, tuple(steps), text, reason, detail)
        return PlanOutcome(result.call, tuple(steps), text)

    def _solver_request(
        self, request: GenerationRequest, plan: PlanOutcome
    ) -> tuple[GenerationRequest, PlanOutcome]:
        if plan.fallback is not None:
            return request, plan
        numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(plan.steps, 1))
        return with_plan(request, self.settings.solver_prompt.replace("{plan}", numbered)), plan

    @staticmethod
    def _overflowed(plan: PlanOutcome, error: SmallfleetError) -> PlanOutcome:
        return replace(plan, fallback=PLAN_OVERFLOWS_SOLVER, detail=error.message)

    def _trace(self, plan: PlanOutcome, *solver_calls: InnerCall) -> CompositeTrace:
        calls = (plan.call, *solver_calls)
        summary = {
            "planner": self.planner.name,
            "solver": self.solver.name,
            "plan_fallback": plan.fallback,
        }
        details = {
            "plan": list(plan.steps) if plan.fallback is None else None,
            "planner_output": plan.text,
            "plan_fallback_detail": plan.detail or None,
        }
        return CompositeTrace(KIND, calls, summary, details, plan_fallback=plan.fallback)
