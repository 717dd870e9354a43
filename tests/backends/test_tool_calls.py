"""Tool calls read out of a model's own text (backends/tool_calls.py)."""

from __future__ import annotations

import json
from itertools import count

import pytest

from backends.tool_calls import HermesToolCallParser, template_renders_tools, tool_call_message
from backends.types import Tool, ToolCall

TOOLS = (Tool("get_weather", parameters={"type": "object"}), Tool("add"))


def _parser() -> HermesToolCallParser:
    ids = count()
    return HermesToolCallParser(TOOLS, new_id=lambda: f"call_{next(ids)}")


def _run(pieces: list[str]) -> tuple[str, str, tuple[ToolCall, ...]]:
    """(content shown as it came, content at the end, calls)."""
    parser = _parser()
    shown = "".join(parser.feed(piece) for piece in pieces)
    rest, calls = parser.finish()
    return shown, rest, calls


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_tagged_call_becomes_a_call_with_json_arguments():
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    shown, rest, calls = _run(_pieces(text))
    assert (shown, rest) == ("", "")
    assert calls == (ToolCall("call_0", "get_weather", '{"city": "Paris"}'),)


def test_content_before_a_call_streams_and_several_calls_are_read():
    text = (
        "Let me check. "
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n'
        '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>'
    )
    shown, rest, calls = _run(_pieces(text, 2))
    assert shown == "Let me check. " and rest == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"}), ("add", {"a": 1})]


def test_a_call_cut_at_its_close_tag_still_parses():
    # one call wanted (parallel_tool_calls false): generation stops at </tool_call>
    _, _, calls = _run(['<tool_call>\n{"name": "add", "arguments": {}}\n'])
    assert [c.name for c in calls] == ["add"]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        '  {"name": "get_weather", "arguments": {"city": "Paris"}}\n{"name": "add", "arguments": {}}\n',
    ],
)
def test_bare_json_calls_without_tags_are_read(text):
    shown, rest, calls = _run(_pieces(text))
    assert (shown, rest) == ("", "")
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "send_email", "arguments": {}}',  # not one of the request's tools
        '{"city": "Paris"}',  # JSON, but no call
        '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>',  # arguments not an object
        '<tool_call>{"name": "add", "arguments": {}}</tool_call> and some prose',
        "```python\nprint('hi')\n```",
    ],
)
def test_what_does_not_parse_as_calls_comes_back_as_content_unchanged(text):
    shown, rest, calls = _run(_pieces(text))
    assert calls == ()
    assert shown + rest == text


def test_prose_streams_at_once_and_a_partial_tag_is_held_back_only_while_it_may_be_one():
    parser = _parser()
    assert parser.feed("The answer") == "The answer"
    assert parser.feed(" is <tool") == " is "  # "<tool" may start a call
    assert parser.feed("s> here") == "<tools> here"  # it did not
    assert parser.feed(" {json} ") == " {json} "  # bare JSON only counts as a whole answer
    assert parser.finish() == ("", ())


def test_templates_that_render_tools_are_recognised():
    assert template_renders_tools("{% if tools %}...<tool_call>...{% endif %}")
    assert not template_renders_tools("{{ message['content'] }}")


def test_a_calls_arguments_go_back_to_templates_as_an_object():
    message = tool_call_message(ToolCall("c1", "add", '{"a": 1}'))
    assert message == {"id": "c1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}
    assert tool_call_message(ToolCall("c2", "add", "not json"))["function"]["arguments"] == "not json"
