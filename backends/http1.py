"""A small HTTP/1.1 client for the ``openai`` backend's upstream calls.

The answers of an OpenAI-compatible server are small and often streamed as one HTTP chunk per
event; aiohttp handles each chunk in Python several times over (its stream reader's per-chunk
bookkeeping was most of the gateway's upstream cost). This client parses with httptools (the
llhttp parser uvicorn's server side uses), keeps a whole read's body pieces in one list and hands
them out joined, and does nothing else per chunk.

It keeps what the ``openai`` backend promised while it went through aiohttp:

* **the same request bytes**: the request line, ``Host`` (without a default port), the
  backend's headers in their order, ``Accept-Encoding: gzip, deflate`` (what it decodes),
  ``Content-Length`` for a body; no redirect followed, no cookies, no proxy;
* **the same timeouts**: ``connect`` bounds the wait for a pooled connection plus opening one
  (name resolution, TCP, TLS); ``read`` is the longest silence while waiting for bytes;
* **connection reuse**: a keep-alive pool (``limit`` connections, idle ones closed after
  ``keepalive`` seconds, most recently used first), a connection dropped when the server closes
  it, asks to close it, or an answer was not read to its end;
* **the same failures**: it raises aiohttp's own exception classes with aiohttp's messages
  (``Cannot connect to host ...``, ``Connection timeout to host ...``, ``Server disconnected``,
  ``Response payload is not completed: <ContentLengthError: ...>``, ``Timeout on reading data
  from socket`` ...), connects the way aiohttp's connector does (its resolver, aiohappyeyeballs,
  the same TLS context and server name), so that ``_client_failure`` in
  ``backends/openai_http.py`` maps them to the same error classes and messages as before.

A reader that does not need the body as it comes may wait *lazily* (``wake_by``): it is woken
when the answer has ended, has failed, fills the buffer, or at ``wake_by`` (a loop time),
rather than at every piece. A whole answer held to a first-token deadline is read this way
(``ResilientBackend``): waking its task for the first piece, while the rest is still arriving,
cost more than the whole answer's parse at c=1 (benchmarks/README.md). The read timeout stays
the longest silence: a piece that arrives without waking the reader still counts as sound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import zlib
from collections.abc import Mapping
from typing import Any

import aiohappyeyeballs
import httptools
from aiohttp import client_exceptions as errors
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from aiohttp.helpers import is_ip_address
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

ACCEPT_ENCODING = "gzip, deflate"  # aiohttp's default without brotli or zstd installed
HAPPY_EYEBALLS_DELAY = 0.25  # aiohttp's default
HIGH_WATER = 1 << 18  # bytes buffered before reading from the socket pauses
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds to get a connection (from the pool, or a new one)
KEEPALIVE_SECONDS = 5.0  # how long an idle pooled connection is kept (httpx's default)
_READ_TIMEOUT_MESSAGE = "Timeout on reading data from socket"


class Response:
    """An answer whose status and headers are in; its body is read with :meth:`readany` (what
    has arrived, at least one byte; ``b""`` at its end) or :meth:`read` (all of it). Release it
    (:meth:`release`, or :meth:`read` does) to give its connection back to the pool, which
    happens only when the answer was read to its end."""

    __slots__ = ("_conn", "_headers", "_raw", "status")

    def __init__(self, status: int, conn: _Connection) -> None:
        self.status = status
        self._conn: _Connection | None = conn
        self._raw = conn.raw_headers  # a new list per answer: still this answer's once released
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
                for name, value in self._raw
            ))
        return self._headers

    async def readany(self, wake_by: float | None = None) -> bytes:
        """What has arrived of the body, at least one byte (``b""`` at its end); with ``wake_by``
        (a loop time), the wait for it is lazy (:meth:`_Connection.wait`)."""
        conn = self._conn
        if conn is None:
            return b""
        return await conn.readany(wake_by)

    async def read(self) -> bytes:
        pieces: list[bytes] = []
        try:
            while piece := await self.readany():
                pieces.append(piece)
        finally:
            self.release()
        return b"".join(pieces)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One connection to the upstream, and the answer being read on it (httptools callbacks)."""

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.reusable = True
        self.busy = False  # an answer is expected or being read
        self.idle_since = 0.0
        self.read_timeout = 0.0
        self.url: URL | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.wake_by: float | None = None  # a lazy wait's (loop time): see wait()
        self.last_data = 0.0  # loop time of the last bytes a lazy wait was not woken for
        self._timers: list[asyncio.TimerHandle] = []  # the current wait's
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.done = False
        self.exc: BaseException | None = None
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.length: int | None = None
        self.chunked = False
        self.decoder: Any = None
        self.encoding = ""

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.wake_by is not None:  # only a lazy wait's read timeout asks when bytes came
            self.last_data = self.loop.time()
        if not self.busy or self.done or self.exc is not None:
            # bytes nobody asked for (after the answer, or after a failure): not reusable
            self.reusable = False
            if not self.busy and self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # not HTTP (or a body that does not decode: failed already)
            self.reusable = False
            if not self.done:  # else a second answer began after this one's end: ignored
                self._fail(self._parse_error(exc))
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        waiter = self.waiter
        # a lazy wait (wake_by) is woken only by the end, a failure or a full buffer
        wake = self.wake_by is None or self.done or self.exc is not None or self.paused
        if wake and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        self.transport = None
        if self.busy and not self.done and self.exc is None:
            failure = self._lost_error(exc)
            if failure is not None:
                self._fail(failure)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.pool._lost(self)

    # -- httptools callbacks --------------------------------------------------
    def on_message_begin(self) -> None:
        if self.done:  # a second answer to one request: stop parsing (data_received ignores it)
            raise httptools.HttpParserCallbackError("a second answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # informational (103 Early Hints...):
            self.raw_headers = []  # skipped, as aiohttp skips it; the answer follows
            return
        self.headers_done = True
        for name, value in self.raw_headers:
            lower = name.lower()
            if lower == b"content-length":
                with contextlib.suppress(ValueError):  # llhttp has checked it already
                    self.length = int(value)
            elif lower == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif lower == b"content-encoding":
                encoding = value.strip().lower()
                if encoding in (b"gzip", b"deflate"):
                    self.encoding = encoding.decode()

    def on_body(self, body: bytes) -> None:
        self.received += len(body)
        if self.encoding:
            body = self._decode(body)
            if not body:
                return
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an informational answer
            return
        if self.decoder is not None:
            tail = self.decoder.flush()
            if tail:
                self.body.append(tail)
        self.done = True
        if not self.parser.should_keep_alive():
            self.reusable = False

    # -- the reader's side -----------------------------------------------------
    async def readany(self, wake_by: float | None = None) -> bytes:
        """What has arrived of the body (joined), waiting for some if none has; ``b""`` at its end.
        With ``wake_by``, a lazy wait (:meth:`wait`)."""
        while True:
            if self.exc is not None:
                raise self.exc
            body = self.body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                self.buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.done:
                return b""
            await self.wait(wake_by)

    async def wait(self, wake_by: float | None = None) -> None:
        """Until something happens on the connection, at most ``read_timeout`` seconds of silence.

        With ``wake_by`` (a loop time still ahead), lazily: bytes that arrive do not end the wait
        unless they end the answer or fill the buffer; the wait ends at ``wake_by`` at the latest.
        """
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        self.wake_by = wake_by if wake_by is not None and wake_by > loop.time() else None
        timers = self._timers = [loop.call_later(self.read_timeout, self._timed_out, waiter)]
        if self.wake_by is not None:
            timers.append(loop.call_at(self.wake_by, _wake, waiter))
        try:
            await waiter
        finally:
            for timer in timers:
                timer.cancel()
            self.waiter = self.wake_by = None

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        quiet_until = self.last_data + self.read_timeout  # bytes from before this wait: in the past
        if self.wake_by is not None and quiet_until > self.loop.time():
            # a lazy wait heard bytes it was not woken for: the silence began with the last of them
            self._timers[0] = self.loop.call_at(quiet_until, self._timed_out, waiter)
            return
        self.reusable = False
        self._fail(errors.SocketTimeoutError(_READ_TIMEOUT_MESSAGE))
        waiter.set_result(None)

    def finish(self) -> None:
        """The answer is released: back to the pool if it was read to its end, else closed."""
        self.busy = False
        if self.done and self.exc is None and self.reusable and not self.lost:
            self.pool._put_back(self)
        else:
            self.close()
            self.pool._dropped(self)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # -- failures -------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.exc is None:
            self.exc = exc

    def _lost_error(self, exc: Exception | None) -> BaseException | None:
        """What aiohttp's protocol raised for a connection lost before the answer's end; None
        for an answer read until the connection closes (that is its end)."""
        if self.headers_done:
            if self.chunked:
                underlying: Exception = TransferEncodingError(
                    "Not enough data to satisfy transfer length header."
                )
            elif self.length is not None:
                underlying = ContentLengthError(
                    "Not enough data to satisfy content length header "
                    f"(received {self.received} of {self.length} bytes)."
                )
            else:  # read until the connection closes: that is the answer's end
                if self.decoder is not None:
                    tail = self.decoder.flush()
                    if tail:
                        self.body.append(tail)
                self.done = True
                return None
            message = f"Response payload is not completed: {underlying!r}"
            if exc is not None:
                message = f"{message}. {exc!r}"
            return errors.ClientPayloadError(message)
        if isinstance(exc, OSError):
            return errors.ClientOSError(*exc.args)
        return errors.ServerDisconnectedError()

    def _parse_error(self, exc: Exception) -> BaseException:
        """An answer that is not HTTP: aiohttp's class for it (its parser's message differs)."""
        url = self.url or URL()
        info = RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
        return errors.ClientResponseError(info, (), status=400, message=str(exc) or type(exc).__name__)

    def _decode(self, data: bytes) -> bytes:
        if self.decoder is None:
            if self.encoding == "gzip":
                self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif data[0] & 0x0F == 8:  # a zlib stream, as the RFC says
                self.decoder = zlib.decompressobj(zlib.MAX_WBITS)
            else:  # raw deflate, as some servers send it (aiohttp accepts it too)
                self.decoder = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            return bytes(self.decoder.decompress(data))
        except zlib.error as exc:
            self.reusable = False
            self._fail(errors.ClientPayloadError(f"Can not decode content-encoding: {self.encoding}"))
            raise httptools.HttpParserCallbackError() from exc


class Http1Pool:
    """Keep-alive connections to one upstream (``base``: its scheme, host and port), and
    requests over them (:meth:`request`)."""

    def __init__(
        self,
        base: URL,
        headers: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 100,
        keepalive: float = KEEPALIVE_SECONDS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        # a URL aiohttp would refuse is refused at each request, as aiohttp did
        self._invalid: type[errors.ClientError] | None = None
        if base.scheme not in ("http", "https"):
            self._invalid = errors.NonHttpUrlClientError
        elif not base.raw_host:
            self._invalid = errors.InvalidUrlClientError
        self.is_ssl = base.scheme == "https"
        self.host = base.raw_host or ""
        self.port = base.port or (443 if self.is_ssl else 80)
        self.ssl_context = (ssl_context or ssl.create_default_context()) if self.is_ssl else None
        self.limit = limit
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self._key = ConnectionKey(self.host, self.port, self.is_ssl, True, None, None, None)
        lines = [f"Host: {base.host_port_subcomponent}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}\r\n")
        self._head = "".join(lines).encode("utf-8")
        self._idle: list[_Connection] = []
        self._open = 0  # connections held by a request or being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._resolver: Any = None
        self._closed = False

    async def request(
        self, method: str, url: URL, body: bytes | None, read_timeout: float, wake_by: float | None = None
    ) -> Response:
        """Send one request and wait for its answer's status and headers; with ``wake_by``,
        lazily (:meth:`_Connection.wait`): the answer may then be whole by the time it returns."""
        if self._invalid is not None:
            raise self._invalid(url)
        conn = self._take_idle()
        reused = conn is not None
        if conn is None:
            conn = await self._acquire(url)
        try:
            return await self._exchange(conn, method, url, body, read_timeout, wake_by)
        except (errors.ServerDisconnectedError, errors.ClientOSError):
            # aiohttp sends an idempotent request again, once, when a reused connection dropped
            if not (reused and method == "GET"):
                raise
        conn = await self._acquire(url)
        return await self._exchange(conn, method, url, body, read_timeout, wake_by)

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        url: URL,
        body: bytes | None,
        read_timeout: float,
        wake_by: float | None = None,
    ) -> Response:
        conn._reset()
        conn.busy = True
        conn.url = url
        conn.read_timeout = read_timeout
        head = f"{method} {url.raw_path_qs} HTTP/1.1\r\n".encode() + self._head
        if body is None:
            message = head + b"\r\n"
        else:
            message = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        try:
            assert conn.transport is not None
            conn.transport.write(message)
            while not conn.headers_done:
                if conn.exc is not None:
                    raise conn.exc
                await conn.wait(wake_by)
        except BaseException:
            conn.finish()
            raise
        return Response(conn.parser.get_status_code(), conn)

    # -- the pool -------------------------------------------------------------
    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.lost or now - conn.idle_since > self.keepalive:
                conn.close()
                self._all.discard(conn)
                continue
            self._open += 1
            return conn
        return None

    async def _acquire(self, url: URL) -> _Connection:
        """A connection for one request: a free one, or a new one once there is room, within the
        connect timeout."""
        if self._closed:
            raise errors.ClientConnectionError("Session is closed")
        try:
            async with asyncio.timeout(self.connect_timeout):
                while True:
                    conn = self._take_idle()
                    if conn is not None:
                        return conn
                    if self._open < self.limit:
                        self._open += 1
                        try:
                            return await self._connect()
                        except BaseException:
                            self._open -= 1
                            self._wake_one()
                            raise
                    waiter: asyncio.Future[None] = self.loop.create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                        elif waiter.done() and not waiter.cancelled():
                            self._wake_one()  # pass the turn on
                        raise
        except TimeoutError as exc:
            raise errors.ConnectionTimeoutError(f"Connection timeout to host {url}") from exc

    async def _connect(self) -> _Connection:
        loop = self.loop
        key = self._key
        addr_infos = await self._addresses()
        try:
            sock = await aiohappyeyeballs.start_connection(
                addr_infos=addr_infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, loop=loop
            )
            if self.ssl_context is not None:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), sock=sock, ssl=self.ssl_context,
                    server_hostname=self.host.rstrip("."),
                )
            else:
                _, conn = await loop.create_connection(lambda: _Connection(self), sock=sock)
        except ssl.CertificateError as exc:
            raise errors.ClientConnectorCertificateError(key, exc) from exc
        except ssl.SSLError as exc:
            raise errors.ClientConnectorSSLError(key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                raise
            raise errors.ClientConnectorError(key, exc) from exc
        self._all.add(conn)
        return conn

    async def _addresses(self) -> list[Any]:
        """Where to connect, as aiohttp's connector finds it (an address as it is, a name through
        aiohttp's default resolver)."""
        host, port = self.host, self.port
        if is_ip_address(host):
            hosts = [(host, port, socket.AF_INET6 if ":" in host else socket.AF_INET)]
        else:
            if self._resolver is None:
                self._resolver = DefaultResolver()
            try:
                found = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
            except OSError as exc:
                if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                    raise
                raise errors.ClientConnectorDNSError(self._key, exc) from exc
            hosts = [(item["host"], item["port"], item["family"]) for item in found]
        infos = []
        for address, at, family in hosts:
            addr = (address, at, 0, 0) if family == socket.AF_INET6 else (address, at)
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr))
        return infos

    def _put_back(self, conn: _Connection) -> None:
        self._open -= 1
        if self._closed:
            conn.close()
        else:
            conn.idle_since = self.loop.time()
            self._idle.append(conn)
            if self._sweep is None:
                self._sweep = self.loop.call_later(self.keepalive, self._close_expired)
        self._wake_one()

    def _dropped(self, conn: _Connection) -> None:
        self._open -= 1
        self._all.discard(conn)
        self._wake_one()

    def _lost(self, conn: _Connection) -> None:
        if not conn.busy:
            self._all.discard(conn)  # an idle one: dropped from the idle list when next met

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_expired(self) -> None:
        self._sweep = None
        now = self.loop.time()
        keep = [c for c in self._idle if not c.lost and now - c.idle_since <= self.keepalive]
        for conn in self._idle:
            if conn not in keep:
                conn.close()
                self._all.discard(conn)
        self._idle[:] = keep
        if keep:
            self._sweep = self.loop.call_later(self.keepalive, self._close_expired)

    async def close(self) -> None:
        """Close every connection (an answer still being read fails as the connection drops)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(errors.ClientConnectionError("Session is closed"))
