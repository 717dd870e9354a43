"""Keeping a model's failures from becoming the client's: retries, timeouts, a circuit breaker.

:class:`ResilientBackend` wraps any :class:`~backends.base.Backend` and is one
itself (a composite, like plan_solve). Around each call it

* admits the request only if the model's :class:`CircuitBreaker` is closed (or
  this request is the single probe after a cool-down), else raises
  :class:`~backends.errors.CircuitOpen` at once;
* bounds the wait for the first chunk (``first_token``), every gap between
  chunks (``idle``) and the whole call, retries included (``total``);
* given a first-token deadline (``first_token_by``: this model's share of the
  request's :class:`FirstTokenDeadline`, which the gateway computes), stops
  waiting for a first chunk there and raises
  :class:`~backends.errors.DeadlineExceeded`, so the caller can try the next
  candidate; retries stop when the share is spent. A whole answer asked for
  under a deadline is read as a stream, so its first token can be seen (the
  rest at once, where the stream offers it: ``rest()``);
* retries a failure marked ``retryable`` (connection reset, 429, 500/502/503,
  a timeout before the first token) with exponential backoff and jitter,
  waiting at least what ``Retry-After`` asked, but only while nothing has
  been yielded: once a chunk is out, a failure is raised as it is; each retry
  is reported to ``on_retry`` (model, reason) for the metrics;
* tells the breaker how each call went: a model failure (a
  :class:`~backends.errors.BackendError`) counts against it; an answer,
  or a refusal of the request itself, counts for it; a 429 or a client that
  went away counts neither way.

The value objects carry ``DEFAULT_*`` constants; the fleet config maps onto
them one to one (docs/resilience.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from backends.assembly import NOT_IN_HAND, Assembly
from backends.base import Backend, ChunkStream
from backends.circuit import CircuitBreaker, CircuitState
from backends.errors import BackendError, BackendTimeout, CircuitOpen, DeadlineExceeded, SmallfleetError
from backends.features import Feature
from backends.stall_watch import StallWatch
from backends.timeouts import timeout_at
from backends.types import Completion, GenerationRequest, Health, StreamChunk

T = TypeVar("T")

DEFAULT_RETRY_ATTEMPTS = 3  # one try and two retries
DEFAULT_RETRY_BASE_DELAY = 0.2
DEFAULT_RETRY_MAX_DELAY = 2.0
DEFAULT_RETRY_JITTER = 0.5
DEFAULT_MAX_RETRY_AFTER = 10.0
DEFAULT_FIRST_TOKEN_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_TOTAL_TIMEOUT = 600.0
DEFAULT_FIRST_TOKEN_DEADLINE = 60.0  # a request's budget to its first token, all candidates together
DEFAULT_HAND_OVER = 15.0  # the longest one candidate is waited for while another could answer
# A whole answer's first chunk is handed over this long before its first-token bound at the latest
# (ChunkStream.take_whole): a token that came in time is seen before the bound's timeout fires.
FIRST_CHUNK_MARGIN = 0.005


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries in all (1: never retry). The n-th retry waits
    ``min(max_delay, base_delay * 2**n)``, of which a ``jitter`` fraction is random;
    at least ``Retry-After`` when the upstream sent one, unless that is longer than
    ``max_retry_after``, in which case the failure is raised at once (a fallback is
    better than a long wait)."""

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    jitter: float = DEFAULT_RETRY_JITTER
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, retry: int, rand: float) -> float:
        """The wait before retry number ``retry`` (0-based); ``rand`` is uniform in [0, 1)."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry))
        return ceiling * (1.0 - self.jitter) + ceiling * self.jitter * rand

    def delay(self, retry: int, failure: SmallfleetError, rand: float) -> float | None:
        """How long to wait before retrying ``failure``, or None when it must not be retried."""
        if not failure.retryable or retry + 1 >= self.attempts:
            return None
        wait = self.backoff(retry, rand)
        if failure.retry_after is not None:
            if failure.retry_after > self.max_retry_after:
                return None
            wait = max(wait, failure.retry_after)
        return wait


NO_RETRIES = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class StreamTimeouts:
    """Seconds: to the first chunk, between two chunks, and for the whole call (retries included)."""

    first_token: float = DEFAULT_FIRST_TOKEN_TIMEOUT
    idle: float = DEFAULT_IDLE_TIMEOUT
    total: float = DEFAULT_TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        if min(self.first_token, self.idle, self.total) <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class FirstTokenDeadline:
    """A request's time budget to its first token, across retries and fallbacks.

    ``budget`` seconds from the request's arrival (None: no deadline). While other candidates
    could still answer, the current one gets an equal share of what is left, and never more
    than ``hand_over`` seconds; the last one gets all that is left. A model that has sent no
    first token when its share ends is abandoned for the next candidate."""

    budget: float | None = DEFAULT_FIRST_TOKEN_DEADLINE
    hand_over: float = DEFAULT_HAND_OVER

    def __post_init__(self) -> None:
        if (self.budget is not None and self.budget <= 0) or self.hand_over <= 0:
            raise ValueError("deadlines must be positive")

    def share(self, remaining: float, candidates_after: int) -> float:
        """Seconds the current candidate may take to its first token, with ``remaining`` seconds
        of the budget left and ``candidates_after`` candidates that could still answer."""
        remaining = max(0.0, remaining)
        if candidates_after <= 0:
            return remaining
        return min(self.hand_over, remaining / (1 + candidates_after))


DEFAULT_DEADLINE = FirstTokenDeadline()
NO_DEADLINE = FirstTokenDeadline(budget=None)


class ResilientBackend:
    """``inner`` with retries, timeouts and a circuit breaker; a Backend itself.

    ``breaker=None`` disables the breaker. ``sleep`` and ``rand`` are injectable for tests.
    """

    def __init__(
        self,
        inner: Backend,
        *,
        retry: RetryPolicy = RetryPolicy(),
        breaker: CircuitBreaker | None = None,
        timeouts: StreamTimeouts = StreamTimeouts(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        on_retry: Callable[[str, str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.retry = retry
        self.breaker = breaker
        self.timeouts = timeouts
        self._sleep = sleep
        self._rand = rand
        self._on_retry = on_retry  # called with (model, reason: the failure's code) before each retry

    # -- what the fleet and the router see --------------------------------
    @property
    def context_length(self) -> int | None:
        """The inner backend's, read live: some learn it only when they start (a llama.cpp load)."""
        return self.inner.context_length

    @property
    def features(self) -> frozenset[Feature]:
        return self.inner.features

    @property
    def max_choices(self) -> int:
        return self.inner.max_choices

    @property
    def circuit_state(self) -> CircuitState:
        return CircuitState.CLOSED if self.breaker is None else self.breaker.state

    @property
    def available(self) -> bool:
        """False while the circuit is open: a router should pick someone else."""
        return self.breaker is None or self.breaker.available

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def health(self) -> Health:
        health = await self.inner.health()
        if self.breaker is not None and not self.breaker.available:
            return Health(ok=False, detail=f"circuit open; {health.detail}", queue_depth=health.queue_depth)
        return health

    # -- generation ---------------------------------------------------------
    async def chat(self, request: GenerationRequest, *, first_token_by: float | None = None) -> Completion:
        """The whole answer. With ``first_token_by`` (a ``time.monotonic()`` instant: this model's
        share of the request's deadline) it is read as a stream, so that a model that sends no
        first token by then is abandoned (:class:`DeadlineExceeded`) whatever its answer's length."""
        if first_token_by is not None:
            return await self._collect(request, first_token_by)
        deadline = asyncio.get_running_loop().time() + self.timeouts.total
        retry = 0
        while True:
            self._admit()
            try:
                completion = await self._before(deadline, self.inner.chat(request), "answer")
            except SmallfleetError as exc:
                self._record(exc)
                await self._wait_to_retry(retry, exc, deadline)
                retry += 1
                continue
            except BaseException:
                self._release()
                raise
            self._succeed()
            return completion

    async def stream_chat(
        self, request: GenerationRequest, *, first_token_by: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        chunks, first = await self._open(request, deadline, first_token_by)
        # The first chunk is out: from here a failure is raised, never retried.
        verdict: SmallfleetError | None = None
        watch = StallWatch(loop, self.timeouts.idle, deadline)
        try:
            chunk = first
            yield chunk
            while chunk.finish_reason is None:
                chunk = await self._next(chunks, watch)
                yield chunk
        except SmallfleetError as exc:
            verdict = exc
            raise
        finally:
            watch.close()
            await self._end(chunks, verdict, chunk.finish_reason is not None)

    async def _collect(self, request: GenerationRequest, first_token_by: float) -> Completion:
        """A whole answer read as a stream: the first chunk under the deadline, the rest within
        ``total`` (no ``idle`` limit: a whole answer may hold its text back, as a tool call does)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        chunks, first = await self._open(request, deadline, first_token_by, whole=True)
        answer = Assembly(request)
        verdict: SmallfleetError | None = None
        chunk = first
        try:
            answer.add(chunk)
            if chunk.finish_reason is None:
                last = answer.add_rest_in_hand(chunks)
                if last is NOT_IN_HAND:
                    # the rest under one timeout (the call's total), not one per chunk
                    try:
                        with timeout_at(deadline):
                            last = await answer.add_rest(chunks)
                    except TimeoutError:
                        raise BackendTimeout(
                            f"model {self.name!r} did not finish within {self.timeouts.total:g} s"
                        ) from None
                if last is None:
                    raise BackendError(f"model {self.name!r} ended its stream without finishing")
                chunk = last
        except SmallfleetError as exc:
            verdict = exc
            raise
        finally:
            await self._end(chunks, verdict, chunk.finish_reason is not None)
        return answer.completion()

    async def _open(
        self, request: GenerationRequest, deadline: float, first_token_by: float | None, whole: bool = False
    ) -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
        """Start a stream and wait for its first chunk, retrying failures before it; within
        ``first_token`` per attempt, the call's ``deadline`` (total) and ``first_token_by``.
        ``whole``: the answer will be taken whole (:meth:`ChunkStream.take_whole`)."""
        loop = asyncio.get_running_loop()
        share_end, share = deadline, None
        if first_token_by is not None:
            share = first_token_by - time.monotonic()
            share_end = min(deadline, loop.time() + share)
        retry = 0
        while True:
            if share is not None and loop.time() >= share_end:
                raise self._deadline_exceeded(share)  # spent before this try: nothing to blame it on
            self._admit()
            chunks = self.inner.stream_chat(request)
            try:
                limit = self.timeouts.first_token
                first = await self._first(chunks, limit, deadline, share_end, share, whole)
            except BaseException as exc:
                await _close(chunks)
                if not isinstance(exc, SmallfleetError):
                    self._release()
                    raise
                self._record(exc)
                await self._wait_to_retry(retry, exc, share_end)
                retry += 1
                continue
            return chunks, first

    async def _end(
        self, chunks: AsyncIterator[StreamChunk], verdict: SmallfleetError | None, done: bool
    ) -> None:
        """Close a stream that had started, and tell the breaker how it went."""
        await _close(chunks)
        if verdict is not None:
            self._record(verdict)
        elif done:
            self._succeed()
        else:
            self._release()  # closed early by the consumer (a client gone): no verdict

    # -- helpers ------------------------------------------------------------
    def _admit(self) -> None:
        if self.breaker is not None and not self.breaker.acquire():
            wait = self.breaker.retry_in()
            raise CircuitOpen(
                f"model {self.name!r} failed repeatedly; its circuit is open, next try in {wait:.1f} s",
                retry_after=wait or None,
            )

    def _record(self, failure: SmallfleetError) -> None:
        if self.breaker is None:
            return
        if isinstance(failure, BackendError) and not isinstance(failure, CircuitOpen):
            self.breaker.record_failure()
        elif failure.status_code == 429:
            self.breaker.release()
        else:
            self.breaker.record_success()  # it answered; the request itself was refused

    def _succeed(self) -> None:
        if self.breaker is not None:
            self.breaker.record_success()

    def _release(self) -> None:
        if self.breaker is not None:
            self.breaker.release()

    async def _wait_to_retry(self, retry: int, failure: SmallfleetError, deadline: float) -> None:
        """Sleep before the next try, or raise ``failure`` when there is none (no retries left,
        or the wait would reach ``deadline``: the call's total, or the share of a first-token
        deadline)."""
        delay = self.retry.delay(retry, failure, self._rand())
        if delay is None or asyncio.get_running_loop().time() + delay >= deadline:
            raise failure
        if self.breaker is not None and not self.breaker.available:
            raise failure  # that failure opened the circuit: say what went wrong, not "open"
        if self._on_retry is not None:
            self._on_retry(self.name, failure.code or failure.error_type)
        await self._sleep(delay)

    async def _before(self, deadline: float, work: Awaitable[T], what: str) -> T:
        try:
            with timeout_at(deadline):
                return await work
        except TimeoutError:
            raise BackendTimeout(
                f"model {self.name!r} sent no {what} within {self.timeouts.total:g} s", retryable=False
            ) from None

    def _deadline_exceeded(self, share: float) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"model {self.name!r} sent no first token within its {max(share, 0):.1f} s share of the "
            "request's first-token deadline"
        )

    async def _first(
        self,
        chunks: AsyncIterator[StreamChunk],
        limit: float,
        deadline: float,
        share_end: float | None = None,
        share: float | None = None,
        whole: bool = False,
    ) -> StreamChunk:
        """The first chunk within ``limit`` seconds and before ``deadline`` (the call's total) and
        ``share_end`` (the end of this model's share of a first-token deadline). ``whole``: a
        whole answer, which need not hand over its first chunk before the last moment
        (:meth:`ChunkStream.take_whole`)."""
        # Which bound ends the wait is decided before waiting: the event loop may wake a timer up
        # to its clock resolution early, so comparing times afterwards could name the wrong one.
        loop = asyncio.get_running_loop()
        until = min(loop.time() + limit, deadline)
        if share_end is not None:
            until = min(until, share_end)
        if whole and isinstance(chunks, ChunkStream):
            chunks.take_whole(until - FIRST_CHUNK_MARGIN)
        try:
            with timeout_at(until):
                return await anext(chunks)
        except TimeoutError:
            if until >= deadline:
                message = f"model {self.name!r} did not finish within {self.timeouts.total:g} s"
            elif share is not None and share_end is not None and until >= share_end:
                raise self._deadline_exceeded(share) from None
            else:
                message = f"model {self.name!r} sent no first token within {limit:g} s"
            raise BackendTimeout(message) from None
        except StopAsyncIteration:
            raise BackendError(f"model {self.name!r} ended its stream without finishing") from None

    async def _next(self, chunks: AsyncIterator[StreamChunk], watch: StallWatch) -> StreamChunk:
        """A chunk after the first, within ``idle`` seconds of waiting and before the call's
        total; timed by the stream's one :class:`StallWatch` rather than a timeout per chunk (a
        long answer has hundreds)."""
        watch.waiting()
        try:
            return await anext(chunks)
        except asyncio.CancelledError:
            bound = watch.expired()
            if bound is None:
                raise
            if bound == "total":
                message = f"model {self.name!r} did not finish within {self.timeouts.total:g} s"
            else:
                message = f"model {self.name!r} stalled: no chunk for {self.timeouts.idle:g} s"
            raise BackendTimeout(message) from None
        except StopAsyncIteration:
            raise BackendError(f"model {self.name!r} ended its stream without finishing") from None
        finally:
            watch.waited()


async def _close(chunks: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
