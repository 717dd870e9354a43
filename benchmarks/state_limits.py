"""What a shared store costs a keyed request: per-key limits in-process vs. in Redis, in one run.

Two measurements, each with and without ``state: {url: redis://...}``, interleaved over rounds:

1. **admission**: ``Limiter.admit`` (in-process sliding windows) against ``SharedLimiter.admit``
   (one Lua script on a local ``redis-server`` over loopback TCP), called back to back in one
   event loop; median and p99 per call.
2. **request**: ``smallfleet serve`` in front of the stub upstream, every request with an API key
   that has rpm and tpm limits (so each one is admitted, counted and charged): c=1 latency
   (median, p99) over one keep-alive connection, and c=16 throughput.

Run (needs ``redis-server``: scripts/redis_for_tests.sh)::

    .venv/bin/python benchmarks/state_limits.py --out benchmarks/results/state_limits

It starts its own Redis (no persistence, a free port) unless given ``--redis-url``, and prints
and writes (``OUT.json``, ``OUT.md``) every figure with the ratios redis / in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port, stub_upstream_process, wait_until_serving  # noqa: E402

KEY = "sk-bench"
LIMITS = '{"bench": {"rpm": 1000000000, "tpm": 1000000000000}}'
BODY = {"model": "stub", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: run scripts/redis_for_tests.sh, or pass --redis-url")
    port = free_port()
    args = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            with redis.Redis(port=port) as client:
                client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- 1. admission alone --------------------------------------------------------------------------
async def measure_admission(redis_url: str | None, calls: int) -> dict[str, float]:
    from fleet.config import StateConfig
    from gateway.keys import KeyLimits, KeyStore
    from gateway.limits import Limiter
    from gateway.metrics import GatewayMetrics
    from gateway.shared import SharedLimiter, SharedStore

    keys = KeyStore([f"bench:{KEY}"], limits={"bench": KeyLimits(rpm=10**9, tpm=10**12)})
    key = keys.get("bench")
    assert key is not None
    store = None
    if redis_url is None:
        limiter: Limiter = Limiter(keys, GatewayMetrics())
    else:
        store = SharedStore.connect(redis_url, StateConfig(url=redis_url), GatewayMetrics())
        limiter = SharedLimiter(keys, GatewayMetrics(), store)
    try:
        for _ in range(200):
            assert await limiter.admit(key) is None
        timings = []
        for _ in range(calls):
            start = time.perf_counter()
            refusal = await limiter.admit(key)
            timings.append(time.perf_counter() - start)
            assert refusal is None
    finally:
        if store is not None:
            await store.aclose()
    return {"median_us": statistics.median(timings) * 1e6, "p99_us": _percentile(timings, 0.99) * 1e6}


# -- 2. whole requests through smallfleet serve ---------------------------------------------------
def start_gateway(
    config: Path, redis_url: str | None, state_dir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SMALLFLEET_API_KEYS": f"bench:{KEY}", "SMALLFLEET_KEY_LIMITS": LIMITS}
    env["SMALLFLEET_STATE"] = str(state_dir)
    env.pop("SMALLFLEET_STATE_URL", None)
    if redis_url is not None:
        env["SMALLFLEET_STATE_URL"] = redis_url
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen([*command, "--log-level", "warning"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url + "/health", proc, timeout=120)
    return proc, url


def measure_c1(url: str, seconds: float) -> dict[str, float]:
    timings: list[float] = []
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = client.post("/v1/chat/completions", json=BODY)
            timings.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return {
        "median_ms": statistics.median(timings) * 1e3,
        "p99_ms": _percentile(timings, 0.99) * 1e3,
        "requests": len(timings),
    }


async def measure_c16(url: str, seconds: float, concurrency: int = 16) -> dict[str, float]:
    done, errors = 0, 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                response = await client.post("/v1/chat/completions", json=BODY)
                if response.status_code == 200:
                    done += 1
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"req_per_s": done / seconds, "errors": errors}


def measure_requests(
    config: Path, redis_url: str | None, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    proc, url = start_gateway(config, redis_url, tmp / f"state-{time.monotonic_ns()}")
    try:
        measure_c1(url, args.warmup)
        c1 = measure_c1(url, args.duration)
        c16 = asyncio.run(measure_c16(url, args.duration))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    return {**c1, **c16}


def _median_of(rounds: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in rounds))


def report(results: dict[str, dict[str, list[dict[str, Any]]]]) -> tuple[str, dict[str, float]]:
    adm, req = results["admission"], results["request"]
    local_adm, redis_adm = _median_of(adm["local"], "median_us"), _median_of(adm["redis"], "median_us")
    local_c1, redis_c1 = _median_of(req["local"], "median_ms"), _median_of(req["redis"], "median_ms")
    local_tp, redis_tp = _median_of(req["local"], "req_per_s"), _median_of(req["redis"], "req_per_s")
    ratios = {
        "admission_median_ratio": redis_adm / local_adm,
        "request_c1_median_ratio": redis_c1 / local_c1,
        "request_c1_added_ms": redis_c1 - local_c1,
        "request_c16_throughput_ratio": redis_tp / local_tp,
    }
    lines = [
        "| measurement | in-process | redis | redis / in-process |",
        "|---|---:|---:|---:|",
        f"| admission, median per call | {local_adm:.1f} µs | {redis_adm:.1f} µs "
        f"| {ratios['admission_median_ratio']:.1f}x |",
        f"| admission, p99 per call | {_median_of(adm['local'], 'p99_us'):.1f} µs "
        f"| {_median_of(adm['redis'], 'p99_us'):.1f} µs | |",
        f"| request c=1, median | {local_c1:.3f} ms | {redis_c1:.3f} ms "
        f"| {ratios['request_c1_median_ratio']:.2f}x (+{ratios['request_c1_added_ms']:.3f} ms) |",
        f"| request c=1, p99 | {_median_of(req['local'], 'p99_ms'):.3f} ms "
        f"| {_median_of(req['redis'], 'p99_ms'):.3f} ms | |",
        f"| request c=16, throughput | {local_tp:.0f} req/s | {redis_tp:.0f} req/s "
        f"| {ratios['request_c16_throughput_ratio']:.2f}x |",
    ]
    return "\n".join(lines), ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", help="an existing Redis (default: start one)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--calls", type=int, default=5000, help="admissions per round")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per c=1 and c=16 measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="smallfleet-state-bench-"))
    redis_proc = None
    redis_url = args.redis_url
    if redis_url is None:
        redis_proc, redis_url = start_redis(tmp)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        "admission": {"local": [], "redis": []},
        "request": {"local": [], "redis": []},
    }
    try:
        with stub_upstream_process() as upstream:
            config = tmp / "fleet.yaml"
            config.write_text(f"models:\n  - {{name: stub, backend: openai, base_url: '{upstream}'}}\n")
            for round_ in range(args.rounds):
                for target, url in (("local", None), ("redis", redis_url)):
                    results["admission"][target].append(asyncio.run(measure_admission(url, args.calls)))
                    results["request"][target].append(measure_requests(config, url, tmp, args))
                    print(f"round {round_ + 1} {target}: {results['request'][target][-1]}", file=sys.stderr)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    table, ratios = report(results)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "platform": platform.platform(),
    }
    print(table)
    print(json.dumps(ratios, indent=2))
    if args.out is not None:
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "redis_url")}
        payload = {"machine": machine, "settings": settings, "results": results, "ratios": ratios}
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(
            "# Per-key limits: in-process vs. Redis (benchmarks/state_limits.py)\n\n"
            f"{table}\n\nMachine: {json.dumps(machine)}\nSettings: {json.dumps(settings)}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
