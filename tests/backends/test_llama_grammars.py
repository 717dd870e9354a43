"""Grammars for structured output and forced tool calls (backends/llama_grammars.py)."""

from __future__ import annotations

import pytest

from backends.errors import RequestError
from backends.llama_grammars import grammar_for
from backends.types import GenerationRequest, Message, ResponseFormat, Tool, ToolChoice

HI = (Message("user", "hi"),)
WEATHER = Tool("get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})
ADD = Tool("add", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})


def _grammar(**fields) -> str | None:
    return grammar_for(GenerationRequest(messages=HI, **fields))


def test_free_text_and_auto_tools_have_no_grammar():
    assert _grammar() is None
    assert _grammar(tools=(WEATHER,)) is None  # auto: the model decides, its text is parsed
    assert _grammar(tools=(WEATHER,), tool_choice=ToolChoice("none"), response_format=None) is None


def test_a_json_schema_becomes_its_own_rules():
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}}, "required": ["colour"]}
    grammar = _grammar(response_format=ResponseFormat("json_schema", schema))
    assert grammar is not None and grammar.startswith("root ::= (answer)")
    assert '"\\"red\\""' in grammar and '"\\"blue\\""' in grammar


def test_json_object_admits_any_object():
    grammar = _grammar(response_format=ResponseFormat("json_object"))
    assert grammar is not None and "answer ::= object" in grammar


def test_required_admits_any_declared_tool_and_several_calls_unless_parallel_is_off():
    many = _grammar(tools=(WEATHER, ADD), tool_choice=ToolChoice("required"))
    assert many is not None and '"\\"get_weather\\""' in many and '"\\"add\\""' in many
    assert ")*)" in many.splitlines()[0]  # a repetition of calls
    one = _grammar(tools=(WEATHER, ADD), tool_choice=ToolChoice("required"), parallel_tool_calls=False)
    assert one is not None and ")*" not in one.splitlines()[0]


def test_a_named_function_admits_one_call_of_it_only():
    grammar = _grammar(tools=(WEATHER, ADD), tool_choice=ToolChoice("function", "add"))
    assert grammar is not None and '"\\"add\\""' in grammar and "get_weather" not in grammar
    assert ")*" not in grammar.splitlines()[0]


def test_auto_tools_with_a_response_format_admit_either():
    grammar = _grammar(tools=(WEATHER,), response_format=ResponseFormat("json_object"))
    assert grammar is not None and grammar.splitlines()[0].endswith("| (answer)")


def test_a_schema_the_converter_cannot_express_is_the_clients_error():
    with pytest.raises(RequestError) as caught:
        _grammar(response_format=ResponseFormat("json_schema", {"$ref": "https://example.com/schema.json"}))
    assert caught.value.param == "response_format"
    with pytest.raises(RequestError) as caught:
        _grammar(tools=(WEATHER,), tool_choice=ToolChoice("function", "missing"))
    assert caught.value.param == "tool_choice"
