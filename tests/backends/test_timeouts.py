"""``timeout_at`` as a ``with`` block: what ``asyncio.timeout_at`` does, on the loop's own timer."""

from __future__ import annotations

import asyncio

import pytest

from backends.timeouts import timeout, timeout_at


async def test_a_block_past_its_time_ends_with_timeout_error():
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError), timeout_at(start + 0.05) as timeout:
        await asyncio.sleep(10)
    assert timeout.expired
    assert 0.049 <= loop.time() - start < 2  # at its time, give or take a loaded machine
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its cancellation is spent


async def test_a_block_done_in_time_leaves_no_timer_and_no_cancellation():
    loop = asyncio.get_running_loop()
    with timeout_at(loop.time() + 0.05) as timeout:
        await asyncio.sleep(0)
    assert not timeout.expired
    with timeout_at(None):  # no deadline: nothing armed
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the first block's time: nothing cancels this task
    assert not timeout.expired


async def test_an_outside_cancellation_is_not_a_timeout():
    """The client leaving (another cancellation) goes through as a cancellation."""
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def waits() -> None:
        with timeout_at(loop.time() + 5):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.ensure_future(waits())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_and_an_outside_cancellation_together_are_a_cancellation():
    """Both fire before the task runs again: the outside one wins, as with asyncio.timeout_at."""
    loop = asyncio.get_running_loop()
    blocks: list[object] = []

    async def waits() -> None:
        with timeout_at(loop.time() + 60) as timeout:
            blocks.append(timeout)
            await asyncio.sleep(10)

    task = asyncio.ensure_future(waits())
    await asyncio.sleep(0)
    blocks[0]._expire()  # type: ignore[attr-defined]  # its time has come...
    task.cancel()  # ...and the client left, in the same turn of the loop
    with pytest.raises(asyncio.CancelledError):
        await task


def test_it_needs_a_task():
    with pytest.raises(RuntimeError), timeout_at(None):  # no loop running, so no task
        pass


async def test_a_delay_counts_from_now_and_none_never_ends():
    """``timeout(delay)``, as ``asyncio.timeout(delay)``: ``delay`` seconds from entering."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError), timeout(0.05):
        await asyncio.sleep(10)
    assert 0.049 <= loop.time() - start < 2
    with timeout(None) as never:
        await asyncio.sleep(0.06)
    assert not never.expired
