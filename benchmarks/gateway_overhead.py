"""Gateway overhead benchmark: direct vs. a bare pass-through vs. smallfleet vs. LiteLLM proxy.

In one run on one machine this script

1. starts the stub upstream (``tests/stub_upstream.py``, shared with the tests),
2. measures four targets, one after the other, each started alone:
   ``direct`` (the stub itself), ``passthrough`` (``benchmarks/passthrough.py``: the
   gateway's HTTP stack, uvicorn with uvloop and httptools, forwarding to the stub through
   an aiohttp session with no gateway logic), ``gateway`` (smallfleet through its
   ``openai`` backend, in front of the stub, with API keys, per-key limits, the request
   log and metrics on) and ``litellm`` (LiteLLM's proxy, one worker, in front of the
   same stub),
3. for each: latency at concurrency 1 (median, p90, p99) and throughput at
   concurrency 16 (requests/s over a fixed duration), both after a warm-up,
4. prints a table and the figures of the performance floor: the gateway's
   added median latency at c=1 (gateway - direct, ms; floor: <= 1 ms), the
   throughput ratio gateway / LiteLLM at c=16 (floor: >= 10), and against the
   pass-through: added median latency gateway / pass-through (target <= 1.5) and
   throughput gateway / pass-through (target >= 0.4),
5. optionally writes everything as JSON (``--json PATH``).

The load generator is ``wrk`` when installed (``apt-get install wrk``), else
an aiohttp client in this process. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STUB_SCRIPT = REPO_ROOT / "tests" / "stub_upstream.py"
PASSTHROUGH_SCRIPT = REPO_ROOT / "benchmarks" / "passthrough.py"
HOST = "127.0.0.1"
MODEL = "stub"
REQUEST_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}],
                "max_tokens": 16}
CHAT_PATH = "/v1/chat/completions"
TARGETS = ("direct", "direct_streamed", "passthrough", "gateway", "unheld", "baseline", "litellm")
DEFAULT_GATEWAY_CMD = "{python} -m gateway serve --config {config} --host {host} --port {port}"
DEFAULT_LITELLM_CMD = ("{python} -m litellm.proxy.proxy_cli --config {config} --host {host} "
                       "--port {port} --num_workers 1")
OVERHEAD_FLOOR_MS = 1.0
THROUGHPUT_FLOOR = 10.0
PASSTHROUGH_OVERHEAD_TARGET = 1.5  # gateway's added c=1 median / the pass-through's, at most
PASSTHROUGH_THROUGHPUT_TARGET = 0.4  # gateway's c=16 throughput / the pass-through's, at least
# Every request carries this key; the gateway knows it (with limits) when its features are on,
# the other targets ignore the header.
BENCH_KEY = "sk-bench-0123456789abcdef"
BENCH_KEY_LIMITS = {"*": {"rpm": 100_000_000, "tpm": 1_000_000_000, "budget": 1e12}}
REQUEST_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}

# wrk script: a fixed POST, and a machine-readable summary at the end.
WRK_LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, '
    .. '"p90_us": %%d, "p99_us": %%d, "mean_us": %%f, "max_us": %%d, "status_errors": %%d, '
    .. '"socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout))
end
"""


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class LoadResult:
    """One load-generator run."""

    concurrency: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    # CPU time (user + system, all threads) the target's process used per request during the
    # run; None for the stub (direct), whose process also serves every other target
    cpu_us_per_request: float | None = None


@dataclass
class TargetResult:
    name: str
    url: str
    c1: LoadResult | None = None
    cn: LoadResult | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """Prefix ``cmd`` with taskset when a CPU list is given."""
    if not cpus:
        return cmd
    return ["taskset", "-c", cpus, *cmd]


class Managed:
    """A child process in its own session, logging to a file."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
                 capture_stdout: bool = False) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self._log, stderr=self._log,
            start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # its own session: the child and its workers


def start_stub(python: str, log_dir: Path, cpus: str | None, timeout: float = 20.0
               ) -> tuple[Managed, int]:
    """Start the stub on a free port; return it and the port it printed."""
    cmd = pinned([python, str(STUB_SCRIPT), "--host", HOST, "--port", "0", "--model", MODEL], cpus)
    stub = Managed("stub", cmd, log_dir, capture_stdout=True)
    assert stub.proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and stub.alive():
        line = stub.proc.stdout.readline()
        if b"listening on http://" in line:
            return stub, int(line.rsplit(b":", 1)[1])
    stub.stop()
    raise RuntimeError(f"stub upstream did not start: {line!r}\n{stub.log_tail()}")


def wait_healthy(proc: Managed, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200, the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.proc.returncode}) before it was "
                               f"healthy; log {proc.log_path}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not healthy at {url} after {timeout:.0f}s ({last}); "
                       f"log {proc.log_path}:\n{proc.log_tail()}")


def fleet_yaml(stub_port: int, request_log: Path, held: bool = True) -> str:
    """The gateway's fleet: the stub as its one model. ``held=False``: the model is not held to
    the first-token deadline, so a whole answer is asked of it whole, as the pass-through asks,
    rather than as a stream read to its first token."""
    unheld = "" if held else "    resilience:\n      deadline: false\n"
    return (f"models:\n  - name: {MODEL}\n    backend: openai\n"
            f"    base_url: http://{HOST}:{stub_port}/v1\n{unheld}"
            f"request_log:\n  url: sqlite:///{request_log}\n")


def gateway_env(features: bool) -> dict[str, str]:
    """The gateway's environment: with ``features``, an API key with per-key limits (rpm, tpm
    and a budget, all far above what a run reaches, so every request is admitted, counted and
    charged); without, no key (keyless on loopback)."""
    env = dict(os.environ)
    for name in ("SMALLFLEET_API_KEYS", "SMALLFLEET_KEY_LIMITS", "SMALLFLEET_STATE_URL"):
        env.pop(name, None)
    if features:
        env["SMALLFLEET_API_KEYS"] = f"bench:{BENCH_KEY}"
        env["SMALLFLEET_KEY_LIMITS"] = json.dumps(BENCH_KEY_LIMITS)
    return env


def litellm_yaml(stub_port: int) -> str:
    """LiteLLM proxy config: the stub as an OpenAI-compatible model, logging minimal."""
    return f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://{HOST}:{stub_port}/v1
      api_key: sk-stub
litellm_settings:
  set_verbose: false
  json_logs: false
  turn_off_message_logging: true
  telemetry: false
general_settings:
  # no master key: no per-request auth, its cheapest setting (local benchmark only)
  dangerously_permit_weak_or_unset_master_key: true
"""


def litellm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at start-up
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    })
    return env


def format_cmd(template: str, **values: str) -> list[str]:
    return [part.format(**values) for part in shlex.split(template)]


# --------------------------------------------------------------------------
# Requests and load
# --------------------------------------------------------------------------


def request_body(stream: bool) -> dict[str, Any]:
    """The benchmark's request; with ``stream`` (``--stream``) asking for server-sent events, one
    per word, which the gateway relays as they come and the pass-through as one body."""
    return {**REQUEST_BODY, "stream": True} if stream else REQUEST_BODY


def check_answer(url: str, request: dict[str, Any]) -> str:
    """One ``request``; raise unless it is answered with a chat completion (or, streamed, a
    stream of its chunks ending in ``[DONE]``). Returns its content."""
    req = urllib.request.Request(url, data=json.dumps(request).encode(), method="POST",
                                 headers=REQUEST_HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:500]!r}") from exc
    if request.get("stream"):
        events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            raise RuntimeError(f"{url} answered a stream without [DONE]: {body[:500]!r}")
        chunks = [json.loads(event) for event in events[:-1]]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        if not content:
            raise RuntimeError(f"{url} streamed no content: {body[:500]!r}")
        return content
    payload = json.loads(body)
    content = payload["choices"][0]["message"]["content"]
    if not content:
        raise RuntimeError(f"{url} answered an empty completion: {payload}")
    return str(content)


def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


class Wrk:
    """wrk as the load generator (one thread: it is far faster than any target)."""

    def __init__(self, binary: str, work_dir: Path, cpus: str | None, body: dict[str, Any]) -> None:
        self.binary = binary
        self.cpus = cpus
        self.body = body  # the request it sends
        self.script = work_dir / f"post-{hashlib.sha256(json.dumps(body).encode()).hexdigest()[:12]}.lua"
        self.script.write_text(WRK_LUA % (json.dumps(json.dumps(body)), BENCH_KEY))

    def run(self, url: str, concurrency: int, duration: float) -> LoadResult:
        cmd = pinned([self.binary, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
                      "--timeout", "10s", "-s", str(self.script), url], self.cpus)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
        data = json.loads(line[len("WRKJSON "):])
        seconds = data["duration_us"] / 1e6
        return LoadResult(
            concurrency=concurrency, duration_s=round(seconds, 3), requests=data["requests"],
            errors=data["status_errors"] + data["socket_errors"],
            rps=round(data["requests"] / seconds, 1), median_ms=_ms(data["p50_us"]),
            p90_ms=_ms(data["p90_us"]), p99_ms=_ms(data["p99_us"]),
            mean_ms=_ms(data["mean_us"]), max_ms=_ms(data["max_us"]))


class PythonLoad:
    """Fallback load generator: aiohttp keep-alive connections in this process."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body  # the request it sends

    def run(self, url: str, concurrency: int, duration: float) -> LoadResult:
        return asyncio.run(self._run(url, concurrency, duration))

    async def _run(self, url: str, concurrency: int, duration: float) -> LoadResult:
        import aiohttp  # only needed without wrk

        body = json.dumps(self.body).encode()
        headers = REQUEST_HEADERS
        latencies: list[float] = []
        errors = 0
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.perf_counter()
            deadline = start + duration

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            await resp.read()
                            ok = resp.status == 200
                    except aiohttp.ClientError:
                        ok = False
                    latencies.append(time.perf_counter() - t0)
                    errors += 0 if ok else 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
        latencies.sort()
        n = len(latencies)
        return LoadResult(
            concurrency=concurrency, duration_s=round(elapsed, 3), requests=n, errors=errors,
            rps=round(n / elapsed, 1), median_ms=round(percentile(latencies, 50) * 1e3, 3),
            p90_ms=round(percentile(latencies, 90) * 1e3, 3),
            p99_ms=round(percentile(latencies, 99) * 1e3, 3),
            mean_ms=round(sum(latencies) / max(n, 1) * 1e3, 3),
            max_ms=round((latencies[-1] if n else 0.0) * 1e3, 3))


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (all its threads), from /proc; None
    where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def timed_run(loadgen: Wrk | PythonLoad, url: str, concurrency: int, duration: float,
              pid: int | None) -> LoadResult:
    """One load run; with ``pid``, also the CPU that process spent per request meanwhile (a
    steadier figure than latency on a shared machine: it does not count time waiting for a core)."""
    before = process_cpu_seconds(pid) if pid is not None else None
    result = loadgen.run(url, concurrency, duration)
    after = process_cpu_seconds(pid) if pid is not None else None
    if before is not None and after is not None and result.requests:
        result.cpu_us_per_request = round((after - before) / result.requests * 1e6, 1)
    return result


def measure(loadgen: Wrk | PythonLoad, result: TargetResult, args: argparse.Namespace,
            pid: int | None = None) -> None:
    """Warm up, then c=1 latency and c=N throughput (and ``pid``'s CPU per request in each)."""
    url = result.url
    print(f"[{result.name}] warm-up", flush=True)
    loadgen.run(url, args.concurrency, args.warmup)
    print(f"[{result.name}] c=1 for {args.c1_duration:g}s", flush=True)
    result.c1 = timed_run(loadgen, url, 1, args.c1_duration, pid)
    print(f"[{result.name}]   median {result.c1.median_ms:.3f} ms over {result.c1.requests} "
          f"requests{_cpu_note(result.c1)}", flush=True)
    loadgen.run(url, args.concurrency, args.warmup)
    print(f"[{result.name}] c={args.concurrency} for {args.duration:g}s", flush=True)
    result.cn = timed_run(loadgen, url, args.concurrency, args.duration, pid)
    print(f"[{result.name}]   {result.cn.rps:.1f} req/s{_cpu_note(result.cn)}", flush=True)
    for run in (result.c1, result.cn):
        if run.errors:
            result.notes.append(f"{run.errors} errors at c={run.concurrency}")


def _cpu_note(run: LoadResult) -> str:
    return "" if run.cpu_us_per_request is None else f", {run.cpu_us_per_request:.0f} us CPU per request"


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------


def run_proxy(name: str, cmd: list[str], health_url: str, chat_url: str, env: dict[str, str] | None,
              loadgen: Wrk | PythonLoad, args: argparse.Namespace, log_dir: Path) -> TargetResult:
    result = TargetResult(name, chat_url)
    print(f"[{name}] starting: {shlex.join(cmd)}", flush=True)
    proc = Managed(name, cmd, log_dir, env=env)
    try:
        wait_healthy(proc, health_url, args.start_timeout)
        check_answer(chat_url, loadgen.body)
        measure(loadgen, result, args, proc.proc.pid)
    finally:
        proc.stop()
    return result


def run_gateway(stub_port: int, loadgen: Wrk | PythonLoad, args: argparse.Namespace,
                work_dir: Path, name: str = "gateway") -> TargetResult:
    config = work_dir / "fleet.yaml"
    request_log = work_dir / "requests.db"
    for stale in work_dir.glob("requests.db*"):  # each round starts with an empty log
        stale.unlink()
    config.write_text(fleet_yaml(stub_port, request_log, held=name != "unheld"))
    port = free_port()
    template = args.baseline_cmd if name == "baseline" else args.gateway_cmd
    cmd = pinned(format_cmd(template, python=args.gateway_python, config=str(config),
                            host=HOST, port=str(port)), args.proxy_cpus)
    base = f"http://{HOST}:{port}"
    env = gateway_env(args.gateway_features == "on")
    return run_proxy(name, cmd, base + "/health", base + CHAT_PATH, env, loadgen, args,
                     work_dir)


def run_passthrough(stub_port: int, loadgen: Wrk | PythonLoad, args: argparse.Namespace,
                    work_dir: Path) -> TargetResult:
    port = free_port()
    cmd = pinned([args.gateway_python, str(PASSTHROUGH_SCRIPT), "--upstream",
                  f"http://{HOST}:{stub_port}", "--host", HOST, "--port", str(port)],
                 args.proxy_cpus)
    base = f"http://{HOST}:{port}"
    return run_proxy("passthrough", cmd, base + "/health", base + CHAT_PATH, None, loadgen,
                     args, work_dir)


def run_litellm(stub_port: int, loadgen: Wrk | PythonLoad, args: argparse.Namespace,
                work_dir: Path) -> TargetResult:
    config = work_dir / "litellm.yaml"
    config.write_text(litellm_yaml(stub_port))
    port = free_port()
    cmd = pinned(format_cmd(args.litellm_cmd, python=args.litellm_python, config=str(config),
                            host=HOST, port=str(port)), args.proxy_cpus)
    base = f"http://{HOST}:{port}"
    return run_proxy("litellm", cmd, base + "/health/liveliness", base + CHAT_PATH,
                     litellm_env(), loadgen, args, work_dir)


def held_upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    """What a gateway whose model is held to the first-token deadline asks the stub for when the
    client asks for ``body`` whole: the same answer as a stream, with its usage."""
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def run_direct(stub_port: int, loadgen: Wrk | PythonLoad, args: argparse.Namespace,
               name: str = "direct") -> TargetResult:
    result = TargetResult(name, f"http://{HOST}:{stub_port}{CHAT_PATH}")
    check_answer(result.url, loadgen.body)
    measure(loadgen, result, args)
    return result


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def summarize(results: dict[str, TargetResult]) -> dict[str, Any]:
    """Overheads and ratios, with the floor's verdicts where both sides ran."""
    out: dict[str, Any] = {}
    direct = results.get("direct")
    for name in ("passthrough", "gateway", "unheld", "baseline", "litellm"):
        target = results.get(name)
        if direct and direct.c1 and target and target.c1:
            out[f"{name}_overhead_median_ms"] = round(target.c1.median_ms - direct.c1.median_ms, 3)
    for name in ("passthrough", "gateway", "unheld", "baseline", "litellm"):
        target = results.get(name)
        for key, run in (("c1", target.c1 if target else None), ("cn", target.cn if target else None)):
            if run is not None and run.cpu_us_per_request is not None:
                out[f"{name}_cpu_us_per_request_{key}"] = run.cpu_us_per_request
    gateway, litellm = results.get("gateway"), results.get("litellm")
    if gateway and gateway.cn and litellm and litellm.cn and litellm.cn.rps > 0:
        out["gateway_vs_litellm_throughput"] = round(gateway.cn.rps / litellm.cn.rps, 2)
    if direct and direct.cn and gateway and gateway.cn and direct.cn.rps > 0:
        out["gateway_vs_direct_throughput"] = round(gateway.cn.rps / direct.cn.rps, 3)
    passthrough = results.get("passthrough")
    if passthrough and passthrough.cn and gateway and gateway.cn and passthrough.cn.rps > 0:
        out["gateway_vs_passthrough_throughput"] = round(gateway.cn.rps / passthrough.cn.rps, 3)
    streamed = results.get("direct_streamed")
    if direct and direct.c1 and streamed and streamed.c1 and "unheld_overhead_median_ms" in out:
        # A held gateway waits for the stub to stream the answer where the unheld one waits for it
        # whole; the rest of its work is the unheld gateway's, less one JSON body's parse. So it
        # cannot add less than this, whatever it does with the stream.
        out["stub_streaming_ms"] = round(streamed.c1.median_ms - direct.c1.median_ms, 3)
        out["held_floor_ms"] = round(out["unheld_overhead_median_ms"] + out["stub_streaming_ms"], 3)
    for name in ("unheld", "baseline"):
        other = results.get(name)
        if passthrough and passthrough.cn and other and other.cn and passthrough.cn.rps > 0:
            out[f"{name}_vs_passthrough_throughput"] = round(other.cn.rps / passthrough.cn.rps, 3)
    for name in ("gateway", "unheld", "baseline", "held_floor"):
        key = f"{name}_overhead_median_ms" if name != "held_floor" else "held_floor_ms"
        if out.get("passthrough_overhead_median_ms", 0) > 0 and key in out:
            out[f"{name}_vs_passthrough_overhead"] = round(
                out[key] / out["passthrough_overhead_median_ms"], 2)
    if "gateway_overhead_median_ms" in out:
        out["overhead_floor_met"] = out["gateway_overhead_median_ms"] <= OVERHEAD_FLOOR_MS
    if "gateway_vs_litellm_throughput" in out:
        out["throughput_floor_met"] = out["gateway_vs_litellm_throughput"] >= THROUGHPUT_FLOOR
    if "gateway_vs_passthrough_overhead" in out:
        out["passthrough_overhead_target_met"] = (
            out["gateway_vs_passthrough_overhead"] <= PASSTHROUGH_OVERHEAD_TARGET)
    if "gateway_vs_passthrough_throughput" in out:
        out["passthrough_throughput_target_met"] = (
            out["gateway_vs_passthrough_throughput"] >= PASSTHROUGH_THROUGHPUT_TARGET)
    return out


def print_table(results: dict[str, TargetResult], summary: dict[str, Any], concurrency: int) -> None:
    header = (f"{'target':<11} {'c1 median':>10} {'c1 p90':>9} {'c1 p99':>9} {'c1 req':>8} "
              f"{'c' + str(concurrency) + ' req/s':>11} {'c' + str(concurrency) + ' p50':>9} "
              f"{'errors':>7}")
    print("\n" + header)
    print("-" * len(header))
    for res in results.values():
        if not (res.c1 and res.cn):
            continue
        print(f"{res.name:<11} {res.c1.median_ms:>8.3f}ms {res.c1.p90_ms:>7.3f}ms "
              f"{res.c1.p99_ms:>7.3f}ms {res.c1.requests:>8} {res.cn.rps:>11.1f} "
              f"{res.cn.median_ms:>7.2f}ms {res.c1.errors + res.cn.errors:>7}")
    print()
    labels = {
        "gateway_overhead_median_ms": f"gateway added median latency at c=1 (floor <= "
                                      f"{OVERHEAD_FLOOR_MS:g} ms)",
        "passthrough_overhead_median_ms": "pass-through added median latency at c=1",
        "gateway_vs_passthrough_overhead": f"gateway / pass-through added median latency at c=1 "
                                           f"(target <= {PASSTHROUGH_OVERHEAD_TARGET:g})",
        "gateway_vs_passthrough_throughput": f"gateway / pass-through throughput at "
                                             f"c={concurrency} (target >= "
                                             f"{PASSTHROUGH_THROUGHPUT_TARGET:g})",
        "unheld_overhead_median_ms": "unheld (--unheld) added median latency at c=1",
        "unheld_vs_passthrough_overhead": "unheld / pass-through added median latency at c=1",
        "unheld_vs_passthrough_throughput": f"unheld / pass-through throughput at c={concurrency}",
        "stub_streaming_ms": "the stub's c=1 median, streaming the answer (direct_streamed) less whole",
        "held_floor_ms": "a held gateway's least added latency at c=1: unheld's + the stub's streaming",
        "held_floor_vs_passthrough_overhead": "that floor / pass-through added median latency at c=1",
        "baseline_overhead_median_ms": "baseline (--baseline-cmd) added median latency at c=1",
        "baseline_vs_passthrough_overhead": "baseline / pass-through added median latency at c=1",
        "baseline_vs_passthrough_throughput": f"baseline / pass-through throughput at "
                                              f"c={concurrency}",
        **{f"{name}_cpu_us_per_request_{key}": f"{name} CPU per request at c={c} (us)"
           for name in ("passthrough", "gateway", "unheld", "baseline")
           for key, c in (("c1", 1), ("cn", concurrency))},
        "litellm_overhead_median_ms": "LiteLLM added median latency at c=1",
        "gateway_vs_litellm_throughput": f"gateway / LiteLLM throughput at c={concurrency} "
                                         f"(floor >= {THROUGHPUT_FLOOR:g})",
        "gateway_vs_direct_throughput": f"gateway / direct throughput at c={concurrency}",
        "overhead_floor_met": "latency floor met",
        "throughput_floor_met": "throughput floor met",
        "passthrough_overhead_target_met": "latency target against the pass-through met",
        "passthrough_throughput_target_met": "throughput target against the pass-through met",
    }
    for key, label in labels.items():
        if key in summary:
            print(f"  {label}: {summary[key]}")
    for res in results.values():
        for note in res.notes:
            print(f"  note [{res.name}]: {note}")


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def run_round(stub_port: int, loadgen: Wrk | PythonLoad, args: argparse.Namespace,
              work_dir: Path, reverse: bool = False) -> dict[str, TargetResult]:
    """Every target once, one after the other, each proxy started and stopped. ``reverse``: the
    proxies in the opposite order (the stub itself is measured first either way), so that over
    rounds each proxy runs early and late: where a target ran in a round has moved its figures
    more than some changes do."""
    results: dict[str, TargetResult] = {}
    direct = [name for name in TARGETS if name.startswith("direct")]
    proxies = [name for name in TARGETS if not name.startswith("direct")]
    for name in direct + (proxies[::-1] if reverse else proxies):
        if name in args.skip:
            continue
        if name == "direct":
            results[name] = run_direct(stub_port, loadgen, args)
        elif name == "direct_streamed":
            if args.unheld and not args.stream:  # the stub's own cost of streaming what is held
                streamed = held_upstream_body(loadgen.body)
                streamed_load = (Wrk(loadgen.binary, work_dir, loadgen.cpus, streamed)
                                 if isinstance(loadgen, Wrk) else PythonLoad(streamed))
                results[name] = run_direct(stub_port, streamed_load, args, name)
        elif name == "passthrough":
            results[name] = run_passthrough(stub_port, loadgen, args, work_dir)
        elif name == "gateway":
            results[name] = run_gateway(stub_port, loadgen, args, work_dir)
        elif name == "unheld":
            if args.unheld:
                results[name] = run_gateway(stub_port, loadgen, args, work_dir, name)
        elif name == "baseline":
            if args.baseline_cmd:
                results[name] = run_gateway(stub_port, loadgen, args, work_dir, name)
        else:
            results[name] = run_litellm(stub_port, loadgen, args, work_dir)
    return {name: results[name] for name in TARGETS if name in results}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def combine_loads(runs: list[LoadResult]) -> LoadResult:
    """Median of each figure over rounds; counts are summed."""
    if len(runs) == 1:
        return runs[0]

    def med(attr: str) -> float:
        return round(_median([float(getattr(run, attr)) for run in runs]), 3)

    return LoadResult(
        concurrency=runs[0].concurrency, duration_s=round(sum(r.duration_s for r in runs), 3),
        requests=sum(r.requests for r in runs), errors=sum(r.errors for r in runs),
        rps=med("rps"), median_ms=med("median_ms"), p90_ms=med("p90_ms"), p99_ms=med("p99_ms"),
        mean_ms=med("mean_ms"), max_ms=max(r.max_ms for r in runs),
        cpu_us_per_request=(None if any(r.cpu_us_per_request is None for r in runs)
                            else med("cpu_us_per_request")))


def combine_rounds(rounds: list[dict[str, TargetResult]]) -> dict[str, TargetResult]:
    """One result per target: the median over rounds of each figure."""
    combined: dict[str, TargetResult] = {}
    for name in rounds[0]:
        runs = [one[name] for one in rounds]
        result = TargetResult(name, runs[0].url)
        c1s = [r.c1 for r in runs if r.c1]
        cns = [r.cn for r in runs if r.cn]
        result.c1 = combine_loads(c1s) if c1s else None
        result.cn = combine_loads(cns) if cns else None
        result.notes = [note for r in runs for note in r.notes]
        combined[name] = result
    return combined


def run_all(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    wrk = None if args.loadgen == "python" else shutil.which("wrk")
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk not found (apt-get install -y wrk), or use --loadgen python")
    body = request_body(args.stream)
    loadgen: Wrk | PythonLoad = Wrk(wrk, work_dir, args.loadgen_cpus, body) if wrk else PythonLoad(body)
    info = machine_info()
    stub, stub_port = start_stub(args.stub_python, work_dir, args.stub_cpus)
    rounds: list[dict[str, TargetResult]] = []
    try:
        print(f"stub upstream on port {stub_port}; load generator: "
              f"{'wrk' if wrk else 'aiohttp'}", flush=True)
        for index in range(args.rounds):
            if args.rounds > 1:
                print(f"--- round {index + 1}/{args.rounds}", flush=True)
            rounds.append(run_round(stub_port, loadgen, args, work_dir, reverse=index % 2 == 1))
    finally:
        stub.stop()
    results = combine_rounds(rounds)
    summary = summarize(results)
    print_table(results, summary, args.concurrency)
    return {
        "machine": info,
        "settings": {"request": body, "loadgen": "wrk" if wrk else "aiohttp",
                     "concurrency": args.concurrency, "c1_duration_s": args.c1_duration,
                     "duration_s": args.duration, "warmup_s": args.warmup,
                     "rounds": args.rounds,
                     "cpus": {"loadgen": args.loadgen_cpus, "stub": args.stub_cpus,
                              "proxy": args.proxy_cpus},
                     "gateway_cmd": args.gateway_cmd, "litellm_cmd": args.litellm_cmd,
                     "gateway_features": args.gateway_features,
                     "litellm_version": litellm_version(args) if "litellm" in results else None},
        "results": {name: asdict(res) for name, res in results.items()},
        "rounds": [{name: asdict(res) for name, res in one.items()} for one in rounds],
        "summary": summary,
    }


def litellm_version(args: argparse.Namespace) -> str | None:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    out = subprocess.run([args.litellm_python, "-c", code], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() or None


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the smallfleet gateway's overhead against the upstream and LiteLLM.")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--skip", action="append", choices=TARGETS, default=[],
                        help="leave a target out (repeatable)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target this many times, interleaved (the proxies in "
                             "the opposite order every other round); report the median of each "
                             "figure over rounds")
    parser.add_argument("--c1-duration", type=float, default=10.0,
                        help="seconds of sequential requests for the c=1 latency")
    parser.add_argument("--duration", type=float, default=15.0,
                        help="seconds of load for the c=N throughput")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of c=N load before each measurement")
    parser.add_argument("--gateway-cmd", default=DEFAULT_GATEWAY_CMD,
                        help="placeholders: {python} {config} {host} {port}")
    parser.add_argument("--baseline-cmd",
                        help="a second gateway measured in the same run (e.g. an older "
                             "checkout: '{python} -c \"...\"'); placeholders as --gateway-cmd")
    parser.add_argument("--stream", action="store_true",
                        help='send every request with "stream": true (server-sent events, one per word)')
    parser.add_argument("--unheld", action="store_true",
                        help="also measure the gateway with its model not held to the first-token "
                             "deadline (resilience.deadline: false): the upstream asked for a whole "
                             "answer, as the pass-through asks, instead of a stream")
    parser.add_argument("--gateway-python", default=sys.executable,
                        help="interpreter for the gateway and the pass-through")
    parser.add_argument("--gateway-features", choices=("on", "off"), default="on",
                        help="on: API keys with per-key limits (every request keyed), the "
                             "request log (SQLite) and metrics; off: no keys")
    parser.add_argument("--litellm-python", default=str(REPO_ROOT / ".venv-litellm/bin/python"))
    parser.add_argument("--litellm-cmd", default=DEFAULT_LITELLM_CMD,
                        help="placeholders: {python} {config} {host} {port}")
    parser.add_argument("--stub-python", default=sys.executable)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--pin", action="store_true",
                        help="pin load generator and stub to CPU 0, the proxy to CPU 1")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--log-dir", type=Path,
                        help="keep the processes' logs and configs here (default: a temp dir)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a measured floor is not met")
    args = parser.parse_args(argv)
    args.loadgen_cpus = args.stub_cpus = "0" if args.pin else None
    args.proxy_cpus = "1" if args.pin else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smallfleet-bench-") as tmp:
        work_dir = args.log_dir or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            report = run_all(args, work_dir)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    summary = report["summary"]
    verdicts = ("overhead_floor_met", "throughput_floor_met", "passthrough_overhead_target_met",
                "passthrough_throughput_target_met")
    if args.check and any(summary.get(name) is False for name in verdicts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
