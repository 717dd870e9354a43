"""cascade: a small model answers first; a larger one answers instead when that looks unreliable.

The first model answers greedily with token log-probabilities (a member that cannot report them
is always escalated: no confidence is no evidence). Its answer's confidence (:func:`confidence`)
is the mean log-probability of its tokens (``signal: mean``) or the lowest one (``signal: min``:
the token it was least sure of, e.g. the letter of a multiple-choice answer). At or above
``threshold`` the answer stands; below it, the request goes to the second model, whose answer
is the route's. The threshold is calibrated on `smallfleet fleet eval` rows of both models
(``benchmarks/fleet/cascade_calibration.py``): the cheapest one whose accuracy stays within a
tolerance of the second model's.

A stream carries nothing until the first answer is judged: then either that whole answer in one
chunk, or the second model's stream as it comes. The first answer costs its tokens either way;
the trace lists both calls and says whether (and why) the route escalated.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from backends.base import Backend
from backends.composite.calls import (
    MemberPair,
    call_member,
    close_stream,
    error_code,
    next_before,
    written,
)
from backends.errors import SmallfleetError
from backends.features import Feature
from backends.types import (
    Completion,
    CompositeTrace,
    GenerationRequest,
    InnerCall,
    StreamChunk,
    TokenLogprob,
    Usage,
)

KIND = "cascade"
DEFAULT_STEP_TIMEOUT = 300.0
Signal = Literal["mean", "min"]
DEFAULT_SIGNAL: Signal = "mean"

# Why the route escalated (the trace's ``escalated``), or None when the first answer stood.
LOW_CONFIDENCE = "low_confidence"
NO_LOGPROBS = "no_logprobs"
FIRST_FAILED = "first_failed"


SIGNALS = ("mean", "min")


def confidence(
    logprobs: Sequence[TokenLogprob] | Sequence[float] | None, signal: str = "mean"
) -> float | None:
    """The mean (or lowest) log-probability of an answer's tokens (0 is certain); None without any."""
    if not logprobs:
        return None
    values = [entry.logprob if isinstance(entry, TokenLogprob) else float(entry) for entry in logprobs]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if signal == "min" else sum(finite) / len(finite)


def escalation_reason(
    logprobs: Sequence[TokenLogprob] | Sequence[float] | None, threshold: float, signal: str = "mean"
) -> str | None:
    """Why an answer should go to the larger model (None: it stands). The one rule the route and
    its offline calibration share. An answer cut at max_tokens is judged like any other: the
    client asked for that length, and the larger model would be cut there too."""
    score = confidence(logprobs, signal)
    if score is None:
        return NO_LOGPROBS
    return LOW_CONFIDENCE if score < threshold else None


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    threshold: float  # token log-probability (by ``signal``) under which the first answer is escalated
    signal: str = DEFAULT_SIGNAL  # mean: over the answer's tokens; min: its least likely token
    step_timeout: float = DEFAULT_STEP_TIMEOUT

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}")
        if not self.threshold <= 0.0:
            raise ValueError("threshold is a mean log-probability: at most 0")
        if self.step_timeout <= 0:
            raise ValueError("step_timeout must be positive")


class CascadeBackend(MemberPair):
    """A Backend that answers with ``first`` unless its answer looks unreliable, then with ``then``.

    ``then`` must be reachable (it answers whatever ``first`` does); ``first`` runs before every
    answer, so its queue counts too."""

    max_choices = 1
    main_role, helper_role = "then", "first"
    count_helper_queue = True

    def __init__(self, name: str, first: Backend, then: Backend, settings: CascadeSettings) -> None:
        self.name = name
        self.first = first
        self.then = then
        self.settings = settings

    # -- what the fleet sees ------------------------------------------------
    def _pair(self) -> tuple[Backend, Backend]:
        return self.then, self.first

    @property
    def context_length(self) -> int | None:
        lengths = [b.context_length for b in (self.first, self.then) if b.context_length]
        return min(lengths) if lengths else None

    # -- generation ---------------------------------------------------------
    def first_request(self, request: GenerationRequest) -> GenerationRequest:
        """The request as the first model gets it: greedy, with log-probabilities."""
        supports = Feature.LOGPROBS in self.first.features
        params = replace(request.params, temperature=0.0, logprobs=supports or request.params.logprobs)
        return replace(request, params=params)

    async def _first(
        self, request: GenerationRequest
    ) -> tuple[InnerCall, Completion | None, str | None, float | None]:
        result = await call_member(
            self.name, "first", self.first, self.first_request(request), self.settings.step_timeout
        )
        if result.completion is None:
            return result.call, None, FIRST_FAILED, None
        answer = result.completion
        settings = self.settings
        reason = escalation_reason(answer.logprobs, settings.threshold, settings.signal)
        return result.call, answer, reason, confidence(answer.logprobs, settings.signal)

    async def chat(self, request: GenerationRequest) -> Completion:
        first_call, answer, reason, score = await self._first(request)
        if reason is None:
            assert answer is not None
            trace = self._trace(score, None, first_call)
            return Completion(
                answer.text, answer.finish_reason, trace.usage, trace=trace, logprobs=answer.logprobs
            )
        result = await call_member(self.name, "then", self.then, request, self.settings.step_timeout)
        if result.completion is None:
            assert result.error is not None
            raise result.error
        trace = self._trace(score, reason, first_call, result.call)
        final = result.completion
        return Completion(final.text, final.finish_reason, trace.usage, trace=trace, logprobs=final.logprobs)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        first_call, answer, reason, score = await self._first(request)
        if reason is None:
            assert answer is not None
            trace = self._trace(score, None, first_call)
            yield StreamChunk(
                answer.text, answer.finish_reason, trace.usage, trace=trace, logprobs=answer.logprobs or ()
            )
            return
        early = self._trace(score, reason, first_call)
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.settings.step_timeout
        chunks = self.then.stream_chat(request)
        try:
            chunk = await self._next(chunks, deadline)
            first = True
            while chunk.finish_reason is None:
                yield replace(chunk, trace=early) if first else chunk
                first = False
                chunk = await self._next(chunks, deadline)
            then_call = self._then_call(request, chunk.usage or Usage(), started)
            trace = self._trace(score, reason, first_call, then_call)
            yield replace(chunk, usage=trace.usage, trace=trace)
        except SmallfleetError as exc:
            self._then_call(request, Usage(), started, error_code(exc))
            raise
        finally:
            await close_stream(chunks)

    async def _next(self, chunks: AsyncIterator[StreamChunk], deadline: float) -> StreamChunk:
        limit = self.settings.step_timeout
        return await next_before(chunks, deadline, self.name, "then", self.then.name, limit)

    def _then_call(
        self, request: GenerationRequest, usage: Usage, started: float, error: str | None = None
    ) -> InnerCall:
        seconds = time.perf_counter() - started
        return written(request, InnerCall(self.then.name, "then", usage, seconds, error))

    def _trace(self, score: float | None, reason: str | None, *calls: InnerCall) -> CompositeTrace:
        summary = {
            "first": self.first.name,
            "then": self.then.name,
            "threshold": self.settings.threshold,
            "signal": self.settings.signal,
            "confidence": None if score is None else round(score, 4),
            "escalated": reason,
        }
        return CompositeTrace(KIND, calls, summary)
