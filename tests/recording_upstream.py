"""An OpenAI-compatible server that records what it is sent (tests of fields passed on unchanged)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


class RecordingUpstream:
    """An OpenAI-compatible server that records each request and answers with a tool call and
    log-probabilities (whole or streamed, as asked)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        logprobs = {"content": [{"token": "x", "logprob": -0.5, "bytes": [120],
                                 "top_logprobs": [{"token": "x", "logprob": -0.5, "bytes": [120]}]}]}
        arguments = '{"city": "Paris"}'
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_up", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}
            answer = {"id": "u", "object": "chat.completion", "created": 0, "model": body["model"],
                      "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                                   "finish_reason": "tool_calls"}],
                      "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}
            return Response(orjson.dumps(answer), media_type="application/json")

        def event(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
            chunk = {"id": "u", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        async def events():
            yield event({"role": "assistant", "content": None})
            yield event({"tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]}, lp=logprobs)
            for piece in ('{"city": ', '"Paris"}'):
                yield event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield event({}, "tool_calls")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
