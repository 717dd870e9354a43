"""What a backend can do beyond plain text generation.

Every backend declares its ``features``; the gateway sends a request only to a backend that has
every feature the request uses, so a field a client sent is honoured or refused, never dropped.
A composite route declares what it passes on to its members (today: nothing beyond text).
"""

from __future__ import annotations

from enum import StrEnum

from backends.types import GenerationRequest


class Feature(StrEnum):
    TOOLS = "tools"  # tools, tool_choice, parallel_tool_calls; tool turns in messages
    STRUCTURED_OUTPUT = "response_format"  # json_object and json_schema
    LOGPROBS = "logprobs"  # logprobs, top_logprobs
    PENALTIES = "penalties"  # frequency_penalty, presence_penalty
    LOGIT_BIAS = "logit_bias"
    VENDOR_FIELDS = "vendor_fields"  # request fields OpenAI does not define, passed on as sent


NO_FEATURES: frozenset[Feature] = frozenset()


def features_used(request: GenerationRequest) -> dict[Feature, str]:
    """Each feature ``request`` uses, with the request field that asks for it (for errors)."""
    used: dict[Feature, str] = {}
    if request.offers_tools:
        used[Feature.TOOLS] = "tools"
    elif request.messages and any(m.tool_calls or m.role == "tool" for m in request.messages):
        used[Feature.TOOLS] = "messages"
    if request.response_format is not None:
        used[Feature.STRUCTURED_OUTPUT] = "response_format"
    params = request.params
    if params.logprobs:
        used[Feature.LOGPROBS] = "logprobs"
    if params.frequency_penalty:
        used[Feature.PENALTIES] = "frequency_penalty"
    elif params.presence_penalty:
        used[Feature.PENALTIES] = "presence_penalty"
    if params.logit_bias:
        used[Feature.LOGIT_BIAS] = "logit_bias"
    if request.vendor_fields:
        used[Feature.VENDOR_FIELDS] = next(iter(request.vendor_fields))
    return used
