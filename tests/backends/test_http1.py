"""The openai backend's HTTP/1.1 client (backends/http1.py) against real servers on loopback.

Its failures are compared with aiohttp's for the same fault, same timeouts, same server: the
``openai`` backend maps them to smallfleet's errors with the same classes and messages as when it
called aiohttp. What the upstream receives is compared byte for byte with what aiohttp sent."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from yarl import URL

from backends import http1
from backends.errors import BackendTimeout, BackendUnavailable
from backends.http1 import Http1Pool
from backends.openai_http import _HEADERS, OpenAIHTTPBackend, Timeouts
from backends.types import GenerationRequest, Message, SamplingParams

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'{"ok":true}'
CHAT = GenerationRequest(messages=(Message("user", "hi"),), params=SamplingParams(max_tokens=4))
ANSWER = (b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')


class RawServer:
    """A TCP server on loopback running ``handler`` per connection; counts connections and keeps
    every request's head and body as received."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        port = self.server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


def answer(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def _answering(reply: bytes, ssl_context: ssl.SSLContext | None = None) -> RawServer:
    """A server that answers every request of a connection with ``reply``, bytes as they are."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(reply)
            await writer.drain()

    server = RawServer(handler, ssl_context)
    return server


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[..., Http1Pool]]:
    pools: list[Http1Pool] = []

    def make(url: str, **kwargs: float) -> Http1Pool:
        pool = Http1Pool(URL(url), _HEADERS, **kwargs)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.close()


# -- bodies and connection reuse -------------------------------------------------------------


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("wire", "keeps"),
    [
        (answer(OK), True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(b'{"ok"', b":true}"), True),
        (answer(gzip.compress(OK), b"Content-Encoding: gzip"), True),
        (answer(zlib.compress(OK), b"Content-Encoding: deflate"), True),
        (answer(zlib.compress(OK)[2:-4], b"Content-Encoding: deflate"), True),  # raw deflate
        (answer(OK, b"Connection: close"), False),
        (b"HTTP/1.0 200 OK\r\n\r\n" + OK, False),  # until the connection closes
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OK, False),
    ],
    ids=["content-length", "chunked", "gzip", "deflate", "raw-deflate", "close", "http-1.0", "until-eof"],
)
async def test_bodies_of_every_framing_and_reuse_of_kept_alive_connections(pool_for, wire, keeps):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(wire)
            await writer.drain()
            if not keeps:
                return

    server = RawServer(handler)
    async with server as url:
        pool = pool_for(url)
        for _ in range(3):
            response = await pool.request("POST", URL(url + "/v1/chat/completions"), b"{}", 5)
            assert response.status == 200
            assert await response.read() == OK
    assert server.connections == (1 if keeps else 3)


async def test_a_stream_read_as_it_comes_and_a_large_body_past_the_high_water_mark(pool_for):
    big = b"x" * (http1.HIGH_WATER * 3)
    go = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go.wait()
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        await writer.drain()
        await server.read_request(reader)  # the connection was reused
        writer.write(answer(OK))

    server = RawServer(handler)
    async with server as url:
        pool = pool_for(url)
        response = await pool.request("POST", URL(url + "/x"), b"{}", 5)
        assert await response.readany() == b"first"
        go.set()
        await asyncio.sleep(0.05)  # let it all arrive (reading pauses past the high-water mark)
        rest = b""
        while piece := await response.readany():
            rest += piece
        response.release()
        assert rest == big
        assert await (await pool.request("POST", URL(url + "/x"), b"{}", 5)).read() == OK
    assert server.connections == 1


def _streaming(pieces: list[bytes], gap: float, then: str = "end") -> RawServer:
    """A server that answers with a chunked body, ``pieces`` one at a time ``gap`` seconds apart,
    then ends it (``then="end"``) or goes silent (``"silent"``)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            await asyncio.sleep(gap)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if then == "end":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        await asyncio.sleep(30)

    server = RawServer(handler)
    return server


async def test_a_lazy_wait_is_woken_at_the_end_not_at_each_piece(pool_for):
    pieces = [b"one ", b"two ", b"three"]
    async with _streaming(pieces, 0.05) as url:
        loop = asyncio.get_running_loop()
        response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 5, wake_by=loop.time() + 10)
        assert await response.readany(wake_by=loop.time() + 10) == b"one two three"  # whole, at once
        assert await response.readany() == b""
    async with _streaming(pieces, 0.05) as url:  # the same answer read eagerly: piece by piece
        response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 5)
        assert await response.readany() == b"one "


async def test_a_lazy_wait_ends_at_wake_by_with_what_has_arrived(pool_for):
    async with _streaming([b"first"], 0.0, then="silent") as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 5, wake_by=started + 0.3)
        assert await response.readany(wake_by=started + 0.3) == b"first"
        assert 0.25 <= loop.time() - started < 2  # not at once, not at the read timeout
        response.release()


async def test_a_lazy_wait_times_out_on_silence_not_on_its_length(pool_for):
    pieces = [b"a", b"b", b"c", b"d", b"e", b"f"]
    async with _streaming(pieces, 0.1) as url:  # 0.6 s of pieces, none 0.3 s apart
        loop = asyncio.get_running_loop()
        response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 0.3, wake_by=loop.time() + 10)
        assert await response.readany(wake_by=loop.time() + 10) == b"abcdef"
    async with _streaming([b"a"], 0.0, then="silent") as url:
        started = loop.time()
        with pytest.raises(aiohttp.SocketTimeoutError):
            response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 0.3, wake_by=started + 10)
            await response.readany(wake_by=started + 10)
        assert 0.25 <= loop.time() - started < 2


async def test_a_full_buffer_wakes_a_lazy_wait(pool_for):
    big = b"x" * (http1.HIGH_WATER * 4)
    async with _streaming([big], 0.0) as url:
        loop = asyncio.get_running_loop()
        response = await pool_for(url).request("POST", URL(url + "/x"), b"{}", 5, wake_by=loop.time() + 10)
        first = await response.readany(wake_by=loop.time() + 10)
        assert 0 < len(first) < len(big)  # woken by the full buffer before the end
        rest = b""
        while piece := await response.readany(wake_by=loop.time() + 10):
            rest += piece
        assert first + rest == big


async def test_an_idle_connection_the_server_closed_or_kept_too_long_is_not_reused(pool_for):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(OK))
        await writer.drain()
        if server.connections == 1:
            return  # closes the first connection once answered
        while True:
            await server.read_request(reader)
            writer.write(answer(OK))

    server = RawServer(handler)
    async with server as url:
        pool = pool_for(url, keepalive=0.2)
        target = URL(url + "/x")
        assert await (await pool.request("POST", target, b"{}", 5)).read() == OK
        async with asyncio.timeout(10):
            while not all(conn.lost for conn in pool._idle):  # until the server's FIN has arrived
                await asyncio.sleep(0.005)
        assert await (await pool.request("POST", target, b"{}", 5)).read() == OK
        assert server.connections == 2
        assert await (await pool.request("POST", target, b"{}", 5)).read() == OK  # kept alive
        assert server.connections == 2
        await asyncio.sleep(0.45)  # past keepalive: closed by the pool's sweep
        assert await (await pool.request("POST", target, b"{}", 5)).read() == OK
        assert server.connections == 3


async def test_an_answer_released_before_its_end_closes_its_connection(pool_for):
    server = _answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")  # no end
    async with server as url:
        pool = pool_for(url)
        for _ in range(2):
            response = await pool.request("POST", URL(url + "/x"), b"{}", 5)
            assert await response.readany() == b"hi"
            response.release()  # a client gone: the rest is never read
    assert server.connections == 2


async def test_connections_are_limited_and_waiters_served_in_turn(pool_for):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(answer(OK))

    server = RawServer(handler)
    async with server as url:
        pool = pool_for(url, limit=2)

        async def one() -> bytes:
            return await (await pool.request("POST", URL(url + "/x"), b"{}", 5)).read()

        assert await asyncio.gather(*(one() for _ in range(8))) == [OK] * 8
    assert server.connections == 2


# -- what the upstream receives ----------------------------------------------------------------


async def test_the_upstream_receives_the_bytes_aiohttp_sent():
    """The request line, Host, the backend's headers in their order, Accept-Encoding and
    Content-Length, as aiohttp sent them for the backend's session (a POST and the health GET)."""

    server = _answering(answer(OK))
    headers = {**_HEADERS, "authorization": "Bearer sk-up"}
    async with server as url:
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(url + "/v1/chat/completions?a=1", data=b'{"a": 1}',
                                    allow_redirects=False) as response:
                await response.read()
            async with session.get(url + "/v1/models", allow_redirects=False) as response:
                await response.read()
        pool = Http1Pool(URL(url), headers)
        try:
            await (await pool.request("POST", URL(url + "/v1/chat/completions?a=1"), b'{"a": 1}', 5)).read()
            await (await pool.request("GET", URL(url + "/v1/models"), None, 5)).read()
        finally:
            await pool.close()
    assert server.requests[2:] == server.requests[:2]
    assert server.requests[0].startswith(b"POST /v1/chat/completions?a=1 HTTP/1.1\r\nHost: 127.0.0.1:")


# -- failures: the same as aiohttp's -----------------------------------------------------------


_CUT_BY_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + ANSWER[:20]
_CUT_CHUNKS = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\ndata: {\"choices\"\r\n"


def _fault(sends: bytes = b"", *, wait: float = 0.0, reset_after: bool = False) -> Callable[..., Awaitable[None]]:
    """An upstream's misbehaviour: read the request, send ``sends``, wait ``wait`` seconds, then
    end the connection with a reset (``reset_after``) or, as the server does once the handler
    returns, a plain close."""

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if sends:
            writer.write(sends)
            await writer.drain()
        await asyncio.sleep(wait)
        if reset_after:
            reset(writer)

    return handler


_not_http = _fault(b"HELLO THERE\r\n\r\n", wait=0.05)


async def _failure(call: Awaitable[bytes]) -> tuple[type, str]:
    try:
        await call
    except aiohttp.ClientError as exc:
        return type(exc), str(exc)
    raise AssertionError("no failure")


FAULTS = {
    "closed before answering": _fault(),
    "content-length cut short": _fault(_CUT_BY_LENGTH, wait=0.05),
    "chunks cut short": _fault(_CUT_CHUNKS, wait=0.05),
    "reset before answering": _fault(reset_after=True),
    "reset mid-answer": _fault(_CUT_BY_LENGTH, wait=0.05, reset_after=True),
    "silent": _fault(wait=1),
    "stalls mid-answer": _fault(_CUT_BY_LENGTH, wait=1),
}


def _serving(fault: Callable[..., Awaitable[None]]) -> RawServer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await fault(server, reader, writer)

    server = RawServer(handler)
    return server


@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_fails_as_aiohttp_failed(fault):
    async with _serving(FAULTS[fault]) as url:
        target = URL(url + "/v1/chat/completions")
        timeout = aiohttp.ClientTimeout(total=None, connect=0.3, sock_connect=0.3, sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def by_aiohttp() -> bytes:
                async with session.post(target, data=b"{}") as response:
                    return await response.read()

            expected = await _failure(by_aiohttp())
        pool = Http1Pool(URL(url), _HEADERS, connect_timeout=0.3)
        try:
            got = await _failure(_read_all(pool, target))
        finally:
            await pool.close()
    assert got == expected


async def _read_all(pool: Http1Pool, target: URL) -> bytes:
    return await (await pool.request("POST", target, b"{}", 0.3)).read()


async def test_an_answer_that_is_not_http_fails_with_aiohttps_class(pool_for):
    server = _serving(_not_http)
    async with server as url:
        with pytest.raises(aiohttp.ClientResponseError, match="400.*Expected HTTP/"):
            await pool_for(url).request("POST", URL(url + "/x"), b"{}", 1)


async def test_refused_and_pool_timeout_fail_as_aiohttp_failed():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = URL(f"http://127.0.0.1:{port}/v1/chat/completions")
    timeout = aiohttp.ClientTimeout(total=None, connect=0.3, sock_connect=0.3, sock_read=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        expected = await _failure(session.post(refused, data=b"{}"))
    pool = Http1Pool(URL(str(refused.origin())), _HEADERS, connect_timeout=0.3)
    try:
        assert await _failure(pool.request("POST", refused, b"{}", 5)) == expected
    finally:
        await pool.close()
    assert expected[0] is aiohttp.ClientConnectorError and "Cannot connect to host" in expected[1]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.sleep(1)
        writer.write(answer(OK))

    server = RawServer(slow)
    async with server as url:
        target = URL(url + "/v1/chat/completions")
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            busy = asyncio.ensure_future(session.post(target, data=b"{}"))
            await asyncio.sleep(0.05)
            expected = await _failure(session.post(target, data=b"{}"))
            busy.cancel()
        pool = Http1Pool(URL(url), _HEADERS, limit=1, connect_timeout=0.3)
        try:
            busy = asyncio.ensure_future(pool.request("POST", target, b"{}", 5))
            await asyncio.sleep(0.05)
            assert await _failure(pool.request("POST", target, b"{}", 5)) == expected
            busy.cancel()
        finally:
            await pool.close()
    assert expected == (aiohttp.ConnectionTimeoutError, f"Connection timeout to host {target}")


async def test_the_backend_maps_faults_to_the_same_errors():
    """Through the openai backend: refused, dropped mid-answer and silent upstreams."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = OpenAIHTTPBackend("m", f"http://127.0.0.1:{port}/v1")
    await gone.start()
    try:
        with pytest.raises(BackendUnavailable, match=r"cannot connect to model 'm': Cannot connect to host"):
            await gone.chat(CHAT)
        assert (await gone.health()).detail.startswith("cannot connect to model 'm': Cannot connect")
    finally:
        await gone.aclose()
    for fault, error, message in [
        (FAULTS["content-length cut short"], BackendUnavailable,
         "connection to model 'm' failed: Response payload is not completed: <ContentLengthError: 400, "
         "message='Not enough data to satisfy content length header (received 20 of 500 bytes).'>"),
        (FAULTS["closed before answering"], BackendUnavailable, "cannot connect to model 'm': Server disconnected"),
        (FAULTS["silent"], BackendTimeout, "model 'm' timed out: ReadTimeout"),
    ]:
        async with _serving(fault) as url:
            backend = OpenAIHTTPBackend("m", url + "/v1", timeouts=Timeouts(connect=0.3, read=0.3))
            await backend.start()
            try:
                with pytest.raises(error) as raised:
                    await backend.chat(CHAT)
                assert str(raised.value.message) == message
                with pytest.raises(error):
                    [c async for c in backend.stream_chat(CHAT)]
            finally:
                await backend.aclose()


# -- TLS ---------------------------------------------------------------------------------------


def _self_signed(tmp_path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_tls_with_a_trusted_certificate_and_an_untrusted_one(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    server = _answering(answer(OK), server_context)
    async with server as url:
        base = URL(url).with_host("localhost")
        trusting = ssl.create_default_context(cafile=cert)
        pool = Http1Pool(base, _HEADERS, ssl_context=trusting)
        try:
            for _ in range(2):
                assert await (await pool.request("POST", base / "x", b"{}", 5)).read() == OK
        finally:
            await pool.close()
        assert server.connections == 1

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context())) as session:
            expected = await _failure(session.post(base / "x", data=b"{}"))
        pool = Http1Pool(base, _HEADERS, ssl_context=ssl.create_default_context())
        try:
            assert await _failure(pool.request("POST", base / "x", b"{}", 5)) == expected
        finally:
            await pool.close()
    assert expected[0] is aiohttp.ClientConnectorCertificateError


async def test_bytes_after_an_answer_are_ignored_and_its_connection_not_reused(pool_for):
    server = _answering(answer(OK) + answer(b'{"extra":1}'))  # one request, two answers
    async with server as url:
        pool = pool_for(url)
        for _ in range(2):
            response = await pool.request("POST", URL(url + "/x"), b"{}", 5)
            assert (response.status, await response.read()) == (200, OK)
            assert response.headers["content-length"] == str(len(OK))
    assert server.connections == 2


async def test_an_informational_answer_before_the_answer_is_skipped(pool_for):
    server = _answering(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + answer(OK, b"X-Real: yes"))
    async with server as url:
        pool = pool_for(url)
        for _ in range(2):
            response = await pool.request("POST", URL(url + "/x"), b"{}", 5)
            assert (response.status, await response.read()) == (200, OK)
            assert response.headers["x-real"] == "yes" and "link" not in response.headers
    assert server.connections == 1
