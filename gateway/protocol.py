"""OpenAI's request and response shapes, in one place.

Requests are validated pydantic models (fields in the order of OpenAI's API
reference; smallfleet's extras in a marked section). Responses are built as
plain dicts by small functions: they are on the hot path and need no
validation.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backends.errors import UnsupportedParameter
from backends.types import (
    Completion,
    CompositeTrace,
    InnerCall,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)

Role = Literal["system", "developer", "user", "assistant", "tool"]
MAX_CHOICES = 32  # n; only a diverse route gives more than one (up to its sample count)
MAX_TOOLS = 128  # OpenAI's limit
MAX_TOP_LOGPROBS = 20

# Fields of OpenAI's chat-completions request that smallfleet does not honour: refused with a
# 400 naming them when they carry a value. (docs/api.md has the whole table.)
UNSUPPORTED_CHAT_FIELDS = (
    "audio", "function_call", "functions", "prediction", "reasoning_effort", "verbosity",
    "web_search_options",
)
UNSUPPORTED_COMPLETION_FIELDS = ("suffix",)


class _Part(BaseModel):
    """A piece of a request (a message, a tool): unknown fields are ignored, as the openai
    client echoes back fields of answers (``refusal``, ``annotations``) that carry nothing."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Request(BaseModel):
    """A whole request. Known fields are type-checked strictly (no "10" for 10); fields OpenAI
    does not define are kept (``model_extra``) and are passed to a server that takes them or
    refused, never dropped."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    # fields the API defines that smallfleet does not honour: refused when they carry a value
    unsupported_fields: ClassVar[tuple[str, ...]] = ()

    def refuse_unsupported(self) -> None:
        """A 400 naming the first field OpenAI defines that smallfleet does not honour."""
        extra = self.model_extra or {}
        for key in self.unsupported_fields:
            if extra.get(key) is not None:
                raise UnsupportedParameter(f"smallfleet does not support {key!r}", param=key)

    @property
    def token_limit(self) -> int | None:
        """The most tokens the answer may have, as asked (None: not asked)."""
        return None

    @property
    def token_limit_param(self) -> str:
        """The field that asked for :attr:`token_limit`, for an error naming it."""
        return "max_tokens"

    @property
    def turns(self) -> tuple[int, str]:
        """How many turns (messages, input items) the request carries, and the field they are in."""
        return 1, "prompt"

    def vendor_fields(self) -> dict[str, Any]:
        """Fields OpenAI does not define, with a value (a null asks for nothing)."""
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if v is not None and k not in self.unsupported_fields}


class TextPart(_Part):
    type: Literal["text"]
    text: str


class FunctionCall(_Part):
    name: str = Field(min_length=1)
    arguments: str


class MessageToolCall(_Part):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Part):
    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool turn: the call it answers

    @model_validator(mode="after")
    def _tool_turns(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs the 'tool_call_id' it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries 'tool_calls'")
        return self

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ())

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Part):
    include_usage: bool = False


class FunctionDefinition(_Part):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments object
    strict: bool | None = None


class FunctionTool(_Part):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Part):
    name: str = Field(min_length=1)


class NamedToolChoice(_Part):
    type: Literal["function"]
    function: NamedFunction


ToolChoiceField = Literal["none", "auto", "required"] | NamedToolChoice


class TextFormat(_Part):
    type: Literal["text"]


class JsonObjectFormat(_Part):
    type: Literal["json_object"]


class JsonSchemaSpec(_Part):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str | None = None
    # "schema" is a BaseModel attribute, hence the alias
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Part):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormatField = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


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
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    # identifies the end user to OpenAI's abuse monitoring; it changes no answer, here or there
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None  # a caching hint; llama.cpp reuses cached prefixes anyway
    # -- smallfleet's extras --
    smallfleet: SmallfleetOptions | None = None

    def token_bias(self) -> dict[int, float] | None:
        """``logit_bias`` with integer token ids (its keys are ids as strings, as OpenAI's are)."""
        if not self.logit_bias:
            return None
        try:
            return {int(token): bias for token, bias in self.logit_bias.items()}
        except ValueError:
            message = 'logit_bias keys are token ids, such as "1234"'
            raise UnsupportedParameter(message, param="logit_bias") from None

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
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormatField | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceField | None = None
    parallel_tool_calls: bool | None = None
    modalities: list[Literal["text"]] | None = None  # text is what every model here gives
    service_tier: Literal["auto", "default"] | None = None  # there is one tier
    store: bool | None = None
    metadata: dict[str, str] | None = None

    unsupported_fields = UNSUPPORTED_CHAT_FIELDS

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        # smallfleet keeps no completions to retrieve later (metadata tags stored ones)
        if self.store:
            message = "smallfleet does not store completions: 'store' must be false"
            raise UnsupportedParameter(message, param="store")
        if self.metadata:
            message = "'metadata' tags stored completions; smallfleet stores none"
            raise UnsupportedParameter(message, param="metadata")

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _choice_among_tools(
        cls, value: ToolChoiceField | None, info: ValidationInfo
    ) -> ToolChoiceField | None:
        tools = info.data.get("tools") or ()
        if value is not None and value != "none" and not tools:
            raise ValueError("tool_choice needs tools")
        if isinstance(value, NamedToolChoice) and value.function.name not in {t.function.name for t in tools}:
            raise ValueError(f"tool_choice names {value.function.name!r}, which is not among tools")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def token_limit_param(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    @property
    def turns(self) -> tuple[int, str]:
        return len(self.messages), "messages"


class CompletionRequest(_SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)  # the legacy API's: how many alternatives
    echo: Literal[False] | None = None  # the prompt is not echoed back
    best_of: Literal[1] | None = None  # one generation per choice

    unsupported_fields = UNSUPPORTED_COMPLETION_FIELDS

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


def _token_json(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def chat_logprobs_json(tokens: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """Chat's ``logprobs``: each token with its log-probability and the likeliest alternatives."""
    content = [
        {**_token_json(t.token, t.logprob), "top_logprobs": [_token_json(text, lp) for text, lp in t.top]}
        for t in tokens
    ]
    return {"content": content, "refusal": None}


def text_logprobs_json(tokens: tuple[TokenLogprob, ...], offset: int = 0) -> dict[str, Any]:
    """The legacy completions' ``logprobs``: parallel lists; offsets count from ``offset``
    characters into the generated text."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


def _logprobs_json(
    tokens: tuple[TokenLogprob, ...] | None, *, chat: bool, offset: int = 0
) -> dict[str, Any] | None:
    if tokens is None:
        return None
    return chat_logprobs_json(tokens) if chat else text_logprobs_json(tokens, offset)


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _tool_delta_json(delta: ToolCallDelta) -> dict[str, Any]:
    piece: dict[str, Any] = {"index": delta.index}
    function: dict[str, Any] = {}
    if delta.id is not None:
        piece["id"], piece["type"] = delta.id, "function"
    if delta.name is not None:
        function["name"] = delta.name
    function["arguments"] = delta.arguments
    piece["function"] = function
    return piece


def _choice(
    index: int,
    text: str,
    finish_reason: str,
    *,
    chat: bool,
    logprobs: tuple[TokenLogprob, ...] | None = None,
    tool_calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index}
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["content"] = text or None
            message["tool_calls"] = [tool_call_json(call) for call in tool_calls]
        choice["message"] = message
    else:
        choice["text"] = text
    choice["logprobs"] = _logprobs_json(logprobs, chat=chat)
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
    first = _choice(
        0,
        completion.text,
        completion.finish_reason,
        chat=chat,
        logprobs=completion.logprobs,
        tool_calls=completion.tool_calls,
    )
    choices = [first]
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
        self._text_offset = 0  # characters sent so far: the legacy logprobs' text_offset
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
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
            if chunk.tool_calls:
                delta["tool_calls"] = [_tool_delta_json(d) for d in chunk.tool_calls]
            choice["delta"] = delta
        else:
            choice["text"] = chunk.text
        choice["logprobs"] = None
        if chunk.logprobs:
            choice["logprobs"] = _logprobs_json(chunk.logprobs, chat=self.chat, offset=self._text_offset)
        self._text_offset += len(chunk.text)
        choice["finish_reason"] = chunk.finish_reason
        if smallfleet is not None:
            return self._event([choice], smallfleet=smallfleet)
        return self._event([choice])

    def usage(self, usage: Usage) -> dict[str, Any]:
        return self._event([], usage=usage_json(usage))


def model_list_json(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": models}
