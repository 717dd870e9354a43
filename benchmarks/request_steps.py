"""The steps of one request, each timed warm in a loop: what a step costs at the least.

At concurrency 1 each step costs several times this (the caches are cold between requests:
``request_phases.py``); these figures say which steps are worth making cheaper. The request and
the stub's streamed answer are the ones ``gateway_overhead.py`` uses.

    .venv/bin/python benchmarks/request_steps.py [--number 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import uvloop  # noqa: E402
from starlette.responses import Response  # noqa: E402

from backends.assembly import Assembly  # noqa: E402
from backends.openai_sse import EventParser  # noqa: E402
from backends.types import GenerationRequest, Message, SamplingParams, ToolChoice  # noqa: E402
from benchmarks.gateway_overhead import BENCH_KEY, BENCH_KEY_LIMITS, REQUEST_BODY  # noqa: E402
from tests.stub_upstream import streamed_chat_answer  # noqa: E402


def steps() -> dict[str, Callable[[], object]]:
    os.environ["SMALLFLEET_API_KEYS"] = f"bench:{BENCH_KEY}"
    os.environ["SMALLFLEET_KEY_LIMITS"] = orjson.dumps(BENCH_KEY_LIMITS).decode()
    from gateway.access import AccessPolicy
    from gateway.auth import key_refusal
    from gateway.endpoints import _chat_generation, parse
    from gateway.keys import KeyStore
    from gateway.limits import Limiter
    from gateway.metrics import GatewayMetrics
    from gateway.protocol import ChatCompletionRequest
    from gateway.request_id import new_request_id
    from gateway.settings import Settings

    body = orjson.dumps(REQUEST_BODY)
    parsed = parse(ChatCompletionRequest, body)
    keys = KeyStore.from_settings(Settings.from_environ())
    key = keys.all()[0]
    limiter = Limiter(keys, GatewayMetrics())
    scope = {"headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {BENCH_KEY}".encode())],
             "client": ("127.0.0.1", 5555)}
    access = AccessPolicy()
    answer = streamed_chat_answer(REQUEST_BODY)  # the stub's 9 events
    request = GenerationRequest(messages=(Message("user", "Say hello"),))
    events = [line[6:] for line in answer.split(b"\n") if line.startswith(b"data: {")]

    def parse_and_assemble() -> object:
        chunks: list[Any] = []
        EventParser("stub", request).feed(answer, chunks)
        assembly = Assembly(request)
        assembly.add_all(chunks)
        return assembly.completion()

    return {
        "key check (request id excluded)": lambda: key_refusal(scope, keys, access),
        "request id": new_request_id,
        "uuid.uuid4().hex (what a request id was)": lambda: uuid.uuid4().hex,
        "pydantic parse of the body": lambda: parse(ChatCompletionRequest, body),
        "the request in backend terms (_chat_generation)": lambda: _chat_generation(parsed),
        "GenerationRequest(...) alone": lambda: GenerationRequest(
            messages=(), params=SamplingParams(), n=1, tools=(), tool_choice=ToolChoice(),
            parallel_tool_calls=True, response_format=None, vendor_fields={}),
        "SamplingParams(...) alone": lambda: SamplingParams(max_tokens=16),
        "the answer's 9 events parsed and assembled": parse_and_assemble,
        "orjson.loads of the 9 events alone": lambda: [orjson.loads(e) for e in events],
        "limit headers": lambda: limiter.headers(key),
    }


async def loop_steps(number: int) -> dict[str, float]:
    """Steps that need a running loop (uvloop, as smallfleet serve runs), µs each."""
    loop = asyncio.get_running_loop()

    async def nothing() -> None:
        return None

    async def scope_send(message: object) -> None:
        return None

    async def timed(coroutine_fn: Callable[[], Any]) -> float:
        started = time.perf_counter()
        for _ in range(number):
            await coroutine_fn()
        return (time.perf_counter() - started) / number * 1e6

    async def timeout_block() -> None:
        async with asyncio.timeout_at(loop.time() + 10):
            await nothing()

    async def timer() -> None:
        loop.call_later(10, int).cancel()

    payload = orjson.dumps({"id": "x" * 40, "choices": [{"text": "Hello from the stub upstream."}]})
    headers = {"x-smallfleet-model": "stub", "x-smallfleet-route": "stub"}
    http = {"type": "http"}

    async def starlette_response() -> None:
        await Response(payload, media_type="application/json", headers=headers)(http, None, scope_send)

    async def direct_messages() -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        await scope_send({"type": "http.response.start", "status": 200, "headers": raw})
        await scope_send({"type": "http.response.body", "body": payload})

    return {
        "an empty coroutine awaited (included in each figure below)": await timed(nothing),
        "an asyncio.timeout_at block": await timed(timeout_block),
        "a uvloop timer armed and cancelled": await timed(timer),
        "Starlette's Response for a whole answer": await timed(starlette_response),
        "the same two ASGI messages built directly": await timed(direct_messages),
    }


async def full_collection() -> float:
    """ms of one full garbage collection of a started gateway's heap (the default router artifact,
    one remote model; what a router reload pauses the loop for, gateway/heap.py)."""
    import gc

    import router
    from fleet.config import parse_fleet
    from gateway.app import create_app

    config = parse_fleet({
        "models": [{"name": "qwen2.5-7b-instruct", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}],
        "router": {"artifact": str(router.DEFAULT_ARTIFACT)},
    })
    app = create_app(config)
    async with app.router.lifespan_context(app):
        gc.collect()
        started = time.perf_counter()
        gc.collect()
        return (time.perf_counter() - started) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000, help="calls of each step")
    args = parser.parse_args(argv)
    for name, step in steps().items():
        step()  # warm
        seconds = min(timeit.repeat(step, number=args.number, repeat=3)) / args.number
        print(f"{seconds * 1e6:7.2f} µs  {name}")
    for name, micros in uvloop.run(loop_steps(args.number)).items():
        print(f"{micros:7.2f} µs  {name}")
    print(f"{uvloop.run(full_collection()):7.1f} ms  a full garbage collection of a started gateway's heap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
