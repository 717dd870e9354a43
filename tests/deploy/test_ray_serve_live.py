"""smallfleet on a real local Ray Serve: the gateway ingress plus a real SmolLM2 deployment.

Ray is kept small (2 CPUs, no dashboard, one replica with one llama.cpp thread) and always
shut down, even when a check fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import ray
from ray import serve

from deploy.rayserve.app import build_app
from tests.conftest import free_port

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
APP_ARGS: dict[str, Any] = {
    "fleet": {
        "models": [
            {
                "name": MODEL,
                "backend": "llama_cpp",
                "gguf": "packaged:smollm2-135m-instruct-q4_1",
                "context_length": 512,
                "threads": 1,
                "max_queue": 0,
                "price": {"input": 1.0, "output": 2.0},
            }
        ]
    },
    "models": {MODEL: {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1}}},
    "ingress": {"ray_actor_options": {"num_cpus": 0.5}},
    "insecure_no_auth": True,
}


@pytest.fixture(scope="module")
def ray_gateway() -> Iterator[str]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # picked once Ray's own processes have bound their ports: one of them once took it first
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(APP_ARGS), name="smallfleet", route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def client(ray_gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=ray_gateway + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_answers_through_the_model_deployment(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
        seed=1,
    )
    answer = raw.parse()
    assert raw.headers["x-smallfleet-model"] == MODEL and raw.headers["x-request-id"]
    assert answer.model == MODEL
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


def test_streaming_passes_through_ray(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_backend_errors_cross_ray_as_the_same_errors(client: openai.OpenAI) -> None:
    # The prompt alone overflows the replica's 512-token context: llama.cpp's backend raises
    # ContextLengthExceeded inside the Ray replica, and the client still gets a 400 with its code.
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 800}], max_tokens=4
        )
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_health_and_metrics_come_from_the_gateway(ray_gateway: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    health = httpx.get(ray_gateway + "/health", timeout=30).json()
    assert health["models"][MODEL]["ok"] is True
    metrics = httpx.get(ray_gateway + "/metrics", timeout=30).text
    assert "smallfleet_requests_total{" in metrics and f'model="{MODEL}"' in metrics
    assert [m.id for m in client.models.list()] == [MODEL]
