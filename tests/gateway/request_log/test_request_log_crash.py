"""A process killed mid-write loses nothing it acknowledged, and leaves a sound database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.request_log import open_request_log

REPO = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("crash_writer.py")


def run_until_killed(db: Path, acknowledgements: int) -> list[str]:
    """Start the writer, SIGKILL it after that many acknowledgements; return every ack it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    assert proc.stdout is not None
    acks: list[str] = []
    try:
        while len(acks) < acknowledgements:
            line = proc.stdout.readline()
            assert line, f"the writer exited early with {proc.wait()}"
            acks.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        acks += [line.strip() for line in proc.stdout]  # printed before the kill: acknowledged too
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return acks


@pytest.mark.parametrize("acknowledgements", [7, 60])
async def test_a_killed_writer_keeps_every_acknowledged_row_and_feedback(
    tmp_path: Path, acknowledgements: int
) -> None:
    db = tmp_path / "requests.db"
    acks = run_until_killed(db, acknowledgements)
    rows_acked = max(int(a.split()[1]) for a in acks if a.startswith("rows "))
    feedback_acked = {a.split()[1]: float(a.split()[2]) for a in acks if a.startswith("feedback ")}

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {row[0] for row in conn.execute("SELECT request_id FROM requests")}
        scores = dict(conn.execute("SELECT request_id, score FROM feedback").fetchall())
    conn.close()
    assert {f"req-{i}" for i in range(rows_acked)} <= ids
    assert feedback_acked.items() <= scores.items()

    log = open_request_log(f"sqlite://{db}", store_prompts=True)
    await log.start()  # the schema is current: nothing to migrate
    try:
        assert await log.count() == len(ids)
        record = await log.get(f"req-{rows_acked - 1}")
        assert record is not None
        assert record.prompt is not None
        assert record.prompt.startswith(f"question {rows_acked - 1} ")
        rows = await log.feedback_rows()
        assert {r.request_id: f.score for r, f in rows}.items() >= feedback_acked.items()
    finally:
        await log.aclose()
