"""Where one request's time goes, phase by phase: wall-clock marks along the path of each request.

A CPU profile (``profile_request.py``) says which code burns the loop's CPU under load; at
concurrency 1 latency is also waiting (for the stub, for a second read of its answer) and a
cold cache: the gateway's code and data are evicted while the load generator and the stub run
between two requests, so a step that takes 1 µs in a loop can take several here. This runs
``smallfleet serve`` in this process, as ``profile_request.py`` does (every feature on: an API key
with limits, the request log, metrics), with a ``time.perf_counter()`` mark taken at fixed points
of each request, then prints the median gap between consecutive marks over every request of a
``wrk`` run at ``--concurrency`` (1 by default: one request at a time, so the marks of one
request are not interleaved with another's).

    .venv/bin/python benchmarks/request_phases.py [--seconds 4]
    .venv/bin/python benchmarks/request_phases.py --upstream [--unheld]

``--upstream`` keeps only the points every whole answer passes, held to the first-token deadline
or not (``--unheld``: the model is not held, so the stub is asked for the answer whole), with
``upstream done`` (the upstream's last bytes are in) added, and counts the reads of the
upstream's answer per request.

The marks wrap methods of uvicorn and of the gateway (each wrapper costs ~0.5 µs); the points:

* ``received``: uvicorn has the whole request (``on_message_complete``);
* ``app``: the completion fast path starts (gateway/fast_path.py);
* ``key checked``: the API key is checked (``key_refusal`` returned);
* ``admitted``: the key's limits admitted the request;
* ``parsing``: the endpoint starts reading the body (``Endpoints._read``);
* ``parsed``: the body is parsed and checked;
* ``asked``: ``Gateway.answer`` starts (the request is in backend terms);
* ``chosen``: ``Responder.whole`` starts (a member is chosen);
* ``upstream asked``: the ``openai`` backend builds its upstream request (``EventStream._open``);
* ``upstream sent``: the upstream request is written (``Http1Pool._exchange``);
* ``upstream answered``: the first bytes of the upstream's answer arrive;
* ``upstream done``: its last bytes are in (``--upstream`` only);
* ``first chunk``: the first chunk is out of the resilience layer (the first-token deadline met);
* ``assembled``: the whole answer is assembled (``ResilientBackend._collect`` returned);
* ``answer starts``: uvicorn is handed the answer's status and headers;
* ``sent``: uvicorn has written the answer's body.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.in_process import serve_under_load  # noqa: E402

POINTS = [
    "received", "app", "key checked", "admitted", "parsing", "parsed", "asked", "chosen",
    "upstream asked", "upstream sent", "upstream answered", "first chunk", "assembled",
    "answer starts", "sent",
]  # fmt: skip
UPSTREAM_POINTS = ["received", "upstream sent", "upstream answered", "upstream done", "answer starts", "sent"]


class Marks:
    """The marks of each request, in order; a request starts at ``received``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.on = False

    def start(self) -> None:
        if self.on and self.current:
            self.requests.append(self.current)
        self.current = {"received": time.perf_counter()}

    def mark(self, point: str) -> None:
        self.current.setdefault(point, time.perf_counter())  # the first time it is reached


def _around(owner: Any, name: str, before: str | None, after: str | None, marks: Marks) -> None:
    """Wrap ``owner.name`` (a coroutine function or a plain one) with marks before and after."""
    original: Callable[..., Any] = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            if before:
                marks.mark(before)
            result = await original(*args, **kwargs)
            if after:
                marks.mark(after)
            return result

        setattr(owner, name, wrapped_async)
    else:

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before:
                marks.mark(before)
            result = original(*args, **kwargs)
            if after:
                marks.mark(after)
            return result

        setattr(owner, name, wrapped)


def install(marks: Marks) -> None:
    """The marks' wrappers, before the gateway is built."""
    import uvicorn.protocols.http.httptools_impl as server

    import backends.http1 as http1
    import backends.openai_http as openai_http
    import backends.resilience as resilience
    import gateway.endpoints as endpoints
    import gateway.fast_path as fast_path
    import gateway.service as service
    import gateway.streaming as streaming

    complete = server.HttpToolsProtocol.on_message_complete

    def on_message_complete(self: Any) -> None:
        marks.start()
        complete(self)

    server.HttpToolsProtocol.on_message_complete = on_message_complete  # type: ignore[method-assign]
    send = server.RequestResponseCycle.send

    async def send_marked(self: Any, message: Any) -> None:
        if message["type"] == "http.response.start":
            marks.mark("answer starts")
        await send(self, message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            marks.mark("sent")

    server.RequestResponseCycle.send = send_marked  # type: ignore[method-assign]
    _around(fast_path.CompletionFastPath, "__call__", "app", None, marks)
    _around(fast_path, "key_refusal", None, "key checked", marks)
    _around(fast_path, "admit", None, "admitted", marks)
    _around(endpoints.Endpoints, "_read", "parsing", "parsed", marks)
    _around(service.Gateway, "answer", "asked", None, marks)
    _around(streaming.Responder, "whole", "chosen", None, marks)
    _around(openai_http.EventStream, "_open", "upstream asked", None, marks)
    _around(http1.Http1Pool, "_exchange", "upstream sent", None, marks)
    received = http1._Connection.data_received

    def data_received(self: Any, data: bytes) -> None:
        marks.mark("upstream answered")
        marks.current["reads"] = marks.current.get("reads", 0) + 1
        received(self, data)
        if self.done:
            marks.mark("upstream done")

    http1._Connection.data_received = data_received  # type: ignore[method-assign]
    _around(resilience.ResilientBackend, "_open", None, "first chunk", marks)
    _around(resilience.ResilientBackend, "_collect", None, "assembled", marks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--upstream", action="store_true",
                        help="only the points every whole answer passes, with the upstream's last bytes")
    parser.add_argument("--unheld", action="store_true",
                        help="the model not held to the first-token deadline")
    args = parser.parse_args(argv)
    points = UPSTREAM_POINTS if args.upstream else POINTS
    marks = Marks()
    install(marks)
    from gateway.cli import main as smallfleet

    def measuring(on: bool) -> None:
        marks.on = on

    out = serve_under_load(smallfleet, concurrency=args.concurrency, seconds=args.seconds, warmup=2,
                           measuring=measuring, held=not args.unheld)
    print("\n".join(line for line in out.splitlines() if "50%" in line or "Requests/sec" in line))
    complete = [m for m in marks.requests if all(point in m for point in points)]
    reads = statistics.mean(m["reads"] for m in complete)
    print(f"{len(complete)} of {len(marks.requests)} requests passed every point "
          f"({reads:.2f} reads of the upstream's answer each); median gaps:")
    for before, after in zip(points, points[1:], strict=False):
        gap = statistics.median(m[after] - m[before] for m in complete) * 1e6
        print(f"  {before:>17} -> {after:<17} {gap:7.1f} us")
    total = statistics.median(m["sent"] - m["received"] for m in complete) * 1e6
    print(f"  {'received':>17} -> {'sent':<17} {total:7.1f} us (median of the whole)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
