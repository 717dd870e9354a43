"""Timers that may fire a little late, sharing one event-loop timer per tick.

A request through the gateway arms several timers that almost never fire: the wait for the
client to leave (gateway/sse.py), the wait for the model's first token and for the rest of a whole
answer (backends/resilience.py), each wait for the upstream's bytes (backends/http1.py). Each
``loop.call_later`` (or ``asyncio.timeout_at``) makes a libuv timer, puts it in the loop's heap
and takes it out again, a few microseconds each time, several times a request (issue 14).

:class:`CoarseTimers` rounds each deadline up to the next multiple of :data:`RESOLUTION` (10 ms)
and keeps one loop timer per such tick, whatever the number of deadlines in it: arming a timer
is a dict insert, cancelling it a dict delete. A timer fires when its tick's loop timer does: at
most :data:`RESOLUTION` after its deadline, give or take the loop's own precision (libuv counts
milliseconds). The bounds they serve are seconds long, so 10 ms does not matter to them.

:class:`CoarseTimeout` is ``asyncio.timeout_at`` on these timers, as a plain ``with`` block.
:func:`coarse_timers` gives the running loop's timers (one set per loop and thread).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

RESOLUTION = 0.01  # seconds: how late a timer may fire, and how far apart two loop timers are


class CoarseTimer:
    """One armed timer; :meth:`cancel` disarms it (no effect once it has fired)."""

    __slots__ = ("_args", "_callback", "_tick")

    def __init__(self, tick: dict[CoarseTimer, None], callback: Callable[..., object], args: tuple[Any, ...]):
        self._tick: dict[CoarseTimer, None] | None = tick
        self._callback = callback
        self._args = args

    def cancel(self) -> None:
        tick = self._tick
        if tick is not None:
            self._tick = None
            tick.pop(self, None)

    def _run(self) -> None:
        self._tick = None
        self._callback(*self._args)


class CoarseTimers:
    """The timers of one event loop, rounded up to ticks of ``resolution`` seconds."""

    __slots__ = ("_ticks", "loop", "resolution")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = RESOLUTION) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self.loop = loop
        self.resolution = resolution
        self._ticks: dict[int, dict[CoarseTimer, None]] = {}  # tick number -> its timers, in order

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> CoarseTimer:
        """Call ``callback(*args)`` at the first tick at or after ``when`` (loop time)."""
        number = math.ceil(when / self.resolution)
        tick = self._ticks.get(number)
        if tick is None:
            tick = self._ticks[number] = {}
            self.loop.call_at(number * self.resolution, self._fire, number)
        timer = CoarseTimer(tick, callback, args)
        tick[timer] = None
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> CoarseTimer:
        return self.call_at(self.loop.time() + delay, callback, *args)

    def timeout_at(self, when: float | None) -> CoarseTimeout:
        """A ``with`` block that ends with ``TimeoutError`` at ``when`` (None: never)."""
        return CoarseTimeout(self, when)

    def pending(self) -> int:
        """Timers armed and not yet fired or cancelled (for tests)."""
        return sum(len(tick) for tick in self._ticks.values())

    def _fire(self, number: int) -> None:
        tick = self._ticks.pop(number, None)
        if not tick:
            return
        for timer in list(tick):
            if timer._tick is tick:  # not cancelled by an earlier one's callback
                timer._run()


class CoarseTimeout:
    """``asyncio.timeout_at(when)`` on :class:`CoarseTimers`, as a ``with`` block: at ``when``
    the task that entered it is cancelled, and the cancellation leaves the block as
    ``TimeoutError``; any other cancellation (the client left, a shutdown) goes through as it is.
    ``expired`` says whether it fired."""

    __slots__ = ("_cancelling", "_task", "_timer", "_timers", "_when", "expired")

    def __init__(self, timers: CoarseTimers, when: float | None) -> None:
        self._timers = timers
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._timer: CoarseTimer | None = None
        self._cancelling = 0
        self.expired = False

    def __enter__(self) -> CoarseTimeout:
        task = self._task = asyncio.current_task()
        if task is None:
            raise RuntimeError("CoarseTimeout should be used inside a task")
        self._cancelling = task.cancelling()
        if self._when is not None:
            self._timer = self._timers.call_at(self._when, self._expire)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.expired:
            assert self._task is not None
            # this timeout's cancellation is spent; it is a timeout only if no other is pending
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        assert self._task is not None
        self._task.cancel()


_local = threading.local()  # the timers of the loop running in this thread


def coarse_timers() -> CoarseTimers:
    """The running loop's timers (made at the first call on each loop)."""
    loop = asyncio.get_running_loop()
    timers: CoarseTimers | None = getattr(_local, "timers", None)
    if timers is None or timers.loop is not loop:
        timers = _local.timers = CoarseTimers(loop)
    return timers
