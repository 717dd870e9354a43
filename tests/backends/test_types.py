"""The fast constructors of backends/types.py make what the dataclasses' own would."""

from __future__ import annotations

from dataclasses import fields, replace

from backends.types import (
    GenerationRequest,
    InnerCallLedger,
    Message,
    SamplingParams,
    StreamChunk,
    text_chunk,
)


def test_with_ledger_is_replace_with_a_ledger():
    request = GenerationRequest(
        messages=(Message("user", "hi"),), params=SamplingParams(max_tokens=3), n=2, vendor_fields={"top_k": 4}
    )
    ledger = InnerCallLedger()
    copy = request.with_ledger(ledger)
    assert copy.ledger is ledger and request.ledger is None
    assert copy == replace(request, ledger=ledger)
    for spec in fields(GenerationRequest):
        if spec.name != "ledger":
            assert getattr(copy, spec.name) is getattr(request, spec.name)
    assert copy.with_ledger(None).ledger is None


def test_text_chunk_is_a_plain_stream_chunk():
    chunk = text_chunk("Hi")
    assert chunk == StreamChunk("Hi")
    assert type(chunk) is StreamChunk and hash(chunk) == hash(StreamChunk("Hi"))
    assert [getattr(chunk, f.name) for f in fields(StreamChunk)] == [
        getattr(StreamChunk("Hi"), f.name) for f in fields(StreamChunk)
    ]
