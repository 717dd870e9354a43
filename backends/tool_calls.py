"""Tool calls in a model's own text: the Hermes format, as Qwen2.5's chat template asks for.

A model whose chat template renders ``tools`` (Qwen2.5 and its coder models, Hermes, many
fine-tunes) is told to answer a call as::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

:class:`HermesToolCallParser` splits a generation into the content a client may see as it
arrives and the calls, parsed at the end. Text is never lost: a block that does not parse as a
call of one of the request's tools is returned as content.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Sequence

from backends.types import Tool, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"^```[a-z]*\s*|\s*```$")


def template_renders_tools(template: str) -> bool:
    """Whether a chat template shows ``tools`` to the model and asks for Hermes-style calls."""
    return "tools" in template and OPEN in template


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def tool_call_message(call: ToolCall) -> dict[str, object]:
    """An assistant turn's call as chat templates read it: arguments as an object when they are
    JSON (templates render them with ``tojson``), else as the text they are."""
    try:
        arguments: object = json.loads(call.arguments)
    except ValueError:
        arguments = call.arguments
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


class HermesToolCallParser:
    """Feed it the generation piece by piece; it returns the content safe to show now and holds
    back anything that may be a tool call.

    Besides ``<tool_call>`` blocks, an answer that is nothing but calls as bare JSON (one object,
    a list of them, one per line, or in a Markdown fence) is read as calls: small models often
    drop the tags. Such an answer is held back to its end, since it may be a call."""

    def __init__(self, tools: Sequence[Tool], new_id: Callable[[], str] = new_call_id) -> None:
        self._names = {tool.name for tool in tools}
        self._new_id = new_id
        self._held = ""  # text not shown yet: leading blanks, or a suffix that may start OPEN
        self._shown = False  # whether any content was returned (then bare JSON is content)
        self._calls_text: str | None = None  # everything from the first OPEN (or bare JSON) on

    def feed(self, text: str) -> str:
        if self._calls_text is not None:
            self._calls_text += text
            return ""
        buffer = self._held + text
        if not self._shown:
            lead = buffer.lstrip()
            if not lead:
                self._held = buffer
                return ""
            if lead[0] in "{[`":
                self._held, self._calls_text = "", buffer
                return ""
        start = buffer.find(OPEN)
        if start >= 0:
            self._held, self._calls_text = "", buffer[start:]
            return self._show(buffer[:start])
        keep = next(
            (k for k in range(min(len(OPEN) - 1, len(buffer)), 0, -1) if buffer.endswith(OPEN[:k])), 0
        )
        self._held = buffer[len(buffer) - keep :]
        return self._show(buffer[: len(buffer) - keep])

    def _show(self, text: str) -> str:
        self._shown = self._shown or bool(text)
        return text

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """(content not yet returned, the calls): the calls' text back as content if it does not
        parse as calls of the request's tools."""
        if self._calls_text is None:
            held, self._held = self._held, ""
            return held, ()
        text, self._calls_text = self._calls_text, None
        calls = self._tagged(text) if text.lstrip().startswith(OPEN) else self._bare(text)
        return ("", calls) if calls else (text, ())

    def _tagged(self, text: str) -> tuple[ToolCall, ...]:
        calls = []
        end = 0
        for match in _BLOCK.finditer(text):
            if text[end : match.start()].strip():
                return ()  # prose between calls: not a clean list of calls
            end = match.end()
            call = self._call(_json(match.group(1)))
            if call is None:
                return ()
            calls.append(call)
        if text[end:].strip():
            return ()
        return tuple(calls)

    def _bare(self, text: str) -> tuple[ToolCall, ...]:
        body = _FENCE.sub("", text.strip()).strip()
        whole = _json(body)
        items = whole if isinstance(whole, list) else [whole] if whole is not None else None
        if items is None:  # one object per line
            items = [_json(line) for line in body.splitlines() if line.strip()]
        calls = [self._call(item) for item in items]
        if not calls or any(call is None for call in calls):
            return ()
        return tuple(call for call in calls if call is not None)

    def _call(self, data: object) -> ToolCall | None:
        if not isinstance(data, dict) or data.get("name") not in self._names:
            return None
        arguments = data.get("arguments", {})
        if isinstance(arguments, str):
            arguments = _json(arguments)
        if not isinstance(arguments, dict):
            return None
        return ToolCall(self._new_id(), data["name"], json.dumps(arguments, ensure_ascii=False))


def _json(text: str) -> object:
    """The JSON value ``text`` holds, or None."""
    try:
        return json.loads(text)
    except ValueError:
        return None
