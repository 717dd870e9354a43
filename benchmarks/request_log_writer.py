"""Does the request log's writer thread keep up under load, and what does it cost per row?

``smallfleet serve`` runs in this process with every feature on (benchmarks/in_process.py) while
``wrk`` sends the benchmark's request for ``--seconds`` at ``--concurrency``. Over that stretch it
counts the requests answered, the rows the writer thread committed, the commits, the writer
thread's CPU time, and the CPU spent inside the store's ``insert`` per row. A writer that commits
fewer rows than there were requests falls behind: its queue grows, and once it holds
``MAX_PENDING`` records new ones are dropped (and counted as dropped).

``--tree`` imports the gateway from another checkout (e.g. ``git archive <commit> | tar -x -C
/tmp/before``), to compare two versions in the same way:

    .venv/bin/python benchmarks/request_log_writer.py --concurrency 16 --seconds 4
    .venv/bin/python benchmarks/request_log_writer.py --concurrency 16 --seconds 4 --tree /tmp/before
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITER_THREAD = "request-log-writer"


def _thread_cpu(name: str) -> float:
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    raise RuntimeError(f"no thread named {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="the checkout whose gateway is run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    sys.path.insert(1, str(REPO_ROOT))  # benchmarks/ from this checkout
    from benchmarks.in_process import serve_under_load
    from gateway.cli import main as smallfleet
    from gateway.request_log import store, writer

    inserted = {"cpu": 0.0, "rows": 0, "commits": 0}
    insert = store.SqlStore.insert

    def counted_insert(self: Any, records: Any) -> None:
        start = time.thread_time()
        insert(self, records)
        inserted["cpu"] += time.thread_time() - start
        inserted["rows"] += len(records)
        inserted["commits"] += 1

    store.SqlStore.insert = counted_insert  # type: ignore[method-assign]
    logs: list[Any] = []
    init = writer.BatchingRequestLog.__init__

    def kept_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        logs.append(self)

    writer.BatchingRequestLog.__init__ = kept_init  # type: ignore[method-assign]
    marks: dict[str, Any] = {}

    def measuring(on: bool) -> None:
        marks["after" if not on else "before"] = (_thread_cpu(WRITER_THREAD), dict(inserted))
        if not on:  # the records still waiting for the writer when the load ends
            marks["queued"] = sum(len(log._pending) for log in logs)

    printed = serve_under_load(smallfleet, concurrency=args.concurrency, seconds=args.seconds,
                               warmup=args.warmup, measuring=measuring)
    found = re.search(r"(\d+) requests in", printed)
    if found is None:
        raise RuntimeError(f"no request count in wrk's output: {printed}")
    requests = int(found.group(1))
    (cpu_before, before), (cpu_after, after) = marks["before"], marks["after"]
    rows = after["rows"] - before["rows"]
    print(f"gateway from {args.tree}, c={args.concurrency}, {args.seconds} s")
    print(f"  requests answered: {requests:,}; rows committed: {rows:,} ({rows / requests:.0%}) "
          f"in {after['commits'] - before['commits']} commits; still queued at the end: {marks['queued']:,}")
    print(f"  writer thread CPU: {(cpu_after - cpu_before) / max(rows, 1) * 1e6:.1f} µs per row committed "
          f"({(cpu_after - cpu_before) / requests * 1e6:.1f} per request); inside insert: "
          f"{(after['cpu'] - before['cpu']) / max(rows, 1) * 1e6:.1f} µs per row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
