"""Coarse timers: rounded up to a tick, one loop timer per tick, cancelled without a trace; and
``asyncio.timeout_at`` on them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from backends.coarse_timers import CoarseTimers, coarse_timers


class ManualLoop:
    """The two things CoarseTimers asks of a loop, on a clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.armed: list[tuple[float, Any, tuple[Any, ...]]] = []  # loop timers: (when, callback, args)

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> None:
        self.armed.append((when, callback, args))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = sorted((t for t in self.armed if t[0] <= self.now), key=lambda t: t[0])
        self.armed = [t for t in self.armed if t[0] > self.now]
        for _, callback, args in due:
            callback(*args)


def test_timers_fire_at_the_first_tick_after_their_deadline_never_before():
    loop = ManualLoop()
    timers = CoarseTimers(loop, resolution=0.01)  # type: ignore[arg-type]
    fired: list[str] = []
    timers.call_later(0.0301, fired.append, "a")  # due at 100.0301: its tick ends at 100.04
    loop.advance(0.03)
    assert fired == []
    loop.advance(0.0099)
    assert fired == []  # 100.0399: past the deadline, not yet at the tick
    loop.advance(0.0001)
    assert fired == ["a"]
    assert timers.pending() == 0


def test_timers_in_one_tick_share_one_loop_timer_and_fire_in_order():
    loop = ManualLoop()
    timers = CoarseTimers(loop, resolution=0.01)  # type: ignore[arg-type]
    fired: list[int] = []
    for i in range(50):
        timers.call_at(100.0 + 0.0001 * (i + 1), fired.append, i)  # all within (100.00, 100.01]
    timers.call_at(100.5, fired.append, 99)
    assert len(loop.armed) == 2  # one per tick, not one per timer
    loop.advance(0.01)
    assert fired == list(range(50))
    loop.advance(1)
    assert fired[-1] == 99


def test_a_cancelled_timer_never_fires_and_is_not_kept():
    loop = ManualLoop()
    timers = CoarseTimers(loop, resolution=0.01)  # type: ignore[arg-type]
    fired: list[str] = []
    kept = timers.call_later(60, fired.append, "kept")
    for _ in range(1000):
        timers.call_later(60, fired.append, "cancelled").cancel()
    assert timers.pending() == 1  # cancelled timers hold nothing for the minute to their tick
    kept.cancel()
    kept.cancel()  # twice: no effect
    loop.advance(61)
    assert fired == [] and timers.pending() == 0
    timers.call_later(1, fired.append, "later")
    loop.advance(2)
    assert fired == ["later"]


def test_resolution_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        CoarseTimers(ManualLoop(), resolution=0)  # type: ignore[arg-type]


async def test_a_coarse_timeout_ends_its_block_with_timeout_error():
    timers = coarse_timers()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError), timers.timeout_at(start + 0.05) as timeout:
        await asyncio.sleep(10)
    elapsed = loop.time() - start
    assert timeout.expired
    assert 0.049 <= elapsed < 0.05 + timers.resolution + 0.5  # a tick late at most, give or take load
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its cancellation is spent
    assert timers.pending() == 0


async def test_a_block_done_in_time_leaves_no_timer_and_no_cancellation():
    timers = coarse_timers()
    loop = asyncio.get_running_loop()
    with timers.timeout_at(loop.time() + 5) as timeout:
        await asyncio.sleep(0)
    assert not timeout.expired and timers.pending() == 0
    with timers.timeout_at(None):  # no deadline: nothing armed
        assert timers.pending() == 0
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # still running normally: nothing cancels this task later


async def test_an_outside_cancellation_is_not_a_timeout():
    """The client leaving (another cancellation) goes through as a cancellation."""
    timers = coarse_timers()
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def waits(when: float) -> None:
        with timers.timeout_at(when):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.ensure_future(waits(loop.time() + 5))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timers.pending() == 0


async def test_each_loop_and_thread_has_its_own_timers():
    mine = coarse_timers()
    assert coarse_timers() is mine and mine.loop is asyncio.get_running_loop()
    seen: list[CoarseTimers] = []

    async def other() -> None:
        seen.append(coarse_timers())

    thread = threading.Thread(target=lambda: asyncio.run(other()))
    thread.start()
    thread.join()
    assert seen[0] is not mine and seen[0].loop is not mine.loop
    assert coarse_timers() is mine
