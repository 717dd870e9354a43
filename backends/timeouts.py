"""``asyncio.timeout_at`` and ``asyncio.timeout`` as plain ``with`` blocks, for the request path.

Every request waits under a timeout at least once in backends/resilience.py: a whole answer for
its total, or one held to the first-token deadline for its first chunk and (when it is not in
hand by then) for the rest. ``asyncio.timeout_at`` is an async context manager over a ``Timeout``
object with a state machine and a ``reschedule`` method; under callgrind one use costs ~28,000
instructions, where :class:`TimeoutAt`, the same bound as a ``with`` block over one loop timer,
costs ~16,000 (``benchmarks/step_instructions.py``). Its timer is the loop's own
(``call_at``), so it ends exactly when ``asyncio.timeout_at`` would.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any


class TimeoutAt:
    """``asyncio.timeout_at(when)`` as a ``with`` block: at ``when`` (loop time; None: never) the
    task that entered it is cancelled, and that cancellation leaves the block as ``TimeoutError``;
    any other cancellation (the client left, a shutdown) goes through as it is. ``expired`` says
    whether it fired."""

    __slots__ = ("_cancelling", "_handle", "_task", "_when", "expired")

    def __init__(self, when: float | None) -> None:
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self.expired = False

    def __enter__(self) -> TimeoutAt:
        task = self._task = asyncio.current_task()
        if task is None:
            raise RuntimeError("TimeoutAt should be used inside a task")
        self._cancelling = task.cancelling()
        if self._when is not None:
            self._handle = task.get_loop().call_at(self._when, self._expire)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired:
            assert self._task is not None
            # this timeout's cancellation is spent; it is a timeout only if no other is pending
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        assert self._task is not None
        self._task.cancel()


def timeout_at(when: float | None) -> TimeoutAt:
    """A ``with`` block that ends with ``TimeoutError`` at ``when`` (loop time; None: never)."""
    return TimeoutAt(when)


def timeout(delay: float | None) -> TimeoutAt:
    """``asyncio.timeout(delay)`` as a ``with`` block: ``delay`` seconds from now (None: never)."""
    return TimeoutAt(None if delay is None else asyncio.get_running_loop().time() + delay)
