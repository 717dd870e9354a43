"""The Backend protocol: what the gateway needs from anything that generates text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from backends.features import Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk


@runtime_checkable
class Backend(Protocol):
    """A source of completions: an in-process model, a remote server, or a composite.

    ``chat`` returns a whole answer; ``stream_chat`` yields it in pieces, the last
    carrying ``finish_reason`` and ``usage``. Both take chat messages or a raw
    prompt (see :class:`GenerationRequest`). Cancelling the awaiting task, or
    closing the stream early, must stop the generation. Errors are raised as
    :mod:`backends.errors` types, never as a foreign library's exceptions.
    """

    name: str

    @property
    def features(self) -> frozenset[Feature]:
        """What it honours beyond text (:mod:`backends.features`); a request using anything
        else never reaches it."""

    @property
    def context_length(self) -> int | None:
        """Tokens of context, if known (some backends learn it when they start)."""

    @property
    def max_choices(self) -> int:
        """Choices one request may ask for (``n``): 1, but for a route that draws several samples."""

    @property
    def available(self) -> bool:
        """False while it should not be asked (its circuit is open): routers and fallbacks skip it."""

    async def start(self) -> None:
        """Acquire resources (load weights, open connection pools)."""

    async def chat(self, request: GenerationRequest) -> Completion: ...

    def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...
