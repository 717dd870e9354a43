"""Two ``smallfleet serve`` processes sharing one real Redis behave as one gateway.

Over loopback with httpx, in front of the stub upstream: a key's rpm holds across both, a key
made on one works on the other and once revoked fails on both, a reload (HTTP or SIGHUP) on one
is served by both under concurrent traffic with no failed request, and stopping Redis
mid-traffic leaves both answering (``on_error: open``).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import router
from tests.conftest import REPO, free_port, wait_until_serving
from tests.gateway.shared.redis_server import RedisServer

MODELS = ["gemma-2-9b-it", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]
AUTO = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 4}
CHAT = {"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ADMIN = {"authorization": "Bearer sk-admin"}
FREE = {"authorization": "Bearer sk-free"}


def _fleet_yaml(path: Path, upstream: str, artifact: str, redis_url: str, db: Path) -> None:
    models = "".join(f"  - {{name: {n}, backend: openai, base_url: '{upstream}'}}\n" for n in MODELS)
    path.write_text(
        f"models:\n{models}"
        f"router: {{artifact: '{artifact}'}}\n"
        f"request_log: {{url: 'sqlite:///{db}'}}\n"
        f"state: {{url: '{redis_url}', on_error: open}}\n"
    )


@pytest.fixture
def two_replicas(
    own_redis: RedisServer, stub_upstream: str, tmp_path: Path
) -> Iterator[tuple[list[str], list, str]]:
    """Both replicas' URLs and processes, and a second artifact (version ``test-v2``)."""
    second = tmp_path / "v2"
    shutil.copytree(router.DEFAULT_ARTIFACT, second)
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["version"] = "test-v2"
    (second / "manifest.json").write_text(json.dumps(manifest))
    env = {
        **os.environ,
        "SMALLFLEET_API_KEYS": "limited:sk-limited,free:sk-free",
        "SMALLFLEET_KEY_LIMITS": '{"limited": {"rpm": 5}}',
        "SMALLFLEET_ADMIN_KEYS": "sk-admin",
    }
    procs, urls = [], []
    try:
        for name in ("a", "b"):
            config = tmp_path / f"fleet-{name}.yaml"
            _fleet_yaml(
                config, stub_upstream, str(router.DEFAULT_ARTIFACT), own_redis.url, tmp_path / f"{name}.db"
            )
            port = free_port()
            command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
            proc_env = {**env, "SMALLFLEET_STATE": str(tmp_path / f"state-{name}")}
            procs.append(
                subprocess.Popen(
                    [*command, "--log-level", "warning"], cwd=REPO, env=proc_env, stderr=subprocess.PIPE
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_until_serving(url + "/health", proc, timeout=120)
        yield urls, procs, str(second)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def _until(check, seconds: float) -> float:
    """Seconds until ``check()`` is true; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


class Traffic:
    """Requests to both replicas from a few threads until stopped; every status kept."""

    def __init__(self, urls: list[str], body: dict, workers: int = 4) -> None:
        self.urls, self.body, self.statuses = urls, body, []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._run, i) for i in range(workers)]

    def _run(self, worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = worker
            while not self._stop.is_set():
                try:
                    response = client.post(
                        self.urls[i % 2] + "/v1/chat/completions", json=self.body, headers=FREE
                    )
                    self.statuses.append(response.status_code)
                    self.versions.append(response.headers.get("x-smallfleet-router-version", ""))
                except httpx.HTTPError as exc:
                    self.statuses.append(type(exc).__name__)
                i += 1

    def stop(self) -> list:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.statuses


def _chat(url: str, key: str, body: dict = CHAT) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def _version(url: str) -> str:
    return _chat(url, "sk-free", AUTO).headers["x-smallfleet-router-version"]


def test_two_serve_processes_share_limits_keys_and_the_router(two_replicas, own_redis):
    (a, b), procs, second = two_replicas

    # a key limited to 5 requests a minute gets 5 answers across both replicas, then 429 from either
    statuses = [_chat((a, b)[i % 2], "sk-limited").status_code for i in range(8)]
    assert statuses == [200] * 5 + [429] * 3

    # a key made on A works on B; revoked on B, it fails on both (at A's next poll: the in-process
    # tests in test_shared_keys.py count the polls; these bounds only keep a broken sync from
    # hanging the test)
    created = httpx.post(a + "/admin/keys", json={"name": "team-x"}, headers=ADMIN)
    secret = created.json()["key"]
    _until(lambda: _chat(b, secret).status_code == 200, 10.0)
    assert httpx.delete(b + "/admin/keys/team-x", headers=ADMIN).json()["revoked"] is True
    _until(lambda: _chat(a, secret).status_code == 401, 10.0)
    assert _chat(b, secret).status_code == 401

    # a reload on A, under traffic to both, is served by both within a few seconds, nothing fails
    first = _version(a)
    traffic = Traffic([a, b], AUTO)
    reloaded = httpx.post(a + "/admin/router/reload", json={"artifact": second}, headers=ADMIN, timeout=30)
    assert reloaded.json()["version"] == "test-v2"
    _until(lambda: _version(a) == _version(b) == "test-v2", 5.0)
    time.sleep(0.5)
    assert set(traffic.stop()) == {200}
    assert {first, "test-v2"} >= set(traffic.versions)

    # SIGHUP on B reloads its configured artifact, and A follows
    procs[1].send_signal(signal.SIGHUP)
    _until(lambda: _version(a) == _version(b) == first, 5.0)

    # Redis stopped mid-traffic: both replicas keep answering (limits fail open)
    traffic = Traffic([a, b], CHAT)
    time.sleep(0.5)
    own_redis.stop()
    time.sleep(2.0)
    statuses = traffic.stop()
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    for url in (a, b):
        assert httpx.get(url + "/health").status_code == 200
        assert 'smallfleet_state_errors_total{operation="admit"}' in httpx.get(url + "/metrics").text
