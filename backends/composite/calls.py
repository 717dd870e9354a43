"""One inner call of a composite: bounded in time, accounted for, failures turned into values.

A composite decides what an inner failure means (a plan fallback, one sample fewer, the whole
answer failing), so :func:`call_member` returns the failure instead of raising it. A member that
breaks the backend contract (raises something other than a gateway error) fails as a
``BackendError`` naming it, so one broken member costs a sample, not the route. Cancellation
is never swallowed: cancelling the composite's task cancels the call it is waiting on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from backends import timeouts
from backends.base import Backend
from backends.errors import BackendError, BackendTimeout, SmallfleetError
from backends.features import NO_FEATURES
from backends.types import Completion, GenerationRequest, Health, InnerCall, StreamChunk, Usage


@dataclass(frozen=True, slots=True)
class CallResult:
    """A member's answer, or the error it failed with; ``call`` is the accounting either way."""

    call: InnerCall
    completion: Completion | None = None
    error: SmallfleetError | None = None


def timeout_error(route: str, step: str, member: str, seconds: float) -> BackendTimeout:
    return BackendTimeout(f"route {route!r}: {step} {member!r} gave no answer within {seconds:g} s")


async def call_member(
    route: str, step: str, member: Backend, request: GenerationRequest, timeout: float
) -> CallResult:
    """``member.chat(request)`` within ``timeout`` seconds."""
    started = time.perf_counter()
    try:
        with timeouts.timeout(timeout):
            completion = await member.chat(request)
    except TimeoutError:
        error: SmallfleetError = timeout_error(route, step, member.name, timeout)
    except SmallfleetError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - a member's bug must not crash its route
        error = BackendError(f"route {route!r}: {step} {member.name!r} failed: {type(exc).__name__}: {exc}")
    else:
        seconds = time.perf_counter() - started
        call = InnerCall(member.name, step, completion.usage, seconds)
        return CallResult(written(request, call), completion)
    seconds = time.perf_counter() - started
    call = InnerCall(member.name, step, Usage(), seconds, error_code(error))
    return CallResult(written(request, call), error=error)


def written(request: GenerationRequest, call: InnerCall) -> InnerCall:
    """``call``, written to the ledger the request carries (if any: a route used outside the
    gateway has none), so a route that fails is still charged for the calls it finished."""
    if request.ledger is not None:
        request.ledger.record(call)
    return call


def error_code(error: SmallfleetError) -> str:
    return error.code or error.error_type


async def next_before(
    chunks: AsyncIterator[StreamChunk], deadline: float, route: str, step: str, member: str, limit: float
) -> StreamChunk:
    """The next chunk of a member's stream, before ``deadline`` (event-loop time)."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(chunks)
    except TimeoutError:
        raise timeout_error(route, step, member, limit) from None
    except StopAsyncIteration:
        raise BackendError(f"route {route!r}: {step} {member!r} ended its stream without finishing") from None


async def close_stream(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def member_health(member: Backend) -> Health:
    """``member.health()``, with a raising health check reported as unhealthy."""
    try:
        return await member.health()
    except Exception as exc:  # noqa: BLE001 - one member's broken check must not hide the others
        return Health(ok=False, detail=f"health check failed: {type(exc).__name__}: {exc}")


def member_available(member: Backend) -> bool:
    """False while a member's circuit is open (a bare backend is always available)."""
    return member.available


class MemberPair:
    """Lifecycle, reachability and health of a route built from two of the fleet's members.

    ``main`` answers (the route is available, and healthy, while it is); ``helper`` assists
    (its failure degrades the route, not its health). The fleet owns both: the route has
    nothing of its own to start or close. Subclasses set the roles' names for health details.
    """

    main_role = "main"
    helper_role = "helper"
    # Text only: its steps rewrite the request (a plan, a greedy first answer), so tools,
    # structured output and log-probabilities would not mean what the client asked for.
    features = NO_FEATURES
    count_helper_queue = False  # whether the helper's queue delays every answer (it runs first)

    def _pair(self) -> tuple[Backend, Backend]:
        """(main, helper)."""
        raise NotImplementedError

    @property
    def available(self) -> bool:
        return member_available(self._pair()[0])

    @property
    def members(self) -> tuple[Backend, ...]:
        main, helper = self._pair()
        return (helper, main)

    async def start(self) -> None:
        """Nothing of its own to start: its members are the fleet's."""

    async def aclose(self) -> None:
        """Nothing of its own to close."""

    async def health(self) -> Health:
        main, helper = self._pair()
        mine, theirs = await asyncio.gather(member_health(main), member_health(helper))
        detail = (f"{self.main_role} {main.name}: {mine.detail}; "
                  f"{self.helper_role} {helper.name}: {theirs.detail}")
        depth = mine.queue_depth + (theirs.queue_depth if self.count_helper_queue else 0)
        return Health(ok=mine.ok, detail=detail, queue_depth=depth)
