"""gateway/request_id.py: fresh request ids are time-ordered (version 7) UUIDs in hex, never
repeated, not even by a forked child."""

from __future__ import annotations

import os
import time
import uuid

from gateway.request_id import new_request_id, request_id_of


def test_fresh_ids_are_uuid7_hex_and_distinct() -> None:
    ids = [new_request_id() for _ in range(3000)]  # several refills of the random bytes
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_an_id_starts_with_its_millisecond_so_later_ids_sort_later() -> None:
    before = time.time_ns() // 1_000_000
    first = new_request_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) <= after
    while time.time_ns() // 1_000_000 <= after:  # the next millisecond
        time.sleep(0.0005)
    later = [new_request_id() for _ in range(100)]
    assert all(first < value for value in later)
    random_parts = {value[13:] for value in later}  # past the time and the version digit
    assert len(random_parts) == len(later)


def test_a_forked_child_draws_fresh_bytes() -> None:
    new_request_id()  # the parent holds unused random bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_request_id()
    # the random part (after the time and the version digit): a child reusing the parent's bytes
    # would repeat the parent's next one
    assert len(child) == 32 and child[13:] != parent[13:]


def test_a_sane_client_id_is_kept_and_anything_else_replaced() -> None:
    def scope(value: bytes) -> dict[str, object]:
        return {"headers": [(b"x-request-id", value)]}

    assert request_id_of(scope(b"client-42")) == "client-42"
    for bad in (b"", b"x" * 129, b"tab\there"):
        fresh = request_id_of(scope(bad))
        assert uuid.UUID(hex=fresh).version == 7
