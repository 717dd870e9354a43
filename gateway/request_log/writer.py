"""The request log the gateway talks to: an in-memory queue and one writer thread.

``record()`` runs on the event loop on the request path, so it only appends to
a bounded deque. One thread owns the database connection and does everything
else, in order: every ``FLUSH_INTERVAL_S`` (sooner once ``BATCH_SIZE`` records
wait) it commits what is pending in transactions of at most ``BATCH_SIZE``
rows; before each command (flush, feedback, reads) it first commits every
record enqueued before that command, so a command sees all earlier records.
Async callers wait on a future the thread resolves; the loop never blocks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.request_log.errors import RequestLogUnavailable
from gateway.request_log.records import Feedback, FeedbackResult, RequestRecord, StoredKey
from gateway.request_log.store import SqlStore

BATCH_SIZE = 256
FLUSH_INTERVAL_S = 0.05
MAX_PENDING = 100_000

T = TypeVar("T")
logger = logging.getLogger("smallfleet.request_log")


@dataclass(slots=True)
class _Command:
    run: Callable[[SqlStore], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    last: bool = False  # the writer thread ends after this one


_WAKE = object()  # "a full batch is waiting"


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up waiting (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class BatchingRequestLog:
    """A :class:`~gateway.request_log.records.RequestLog` over a synchronous :class:`SqlStore`."""

    def __init__(
        self,
        store: SqlStore,
        *,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_pending: int = MAX_PENDING,
        database_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.dropped = 0  # records refused because the queue was full or the log closed
        self.failed = 0  # records the database refused (counted by the writer thread)
        self._database_errors = database_errors
        self._pending: collections.deque[RequestRecord] = collections.deque()
        self._commands: queue.SimpleQueue[_Command | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._write_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and migrate on the writer thread, which then starts writing."""
        if self._thread is not None:
            raise RuntimeError("the request log is already started")
        loop = asyncio.get_running_loop()
        opening = _Command(lambda store: store.open(), loop, loop.create_future())
        self._thread = threading.Thread(
            target=self._run, args=(opening,), name="request-log-writer", daemon=True
        )
        self._thread.start()
        try:
            await opening.future
        except BaseException:
            self._closed = True
            await asyncio.to_thread(self._thread.join)
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        await self._stop()

    async def _stop(self) -> None:
        """Write what is pending, close the connection, end the thread; raise a write failure."""
        try:
            await self._call(self._close_store, last=True)
        finally:
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)

    def _close_store(self, store: SqlStore) -> None:
        store.close()
        self._report_write_error(store)

    # -- the request path ----------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        pending = self._pending
        if self._closed or len(pending) >= self.max_pending:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) == self.batch_size:
            self._commands.put(_WAKE)

    # -- commands ------------------------------------------------------------------------

    async def flush(self) -> None:
        await self._call(self._report_write_error)

    async def add_feedback(self, feedback: Feedback) -> FeedbackResult:
        await self.flush()
        result: FeedbackResult = await self._call(lambda store: store.add_feedback(feedback))
        return result

    async def get(self, request_id: str) -> RequestRecord | None:
        record: RequestRecord | None = await self._call(lambda store: store.get(request_id))
        return record

    async def feedback_rows(self, since: float | None = None) -> list[tuple[RequestRecord, Feedback]]:
        rows: list[tuple[RequestRecord, Feedback]] = await self._call(lambda s: s.feedback_rows(since))
        return rows

    async def count(self) -> int:
        n: int = await self._call(lambda store: store.count())
        return n

    # -- API keys (see gateway/keys.py) ---------------------------------------------------

    async def save_key(self, key: StoredKey) -> None:
        await self._call(lambda store: store.save_key(key))

    async def revoke_key(self, key_id: str, at: float) -> bool:
        revoked: bool = await self._call(lambda store: store.revoke_key(key_id, at))
        return revoked

    async def keys(self) -> list[StoredKey]:
        stored: list[StoredKey] = await self._call(lambda store: store.keys())
        return stored

    async def spend_by_key(self) -> dict[str, tuple[int, float]]:
        await self.flush()
        spend: dict[str, tuple[int, float]] = await self._call(lambda store: store.spend_by_key())
        return spend

    async def _call(self, run: Callable[[SqlStore], Any], *, last: bool = False) -> Any:
        if self._thread is None or not self._thread.is_alive() or (self._closed and not last):
            raise RuntimeError("the request log is not running (start() it; aclose() ends it)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._commands.put(_Command(run, loop, future, last))
        return await future

    def _report_write_error(self, store: SqlStore) -> None:
        error, self._write_error = self._write_error, None
        if error is not None:
            raise error

    # -- the writer thread ---------------------------------------------------------------

    def _run(self, opening: _Command) -> None:
        if not self._execute(opening):
            self.store.close()
            return
        while True:
            try:
                command = self._commands.get(timeout=self.flush_interval_s)
            except queue.Empty:
                command = None
            self._write_pending()
            if isinstance(command, _Command):
                self._execute(command)
                if command.last:
                    return

    def _execute(self, command: _Command) -> bool:
        """Run a command and hand its outcome to the caller's loop; return whether it succeeded."""
        result: Any = None
        error: BaseException | None = None
        try:
            result = command.run(self.store)
        except self._database_errors as exc:
            error = RequestLogUnavailable(f"the request log's database failed: {exc}")
            error.__cause__ = exc
        except BaseException as exc:  # delivered to the awaiting caller
            error = exc
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            command.loop.call_soon_threadsafe(_resolve, command.future, result, error)
        return error is None

    def _write_pending(self) -> None:
        """Commit the records pending now, in batches; later arrivals wait for the next round."""
        pending = self._pending
        remaining = len(pending)
        while remaining:
            batch = [pending.popleft() for _ in range(min(remaining, self.batch_size))]
            remaining -= len(batch)
            self._write_batch(batch)

    def _write_batch(self, batch: list[RequestRecord]) -> None:
        for attempt in (1, 2):  # the second attempt reconnects; inserts are idempotent
            try:
                self.store.insert(batch)
                return
            except Exception as exc:  # the thread must outlive any failure
                if attempt == 1:
                    logger.warning("request log: writing %d records failed, retrying: %s", len(batch), exc)
                else:
                    self.failed += len(batch)
                    logger.error("request log: %d records could not be written: %s", len(batch), exc)
                    self._write_error = RequestLogUnavailable(
                        f"{len(batch)} request log records could not be written: {exc}"
                    )
                    self._write_error.__cause__ = exc
