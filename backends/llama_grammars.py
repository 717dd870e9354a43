"""Grammars that constrain a llama.cpp generation: structured output and forced tool calls.

Built with llama-cpp-python's JSON-schema-to-GBNF converter (a port of llama.cpp's), in one
converter so that the rules of an answer and of a tool call share their primitives. The
grammar admits exactly what the request asks for:

- ``response_format`` ``json_object``: any JSON object; ``json_schema``: a value of the schema;
- ``tool_choice`` ``required``: one or more Hermes-style calls (``parallel_tool_calls`` allowing),
  each a declared tool's name with arguments valid for its parameters' schema; a named function:
  one call of it;
- ``tool_choice`` ``auto`` with a ``response_format``: either of the two above.
"""

from __future__ import annotations

import json
from typing import Any

from backends.errors import RequestError
from backends.tool_calls import CLOSE, OPEN
from backends.types import GenerationRequest, Tool


def _call_schema(tool: Tool) -> dict[str, Any]:
    parameters = dict(tool.parameters) or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _literal(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal escapes as JSON does


def grammar_for(request: GenerationRequest) -> str | None:
    """The GBNF that ``request`` must be generated under, or None when it is free text.

    Raises RequestError (naming the field) for a schema the converter cannot express."""
    from llama_cpp.llama_grammar import SchemaConverter

    choice = request.tool_choice
    forced_call = request.offers_tools and choice.mode in ("required", "function")
    optional_call = request.offers_tools and choice.mode == "auto" and request.response_format is not None
    if not (forced_call or optional_call or request.response_format is not None):
        return None
    converter = SchemaConverter(
        prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    alternatives = []
    if forced_call or optional_call:
        tools = [t for t in request.tools if choice.mode != "function" or t.name == choice.name]
        if not tools:
            raise RequestError(
                f"tool_choice names {choice.name!r}, which is not among tools", param="tool_choice"
            )
        schemas = [_call_schema(tool) for tool in tools]
        try:
            schema = converter.resolve_refs(schemas[0] if len(schemas) == 1 else {"anyOf": schemas}, "tools")
            converter.visit(schema, "call")
        except Exception as exc:  # noqa: BLE001 - the converter raises plain exceptions
            raise RequestError(
                f"a tool's parameters are not a schema smallfleet can enforce: {exc}", param="tools"
            ) from None
        one = f"{_literal(OPEN + chr(10))} call {_literal(chr(10) + CLOSE)}"
        many = request.parallel_tool_calls and choice.mode != "function"
        alternatives.append(f"{one} ({_literal(chr(10))} {one})*" if many else one)
    if not forced_call and request.response_format is not None:
        fmt = request.response_format
        schema = dict(fmt.schema) if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
        try:
            converter.visit(converter.resolve_refs(schema, "response_format"), "answer")
        except Exception as exc:  # noqa: BLE001
            raise RequestError(
                f"response_format's schema is not one smallfleet can enforce: {exc}", param="response_format"
            ) from None
        alternatives.append("answer")
    return f"root ::= {' | '.join(f'({a})' for a in alternatives)}\n{converter.format_grammar()}"
