"""Keeping a model's failures from becoming the client's: retries, timeouts, a circuit breaker.

:class:`ResilientBackend` wraps any :class:`~backends.base.Backend` and is one
itself (a composite, like plan_solve). Around each call it

* admits the request only if the model's :class:`CircuitBreaker` is closed (or
  this request is the single probe after a cool-down), else raises
  :class:`~backends.errors.CircuitOpen` at once;
* bounds the wait for the first chunk (``first_token``), every gap between
  chunks (``idle``) and the whole call, retries included (``total``);
* retries a failure marked ``retryable`` (connection reset, 429, 500/502/503,
  a timeout before the first token) with exponential backoff and jitter,
  waiting at least what ``Retry-After`` asked, but only while nothing has
  been yielded: once a chunk is out, a failure is raised as it is;
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
from enum import StrEnum
from typing import TypeVar

from backends.base import Backend
from backends.errors import BackendError, BackendTimeout, CircuitOpen, SmallfleetError
from backends.features import Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk

T = TypeVar("T")

DEFAULT_RETRY_ATTEMPTS = 3  # one try and two retries
DEFAULT_RETRY_BASE_DELAY = 0.2
DEFAULT_RETRY_MAX_DELAY = 2.0
DEFAULT_RETRY_JITTER = 0.5
DEFAULT_MAX_RETRY_AFTER = 10.0
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOL_DOWN = 30.0
DEFAULT_FIRST_TOKEN_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_TOTAL_TIMEOUT = 600.0


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
class CircuitBreakerPolicy:
    """Open after ``failure_threshold`` failures in a row; after ``cool_down`` seconds let
    one probe through; close on its success, reopen on its failure."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cool_down: float = DEFAULT_COOL_DOWN

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cool_down < 0:
            raise ValueError("cool_down must not be negative")


@dataclass(frozen=True, slots=True)
class StreamTimeouts:
    """Seconds: to the first chunk, between two chunks, and for the whole call (retries included)."""

    first_token: float = DEFAULT_FIRST_TOKEN_TIMEOUT
    idle: float = DEFAULT_IDLE_TIMEOUT
    total: float = DEFAULT_TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        if min(self.first_token, self.idle, self.total) <= 0:
            raise ValueError("timeouts must be positive")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # cooled down: the next request is the probe, or the probe is out


class CircuitBreaker:
    """One model's breaker. ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy = CircuitBreakerPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or self._clock() >= self._opened_at + self.policy.cool_down:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def available(self) -> bool:
        """Whether a request sent now would be let through (without taking the probe)."""
        state = self.state
        return state is CircuitState.CLOSED or (state is CircuitState.HALF_OPEN and not self._probing)

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 when closed or cooled down)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cool_down - self._clock())

    def acquire(self) -> bool:
        """Let one request through? In half-open state only the first caller (the probe) is."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        if self._opened_at is not None and not self._probing:
            return  # a late answer to a request sent before the circuit opened decides nothing
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        if self._probing:
            self._probing = False
            self._opened_at = self._clock()
            return
        if self._opened_at is not None:
            return
        self._failures += 1
        if self._failures >= self.policy.failure_threshold:
            self._opened_at = self._clock()

    def release(self) -> None:
        """A call ended with no verdict on the model (a 429, a client gone): free the probe."""
        self._probing = False


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
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.retry = retry
        self.breaker = breaker
        self.timeouts = timeouts
        self._sleep = sleep
        self._rand = rand

    # -- what the fleet and the router see --------------------------------
    @property
    def context_length(self) -> int | None:
        """The inner backend's, read live: some learn it only when they start (a llama.cpp load)."""
        return self.inner.context_length

    @property
    def features(self) -> frozenset[Feature]:
        return self.inner.features

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
    async def chat(self, request: GenerationRequest) -> Completion:
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

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        retry = 0
        while True:
            self._admit()
            chunks = self.inner.stream_chat(request)
            try:
                first = await self._next(chunks, self.timeouts.first_token, deadline)
            except BaseException as exc:
                await _close(chunks)
                if not isinstance(exc, SmallfleetError):
                    self._release()
                    raise
                self._record(exc)
                await self._wait_to_retry(retry, exc, deadline)
                retry += 1
                continue
            break
        # The first chunk is out: from here a failure is raised, never retried.
        verdict: SmallfleetError | None = None
        try:
            chunk = first
            yield chunk
            while chunk.finish_reason is None:
                chunk = await self._next(chunks, self.timeouts.idle, deadline, first=False)
                yield chunk
        except SmallfleetError as exc:
            verdict = exc
            raise
        finally:
            await _close(chunks)
            if verdict is not None:
                self._record(verdict)
            elif chunk.finish_reason is not None:
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
        """Sleep before the next try, or raise ``failure`` when there is none."""
        delay = self.retry.delay(retry, failure, self._rand())
        if delay is None or asyncio.get_running_loop().time() + delay >= deadline:
            raise failure
        if self.breaker is not None and not self.breaker.available:
            raise failure  # that failure opened the circuit: say what went wrong, not "open"
        await self._sleep(delay)

    async def _before(self, deadline: float, work: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout_at(deadline):
                return await work
        except TimeoutError:
            raise BackendTimeout(
                f"model {self.name!r} sent no {what} within {self.timeouts.total:g} s", retryable=False
            ) from None

    async def _next(
        self, chunks: AsyncIterator[StreamChunk], limit: float, deadline: float, *, first: bool = True
    ) -> StreamChunk:
        """The next chunk within ``limit`` seconds and before ``deadline`` (the call's total)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(loop.time() + limit, deadline)):
                return await anext(chunks)
        except TimeoutError:
            if loop.time() >= deadline:
                message = f"model {self.name!r} did not finish within {self.timeouts.total:g} s"
            elif first:
                message = f"model {self.name!r} sent no first token within {limit:g} s"
            else:
                message = f"model {self.name!r} stalled: no chunk for {limit:g} s"
            raise BackendTimeout(message) from None
        except StopAsyncIteration:
            raise BackendError(f"model {self.name!r} ended its stream without finishing") from None


async def _close(chunks: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
