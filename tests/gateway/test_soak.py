"""Soak: steady concurrency through a subprocess gateway to the stub upstream, for a bounded time.

The gateway (``python -m gateway serve``) sits in front of ``tests/stub_upstream.py``
(model ``ok``) with a SQLite request log. ``CONCURRENCY`` clients send
completions back to back for ``SMALLFLEET_SOAK_SECONDS`` (default 20; the long
form is e.g. 1800). The gateway's own RSS and open file descriptors are
sampled after a warm-up and at the end, under the same load: neither may grow
beyond a small tolerance. After a graceful stop, the request log holds exactly
one row per answered request, and every answer was a 200.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, wait_until_serving

pytestmark = pytest.mark.slow  # it runs for SMALLFLEET_SOAK_SECONDS by design
SOAK_SECONDS = float(os.environ.get("SMALLFLEET_SOAK_SECONDS", "20"))
CONCURRENCY = 16
WARMUP_FRACTION = 0.3
RSS_TOLERANCE_BYTES = 16 << 20  # allocator noise over a short run; the long form holds it too
FD_TOLERANCE = 8
CHAT = {"model": "ok", "messages": [{"role": "user", "content": "how are you"}], "max_tokens": 8}


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def gateway(stub_upstream: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    db = tmp_path / "requests.db"
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - name: ok\n"
        "    backend: openai\n"
        f"    base_url: {stub_upstream}\n"
        "    price: {input: 1.0, output: 2.0}\n"
        f"request_log: {{url: 'sqlite:///{db}'}}\n"
    )
    port = free_port()
    env = {**os.environ, "SMALLFLEET_STATE": str(tmp_path / "state")}
    env.pop("SMALLFLEET_API_KEYS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url + "/health", proc, timeout=60)
        yield url, proc, db
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


async def _load(url: str, seconds: float, samples: list[tuple[float, int, int]], pid: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    warm_at = time.monotonic() + seconds * WARMUP_FRACTION
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    response = await client.post("/v1/chat/completions", json=CHAT)
                    key = str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1

        async def sampler() -> None:
            await asyncio.sleep(max(0.0, warm_at - time.monotonic()))
            while time.monotonic() < deadline - 0.5:
                samples.append((time.monotonic(), _rss_bytes(pid), _open_fds(pid)))
                await asyncio.sleep(1.0)

        await asyncio.gather(sampler(), *(worker() for _ in range(CONCURRENCY)))
    return statuses


async def test_steady_load_leaks_nothing_and_loses_no_log_rows(gateway):
    url, proc, db = gateway
    samples: list[tuple[float, int, int]] = []
    statuses = await _load(url, SOAK_SECONDS, samples, proc.pid)
    answered = sum(statuses.values())
    assert statuses == {"200": answered}, statuses
    assert len(samples) >= 3, samples
    warm_rss, end_rss = samples[0][1], samples[-1][1]
    warm_fds, end_fds = samples[0][2], samples[-1][2]
    rss_mib = [round(s[1] / 2**20, 1) for s in samples]
    assert end_rss - warm_rss <= RSS_TOLERANCE_BYTES, f"RSS grew: {rss_mib} MiB"
    assert end_fds - warm_fds <= FD_TOLERANCE, f"open fds grew: {[s[2] for s in samples]}"

    proc.send_signal(signal.SIGTERM)  # graceful: the lifespan flushes the request log
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    with sqlite3.connect(db) as conn:
        rows, ok_rows = conn.execute("SELECT COUNT(*), SUM(status = 200) FROM requests").fetchone()
    conn.close()
    assert rows == ok_rows == answered
    print(f"soak: {answered} requests in {SOAK_SECONDS:g} s, RSS {rss_mib} MiB, fds {warm_fds}->{end_fds}")
