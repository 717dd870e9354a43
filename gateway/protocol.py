"""OpenAI's request and response shapes, in one place.

Requests are validated pydantic models (fields in the order of OpenAI's API
reference; smallfleet's extras in a marked section). Responses are built as
plain dicts by small functions: they are on the hot path and need no
validation.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backends.types import Completion, CompositeTrace, InnerCall, StreamChunk, Usage

Role = Literal["system", "developer", "user", "assistant", "tool"]
MAX_CHOICES = 32  # n; only a diverse route gives more than one (up to its sample count)


class _Request(BaseModel):
    # Unknown OpenAI parameters are ignored, as OpenAI-compatible servers do;
    # known ones are type-checked strictly (no "10" for 10).
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=4)] | None


class SmallfleetOptions(BaseModel):
    """smallfleet's own request options, under ``"smallfleet"`` (the openai client's ``extra_body``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    details: bool = Field(
        default=False,
        description="a route's answer also carries its inner workings: the plan, votes, samples, calls",
    )


class _SamplingFields(_Request):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, description="more than 1 only from a diverse route")
    seed: int | None = None
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    user: str | None = None
    # -- smallfleet's extras --
    smallfleet: SmallfleetOptions | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def wants_details(self) -> bool:
        return bool(self.smallfleet and self.smallfleet.details)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: int | None = Field(default=16, ge=1)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        return value if isinstance(value, str) else value[0]

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


# -- smallfleet's own requests ------------------------------------------------
class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: how good an answer was, 0 (wrong) to 1 (right)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    request_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1, allow_inf_nan=False)
    label: str | None = Field(default=None, max_length=64)
    comment: str | None = Field(default=None, max_length=4000)


class RouterReloadRequest(BaseModel):
    """``POST /admin/router/reload``: load ``artifact`` (default: the configured one)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    artifact: str | None = Field(default=None, min_length=1)


class CreateKeyRequest(BaseModel):
    """``POST /admin/keys``: a new API key named ``name`` (its id), with optional limits."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens (prompt + completion) per minute")
    budget: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="total cost allowed")


# -- responses --------------------------------------------------------------
def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _choice(index: int, text: str, finish_reason: str, *, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    choice["logprobs"] = None
    choice["finish_reason"] = finish_reason
    return choice


def completion_json(
    request_id: str,
    model: str,
    completion: Completion,
    *,
    chat: bool,
    smallfleet: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole answer: ``chat.completion`` for chat, ``text_completion`` otherwise.

    A route's answer carries ``smallfleet`` (see :func:`route_json`) and, with n > 1, its
    further choices.
    """
    choices = [_choice(0, completion.text, completion.finish_reason, chat=chat)]
    choices += [
        _choice(i, c.text, c.finish_reason, chat=chat) for i, c in enumerate(completion.extra_choices, 1)
    ]
    payload = {
        "id": f"chatcmpl-{request_id}" if chat else f"cmpl-{request_id}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_json(completion.usage),
    }
    if smallfleet is not None:
        payload["smallfleet"] = smallfleet
    return payload


def _call_json(call: InnerCall) -> dict[str, Any]:
    return {
        "model": call.model,
        "step": call.step,
        "usage": usage_json(call.usage),
        "seconds": round(call.seconds, 6),
        "error": call.error,
    }


def route_json(route: str, trace: CompositeTrace, *, details: bool) -> dict[str, Any]:
    """The ``smallfleet`` field of a route's answer: always what the route is and its summary (a
    plan fallback, the distinct-sample ratio); its inner workings only when the client asked."""
    body: dict[str, Any] = {"route": route, "type": trace.kind, **trace.summary}
    if details:
        body["details"] = {**trace.details, "calls": [_call_json(call) for call in trace.calls]}
    return body


class ChunkWriter:
    """Builds the JSON of each SSE event of one streamed answer."""

    def __init__(self, request_id: str, model: str, *, chat: bool) -> None:
        self.chat = chat
        self._base: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}" if chat else f"cmpl-{request_id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**self._base, "choices": choices, **extra}

    def role(self, index: int = 0) -> dict[str, Any]:
        """The chat stream's first event (of each choice), announcing the assistant role."""
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])

    def chunk(
        self, chunk: StreamChunk, index: int = 0, smallfleet: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            choice["delta"] = {"content": chunk.text} if chunk.text else {}
        else:
            choice["text"] = chunk.text
        choice["logprobs"] = None
        choice["finish_reason"] = chunk.finish_reason
        if smallfleet is not None:
            return self._event([choice], smallfleet=smallfleet)
        return self._event([choice])

    def usage(self, usage: Usage) -> dict[str, Any]:
        return self._event([], usage=usage_json(usage))


def model_list_json(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": models}
