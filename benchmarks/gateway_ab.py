"""Two or more gateways side by side: alternating rounds, c=1 latency and c=16 throughput, and
each one's CPU per request (its process's user + system time over the run, from /proc).

Each variant is ``name=COMMAND`` (``gateway_overhead.py``'s ``--gateway-cmd`` placeholders; empty
for ``smallfleet serve`` from this checkout), optionally followed by ``|YAML`` lines added to the
stub model's entry of the fleet config (``\\n`` for a line break). Every gateway has an API key with
limits, the request log and metrics on, as in ``gateway_overhead.py``; each round starts every
variant afresh, in turn, against the same stub.

    .venv/bin/python benchmarks/gateway_ab.py --rounds 5 --seconds 4 \\
        "before={python} -c \\"import sys; sys.path[0] = '/tmp/before'; from gateway.cli import main; \\
sys.exit(main(sys.argv[1:]))\\" serve --config {config} --host {host} --port {port}" "after="
    .venv/bin/python benchmarks/gateway_ab.py "held=" "unheld=|    resilience:\\n      deadline: false"
    .venv/bin/python benchmarks/gateway_ab.py --stream "before=..." "after="
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.gateway_overhead import (  # noqa: E402
    CHAT_PATH,
    DEFAULT_GATEWAY_CMD,
    HOST,
    Managed,
    Wrk,
    fleet_yaml,
    format_cmd,
    free_port,
    gateway_env,
    request_body,
    start_stub,
    timed_run,
    wait_healthy,
)

FIGURES = ("c1 median ms", "c1 CPU us/request", "c16 req/s", "c16 CPU us/request")


@dataclass(frozen=True)
class Variant:
    """One gateway to compare, from ``name=COMMAND[|YAML]`` (``instructions_ab.py`` takes the same)."""

    name: str
    template: str  # gateway_overhead.py's --gateway-cmd placeholders; "" for this checkout's serve
    extra: str  # lines added to the stub model's entry ("\\n" for line breaks)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, _, rest = spec.partition("=")
        template, _, extra = rest.partition("|")
        return cls(name, template, extra)

    def write_config(self, work: Path, stub_port: int, request_log: Path) -> Path:
        """Its fleet config: the benchmark's fleet, with its lines in the stub model's entry."""
        config = fleet_yaml(stub_port, request_log)
        lines = self.extra.replace("\\n", "\n").rstrip("\n")
        entry = "    backend: openai\n"
        path = work / f"{self.name}.yaml"
        path.write_text(config.replace(entry, entry + lines + "\n") if lines else config)
        return path

    def command(self, config: Path, port: int, **more: str) -> list[str]:
        """Its command line, serving ``config`` on ``port`` (``more``: other placeholders)."""
        return format_cmd(self.template or DEFAULT_GATEWAY_CMD, python=sys.executable,
                          config=str(config), host=HOST, port=str(port), **more)


def _figures(values: tuple[float, ...] | list[float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in zip(FIGURES, values, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="name=COMMAND[|YAML]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="of each load run")
    parser.add_argument("--stream", action="store_true", help='requests with "stream": true')
    args = parser.parse_args(argv)
    variants = [Variant.parse(spec) for spec in args.variants]
    work = Path(tempfile.mkdtemp(prefix="smallfleet-ab-"))
    stub, stub_port = start_stub(sys.executable, work, None)
    wrk = Wrk("wrk", work, None, request_body(args.stream))
    figures: dict[str, list[tuple[float, ...]]] = {variant.name: [] for variant in variants}
    try:
        for round_ in range(args.rounds):
            for variant in variants:
                name = variant.name
                config = variant.write_config(work, stub_port, work / f"{name}-{round_}.db")
                port = free_port()
                proc = Managed(name, variant.command(config, port), work, env=gateway_env(True))
                try:
                    base = f"http://{HOST}:{port}"
                    wait_healthy(proc, base + "/health", 60)
                    wrk.run(base + CHAT_PATH, 16, 1)  # warm-up
                    c1 = timed_run(wrk, base + CHAT_PATH, 1, args.seconds, proc.proc.pid)
                    c16 = timed_run(wrk, base + CHAT_PATH, 16, args.seconds, proc.proc.pid)
                finally:
                    proc.stop()
                row = (c1.median_ms, c1.cpu_us_per_request or 0.0, c16.rps, c16.cpu_us_per_request or 0.0)
                figures[name].append(row)
                print(f"round {round_ + 1} {name}: {_figures(row)}", flush=True)
    finally:
        stub.stop()
    print("\nmedians over rounds:")
    for name, rows in figures.items():
        medians = [statistics.median(column) for column in zip(*rows, strict=True)]
        print(f"  {name}: {_figures(medians)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
