"""Retraining from the request log: traffic through ``auto`` with feedback becomes training rows,
``smallfleet train --from-log`` promotes the new artifact only if it is not worse, and the
running gateway reloads it without dropping a request."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import router
from fleet.config import parse_fleet
from gateway.app import create_app
from gateway.cli import main
from gateway.keys import KeyStore
from gateway.request_log import Feedback, RequestRecord
from gateway.retrain import parse_since, rows_from_feedback

DATA = Path(router.__file__).resolve().parent / "data"
FAST = ["--folds", "0", "--clusters", "8"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 400-row slice of the benchmark as the base data, and 24 other questions as traffic."""
    root = tmp_path_factory.mktemp("base")
    rows = json.loads((DATA / "train.json").read_text(encoding="utf-8"))
    (root / "rows.json").write_text(json.dumps(rows[::14][:400]), encoding="utf-8")
    (root / "models.json").write_bytes((DATA / "models.json").read_bytes())
    traffic = rows[7::97][:24]
    return {"rows": root / "rows.json", "models": root / "models.json", "traffic": traffic}


def _train(base: dict[str, Any], out: Path, *extra: str) -> int:
    argv = ["train", "--data", str(base["rows"]), "--models", str(base["models"]), "--out", str(out)]
    return main([*argv, *FAST, *extra])


def _current_version(router_dir: Path) -> str:
    manifest = json.loads((router_dir / "current" / "manifest.json").read_text(encoding="utf-8"))
    return str(manifest["version"])


@pytest.fixture
def gateway(
    base: dict[str, Any], tmp_path: Path, stub_upstream: str, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A gateway whose admin key ``train --reload-url`` finds in SMALLFLEET_ADMIN_KEYS."""
    monkeypatch.setenv("SMALLFLEET_ADMIN_KEYS", "ops:sk-admin-retrain")
    router_dir, db = tmp_path / "router", tmp_path / "log.db"
    assert _train(base, router_dir, "--promote") == 0  # the first artifact: nothing to compare with
    models = json.loads(base["models"].read_text(encoding="utf-8"))
    config = parse_fleet(
        {
            "models": [{"name": name, "backend": "openai", "base_url": stub_upstream} for name in models],
            "router": {"artifact": str(router_dir / "current")},
            "request_log": {"url": f"sqlite:///{db}", "store_prompts": True},
        }
    )
    admin_keys = KeyStore(["sk-admin-retrain"])
    yield live_server(create_app(config, admin_keys=admin_keys)), router_dir, f"sqlite:///{db}"


def _ask(http: httpx.Client, question: str) -> httpx.Response:
    payload = {"model": "auto", "messages": [{"role": "user", "content": question}], "max_tokens": 4}
    return http.post("/v1/chat/completions", json=payload, timeout=60)


def test_retrain_from_feedback_promote_and_reload_without_dropping_a_request(
    gateway: Any, base: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    server, router_dir, db_url = gateway
    first = _current_version(router_dir)
    with httpx.Client(base_url=server.url) as http:
        for row in base["traffic"]:  # real traffic; the feedback is the benchmark's score of the pick
            answer = _ask(http, row["question"])
            assert answer.headers["x-smallfleet-router-version"] == first
            score = row["scores"][answer.headers["x-smallfleet-model"]]
            feedback = {"request_id": answer.headers["x-request-id"], "score": score}
            assert http.post("/v1/feedback", json=feedback).status_code == 200
    log_args = ["--from-log", db_url, "--log-weight", "2"]

    # A candidate that must beat the current one by a full point of accuracy is refused.
    assert _train(base, router_dir, *log_args, "--tolerance", "-1") == 0
    printed = capsys.readouterr()
    assert "24 logged requests with feedback; 24 used (24 questions)" in printed.err
    assert "kept current" in printed.out and "worse: quality-preset accuracy" in printed.out
    assert _current_version(router_dir) == first

    # Promoted while traffic flows, then reloaded. The 40 held-out rows of this small base move
    # 0.025 per row, so this run allows 0.1 (the rule itself: tests/router/test_promote.py).
    stop, statuses = threading.Event(), []

    def traffic() -> None:
        with httpx.Client(base_url=server.url) as http:
            while not stop.is_set():
                statuses.append(_ask(http, base["traffic"][len(statuses) % 24]["question"]).status_code)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        senders = [pool.submit(traffic) for _ in range(3)]
        try:
            code = _train(base, router_dir, *log_args, "--tolerance", "0.1", "--reload-url", server.url)
        finally:
            stop.set()
        for sender in senders:
            sender.result()
    printed = capsys.readouterr()
    assert code == 0, printed.err
    new = _current_version(router_dir)
    assert f"promoted {new}" in printed.out and f"now serves router {new}" in printed.out
    assert new != first and len(statuses) > 10 and set(statuses) == {200}
    assert httpx.get(server.url + "/health").json()["router_version"] == new
    with httpx.Client(base_url=server.url) as http:
        after = [_ask(http, row["question"]) for row in base["traffic"][:5]]
    assert {r.headers["x-smallfleet-router-version"] for r in after} == {new}
    manifest = json.loads((router_dir / "current" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["training_data"]["partial_rows"] == 48  # 24 logged questions, weight 2


def _record(request_id: str, model: str, prompt: str | None) -> RequestRecord:
    return RequestRecord(
        request_id, 0.0, "auto", model, None, 1.0, "v", 1, 1, 0.0, 0.1, None, 200, prompt=prompt
    )


def test_log_rows_skip_what_cannot_train_and_say_so() -> None:
    pairs = [
        (_record("a", "m1", "What is 2 + 2?"), Feedback("a", 1.0)),
        (_record("b", "m1", "What is 2 + 2?"), Feedback("b", 0.0)),
        (_record("c", "m2", "What is 2 + 2?"), Feedback("c", 1.0)),
        (_record("d", "m1", None), Feedback("d", 1.0)),
        (_record("e", "elsewhere", "hi"), Feedback("e", 1.0)),
    ]
    rows = rows_from_feedback(pairs, ["m1", "m2"])
    assert rows.rows == [{"question": "What is 2 + 2?", "scores": {"m1": 0.5, "m2": 1.0}}]
    assert (rows.used, rows.without_prompt, rows.unknown_model) == (3, 1, {"elsewhere": 1})


def test_the_cronjob_command_line_refuses_clearly_without_feedback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "models: [{name: gemma-2-9b-it, backend: openai, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "request_log: {store_prompts: false}\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    out = tmp_path / "router"
    assert main(["train", "--from-log", db, f"--config={fleet}", f"--out={out}"]) == 2
    err = capsys.readouterr().err
    assert "store_prompts off" in err and "0 logged requests with feedback" in err
    assert "no usable feedback in the request log" in err
    assert not (out / "current").exists()
    os.environ.pop("SMALLFLEET_DB_URL", None)
    assert main(["train", "--from-log", "mysql://db", "--out", str(out)]) == 2
    assert "unsupported request log URL scheme" in capsys.readouterr().err
    assert parse_since("2026-01-31") == parse_since("1769817600")
