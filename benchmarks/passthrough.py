"""A bare pass-through: the gateway's HTTP stack forwarding to the stub, with no gateway logic.

The reference target of ``gateway_overhead.py``: what any Python proxy on this stack costs at
the least, so that smallfleet's own cost is what it adds beyond this. The server side is what
``smallfleet serve`` runs (uvicorn, ``loop="uvloop"``, ``http="httptools"``, no access log);
the ASGI app is a plain function (no Starlette, no middleware); the upstream client is one
aiohttp session with a keep-alive pool (the client smallfleet's ``openai`` backend used before
its own, ``backends/http1.py``; kept, so that the reference stays what it was). Each ``POST`` is
forwarded as it came (body, content type) to the same path under ``--upstream``, and the
upstream's status, content type and body are sent back; ``GET /health`` answers
``{"status": "ok"}`` itself.

    python benchmarks/passthrough.py --upstream http://127.0.0.1:PORT --port 8001
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import aiohttp
import uvicorn

HEALTH_BODY = b'{"status":"ok"}'
JSON = b"application/json"


def make_app(upstream: str) -> Any:
    """The ASGI app: forwards every POST to ``upstream`` + path; ``GET /health`` is its own."""
    base = upstream.rstrip("/")
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    connector = aiohttp.TCPConnector(limit=512)
                    session = aiohttp.ClientSession(connector=connector)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if session is not None:
                        await session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] != "POST":
            await _answer(send, 200, JSON, HEALTH_BODY)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        assert session is not None
        async with session.post(base + scope["path"], data=body,
                                headers={"content-type": "application/json"}) as resp:
            payload = await resp.read()
            content_type = resp.headers.get("content-type", "application/json").encode()
            await _answer(send, resp.status, content_type, payload)

    return app


async def _answer(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the stub's base URL, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # the settings of `smallfleet serve` (gateway/cli.py)
    uvicorn.run(make_app(args.upstream), host=args.host, port=args.port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools", timeout_graceful_shutdown=30,
                proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
