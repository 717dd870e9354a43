"""Where the gateway's time goes: a CPU profile of ``smallfleet serve`` under load, every feature on.

Starts the stub upstream, then runs the gateway in this process, as ``smallfleet serve`` runs
it (uvicorn, uvloop, httptools; the ``openai`` backend in front of the stub) with an API key
that has per-key limits, the request log (SQLite, in a temporary directory) and metrics,
under ``cProfile`` with a CPU-time clock (``time.thread_time``: the event loop's thread, so
waiting for the stub or the load generator costs nothing). ``wrk`` sends the benchmark's
request (``gateway_overhead.py``) for ``--seconds`` at ``--concurrency``. Then it prints each
part's share of the loop thread's CPU time (self time of the functions in that part's files)
and the costliest functions.

    .venv/bin/python benchmarks/profile_request.py [--concurrency 1] [--seconds 8] [--out gw.prof]

The profiler slows everything down (several-fold for Python code, not for C), so the shares,
not the absolute times, are what it says.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.in_process import serve_under_load  # noqa: E402

# Each part of the request path, by the files its code lives in (first match wins).
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("gateway middleware (request id, keys, limits)", ("gateway/app.py", "gateway/auth.py",
                                                         "gateway/limits.py", "gateway/keys.py",
                                                         "gateway/access.py", "gateway/request_id.py",
                                                         "gateway/fast_path.py")),
    ("gateway request path (endpoint, choose, answer, account)", ("gateway/",)),
    ("request log (enqueue)", ("gateway/request_log",)),
    ("upstream HTTP client (backends/http1.py; aiohttp before)", ("backends/http1.py", "aiohttp/",
                                                                  "yarl/", "multidict/")),
    ("backends (resilience, openai_http)", ("backends/", "fleet/")),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("pydantic", ("pydantic",)),
    ("starlette (app, routing, exceptions)", ("starlette/",)),
    ("uvicorn (HTTP server)", ("uvicorn/",)),
    ("httpx", ("httpx/", "httpx_aiohttp/")),
    ("event loop (uvloop's C code: sockets, callbacks)", ("asyncio/runners.py",)),
]
OTHER = "other"


def part_of(filename: str) -> str | None:
    """The part ``filename`` belongs to; None for the standard library and builtins, whose
    time goes to whoever called them."""
    for name, needles in PARTS:
        if any(needle in filename for needle in needles):
            return name
    return None


def _split(raw: dict, func: tuple, memo: dict, stack: set) -> dict[str, float]:
    """How the time spent in ``func`` divides among the parts: its own part, or for the
    standard library and builtins their callers' parts, in proportion to the time each caller
    spent calling it (memoized; a cycle counts as "other")."""
    if func in memo:
        return memo[func]
    part = part_of(func[0]) if func[0] != "~" else None
    callers = raw[func][4] if func in raw else {}
    if part is not None or not callers or func in stack:
        split = {part or OTHER: 1.0}
    else:
        stack.add(func)
        weights = {caller: max(entry[3], 1e-12) for caller, entry in callers.items()}
        total = sum(weights.values())
        split = {}
        for caller, weight in weights.items():
            for name, share in _split(raw, caller, memo, stack).items():
                split[name] = split.get(name, 0.0) + share * weight / total
        stack.discard(func)
    memo[func] = split
    return split


def report(stats: pstats.Stats, top: int) -> dict[str, float]:
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    shares: dict[str, float] = {}
    memo: dict = {}
    for func, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        for name, share in _split(raw, func, memo, set()).items():
            shares[name] = shares.get(name, 0.0) + tottime * share
    print(f"\nCPU time of the loop thread: {total:.2f} s")
    for name, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / total:6.1%}  {name}")
    print()
    stats.sort_stats("tottime").print_stats(top)
    return {name: round(seconds / total, 4) for name, seconds in shares.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=30, help="how many functions to list")
    parser.add_argument("--out", type=Path, help="keep the pstats file here")
    parser.add_argument("--unheld", action="store_true",
                        help="the model not held to the first-token deadline (a whole answer asked whole)")
    args = parser.parse_args(argv)

    import uvicorn  # noqa: F401

    import gateway.app  # noqa: F401  imported before profiling: start-up is not the question
    from gateway.cli import main as smallfleet

    # thread_time: the CPU time of the thread the profiler runs in (the event loop's); the
    # profile covers the whole serve (start-up, the load, shut-down), of which the load is
    # nearly all
    profiler = cProfile.Profile(time.thread_time)

    def profiled(argv: list[str]) -> None:
        profiler.enable()
        try:
            smallfleet(argv)
        finally:
            profiler.disable()

    started = time.monotonic()
    out = serve_under_load(profiled, concurrency=args.concurrency, seconds=args.seconds, held=not args.unheld)
    print(out)
    print(f"ran {time.monotonic() - started:.1f} s")
    stats = pstats.Stats(profiler)
    if args.out:
        stats.dump_stats(args.out)
    report(stats, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
