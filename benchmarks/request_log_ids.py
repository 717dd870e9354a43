"""What a request log row costs its writer, with random request ids and with time-ordered ones.

The request log (SQLite here) is keyed by the request id. A random id (version 4) puts each new
row's key in a random page of that index, so every batch commit writes about one page per row;
a time-ordered id (version 7, what ``gateway.request_id`` makes) puts it at the end, next to the
last batch's. This writes ``--rows`` records in batches of ``--batch`` through the request log's
own store (``sqlite_store``: WAL, ``synchronous=FULL``, one transaction per batch, as the
gateway's writer thread commits them), with each kind of id, and prints the writer's CPU time
per row (user and system, from ``os.times``) as the table grows.

    .venv/bin/python benchmarks/request_log_ids.py --rows 120000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.request_id import new_request_id  # noqa: E402
from gateway.request_log.records import RequestRecord  # noqa: E402
from gateway.request_log.sqlite import sqlite_store  # noqa: E402

KINDS: dict[str, Callable[[], str]] = {
    "random (uuid4)": lambda: uuid.uuid4().hex,
    "time-ordered (gateway.request_id)": new_request_id,
}


def _records(ids: Callable[[], str], count: int) -> list[RequestRecord]:
    now = time.time()
    return [RequestRecord(ids(), now, "stub", "stub", None, None, None, 2, 5, 0.0, 0.001, 0.0005, 200,
                          "bench", "Say hello") for _ in range(count)]


def measure(ids: Callable[[], str], rows: int, batch: int, stages: int) -> list[tuple[int, float, float]]:
    """(rows so far, user µs per row, system µs per row) for each of ``stages`` equal stretches."""
    out = []
    with tempfile.TemporaryDirectory(prefix="smallfleet-log-ids-") as tmp:
        store = sqlite_store(os.path.join(tmp, "requests.db"), store_prompts=True)
        store.open()  # connected and migrated, as the writer thread opens it
        per_stage = rows // stages // batch
        done = 0
        for _ in range(stages):
            batches = [_records(ids, batch) for _ in range(per_stage)]  # made before the clock starts
            start = os.times()
            for records in batches:
                store.insert(records)
            end = os.times()
            count = per_stage * batch
            done += count
            user, system = end.user - start.user, end.system - start.system
            out.append((done, user / count * 1e6, system / count * 1e6))
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--batch", type=int, default=128,
                        help="rows per commit (the writer commits every 50 ms or at 256 rows: "
                             "~100-200 at 2,000-4,000 requests/s)")
    parser.add_argument("--stages", type=int, default=4,
                        help="report the cost this many times as the table grows")
    args = parser.parse_args(argv)
    for name, ids in KINDS.items():
        print(f"{name}:")
        for done, user, system in measure(ids, args.rows, args.batch, args.stages):
            print(f"  up to {done:>7,} rows: {user + system:5.1f} µs per row "
                  f"(user {user:4.1f}, system {system:4.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
