"""until_disconnect: work raced against a client that goes away (gateway/sse.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import sse
from gateway.sse import ClientDisconnected, until_disconnect


class Client:
    """An ASGI ``receive`` whose client leaves when told to."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, str]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def _long_work(cancelled: asyncio.Event) -> str:
    """Work that would take 30 s; sets ``cancelled`` when it is cancelled."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return "never"


async def test_the_work_s_result_when_the_client_stays() -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await until_disconnect(work(), Client().receive) == "answer"


async def test_a_client_that_leaves_cancels_the_work() -> None:
    client, cancelled = Client(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, client.gone.set)
    with pytest.raises(ClientDisconnected):
        await until_disconnect(_long_work(cancelled), client.receive)
    assert cancelled.is_set()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # nothing left pending
    await asyncio.sleep(0)  # the task can still wait: no cancellation is left over


async def test_work_that_swallows_the_cancellation_still_ends_as_a_disconnect() -> None:
    client = Client()

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "cleaned up"
        return "never"

    asyncio.get_running_loop().call_later(0.01, client.gone.set)
    with pytest.raises(ClientDisconnected):
        await until_disconnect(work(), client.receive)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    """A server shutting down cancels the request's task: that is not a client leaving."""

    async def request() -> str:
        return await until_disconnect(asyncio.sleep(30, "never"), Client().receive)

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_work_done_before_the_watch_starts_makes_no_watcher_and_no_receive() -> None:
    """Short work (most answers of a nearby upstream) runs with a timer only: no task is made and
    the client's ``receive`` is never called."""
    calls = 0

    async def receive() -> dict[str, str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    tasks_before = len(asyncio.all_tasks())
    assert await until_disconnect(asyncio.sleep(0, "answer"), receive) == "answer"
    assert len(asyncio.all_tasks()) == tasks_before
    await asyncio.sleep(sse.WATCH_AFTER * 2)
    assert calls == 0


async def test_a_client_gone_before_the_watch_starts_is_noticed_when_it_starts() -> None:
    client, cancelled = Client(), asyncio.Event()
    client.gone.set()  # left at once

    with pytest.raises(ClientDisconnected):
        await until_disconnect(_long_work(cancelled), client.receive)
    assert cancelled.is_set()
