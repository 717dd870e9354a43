"""``smallfleet serve`` in this process under ``wrk``: the harness of ``profile_request.py`` and
``request_phases.py``.

The stub upstream runs in its own process; the gateway runs in this one's main thread, as
``smallfleet serve`` runs it, with every feature on (an API key with per-key limits, the request
log in SQLite in a temporary directory, metrics), so that the caller can observe it from inside
(a profiler, marks). ``wrk`` sends the benchmark's request (``gateway_overhead.py``) from a
thread, then the gateway is stopped (SIGINT, as Ctrl-C would).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.gateway_overhead import (  # noqa: E402
    BENCH_KEY,
    BENCH_KEY_LIMITS,
    CHAT_PATH,
    HOST,
    REQUEST_BODY,
    fleet_yaml,
    free_port,
    start_stub,
    wait_healthy,
)


class _InThisProcess:
    """What ``wait_healthy`` needs of a process, for the gateway running in this one."""

    name = "gateway"

    def __init__(self, work: Path) -> None:
        self.log_path = work / "none"

    @staticmethod
    def alive() -> bool:
        return True

    @staticmethod
    def log_tail() -> str:
        return ""


def serve_under_load(
    serve: Callable[[list[str]], Any],
    *,
    concurrency: int,
    seconds: int,
    warmup: int = 0,
    measuring: Callable[[bool], None] = lambda on: None,
    held: bool = True,
) -> str:
    """Serve the gateway by calling ``serve(argv)`` (``smallfleet``'s arguments; it returns once
    the load is over) while ``wrk`` runs ``warmup`` seconds (discarded), then ``seconds`` at
    ``concurrency``, between ``measuring(True)`` and ``measuring(False)``. ``held=False``: the
    model is not held to the first-token deadline (``gateway_overhead.fleet_yaml``). Returns what
    ``wrk`` printed of the measured run."""
    printed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="smallfleet-in-process-") as tmp:
        work = Path(tmp)
        stub, stub_port = start_stub(sys.executable, work, None)
        try:
            config = work / "fleet.yaml"
            config.write_text(fleet_yaml(stub_port, work / "requests.db", held=held))
            os.environ["SMALLFLEET_API_KEYS"] = f"bench:{BENCH_KEY}"
            os.environ["SMALLFLEET_KEY_LIMITS"] = json.dumps(BENCH_KEY_LIMITS)
            port = free_port()
            script = work / "post.lua"
            script.write_text(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(json.dumps(REQUEST_BODY))}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.headers["Authorization"] = "Bearer {BENCH_KEY}"\n')
            url = f"http://{HOST}:{port}"

            def load() -> None:
                try:
                    wait_healthy(_InThisProcess(work), url + "/health", 60)  # type: ignore[arg-type]
                    wrk = ["wrk", "-t1", f"-c{concurrency}", "--latency", "-s", str(script)]
                    if warmup:
                        warm = [*wrk, f"-d{warmup}s", url + CHAT_PATH]
                        subprocess.run(warm, capture_output=True, check=True)
                    measuring(True)
                    out = subprocess.run([*wrk, f"-d{seconds}s", url + CHAT_PATH],
                                         capture_output=True, text=True, check=True)
                    measuring(False)
                    printed.append(out.stdout)
                finally:
                    os.kill(os.getpid(), 2)  # SIGINT: uvicorn shuts down, serve() returns

            threading.Thread(target=load, daemon=True).start()
            serve(["serve", "--config", str(config), "--host", HOST, "--port", str(port),
                   "--log-level", "warning"])
        finally:
            stub.stop()
    if not printed:
        raise RuntimeError("the load did not run (see the gateway's output above)")
    return printed[0]
