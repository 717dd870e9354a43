"""Every chat-completions field is honoured or refused with a 400 naming it (issue 15).

The gateway's side: fields typed and checked, features that decide who may answer, OpenAI's
shapes of tool calls and log-probabilities, and a remote server that gets every field unchanged
(a recording OpenAI-compatible server over real loopback HTTP, with the real ``openai`` client).
The in-process llama.cpp side is tests/gateway/test_openai_fields_real.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import router as router_package
from backends.fake import FakeBackend
from backends.features import Feature
from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer, fleet_of
from tests.recording_upstream import RecordingUpstream

HI = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ALL = frozenset(Feature)


async def _post(client: Any, **body: Any) -> Any:
    return await client.post("/v1/chat/completions", json={"messages": HI, **body})


# -- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("prediction", {"type": "content", "content": "x"}),
        ("reasoning_effort", "low"),
        ("web_search_options", {}),
        ("store", True),
        ("metadata", {"k": "v"}),
    ],
)
async def test_openai_fields_smallfleet_does_not_honour_are_refused_by_name(make_client, field, value):
    async with make_client(fleet_of("m"), {"m": FakeBackend("m", features=ALL)}) as client:
        response = await _post(client, model="m", **{field: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and error["code"] == "unsupported_parameter"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [WEATHER]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"top_k": 40}, "top_k"),  # a vendor field: only servers that take them get them
        ({"messages": [*HI, {"role": "tool", "tool_call_id": "c1", "content": "18C"}]}, "messages"),
    ],
)
async def test_a_model_without_a_feature_refuses_the_field_that_asks_for_it(make_client, body, param):
    backends = {"plain": FakeBackend("plain"), "able": FakeBackend("able", features=ALL)}
    async with make_client(fleet_of("plain", "able"), backends) as client:
        refused = await _post(client, **{"model": "plain", **body})
        served = await _post(client, **{"model": "able", **body})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert "models that do: able" in error["message"]
    assert served.status_code == 200, served.text
    assert not backends["plain"].requests


async def test_fields_that_ask_for_nothing_are_accepted_everywhere(make_client):
    backend = FakeBackend("plain")
    body = {
        "model": "plain", "logprobs": False, "frequency_penalty": 0, "presence_penalty": 0.0, "store": False,
        "service_tier": "auto", "modalities": ["text"], "metadata": {}, "user": "u1", "top_k": None,
        "tools": [WEATHER], "tool_choice": "none",
    }
    async with make_client(fleet_of("plain"), {"plain": backend}) as client:
        response = await _post(client, **body)
    assert response.status_code == 200, response.text
    request = backend.requests[0]
    assert not request.offers_tools and request.vendor_fields == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),  # without tools
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
        ({"messages": [{"role": "tool", "content": "18C"}]}, "messages"),  # no tool_call_id
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"logit_bias": {"42": 101}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"service_tier": "flex"}, "service_tier"),
    ],
)
async def test_malformed_fields_are_400s_that_name_them(make_client, body, param):
    async with make_client(fleet_of("m"), {"m": FakeBackend("m", features=ALL)}) as client:
        response = await _post(client, **{"model": "m", **body})
    assert response.status_code == 400, response.text
    assert re.split(r"[.\[]", response.json()["error"]["param"])[0] == param


async def test_legacy_completions_refuse_echo_suffix_and_best_of(make_client):
    async with make_client(fleet_of("m"), {"m": FakeBackend("m", features=ALL)}) as client:
        for field, value in (("echo", True), ("suffix", "end"), ("best_of", 3)):
            response = await client.post("/v1/completions", json={"model": "m", "prompt": "1,2,", field: value})
            assert response.status_code == 400, (field, response.text)
            assert response.json()["error"]["param"] == field


# -- auto chooses among the members that can ---------------------------------------------------------
async def test_auto_chooses_only_among_members_that_honour_the_request(make_client):
    artifact = router_package.load_router(str(router_package.DEFAULT_ARTIFACT))
    names = list(artifact.models)[:3]
    able = names[-1]
    backends = {n: FakeBackend(n, reply=f"from {n}", features=ALL if n == able else frozenset()) for n in names}
    config = parse_fleet(
        {
            "models": [{"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1"} for n in names],
            "router": {"artifact": str(router_package.DEFAULT_ARTIFACT)},
        }
    )
    async with make_client(config, backends) as client:
        for alpha in ("auto:quality", "auto:cheap"):
            response = await _post(client, model=alpha, tools=[WEATHER])
            assert response.status_code == 200, response.text
            assert response.json()["model"] == able
        refused = await _post(client, model="auto", logprobs=True, top_k=3)
    assert refused.status_code == 200  # the able member takes vendor fields too
    bias = await _post_bias(config, backends, make_client)
    assert bias.status_code == 400 and bias.json()["error"]["param"] == "logit_bias"


async def _post_bias(config, backends, make_client):
    async with make_client(config, backends) as client:
        return await _post(client, model="auto", logit_bias={"42": 1})


async def test_auto_with_no_able_member_is_a_400_naming_the_field(make_client):
    artifact = router_package.load_router(str(router_package.DEFAULT_ARTIFACT))
    names = list(artifact.models)[:2]
    config = parse_fleet(
        {
            "models": [{"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1"} for n in names],
            "router": {"artifact": str(router_package.DEFAULT_ARTIFACT)},
        }
    )
    async with make_client(config, {n: FakeBackend(n) for n in names}) as client:
        response = await _post(client, model="auto", response_format={"type": "json_object"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"
    assert "no model of this fleet does" in response.json()["error"]["message"]


async def test_a_fallback_must_honour_the_request_too(make_client):
    from backends.errors import BackendUnavailable

    config = parse_fleet(
        {
            "models": [
                {"name": "first", "backend": "openai", "base_url": "http://127.0.0.1:9/v1",
                 "fallbacks": ["plain", "able"]},
                {"name": "plain", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
                {"name": "able", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
            ]
        }
    )
    backends = {
        "first": FakeBackend("first", error=BackendUnavailable("down"), features=ALL),
        "plain": FakeBackend("plain"),
        "able": FakeBackend("able", features=ALL),
    }
    async with make_client(config, backends) as client:
        response = await _post(client, model="first", tools=[WEATHER])
    assert response.status_code == 200 and response.json()["model"] == "able"
    assert not backends["plain"].requests


# -- a remote server gets every field unchanged ----------------------------------------------------------
@pytest.fixture(scope="module")
def remote_gateway():
    upstream = RecordingUpstream()
    with LiveServer(upstream.app) as up:
        config = parse_fleet(
            {"models": [{"name": "remote", "backend": "openai", "base_url": up.url + "/v1", "upstream_model": "up"}]}
        )
        with LiveServer(create_app(config)) as gateway:
            yield gateway, upstream


def test_a_remote_server_gets_every_field_as_sent_and_its_tool_calls_come_back(remote_gateway, openai_client):
    gateway, upstream = remote_gateway
    client = openai_client(gateway.url)
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    answer = client.chat.completions.create(
        model="remote",
        messages=[
            *HI,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c0", "content": "3C"},
        ],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
        logprobs=True,
        top_logprobs=1,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logit_bias={"42": -100},
        extra_body={"top_k": 20, "min_p": 0.05},
    )
    sent = upstream.requests[-1]
    assert sent["model"] == "up"
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "c", "schema": schema,
                                                                              "strict": True}}
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 1)
    assert (sent["frequency_penalty"], sent["presence_penalty"], sent["logit_bias"]) == (0.5, -0.5, {"42": -100})
    assert (sent["top_k"], sent["min_p"]) == (20, 0.05)
    assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert sent["messages"][2] == {"role": "tool", "content": "3C", "tool_call_id": "c0"}
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].id == "call_up"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert choice.logprobs.content[0].token == "x" and choice.logprobs.content[0].logprob == -0.5


def test_a_remote_servers_streamed_tool_call_deltas_reach_the_client(remote_gateway, openai_client):
    gateway, upstream = remote_gateway
    client = openai_client(gateway.url)
    stream = client.chat.completions.create(
        model="remote", messages=HI, tools=[WEATHER], stream=True, logprobs=True, top_logprobs=1,
        response_format={"type": "json_object"}, extra_body={"top_k": 5},
    )
    arguments, names, ids, finish, tokens = "", [], [], None, []
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                arguments += call.function.arguments or ""
                names += [call.function.name] if call.function.name else []
                ids += [call.id] if call.id else []
            finish = choice.finish_reason or finish
            tokens += [t.token for t in (choice.logprobs.content if choice.logprobs else None) or ()]
    assert (names, ids, finish) == (["get_weather"], ["call_up"], "tool_calls")
    assert json.loads(arguments) == {"city": "Paris"}
    assert tokens == ["x"]
    sent = upstream.requests[-1]
    assert sent["stream"] is True and sent["response_format"] == {"type": "json_object"}
    assert (sent["logprobs"], sent["top_logprobs"], sent["top_k"]) == (True, 1, 5)


async def test_a_remote_models_declared_features_narrow_what_it_is_sent(make_client):
    config = parse_fleet(
        {"models": [{"name": "r", "backend": "openai", "base_url": "http://127.0.0.1:9/v1",
                     "features": ["logprobs"]}]}
    )
    assert config.models[0].features == [Feature.LOGPROBS]
    async with make_client(config, {}) as client:  # the real openai backend; nothing listens there
        response = await _post(client, model="r", tools=[WEATHER])
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"


async def test_auto_skips_members_whose_context_cannot_hold_max_tokens(make_client):
    artifact = router_package.load_router(str(router_package.DEFAULT_ARTIFACT))
    names = list(artifact.models)[:3]
    roomy = names[0]
    config = parse_fleet(
        {
            "models": [
                {"name": n, "backend": "openai", "base_url": "http://127.0.0.1:9/v1",
                 "context_length": 8192 if n == roomy else 1024}
                for n in names
            ],
            "router": {"artifact": str(router_package.DEFAULT_ARTIFACT)},
        }
    )
    backends = {n: FakeBackend(n, context_length=8192 if n == roomy else 1024) for n in names}
    async with make_client(config, backends) as client:
        for preset in ("auto:quality", "auto:cheap"):
            response = await _post(client, model=preset, max_tokens=4000)
            assert response.status_code == 200 and response.json()["model"] == roomy
        too_long = await _post(client, model="auto", max_tokens=9000)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"
