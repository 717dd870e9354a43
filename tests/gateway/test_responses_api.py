"""``POST /v1/responses`` with the real ``openai`` client over loopback (gateway/responses_api.py).

In-process fakes check what reaches a backend and the answer's shape; a recording
OpenAI-compatible server checks tools end to end (a call out, its output back in). Real llama.cpp:
tests/gateway/test_openai_fields_real.py.
"""

from __future__ import annotations

import json

import openai
import pytest

from backends.errors import BackendError
from backends.fake import FakeBackend
from backends.features import Feature
from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer, fleet_of
from tests.recording_upstream import RecordingUpstream

ALL = frozenset(Feature)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def fakes():
    return {
        "m": FakeBackend("m", reply="Hello there friend", features=ALL),
        "plain": FakeBackend("plain", reply="plain words here"),
        "broken": FakeBackend("broken", reply="one two three four", error=BackendError("it broke"),
                              fail_after_chunks=2),
    }


@pytest.fixture
def client(fakes, live_server, openai_client):
    server = live_server(create_app(fleet_of(*fakes), backends=fakes))
    return openai_client(server.url)


def test_text_in_text_out_with_instructions_and_usage(client, fakes):
    response = client.responses.create(model="m", input="hi", instructions="Be brief.", max_output_tokens=50)
    assert response.output_text == "Hello there friend"
    assert response.status == "completed" and response.model == "m" and response.id.startswith("resp_")
    assert response.usage.output_tokens == 3 and response.usage.total_tokens == response.usage.input_tokens + 3
    sent = fakes["m"].requests[-1]
    assert [(m.role, m.content) for m in sent.messages] == [("system", "Be brief."), ("user", "hi")]
    assert sent.params.max_tokens == 50


def test_input_items_become_the_conversation(client, fakes):
    client.responses.create(
        model="m",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        ],
        tools=[WEATHER],
    )
    sent = fakes["m"].requests[-1]
    assert [m.role for m in sent.messages] == ["developer", "user", "assistant", "tool"]
    assert sent.messages[2].tool_calls[0].name == "get_weather"
    assert (sent.messages[3].tool_call_id, sent.messages[3].content) == ("c1", "18C")
    assert sent.tools[0].name == "get_weather" and sent.tool_choice.mode == "auto"


def test_text_format_and_logprobs_reach_the_backend(client, fakes):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.responses.create(
        model="m", input="x", text={"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True}},
        include=["message.output_text.logprobs"], top_logprobs=3,
    )
    sent = fakes["m"].requests[-1]
    assert sent.response_format.type == "json_schema" and sent.response_format.schema == schema
    assert sent.params.logprobs and sent.params.top_logprobs == 3


def test_the_stream_is_the_semantic_events_in_order(client):
    events = list(client.responses.create(model="m", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there friend"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == "Hello there friend"
    with client.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello there friend" and final.usage.output_tokens == 3


def test_cut_at_max_output_tokens_is_incomplete(client):
    response = client.responses.create(model="m", input="hi", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(model="m", input="hi", max_output_tokens=2, stream=True))
    assert events[-1].type == "response.incomplete"


def test_a_failure_mid_stream_ends_with_response_failed(client):
    events = list(client.responses.create(model="broken", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-1].response.error.code == "backend_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
    ],
)
def test_what_smallfleet_cannot_honour_is_a_400_naming_it(client, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="hi", **fields)
    assert caught.value.body["param"].split("[")[0].split(".")[0] == param


def test_a_model_without_tools_refuses_them_and_a_vendor_field_by_name(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="plain", input="hi", tools=[WEATHER])
    assert caught.value.body["param"] == "tools" and "m" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="plain", input="hi", extra_body={"top_k": 5})
    assert caught.value.body["param"] == "top_k"


@pytest.fixture(scope="module")
def remote():
    upstream = RecordingUpstream()
    with LiveServer(upstream.app) as up:
        config = parse_fleet({"models": [{"name": "remote", "backend": "openai", "base_url": up.url + "/v1"}]})
        with LiveServer(create_app(config)) as gateway:
            yield gateway, upstream


def test_a_tool_call_is_a_function_call_item_whole_and_streamed(remote, openai_client):
    gateway, upstream = remote
    client = openai_client(gateway.url)
    response = client.responses.create(model="remote", input="Weather in Paris?", tools=[WEATHER],
                                       tool_choice={"type": "function", "name": "get_weather"})
    sent = upstream.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.call_id == "call_up" and json.loads(call.arguments) == {"city": "Paris"}
    assert not response.output_text

    events = list(client.responses.create(model="remote", input="Weather?", tools=[WEATHER], stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    final = events[-1].response
    assert [item.type for item in final.output] == ["function_call"]
    with client.responses.stream(model="remote", input="Weather?", tools=[WEATHER]) as stream:
        streamed = stream.get_final_response()
    assert streamed.output[0].name == "get_weather"
