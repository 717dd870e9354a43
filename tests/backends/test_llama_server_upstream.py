"""The `openai` backend in front of a real llama.cpp server process (python -m llama_cpp.server)."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer, free_port, wait_until_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            smollm2_gguf,
            "--model_alias",
            "smollm2-upstream",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "1024",
            "--verbose",
            "False",
            # by default it stops a generation when another request (the gateway's health poll)
            # arrives, and ends the stream as if it were done
            "--interrupt_requests",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(url + "/models", proc, timeout=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def gateway_client(llama_server):
    config = parse_fleet(
        {
            "models": [
                {
                    "name": "remote-smollm2",
                    "backend": "openai",
                    "base_url": llama_server,
                    "upstream_model": "smollm2-upstream",
                    "context_length": 1024,
                    # llama-cpp-python's server reports no usage in streams; not held to the
                    # first-token deadline, whole answers are asked for whole and counted exactly
                    "resilience": {"deadline": False},
                }
            ]
        }
    )
    with (
        LiveServer(create_app(config)) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


def test_chat_through_the_gateway_to_llama_server(gateway_client):
    answer = gateway_client.chat.completions.create(
        model="remote-smollm2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    assert answer.model == "remote-smollm2"
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    assert 0 < answer.usage.completion_tokens <= 8


def test_streaming_passes_through_chunk_by_chunk(gateway_client):
    stream = gateway_client.chat.completions.create(
        model="remote-smollm2",
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 5


def test_text_completion_through_the_gateway(gateway_client):
    answer = gateway_client.completions.create(
        model="remote-smollm2", prompt="The sky is", max_tokens=4, temperature=0
    )
    assert answer.choices[0].text


def test_a_named_tool_choice_reaches_llama_server_and_its_call_comes_back(gateway_client):
    """The fields go to the server unchanged; llama-cpp-python's server constrains a named function
    with a grammar of its own and answers OpenAI's tool_calls, which the gateway passes back."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    answer = gateway_client.chat.completions.create(
        model="remote-smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=32,
        temperature=0,
    )
    [call] = answer.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)


def test_json_object_and_a_vendor_field_reach_llama_server(gateway_client):
    answer = gateway_client.chat.completions.create(
        model="remote-smollm2",
        messages=[{"role": "user", "content": "Give a cat's name as a JSON object with one key."}],
        response_format={"type": "json_object"},
        max_tokens=160,
        temperature=0,
        extra_body={"top_k": 1, "repeat_penalty": 1.1},  # llama-cpp-python's own sampling fields
    )
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content), dict)
