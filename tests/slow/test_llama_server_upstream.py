"""The `openai` backend in front of a real llama.cpp server process (python -m llama_cpp.server)."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_fleet
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
