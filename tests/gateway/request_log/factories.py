"""Records for the request log's tests."""

from __future__ import annotations

import time
from typing import Any

from gateway.request_log import RequestRecord


def make_record(i: int | str, *, created_at: float | None = None, **changes: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "request_id": i if isinstance(i, str) else f"req-{i}",
        "created_at": time.time() if created_at is None else created_at,
        "route": "auto",
        "model": "smollm2-135m",
        "cluster": "7",
        "alpha": 0.6,
        "router_version": "2024-06-01",
        "prompt_tokens": 12,
        "completion_tokens": 34,
        "cost": 0.000125,
        "latency_s": 0.25,
        "ttft_s": 0.05,
        "status": 200,
        "api_key_id": "key-1",
        "prompt": "What is 2 + 2?",
    }
    fields.update(changes)
    return RequestRecord(**fields)
