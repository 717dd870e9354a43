"""Gateways compared by the instructions they execute per request, under valgrind's callgrind.

Wall-clock and CPU-time figures (``gateway_ab.py``) move by ±20% from one round to the next on a
shared machine, more than most single changes to the hot path save. Instructions do not: the same
gateway, given the same requests, executes the same instructions give or take a fraction of a
percent, however busy the machine is. They are a proxy for CPU time (a cache miss costs more than
an instruction, a system call's kernel side is not counted), good for telling whether a change
made the gateway do less work; the overhead targets themselves are judged in wall-clock time,
by ``gateway_overhead.py``.

Each variant (``gateway_ab.py``'s ``name=COMMAND[|YAML]``; empty for ``smallfleet serve`` from
this checkout; ``{upstream}`` is the stub's URL, for ``passthrough.py``) runs under
``valgrind --tool=callgrind``, with every feature on (an API key with limits, the request log,
metrics) and the benchmark's request (``gateway_overhead.py``) against the same stub. After
``--warmup`` requests, the instructions of ``--requests`` sequential requests (c=1) are counted,
then those of as many requests sent by 16 clients at once (c=16). All of the gateway's threads
are counted. Valgrind runs the gateway ~50x slower, so what depends on time passing behaves as on
a slow machine: every answer's bytes are in by the time the gateway reads them.

    .venv/bin/python benchmarks/instructions_ab.py --requests 1000 \\
        "before={python} -c \\"import sys; sys.path[0] = '/tmp/before'; from gateway.cli import main; \\
sys.exit(main(sys.argv[1:]))\\" serve --config {config} --host {host} --port {port}" "after="
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.gateway_ab import Variant  # noqa: E402
from benchmarks.gateway_overhead import (  # noqa: E402
    CHAT_PATH,
    HOST,
    REQUEST_HEADERS,
    Managed,
    free_port,
    gateway_env,
    request_body,
    start_stub,
    wait_healthy,
)

CALLGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)  # a later dump's "summary" is not its own


def send(port: int, count: int, body: bytes) -> None:
    """``count`` requests, one after another, on one keep-alive connection; each must be a 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", CHAT_PATH, body=body, headers=REQUEST_HEADERS)
            answer = conn.getresponse()
            payload = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {payload[:300]!r}")
    finally:
        conn.close()


def send_concurrently(port: int, count: int, clients: int, body: bytes) -> None:
    failures: list[BaseException] = []

    def client(share: int) -> None:
        try:
            send(port, share, body)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(count // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instructions(dump: Path) -> int:
    found = _TOTALS.search(dump.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(found.group(1))


def measure(variant: Variant, config: Path, args: argparse.Namespace, work: Path,
            body: bytes, upstream: str) -> tuple[float, float]:
    """Instructions per request of one variant: at c=1 and at c=16."""
    port = free_port()
    out = work / f"{variant.name}.callgrind"
    cmd = [*CALLGRIND, f"--callgrind-out-file={out}", *variant.command(config, port, upstream=upstream)]
    # one hash seed for every run: with Python's random one, dicts and sets probe differently from
    # one process to the next, and counts of identical gateways differed by up to ~3%
    proc = Managed(variant.name, cmd, work, env=gateway_env(True) | {"PYTHONHASHSEED": "0"})
    try:
        wait_healthy(proc, f"http://{HOST}:{port}/health", args.start_timeout)
        send_concurrently(port, args.warmup, 16, body)
        send(port, args.warmup, body)
        pid = proc.proc.pid
        control(pid, "--instr=on")
        send(port, args.requests, body)
        control(pid, "--dump=c1")  # written to out.1; the counters start again from zero
        send_concurrently(port, args.requests, 16, body)
        control(pid, "--instr=off")
    finally:
        proc.stop(timeout=120)
    c1 = instructions(Path(f"{out}.1"))
    c16 = instructions(out)
    return c1 / args.requests, c16 / (args.requests // 16 * 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="name=COMMAND[|YAML]")
    parser.add_argument("--requests", type=int, default=1000, help="counted, at c=1 and again at c=16")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--stream", action="store_true", help='requests with "stream": true')
    parser.add_argument("--start-timeout", type=float, default=600.0,
                        help="seconds for a gateway to start under valgrind")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    body = json.dumps(request_body(args.stream)).encode()
    work = Path(tempfile.mkdtemp(prefix="smallfleet-instructions-"))
    stub, stub_port = start_stub(sys.executable, work, None)
    results: dict[str, dict[str, float]] = {}
    try:
        for variant in map(Variant.parse, args.variants):
            config = variant.write_config(work, stub_port, work / f"{variant.name}.db")
            c1, c16 = measure(variant, config, args, work, body, f"http://{HOST}:{stub_port}")
            results[variant.name] = {"c1 instructions/request": round(c1),
                                     "c16 instructions/request": round(c16)}
            print(f"{variant.name}: c=1 {c1:,.0f} instructions per request, c=16 {c16:,.0f}", flush=True)
    finally:
        stub.stop()
    first = next(iter(results.values()), None)
    if first is not None and len(results) > 1:
        print("\nagainst the first:")
        for name, figures in results.items():
            ratios = ", ".join(f"{key} {value / first[key]:.3f}x" for key, value in figures.items())
            print(f"  {name}: {ratios}")
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
