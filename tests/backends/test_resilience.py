"""RetryPolicy, CircuitBreaker and ResilientBackend, against the scripted FakeBackend."""

from __future__ import annotations

import asyncio
import time

import pytest

from backends.base import ChunkStream
from backends.circuit import CircuitBreaker, CircuitBreakerPolicy, CircuitState
from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ContentPolicyViolation,
    ContextLengthExceeded,
    DeadlineExceeded,
    Overloaded,
    SmallfleetError,
)
from backends.fake import FakeBackend
from backends.resilience import (
    FIRST_CHUNK_MARGIN,
    FirstTokenDeadline,
    ResilientBackend,
    RetryPolicy,
    StreamTimeouts,
)
from backends.types import GenerationRequest, Message, StreamChunk, ToolCall, ToolCallDelta, Usage

REQUEST = GenerationRequest(messages=(Message("user", "hi"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def resilient(inner: FakeBackend, **kwargs: object) -> tuple[ResilientBackend, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("rand", lambda: 0.5)
    return ResilientBackend(inner, sleep=sleeps, **kwargs), sleeps  # type: ignore[arg-type]


async def collect(stream: object) -> list[StreamChunk]:
    return [chunk async for chunk in stream]  # type: ignore[attr-defined]


# -- RetryPolicy -----------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_inside_its_band() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.2, max_delay=1.0, jitter=0.5)
    assert [policy.backoff(n, 1.0) for n in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.0])
    assert [policy.backoff(n, 0.0) for n in range(4)] == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert RetryPolicy(jitter=0.0).backoff(1, 0.9) == pytest.approx(0.4)


def test_delay_retries_only_retryable_failures_and_only_while_attempts_last() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.1, jitter=0.0)
    assert policy.delay(0, BackendUnavailable("reset"), 0.5) == pytest.approx(0.1)
    assert policy.delay(1, BackendUnavailable("reset"), 0.5) == pytest.approx(0.2)
    assert policy.delay(2, BackendUnavailable("reset"), 0.5) is None
    for failure in (
        BackendError("malformed"),
        ContextLengthExceeded("too long"),
        ContentPolicyViolation("refused"),
        CircuitOpen("resting"),
    ):
        assert policy.delay(0, failure, 0.5) is None, failure
    assert policy.delay(0, BackendError("500", retryable=True), 0.5) is not None
    assert RetryPolicy(attempts=1).delay(0, BackendUnavailable("reset"), 0.5) is None


def test_delay_honours_retry_after_but_not_an_excessive_one() -> None:
    policy = RetryPolicy(base_delay=0.1, jitter=0.0, max_retry_after=5.0)
    assert policy.delay(0, Overloaded("429", retry_after=1.5), 0.5) == pytest.approx(1.5)
    assert policy.delay(0, Overloaded("429", retry_after=0.01), 0.5) == pytest.approx(0.1)
    assert policy.delay(0, Overloaded("429", retry_after=60), 0.5) is None


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"jitter": 1.5}, {"base_delay": -1}])
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- CircuitBreaker --------------------------------------------------------------


def test_breaker_opens_after_threshold_then_probes_once_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=3, cool_down=10), clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.acquire()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.available
    assert not breaker.acquire()
    assert breaker.retry_in() == pytest.approx(10)
    clock.now += 10
    assert breaker.state is CircuitState.HALF_OPEN and breaker.available
    assert breaker.acquire()  # the probe
    assert not breaker.acquire() and not breaker.available  # only one at a time
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.acquire()


def test_a_failed_probe_reopens_for_a_full_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cool_down=5), clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.acquire()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 4.9
    assert not breaker.acquire()
    clock.now += 0.1
    assert breaker.acquire()


def test_success_resets_the_count_and_release_frees_the_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=2, cool_down=1), clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    breaker.record_success()  # a late answer to an earlier request decides nothing
    assert breaker.state is CircuitState.OPEN
    clock.now += 1
    assert breaker.acquire()
    breaker.release()
    assert breaker.acquire()


# -- ResilientBackend: before the first token ------------------------------------


async def test_chat_retries_retryable_failures_with_backoff_then_answers() -> None:
    fake = FakeBackend(error=BackendUnavailable("reset"), fail_times=2)
    backend, sleeps = resilient(fake, retry=RetryPolicy(attempts=3, base_delay=0.1, jitter=0.0))
    completion = await backend.chat(REQUEST)
    assert completion.text == fake.reply
    assert fake.calls == 3
    assert sleeps.waits == pytest.approx([0.1, 0.2])


async def test_chat_gives_up_after_its_attempts_with_the_last_failure() -> None:
    fake = FakeBackend(error=BackendError("500", retryable=True))
    backend, sleeps = resilient(fake, retry=RetryPolicy(attempts=3))
    with pytest.raises(BackendError, match="500"):
        await backend.chat(REQUEST)
    assert fake.calls == 3 and len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "error",
    [ContextLengthExceeded("long"), ContentPolicyViolation("no"), BackendError("malformed answer")],
)
async def test_non_retryable_failures_are_tried_once(error: SmallfleetError) -> None:
    fake = FakeBackend(error=error)
    backend, sleeps = resilient(fake)
    with pytest.raises(type(error)):
        await backend.chat(REQUEST)
    with pytest.raises(type(error)):
        await collect(backend.stream_chat(REQUEST))
    assert fake.calls == 2 and sleeps.waits == []


async def test_retry_after_is_waited_for() -> None:
    fake = FakeBackend(error=Overloaded("429", retry_after=0.7), fail_times=1)
    backend, sleeps = resilient(fake, retry=RetryPolicy(base_delay=0.01))
    chunks = await collect(backend.stream_chat(REQUEST))
    assert "".join(c.text for c in chunks) == fake.reply
    assert sleeps.waits == [pytest.approx(0.7)]


async def test_a_slow_first_token_times_out_and_is_retried() -> None:
    fake = FakeBackend(first_chunk_delay=5.0)
    timeouts = StreamTimeouts(first_token=0.05, idle=1, total=10)
    backend, sleeps = resilient(fake, retry=RetryPolicy(attempts=2), timeouts=timeouts)
    with pytest.raises(BackendTimeout, match="first token"):
        await collect(backend.stream_chat(REQUEST))
    assert fake.calls == 2 and len(sleeps.waits) == 1
    assert fake.stream_closed_early


async def test_total_bounds_the_call_retries_included() -> None:
    fake = FakeBackend(first_chunk_delay=5.0)
    backend = ResilientBackend(fake, timeouts=StreamTimeouts(first_token=0.06, idle=1, total=0.1))
    started = asyncio.get_running_loop().time()
    with pytest.raises(BackendTimeout):
        await collect(backend.stream_chat(REQUEST))
    with pytest.raises(BackendTimeout, match="0.1 s"):
        await backend.chat(REQUEST)
    assert asyncio.get_running_loop().time() - started < 1.0


# -- ResilientBackend: after the first token -------------------------------------


async def test_a_failure_mid_stream_is_raised_never_retried() -> None:
    fake = FakeBackend(error=BackendUnavailable("cut"), fail_after_chunks=2)
    backend, sleeps = resilient(fake)
    received: list[str] = []
    with pytest.raises(BackendUnavailable, match="cut"):
        async for chunk in backend.stream_chat(REQUEST):
            received.append(chunk.text)
    assert len(received) == 2 and fake.calls == 1 and sleeps.waits == []


async def test_a_stalled_stream_times_out_on_idle() -> None:
    fake = FakeBackend()

    async def stall(request: GenerationRequest):  # type: ignore[no-untyped-def]
        yield StreamChunk("one ")
        await asyncio.sleep(10)
        yield StreamChunk("", finish_reason="stop")

    fake.stream_chat = stall  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.05, total=10))
    received: list[str] = []
    with pytest.raises(BackendTimeout, match="stalled"):
        async for chunk in backend.stream_chat(REQUEST):
            received.append(chunk.text)
    assert received == ["one "]


def _paced(gaps: list[float]):  # type: ignore[no-untyped-def]
    """A scripted stream: a first chunk, then one chunk after each gap, then the final one."""

    async def stream(request: GenerationRequest):  # type: ignore[no-untyped-def]
        yield StreamChunk("0 ")
        for i, gap in enumerate(gaps, 1):
            await asyncio.sleep(gap)
            yield StreamChunk(f"{i} ")
        yield StreamChunk("", finish_reason="stop")

    return stream


async def test_idle_bounds_each_wait_not_the_sum_of_them() -> None:
    """One timer serves the whole stream (backends.stall_watch.StallWatch): chunks that each come
    within ``idle`` pass however long the stream lasts, and so does a consumer that takes longer
    than ``idle`` between two chunks (its time is not the model's)."""
    fake = FakeBackend()
    fake.stream_chat = _paced([0.03] * 8)  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.08, total=10))
    received = []
    async for chunk in backend.stream_chat(REQUEST):
        received.append(chunk.text)
        if len(received) == 3:
            await asyncio.sleep(0.2)  # a slow client, between two waits
    assert "".join(received) == "0 1 2 3 4 5 6 7 8 "  # 0.24 s of chunks, 0.44 s in all, idle 0.08


async def test_total_ends_a_stream_that_keeps_sending() -> None:
    fake = FakeBackend()
    fake.stream_chat = _paced([0.03] * 20)  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.08, total=0.2))
    received: list[str] = []
    with pytest.raises(BackendTimeout, match="did not finish within 0.2 s"):
        async for chunk in backend.stream_chat(REQUEST):
            received.append(chunk.text)
    assert 3 <= len(received) < 10


async def test_a_cancellation_from_outside_mid_stream_is_not_a_timeout() -> None:
    fake = FakeBackend()
    fake.stream_chat = _paced([10])  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.05, total=10))
    started = asyncio.Event()

    async def consume() -> None:
        async for _chunk in backend.stream_chat(REQUEST):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()  # the client left while the stream waited, before idle ran out
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_timeout_mid_stream_leaves_the_task_uncancelled() -> None:
    """The watch's own cancellation is spent when it becomes a BackendTimeout: the task can go
    on (write an error event) without a cancellation still pending."""
    fake = FakeBackend()
    fake.stream_chat = _paced([10])  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.05, total=10))
    with pytest.raises(BackendTimeout, match="stalled"):
        await collect(backend.stream_chat(REQUEST))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # no CancelledError here


async def test_a_stream_that_ends_without_finishing_is_an_error() -> None:
    fake = FakeBackend()

    async def truncated(request: GenerationRequest):  # type: ignore[no-untyped-def]
        yield StreamChunk("half ")

    fake.stream_chat = truncated  # type: ignore[method-assign]
    backend, _ = resilient(fake)
    with pytest.raises(BackendError, match="without finishing"):
        await collect(backend.stream_chat(REQUEST))


# -- ResilientBackend with its breaker -------------------------------------------


async def test_the_circuit_opens_fails_fast_then_probes_and_recovers() -> None:
    clock = Clock()
    fake = FakeBackend(error=BackendUnavailable("down"), fail_times=3)
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=3, cool_down=30), clock)
    backend, _ = resilient(fake, retry=RetryPolicy(attempts=1), breaker=breaker)
    for _ in range(3):
        with pytest.raises(BackendUnavailable, match="down"):
            await backend.chat(REQUEST)
    assert backend.circuit_state is CircuitState.OPEN and not backend.available
    with pytest.raises(CircuitOpen) as raised:
        await collect(backend.stream_chat(REQUEST))
    assert raised.value.status_code == 503 and raised.value.code == "circuit_open"
    assert raised.value.retry_after == pytest.approx(30)
    assert fake.calls == 3  # the open circuit sent nothing
    assert not (await backend.health()).ok
    clock.now += 30
    assert backend.available
    assert (await backend.chat(REQUEST)).text == fake.reply
    assert backend.circuit_state is CircuitState.CLOSED


async def test_retries_stop_when_the_circuit_opens() -> None:
    fake = FakeBackend(error=BackendUnavailable("down"))
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=2, cool_down=30))
    backend, _ = resilient(fake, retry=RetryPolicy(attempts=5), breaker=breaker)
    with pytest.raises(BackendUnavailable, match="down"):
        await backend.chat(REQUEST)
    assert fake.calls == 2


async def test_refusals_and_client_disconnects_do_not_trip_the_breaker() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cool_down=30))
    refusing = FakeBackend(error=ContextLengthExceeded("long"))
    backend, _ = resilient(refusing, breaker=breaker)
    with pytest.raises(ContextLengthExceeded):
        await backend.chat(REQUEST)
    assert backend.circuit_state is CircuitState.CLOSED
    slow = ResilientBackend(FakeBackend(chunk_delay=0.01), breaker=breaker)
    stream = slow.stream_chat(REQUEST)
    await anext(stream)  # type: ignore[call-overload]
    await stream.aclose()  # type: ignore[attr-defined]
    assert breaker.state is CircuitState.CLOSED


async def test_mid_stream_failures_count_against_the_breaker() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cool_down=30))
    fake = FakeBackend(error=BackendError("cut"), fail_after_chunks=1)
    backend, _ = resilient(fake, breaker=breaker)
    with pytest.raises(BackendError):
        await collect(backend.stream_chat(REQUEST))
    assert breaker.state is CircuitState.OPEN


async def test_cancelling_a_call_cancels_the_inner_one() -> None:
    fake = FakeBackend(first_chunk_delay=10)
    backend = ResilientBackend(fake)
    task = asyncio.ensure_future(backend.chat(REQUEST))
    while not fake.requests:  # the inner call is under way
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.cancelled == 1 and fake.calls == 1  # cancelled inside, not retried
    assert backend.circuit_state is CircuitState.CLOSED  # a cancellation is not the model failing


async def test_the_wrapper_is_a_backend_that_delegates() -> None:
    fake = FakeBackend(name="m", context_length=123)
    backend = ResilientBackend(fake)
    await backend.start()
    assert fake.started and backend.name == "m" and backend.context_length == 123
    assert (await backend.health()).ok
    await backend.aclose()
    assert fake.closed


# -- a first-token deadline ------------------------------------------------------


def test_a_deadline_shares_what_is_left_among_the_candidates_capped_by_hand_over() -> None:
    deadline = FirstTokenDeadline(budget=60, hand_over=15)
    assert deadline.share(60, candidates_after=1) == 15  # half would be 30: the cap wins
    assert deadline.share(20, candidates_after=1) == 10
    assert deadline.share(24, candidates_after=2) == 8
    assert deadline.share(42, candidates_after=0) == 42  # the last candidate gets all that is left
    assert deadline.share(-3, candidates_after=2) == 0
    with pytest.raises(ValueError):
        FirstTokenDeadline(budget=0)


def _by(seconds: float) -> float:
    return time.monotonic() + seconds


async def test_a_stream_with_no_first_token_in_its_share_is_abandoned_and_not_retried() -> None:
    fake = FakeBackend(first_chunk_delay=10)
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cool_down=30))
    retried: list[tuple[str, str]] = []
    backend, sleeps = resilient(fake, breaker=breaker, on_retry=lambda *seen: retried.append(seen))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="share of the request's first-token deadline") as raised:
        await collect(backend.stream_chat(REQUEST, first_token_by=_by(0.1)))
    assert 0.1 <= time.monotonic() - started < 1.0
    assert raised.value.status_code == 504 and raised.value.code == "deadline_exceeded"
    assert fake.calls == 1 and sleeps.waits == [] and retried == []  # the share is spent: no retry
    assert fake.stream_closed_early  # the abandoned attempt was closed
    assert breaker.state is CircuitState.OPEN  # a model that sends nothing in time counts as failing


def test_the_deadline_is_named_even_when_the_loop_wakes_its_timer_early() -> None:
    """uvloop (the loop uvicorn serves on) rounds timers to milliseconds and may wake one before
    ``loop.time()`` reaches it; the abandoned model is still reported as past its share of the
    deadline, not as a model that timed out (CI saw ``backend_timeout`` once in ~900 tests)."""
    import uvloop

    async def abandon_many() -> list[str]:
        codes = []
        for i in range(40):
            backend, _ = resilient(FakeBackend(first_chunk_delay=10))
            try:
                await collect(backend.stream_chat(REQUEST, first_token_by=_by(0.003 + i * 0.00007)))
            except SmallfleetError as exc:
                codes.append(exc.code or exc.error_type)
        return codes

    assert set(uvloop.run(abandon_many())) == {"deadline_exceeded"}


async def test_fast_failures_are_retried_within_the_share_and_reported() -> None:
    fake = FakeBackend(error=BackendUnavailable("reset"), fail_times=2)
    retried: list[tuple[str, str]] = []
    backend, sleeps = resilient(fake, on_retry=lambda *seen: retried.append(seen))
    chunks = await collect(backend.stream_chat(REQUEST, first_token_by=_by(5)))
    assert "".join(c.text for c in chunks) == fake.reply
    assert fake.calls == 3 and len(sleeps.waits) == 2
    assert retried == [("fake", "backend_unavailable")] * 2


async def test_no_retry_whose_backoff_would_pass_the_share() -> None:
    fake = FakeBackend(error=Overloaded("429", retry_after=3.0))
    backend, sleeps = resilient(fake, retry=RetryPolicy(attempts=3))
    with pytest.raises(Overloaded):
        await collect(backend.stream_chat(REQUEST, first_token_by=_by(1.0)))
    assert fake.calls == 1 and sleeps.waits == []


async def test_a_spent_share_fails_at_once_without_asking_the_model() -> None:
    fake = FakeBackend()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cool_down=30))
    backend, _ = resilient(fake, breaker=breaker)
    with pytest.raises(DeadlineExceeded):
        await backend.chat(REQUEST, first_token_by=_by(-1))
    assert fake.calls == 0 and breaker.state is CircuitState.CLOSED


async def test_a_whole_answer_under_a_deadline_is_read_as_a_stream() -> None:
    fake = FakeBackend(chunk_delay=0.01)
    backend, _ = resilient(fake)
    completion = await backend.chat(REQUEST, first_token_by=_by(5))
    assert completion.text == fake.reply and completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == len(fake.reply.split())
    assert fake.requests and not fake.stream_closed_early
    hung = FakeBackend(first_chunk_delay=10)
    backend, _ = resilient(hung)
    with pytest.raises(DeadlineExceeded):
        await backend.chat(REQUEST, first_token_by=_by(0.05))


class _ScriptedStream(ChunkStream):
    """A ChunkStream over a list; ``in_hand``: it offers its rest without a wait."""

    def __init__(self, chunks: list[StreamChunk], in_hand: bool) -> None:
        self._chunks = list(chunks)
        self._in_hand = in_hand
        self.nexts = 0
        self.closed = False

    async def __anext__(self) -> StreamChunk:
        self.nexts += 1
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    first_by: float | None = None  # what take_whole was told

    def take_whole(self, first_by: float) -> None:
        self.first_by = first_by

    def rest_in_hand(self) -> list[StreamChunk] | None:
        if not self._in_hand:
            return None
        rest, self._chunks = self._chunks, []
        return rest

    async def aclose(self) -> None:
        self.closed = True


def _scripted(fake: FakeBackend, script: list[StreamChunk], in_hand: bool) -> list[_ScriptedStream]:
    """Make ``fake.stream_chat`` answer with ``script`` as a :class:`_ScriptedStream`; the list
    of the streams it made."""
    streams: list[_ScriptedStream] = []

    def stream_chat(request: GenerationRequest) -> _ScriptedStream:
        streams.append(_ScriptedStream(script, in_hand))
        return streams[-1]

    fake.stream_chat = stream_chat  # type: ignore[method-assign,assignment]
    return streams


@pytest.mark.parametrize("in_hand", [True, False])
async def test_a_whole_answer_takes_a_chunk_streams_rest_at_once(in_hand: bool) -> None:
    """The declared contract (backends.base.ChunkStream): after the first chunk the rest is taken
    by ``rest_in_hand`` when offered (no more ``anext``), else by the default ``rest``."""
    fake = FakeBackend()
    script = [StreamChunk("Hello"), StreamChunk(" there"), StreamChunk("", finish_reason="stop", usage=Usage(1, 2))]
    streams = _scripted(fake, script, in_hand)
    backend, _ = resilient(fake)
    completion = await backend.chat(REQUEST, first_token_by=_by(5))
    assert (completion.text, completion.finish_reason, completion.usage) == ("Hello there", "stop", Usage(1, 2))
    [stream] = streams
    assert stream.nexts == (1 if in_hand else 3) and stream.closed


async def test_only_a_whole_answer_lets_its_stream_hold_its_first_chunk_back() -> None:
    """``ChunkStream.take_whole``: a whole answer's stream is told the last moment its first chunk
    is wanted (its share's end, less a margin); a stream relayed to a client is not."""
    fake = FakeBackend()
    streams = _scripted(fake, [StreamChunk("Hello"), StreamChunk("", finish_reason="stop", usage=Usage(1, 1))], True)
    backend, _ = resilient(fake)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await backend.chat(REQUEST, first_token_by=_by(5))
    after = loop.time()
    when = streams[-1].first_by
    assert when is not None and before + 5 - FIRST_CHUNK_MARGIN - 0.05 <= when <= after + 5 - FIRST_CHUNK_MARGIN
    await collect(backend.stream_chat(REQUEST, first_token_by=_by(5)))
    assert streams[-1].first_by is None


async def test_a_long_whole_answer_is_not_cut_once_its_first_token_came() -> None:
    """The deadline is for the first token; the rest of a whole answer has ``total``, no ``idle``."""
    fake = FakeBackend()

    async def slow_after_first(request: GenerationRequest):  # type: ignore[no-untyped-def]
        yield StreamChunk("")  # the first token, its text held back (a tool call, say)
        await asyncio.sleep(0.3)
        yield StreamChunk("", tool_calls=(ToolCallDelta(0, "c1", "get_weather", '{"city": '),))
        yield StreamChunk("", tool_calls=(ToolCallDelta(0, None, None, '"Paris"}'),))
        yield StreamChunk("", finish_reason="tool_calls", usage=Usage(3, 4))

    fake.stream_chat = slow_after_first  # type: ignore[method-assign]
    backend, _ = resilient(fake, timeouts=StreamTimeouts(first_token=1, idle=0.1, total=10))
    completion = await backend.chat(REQUEST, first_token_by=_by(0.2))
    assert completion.finish_reason == "tool_calls" and completion.usage == Usage(3, 4)
    assert completion.tool_calls == (ToolCall("c1", "get_weather", '{"city": "Paris"}'),)
