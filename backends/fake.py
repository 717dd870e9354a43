"""A scripted backend for unit tests of the gateway's logic.

It answers with a fixed reply split into words, can wait before the first chunk
and between chunks, and can fail before or during the stream, always or only on
its first ``fail_times`` calls. It records every request it saw and
whether its last stream was closed early, so tests can check cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from backends.errors import SmallfleetError
from backends.types import Completion, FinishReason, GenerationRequest, Health, StreamChunk, Usage


class FakeBackend:
    def __init__(
        self,
        name: str = "fake",
        reply: str = "Hello from the fake backend.",
        *,
        context_length: int | None = 2048,
        chunk_delay: float = 0.0,
        error: SmallfleetError | None = None,
        fail_after_chunks: int | None = None,
        fail_times: int | None = None,
        first_chunk_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.context_length = context_length
        self.reply = reply
        self.chunk_delay = chunk_delay
        self.error = error
        self.fail_after_chunks = fail_after_chunks
        self.fail_times = fail_times
        self.first_chunk_delay = first_chunk_delay
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self.chunks_sent = 0
        self.stream_closed_early = False
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    async def health(self) -> Health:
        return Health(ok=self.error is None, detail="fake")

    def _words(self, request: GenerationRequest) -> list[str]:
        words = [w + " " for w in self.reply.split(" ")]
        words[-1] = words[-1].rstrip(" ")
        limit = request.params.max_tokens
        return words if limit is None else words[:limit]

    def _usage(self, request: GenerationRequest, completion_tokens: int) -> Usage:
        if request.messages is not None:
            prompt = " ".join(m.content for m in request.messages)
        else:
            prompt = request.prompt or ""
        return Usage(prompt_tokens=len(prompt.split()), completion_tokens=completion_tokens)

    def _failing(self) -> SmallfleetError | None:
        """Count a call; the error it should fail with, if any."""
        self.calls += 1
        if self.fail_times is not None and self.calls > self.fail_times:
            return None
        return self.error

    async def chat(self, request: GenerationRequest) -> Completion:
        self.requests.append(request)
        error = self._failing()
        if error is not None:
            raise error
        words = self._words(request)
        await asyncio.sleep(self.first_chunk_delay + self.chunk_delay * len(words))
        finish: FinishReason = "length" if len(words) < len(self.reply.split(" ")) else "stop"
        return Completion("".join(words), finish, self._usage(request, len(words)))

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.requests.append(request)
        self.chunks_sent = 0
        self.stream_closed_early = True
        error = self._failing()
        if error is not None and not self.fail_after_chunks:
            raise error
        if self.first_chunk_delay:
            await asyncio.sleep(self.first_chunk_delay)
        words = self._words(request)
        for word in words:
            if error is not None and self.chunks_sent == self.fail_after_chunks:
                raise error
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            self.chunks_sent += 1
            yield StreamChunk(word)
        finish: FinishReason = "length" if len(words) < len(self.reply.split(" ")) else "stop"
        self.stream_closed_early = False
        yield StreamChunk("", finish_reason=finish, usage=self._usage(request, len(words)))
