"""A process that logs requests until it is killed (test_request_log_crash.py runs it).

Usage: python crash_writer.py DB_PATH. After each acknowledged step it prints
one line: ``rows N`` (records 0..N-1 committed, flush() returned) or
``feedback ID SCORE`` (add_feedback() returned). Between acknowledgements it
keeps records pending, so a kill can land with a batch half written.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.request_log import Feedback, open_request_log
from tests.gateway.request_log.factories import make_record

ROWS_PER_FLUSH = 40


async def main(path: str) -> None:
    log = open_request_log(f"sqlite://{path}", store_prompts=True)
    await log.start()
    n = 0
    while True:
        for _ in range(ROWS_PER_FLUSH):
            log.record(make_record(n, prompt=f"question {n} " + "x" * 200))
            n += 1
        await log.flush()
        print(f"rows {n}", flush=True)
        feedback = Feedback(f"req-{n - 1}", (n % 100) / 100, label=f"run {n}")
        await log.add_feedback(feedback)
        print(f"feedback {feedback.request_id} {feedback.score}", flush=True)
        for _ in range(ROWS_PER_FLUSH):  # written in the background, never acknowledged
            log.record(make_record(n))
            n += 1
        await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
