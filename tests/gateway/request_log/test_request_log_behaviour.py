"""The request log's contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from backends.errors import RequestError
from gateway.request_log import (
    Feedback,
    FeedbackConflict,
    InvalidFeedback,
    RequestLogUnavailable,
    UnknownRequest,
    open_request_log,
)
from tests.gateway.request_log.factories import make_record

OpenLog = Callable[..., Any]


async def test_a_flushed_record_reads_back_field_for_field(open_log: OpenLog) -> None:
    record = make_record(1, cluster=None, alpha=None, router_version=None, ttft_s=None, api_key_id=None)
    async with open_log(store_prompts=True) as log:
        log.record(record)
        await log.flush()
        assert await log.get("req-1") == record
        assert await log.get("req-unknown") is None
        assert await log.count() == 1


async def test_prompts_are_dropped_unless_the_operator_enables_them(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record(1, prompt="secret question"))
        stored = await log.get("req-1")
    assert stored is not None
    assert stored.prompt is None
    assert stored.route == "auto"
    async with open_log(store_prompts=True) as log:
        log.record(make_record(2, prompt="a question"))
        stored = await log.get("req-2")
    assert stored is not None
    assert stored.prompt == "a question"


async def test_reads_see_every_record_enqueued_before_them(open_log: OpenLog) -> None:
    async with open_log() as log:
        for i in range(1000):  # several batches
            log.record(make_record(i))
        assert await log.count() == 1000
        assert log.dropped == 0


async def test_a_repeated_request_id_keeps_its_first_record(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record(1, model="first"))
        log.record(make_record(1, model="second"))
        stored = await log.get("req-1")
        assert stored is not None
        assert stored.model == "first"
        assert await log.count() == 1


async def test_a_batch_goes_in_whole_through_chunks_of_every_size(open_log: OpenLog) -> None:
    # 64 + 64 + 32 + 16 + 8 + 4 + 2 + 1 rows: each chunk statement is used, and a repeated id in a
    # later chunk (and in the same chunk) keeps its first record
    records = [make_record(i, prompt_tokens=i) for i in range(189)]  # 191 with the repeats
    records.insert(100, make_record(5, model="again, another chunk"))
    records.insert(3, make_record(2, model="again, the same chunk"))
    async with open_log() as log:
        for record in records:
            log.record(record)
        await log.flush()
        assert await log.count() == 189
        for i in (0, 2, 5, 63, 64, 127, 128, 159, 160, 175, 183, 186, 188):
            stored = await log.get(f"req-{i}")
            assert stored == make_record(i, prompt_tokens=i, created_at=stored.created_at if stored else 0,
                                         prompt=None)


async def test_aclose_writes_everything_pending(open_log: OpenLog) -> None:
    async with open_log() as log:
        for i in range(300):
            log.record(make_record(i))
    async with open_log() as log:
        assert await log.count() == 300


async def test_feedback_is_stored_and_identical_repeats_are_duplicates(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record(1))  # no flush: add_feedback flushes first
        feedback = Feedback("req-1", 0.75, label="good", comment="short and right")
        first = await log.add_feedback(feedback)
        assert (first.record.request_id, first.duplicate) == ("req-1", False)
        again = await log.add_feedback(Feedback("req-1", 0.75, label="good", comment="short and right"))
        assert again.duplicate is True
        assert again.record == first.record
        assert await log.feedback_rows() == [(first.record, feedback)]


@pytest.mark.parametrize(
    "different",
    [
        Feedback("req-1", 0.25, label="good"),
        Feedback("req-1", 0.75, label="bad"),
        Feedback("req-1", 0.75),
        Feedback("req-1", 0.75, label="good", comment="changed my mind"),
    ],
)
async def test_different_feedback_for_the_same_request_conflicts(
    open_log: OpenLog, different: Feedback
) -> None:
    async with open_log() as log:
        log.record(make_record(1))
        await log.add_feedback(Feedback("req-1", 0.75, label="good"))
        with pytest.raises(FeedbackConflict, match="req-1") as caught:
            await log.add_feedback(different)
        assert caught.value.status_code == 409
        [(_, stored)] = await log.feedback_rows()
        assert stored == Feedback("req-1", 0.75, label="good")


async def test_feedback_for_an_unknown_request_is_refused(open_log: OpenLog) -> None:
    async with open_log() as log:
        with pytest.raises(UnknownRequest, match="no-such-id") as caught:
            await log.add_feedback(Feedback("no-such-id", 0.5))
        assert (caught.value.status_code, caught.value.param) == (404, "request_id")
        assert await log.feedback_rows() == []


async def test_concurrent_identical_feedback_is_stored_once(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record(1))
        results = await asyncio.gather(*(log.add_feedback(Feedback("req-1", 1.0)) for _ in range(8)))
        assert sorted(r.duplicate for r in results) == [False] + [True] * 7


async def test_acknowledged_feedback_survives_reopening(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record(1))
        await log.add_feedback(Feedback("req-1", 0.5, label="meh"))
    async with open_log() as log:
        [(record, feedback)] = await log.feedback_rows()
        assert (record.request_id, feedback.score, feedback.label) == ("req-1", 0.5, "meh")


async def test_feedback_rows_are_training_rows_oldest_first(open_log: OpenLog) -> None:
    now = time.time()
    async with open_log(store_prompts=True) as log:
        for i, age in enumerate([30, 20, 10, 5]):
            log.record(make_record(i, created_at=now - age, prompt=f"question {i}"))
        for i in (2, 0, 1):
            await log.add_feedback(Feedback(f"req-{i}", i / 4))
        rows = await log.feedback_rows()
        assert [(r.request_id, r.prompt, f.score) for r, f in rows] == [
            ("req-0", "question 0", 0.0),
            ("req-1", "question 1", 0.25),
            ("req-2", "question 2", 0.5),
        ]
        recent = await log.feedback_rows(since=now - 25)
        assert [r.request_id for r, _ in recent] == ["req-1", "req-2"]


async def test_a_record_the_database_refuses_fails_the_next_flush_not_the_log(open_log: OpenLog) -> None:
    async with open_log() as log:
        log.record(make_record("bad", prompt_tokens=object()))  # no database can store this
        with pytest.raises(RequestLogUnavailable, match="could not be written"):
            await log.flush()
        assert log.failed == 1
        log.record(make_record(1))
        await log.flush()  # the error was reported once; the writer goes on
        assert await log.count() == 1


async def test_a_full_queue_drops_records_and_counts_them(log_url: str) -> None:
    log = open_request_log(log_url)
    log.max_pending = 10  # type: ignore[attr-defined]
    for i in range(25):  # before start(): nothing drains the queue yet
        log.record(make_record(i))
    assert log.dropped == 15
    await log.start()
    try:
        assert await log.count() == 10
    finally:
        await log.aclose()
    log.record(make_record(99))  # after aclose(): dropped, never written
    assert log.dropped == 16
    with pytest.raises(RuntimeError, match="not running"):
        await log.count()
    await log.aclose()  # closing twice is harmless


async def test_record_never_waits_for_the_database(open_log: OpenLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the writer is held inside a database write, 20k record() calls still return (none
    dropped), and every record is written once the database answers again."""
    writing, release = threading.Event(), threading.Event()
    async with open_log() as log:
        insert = log.store.insert

        def held_insert(batch: Any) -> None:
            writing.set()
            release.wait()
            insert(batch)

        monkeypatch.setattr(log.store, "insert", held_insert)
        log.record(make_record("first"))
        assert await asyncio.to_thread(writing.wait, 30), "the writer never wrote"
        safety = threading.Timer(30, release.set)  # a record() that waited would wait for this
        safety.start()
        for i in range(20_000):
            log.record(make_record(i))
        waited = release.is_set()
        safety.cancel()
        release.set()
        await log.flush()
        written = await log.count()
    assert not waited, "record() waited for the held database write"
    assert log.dropped == 0 and written == 20_001


@pytest.mark.parametrize("score", [-0.01, 1.01, math.nan, math.inf, -math.inf, True, "0.5", None])
def test_bad_scores_are_value_errors_and_400s(score: Any) -> None:
    with pytest.raises(ValueError, match="score") as caught:
        Feedback("req-1", score)
    assert isinstance(caught.value, InvalidFeedback)
    assert isinstance(caught.value, RequestError)
    assert (caught.value.status_code, caught.value.param) == (400, "score")


def test_scores_at_the_bounds_are_valid_and_become_floats() -> None:
    assert Feedback("r", 0).score == 0.0
    assert type(Feedback("r", 1).score) is float


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"request_id": ""}, "request_id"),
        ({"label": "x" * 201}, "label"),
        ({"comment": "x" * 10_001}, "comment"),
    ],
)
def test_oversized_or_empty_feedback_fields_are_refused(changes: dict[str, Any], param: str) -> None:
    fields: dict[str, Any] = {"request_id": "r", "score": 0.5, **changes}
    with pytest.raises(InvalidFeedback) as caught:
        Feedback(**fields)
    assert caught.value.param == param
