"""``POST /v1/responses``: OpenAI's Responses API over the same request path as chat.

A Responses request (``input`` as text or items, ``instructions``, function ``tools``,
``text.format``) becomes the chat request backends take; the answer comes back as a
``response`` object, or as its semantic stream (``response.created``, ``response.output_item.added``,
``response.output_text.delta``, ... ``response.completed``). Choosing a member, fallbacks, limits
and accounting are the chat path's (:class:`~gateway.service.Gateway`).

smallfleet stores no responses: ``store`` must be false (or absent) and ``previous_response_id``
is refused; a conversation is sent whole as ``input`` items, as with chat.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator

from backends.errors import SmallfleetError, UnsupportedParameter
from backends.types import (
    Completion,
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    StreamChunk,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from gateway.errors import error_payload
from gateway.protocol import (
    MAX_TOOLS,
    MAX_TOP_LOGPROBS,
    SmallfleetOptions,
    _Part,
    _Request,
    chat_logprobs_json,
)

LOGPROBS_INCLUDE = "message.output_text.logprobs"
UNSUPPORTED_FIELDS = (
    "previous_response_id",
    "conversation",
    "reasoning",
    "background",
    "prompt",
    "max_tool_calls",
    "stream_options",
    "context_management",
)


# -- the request ------------------------------------------------------------------------------
class InputText(_Part):
    type: Literal["input_text", "output_text"]
    text: str


class InputMessage(_Part):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputText]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(_Part):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(_Part):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str


def _item_type(value: Any) -> str:
    """An input item's ``type``; a message may leave it out."""
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else "message"


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_type),
]


class FunctionTool(_Part):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Part):
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(_Part):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Part):
    format: TextFormat | None = None


class ResponsesRequest(_Request):
    """``POST /v1/responses``; fields in the order of OpenAI's reference."""

    model: str = Field(min_length=1)
    input: str | Annotated[list[InputItem], Field(min_length=1)]
    include: list[Literal["message.output_text.logprobs"]] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: Literal["auto", "default"] | None = None
    store: bool | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    text: TextConfig | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)  # before tool_choice,
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None  # which checks it
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    top_p: float | None = Field(default=None, ge=0, le=1)
    truncation: Literal["disabled"] | None = None  # "auto" would drop turns the client sent
    user: str | None = None
    # -- smallfleet's extras --
    smallfleet: SmallfleetOptions | None = None

    unsupported_fields: ClassVar[tuple[str, ...]] = UNSUPPORTED_FIELDS
    n: ClassVar[int] = 1

    @field_validator("tool_choice")
    @classmethod
    def _choice_among_tools(cls, value: Any, info: ValidationInfo) -> Any:
        tools = info.data.get("tools") or ()
        if value is not None and value != "none" and not tools:
            raise ValueError("tool_choice needs tools")
        if isinstance(value, NamedFunction) and value.name not in {t.name for t in tools}:
            raise ValueError(f"tool_choice names {value.name!r}, which is not among tools")
        return value

    def refuse_unsupported(self) -> None:
        if (self.model_extra or {}).get("previous_response_id") is not None:
            message = "smallfleet does not support 'previous_response_id'; send the conversation as input"
            raise UnsupportedParameter(message, param="previous_response_id")
        super().refuse_unsupported()
        if self.store:
            message = "smallfleet does not store responses: set 'store' to false"
            raise UnsupportedParameter(message, param="store")
        if self.metadata:
            raise UnsupportedParameter(
                "'metadata' tags stored responses; smallfleet stores none", param="metadata"
            )

    @property
    def token_limit(self) -> int | None:
        return self.max_output_tokens

    @property
    def token_limit_param(self) -> str:
        return "max_output_tokens"

    @property
    def turns(self) -> tuple[int, str]:
        return (1 if isinstance(self.input, str) else len(self.input)), "input"

    @property
    def wants_details(self) -> bool:
        return bool(self.smallfleet and self.smallfleet.details)

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or ())

    def question(self) -> str:
        """What the router judges the request by: its last user message (or the text input)."""
        if isinstance(self.input, str):
            return self.input
        users = [item for item in self.input if isinstance(item, InputMessage) and item.role == "user"]
        return users[-1].text() if users else ""

    def messages(self) -> tuple[Message, ...]:
        turns: list[Message] = []
        if self.instructions:
            turns.append(Message("system", self.instructions))
        if isinstance(self.input, str):
            return (*turns, Message("user", self.input))
        for item in self.input:
            if isinstance(item, InputMessage):
                turns.append(Message(item.role, item.text()))
            elif isinstance(item, FunctionCallItem):
                call = ToolCall(item.call_id, item.name, item.arguments)
                previous = turns[-1] if turns else None
                if previous is not None and previous.role == "assistant" and previous.tool_calls:
                    turns[-1] = Message("assistant", previous.content, (*previous.tool_calls, call))
                else:  # consecutive calls are one assistant turn, as in chat
                    turns.append(Message("assistant", "", (call,)))
            else:
                turns.append(Message("tool", item.output, tool_call_id=item.call_id))
        return tuple(turns)

    def generation(self) -> GenerationRequest:
        tools = tuple(
            Tool(t.name, t.description, t.parameters or {}, bool(t.strict)) for t in self.tools or ()
        )
        choice = self.tool_choice
        tool_choice = (
            ToolChoice("function", choice.name)
            if isinstance(choice, NamedFunction)
            else ToolChoice(choice or "auto")
        )
        fmt = self.text.format if self.text else None
        response_format = None
        if fmt is not None and fmt.type == "json_object":
            response_format = ResponseFormat("json_object")
        elif fmt is not None and fmt.type == "json_schema":
            response_format = ResponseFormat("json_schema", fmt.json_schema or {}, fmt.name, bool(fmt.strict))
        params = SamplingParams(
            max_tokens=self.max_output_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            logprobs=self.wants_logprobs,
            top_logprobs=self.top_logprobs or 0,
        )
        return GenerationRequest(
            messages=self.messages(),
            params=params,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=self.parallel_tool_calls is not False,
            response_format=response_format,
            vendor_fields=self.vendor_fields(),
        )


# -- the answer ---------------------------------------------------------------------------------
def _logprobs_json(tokens: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    """An output_text part's ``logprobs``: the entries of chat's ``logprobs.content``."""
    return chat_logprobs_json(tokens)["content"]


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


class ResponsesShape:
    """A ``response`` object, or its stream of semantic events."""

    def __init__(self, parsed: ResponsesRequest) -> None:
        self.parsed = parsed

    def envelope(self, request_id: str, model: str, status: str) -> dict[str, Any]:
        """The response object without output or usage: what the request asked, echoed."""
        parsed = self.parsed
        choice = parsed.tool_choice
        fmt = parsed.text.format if parsed.text and parsed.text.format else None
        return {
            "id": f"resp_{request_id}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": parsed.instructions,
            "max_output_tokens": parsed.max_output_tokens,
            "model": model,
            "output": [],
            "parallel_tool_calls": parsed.parallel_tool_calls is not False,
            "previous_response_id": None,
            "store": False,
            "temperature": parsed.temperature,
            "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
            "tool_choice": choice.model_dump() if isinstance(choice, NamedFunction) else (choice or "auto"),
            "tools": [t.model_dump(exclude_none=True) for t in parsed.tools or ()],
            "top_logprobs": parsed.top_logprobs,
            "top_p": parsed.top_p,
            "truncation": "disabled",
            "usage": None,
            "user": parsed.user,
            "metadata": {},
        }

    def finished(
        self,
        request_id: str,
        model: str,
        completion: Completion,
        smallfleet: dict[str, Any] | None,
    ) -> dict[str, Any]:
        incomplete = completion.finish_reason == "length"
        body = self.envelope(request_id, model, "incomplete" if incomplete else "completed")
        if incomplete:
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        output = []
        if completion.text or not completion.tool_calls:
            output.append(message_item(request_id, completion.text, completion.logprobs or (), "completed"))
        output += [call_item(call, "completed") for call in completion.tool_calls]
        body["output"] = output
        body["usage"] = usage_json(completion.usage)
        if smallfleet is not None:
            body["smallfleet"] = smallfleet
        return body

    def whole(
        self, request_id: str, model: str, completion: Completion, smallfleet: dict[str, Any] | None
    ) -> dict[str, Any]:
        return self.finished(request_id, model, completion, smallfleet)

    def stream(self, request_id: str, model: str) -> ResponsesStream:
        return ResponsesStream(self, request_id, model)


def message_item(item_id: str, text: str, logprobs: tuple[TokenLogprob, ...], status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": _logprobs_json(logprobs)}
    return {
        "type": "message",
        "id": f"msg_{item_id}",
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def call_item(call: ToolCall, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call.id.removeprefix('call_')}",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


class ResponsesStream:
    """The Responses API's events for one streamed answer: each output item is added, grows by
    deltas and is done, in order; the stream ends with ``response.completed`` (or
    ``response.incomplete`` when cut at ``max_output_tokens``, ``response.failed`` on an error)."""

    def __init__(self, shape: ResponsesShape, request_id: str, model: str) -> None:
        self.shape = shape
        self.request_id = request_id
        self.model = model
        self.sequence = 0
        self.items: list[dict[str, Any]] = []  # output items so far, as they will be when done
        self.text_index: int | None = None  # the output index of the message item that is open
        self.calls: dict[int, int] = {}  # a streamed call's index -> its output index

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def opening(self) -> list[bytes]:
        snapshot = self.shape.envelope(self.request_id, self.model, "in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    # -- items ---------------------------------------------------------------------------------
    def _open_text(self) -> list[bytes]:
        index = len(self.items)
        item_id = self.request_id if index == 0 else f"{self.request_id}_{index}"
        item = message_item(item_id, "", (), "in_progress")
        item["content"] = []
        self.items.append(message_item(item_id, "", (), "completed"))
        self.text_index = index
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event("response.output_item.added", output_index=index, item=item),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def _close_text(self) -> list[bytes]:
        index, self.text_index = self.text_index, None
        if index is None:
            return []
        item = self.items[index]
        part = item["content"][0]
        return [
            self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=part["logprobs"],
            ),
            self._event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _text(self, chunk: StreamChunk) -> list[bytes]:
        if not chunk.text:
            return []
        events = [] if self.text_index is not None else self._open_text()
        assert self.text_index is not None
        index = self.text_index
        item = self.items[index]
        part = item["content"][0]
        part["text"] += chunk.text
        logprobs = _logprobs_json(chunk.logprobs)
        part["logprobs"] += logprobs
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                delta=chunk.text,
                logprobs=logprobs,
            )
        )
        return events

    def _tool_calls(self, chunk: StreamChunk) -> list[bytes]:
        events = []
        for delta in chunk.tool_calls:
            if delta.index not in self.calls:
                events += self._close_text()
                call = ToolCall(delta.id or f"call_{self.request_id}_{delta.index}", delta.name or "", "")
                item = call_item(call, "in_progress")
                self.items.append(call_item(call, "completed"))
                self.calls[delta.index] = len(self.items) - 1
                events.append(
                    self._event("response.output_item.added", output_index=len(self.items) - 1, item=item)
                )
            index = self.calls[delta.index]
            item = self.items[index]
            if delta.arguments:
                item["arguments"] += delta.arguments
                events.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=delta.arguments,
                    )
                )
        return events

    def _close_calls(self) -> list[bytes]:
        events = []
        for index in self.calls.values():
            item = self.items[index]
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            events.append(self._event("response.output_item.done", output_index=index, item=item))
        self.calls = {}
        return events

    # -- the stream --------------------------------------------------------------------------------
    def chunk(self, chunk: StreamChunk, smallfleet: dict[str, Any] | None = None) -> list[bytes]:
        events = self._text(chunk) + self._tool_calls(chunk)
        if chunk.finish_reason is None:
            return events
        if not self.items:  # an empty answer is still a message
            events += self._open_text()
        events += self._close_text() + self._close_calls()
        incomplete = chunk.finish_reason == "length"
        body = self.shape.envelope(self.request_id, self.model, "incomplete" if incomplete else "completed")
        if incomplete:
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        body["output"] = self.items
        body["usage"] = usage_json(chunk.usage or Usage())
        if smallfleet is not None:
            body["smallfleet"] = smallfleet
        kind = "response.incomplete" if incomplete else "response.completed"
        return [*events, self._event(kind, response=body)]

    def closing(self, usage: Usage | None) -> list[bytes]:
        return []  # the response's last event carried its usage

    def failure(self, error: SmallfleetError) -> list[bytes]:
        detail = error_payload(error)[1]["error"]
        body = self.shape.envelope(self.request_id, self.model, "failed")
        body["error"] = {"code": detail["code"] or detail["type"], "message": detail["message"]}
        body["output"] = self.items
        return [
            self._event("error", code=detail["code"], message=detail["message"], param=detail["param"]),
            self._event("response.failed", response=body),
        ]
