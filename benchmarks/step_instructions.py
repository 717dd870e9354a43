"""What single steps of the request path cost, in instructions under valgrind's callgrind.

Each case runs ``--uses`` times in a uvloop loop, in a process of its own under callgrind, and
once with none; the difference, divided by the uses, is one use's cost. No clock is in the loop,
so the counts are exact.

* ``loop timer``: ``loop.call_later(60, cb).cancel()``, a uvloop timer armed and cancelled;
* ``asyncio.timeout_at``: an ``async with asyncio.timeout_at(...)`` block around nothing (a
  deadline a minute away: it never fires);
* ``backends.timeouts``: the same block as ``with timeout_at(...)`` (backends/timeouts.py);
* ``parse chunk by chunk``: a stream answer as the stub sends it (a role event, five words, the
  finish, the usage, ``[DONE]``) parsed in one piece (backends/openai_sse.py) and assembled;
* ``parse joined``: the same, with the texts after the first joined (a whole answer held to the
  first-token deadline).

    .venv/bin/python benchmarks/step_instructions.py
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CASES = ("loop timer", "asyncio.timeout_at", "backends.timeouts", "parse chunk by chunk", "parse joined")
_REFS = re.compile(rb"refs:\s+([\d,]+)")


async def _run(case: str, uses: int) -> None:
    from backends.assembly import Assembly
    from backends.openai_sse import EventParser
    from backends.timeouts import timeout_at
    from backends.types import GenerationRequest, Message, SamplingParams, StreamChunk

    loop = asyncio.get_running_loop()
    if case == "loop timer":
        for _ in range(uses):
            loop.call_later(60.0, int).cancel()
    elif case == "asyncio.timeout_at":
        for _ in range(uses):
            async with asyncio.timeout_at(loop.time() + 60):
                pass
    elif case == "backends.timeouts":
        for _ in range(uses):
            with timeout_at(loop.time() + 60):
                pass
    else:
        from benchmarks.gateway_overhead import REQUEST_BODY
        from tests.stub_upstream import streamed_chat_answer

        body = streamed_chat_answer(REQUEST_BODY)  # a role event, five words, the finish, the usage
        request = GenerationRequest(messages=(Message("user", "hi"),), params=SamplingParams(max_tokens=16))
        for _ in range(uses):
            parser = EventParser("stub", request)
            parser.join_after_first = case == "parse joined"
            chunks: list[StreamChunk] = []
            parser.feed(body, chunks)
            answer = Assembly(request)
            answer.add_all(chunks)
            answer.completion()


def _instructions(case: str, uses: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, __file__, "--run", case, "--uses", str(uses)]
    done = subprocess.run(cmd, capture_output=True, check=True, cwd=REPO_ROOT)
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]!r}")
    return int(found.group(1).replace(b",", b""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=5000)
    parser.add_argument("--run", choices=CASES, help=argparse.SUPPRESS)  # inside valgrind
    args = parser.parse_args(argv)
    if args.run is not None:
        sys.path.insert(0, str(REPO_ROOT))
        import uvloop

        uvloop.run(_run(args.run, args.uses))
        return 0
    for case in CASES:
        per_use = (_instructions(case, args.uses) - _instructions(case, 0)) / args.uses
        print(f"{case:>22}: {per_use:,.0f} instructions per use", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
