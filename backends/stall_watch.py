"""The timeouts of a stream after its first chunk, with one timer for the whole stream.

``ResilientBackend.stream_chat`` (backends/resilience.py) waits for each chunk after the first
within ``idle`` seconds and before the call's total. An ``asyncio.timeout_at`` around each wait
arms and cancels a timer per chunk (~5 µs warm; a long answer has hundreds of chunks);
:class:`StallWatch` keeps one timer for the stream and moves it only when it fires early.
"""

from __future__ import annotations

import asyncio


class StallWatch:
    """The timeouts of a stream after its first chunk, with one timer for the whole stream: each
    wait for a chunk may last ``idle`` seconds and every wait ends by ``deadline`` (loop time, the
    call's total), as an ``asyncio.timeout_at`` around each wait would allow, without arming and
    cancelling a timer per chunk. The timer is armed at the first wait and, when it fires before
    the current wait is due (a later wait started since), armed again for that wait's end; time
    between waits (the consumer's) does not count. At the end of a wait it cancels the waiting
    task, which :meth:`expired` then tells apart from any other cancellation."""

    __slots__ = ("_cancelling", "_deadline", "_fired", "_handle", "_idle", "_loop", "_since", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: float, deadline: float) -> None:
        self._loop = loop
        self._idle = idle
        self._deadline = deadline
        self._handle: asyncio.TimerHandle | None = None
        self._since: float | None = None  # when the current wait began; None between waits
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._fired: str | None = None  # "idle" or "total": the bound that ended the current wait

    def waiting(self) -> None:
        """A wait for the next chunk begins, in the current task."""
        now = self._loop.time()
        self._since = now
        task = self._task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()
        if self._handle is None:
            self._handle = self._loop.call_at(self._due(now), self._check)

    def waited(self) -> None:
        """The wait is over (a chunk, an error, or a cancellation)."""
        self._since = None
        if self._fired is not None and self._task is not None:
            self._task.uncancel()  # this watch's cancellation is spent (raised or swallowed)
            self._fired = None

    def expired(self) -> str | None:
        """The bound that ended the wait ("idle" or "total"), when the cancellation being handled
        is this watch's alone; None for any other cancellation (the client left, a shutdown)."""
        if self._fired is None or self._task is None:
            return None
        fired, self._fired = self._fired, None
        return fired if self._task.uncancel() <= self._cancelling else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _due(self, since: float) -> float:
        return min(since + self._idle, self._deadline)

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:  # between waits: the next wait arms the timer again
            return
        due = self._due(since)
        if self._loop.time() < due:  # a later wait than the one it was armed for
            self._handle = self._loop.call_at(due, self._check)
            return
        self._fired = "total" if due >= self._deadline else "idle"
        assert self._task is not None
        self._task.cancel()
