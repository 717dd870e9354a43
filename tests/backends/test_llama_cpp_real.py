"""The gateway serving a real GGUF model (SmolLM2-135M) in-process through llama.cpp."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "What is the capital of France?"}]


def _fleet(max_queue: int):
    model = {
        "name": "smollm2",
        "backend": "llama_cpp",
        "gguf": "packaged:smollm2-135m-instruct-q4_1",
        "context_length": 1024,
        "max_queue": max_queue,
    }
    return parse_fleet({"models": [model]})


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(_fleet(max_queue=1))) as live:
        yield live


@pytest.fixture
def client(server, openai_client):
    return openai_client(server.url)


def test_chat_completion_with_the_models_own_template(client):
    answer = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=24, temperature=0)
    assert answer.model == "smollm2"
    assert answer.choices[0].message.content.strip()
    assert "<|im_end|>" not in answer.choices[0].message.content
    assert answer.usage is not None and 10 < answer.usage.prompt_tokens < 60
    assert 0 < answer.usage.completion_tokens <= 24


def test_max_tokens_is_honoured(client):
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5


def test_seed_makes_sampling_repeatable_and_temperature_zero_is_greedy(client):
    def sample(seed: int) -> str:
        answer = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Tell me a word."}],
            max_tokens=16,
            temperature=1.5,
            top_p=1.0,
            seed=seed,
        )
        return answer.choices[0].message.content or ""

    assert sample(11) == sample(11)
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1


def test_stop_sequences_are_honoured(client):
    answer = client.completions.create(
        model="smollm2", prompt="1, 2, 3, 4, 5, 6,", max_tokens=30, temperature=0, stop=[" 9"]
    )
    text = answer.choices[0].text
    assert " 9" not in text and "7" in text
    assert answer.choices[0].finish_reason == "stop"


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="smollm2",
        messages=HI,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    whole = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=12, temperature=0)
    assert len(pieces) > 3 and "".join(pieces) == whole.choices[0].message.content
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    )


def test_a_prompt_beyond_the_context_is_a_400(client):
    long = "word " * 3000
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": long}], max_tokens=8
        )
    assert caught.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert client.chat.completions.create(model="smollm2", messages=HI, max_tokens=2).choices


def _queue_depth(server: LiveServer) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith('smallfleet_backend_queue_depth{model="smollm2"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no queue depth metric")


def test_health_answers_fast_while_the_model_generates(server):
    payload = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long essay."}],
        "max_tokens": 300,
        "temperature": 0.7,
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, server.url + "/v1/chat/completions", json=payload, timeout=120)
        time.sleep(0.3)
        timings = []
        for _ in range(10):
            start = time.perf_counter()
            assert httpx.get(server.url + "/health").status_code == 200
            timings.append(time.perf_counter() - start)
        assert not busy.done(), "the generation should still be running"
        assert busy.result().status_code == 200
    assert max(timings) < 0.1, timings


def test_a_full_queue_answers_429_and_the_queue_drains(server):
    payload = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long essay."}],
        "max_tokens": 120,
        "temperature": 0.7,
    }
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(httpx.post, server.url + "/v1/chat/completions", json=payload, timeout=120)]
        time.sleep(0.2)
        futures += [
            pool.submit(httpx.post, server.url + "/v1/chat/completions", json=payload, timeout=120)
            for _ in range(3)
        ]
        statuses = sorted(f.result().status_code for f in futures)
    # max_queue=1: one running plus one waiting; the others are turned away at once.
    assert statuses == [200, 200, 429, 429]
    overloaded = [f.result() for f in futures if f.result().status_code == 429][0]
    assert overloaded.json()["error"]["type"] == "rate_limit_error"
    assert _queue_depth(server) == 0


def test_client_disconnect_mid_stream_stops_generation(server):
    payload = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Count to one thousand."}],
        "max_tokens": 900,
        "stream": True,
        "temperature": 0.7,
    }
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=payload) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
        # The client is gone: the worker must be free within a token or two, not after 900 tokens.
        deadline = time.monotonic() + 2.0
        while _queue_depth(server) != 0:
            assert time.monotonic() < deadline, "generation kept running after the client left"
            time.sleep(0.05)
    start = time.perf_counter()
    quick = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "smollm2", "messages": HI, "max_tokens": 2},
        timeout=30,
    )
    assert quick.status_code == 200 and time.perf_counter() - start < 2.0


async def test_token_logprobs_of_a_greedy_answer_are_its_likeliest_tokens(smollm2_gguf):
    """llama.cpp's raw distribution at each step, recorded without logits_all: a greedy answer's
    every token is the top one, and the tokens spell the answer."""
    from backends.llama_cpp import LlamaCppBackend
    from backends.types import GenerationRequest, Message, SamplingParams

    backend = LlamaCppBackend("smollm2", smollm2_gguf, context_length=512, threads=1)
    await backend.start()
    try:
        params = SamplingParams(max_tokens=12, temperature=0.0, logprobs=True, top_logprobs=3)
        answer = await backend.chat(GenerationRequest(messages=(Message("user", HI[0]["content"]),), params=params))
    finally:
        await backend.aclose()
    assert answer.logprobs is not None and len(answer.logprobs) == answer.usage.completion_tokens
    for entry in answer.logprobs:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert entry.top[0][0] == entry.token and entry.top[0][1] == pytest.approx(entry.logprob)
        assert entry.top[0][1] >= entry.top[1][1] >= entry.top[2][1]
    assert "".join(entry.token for entry in answer.logprobs) == answer.text
