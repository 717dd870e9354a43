"""``smallfleet train --from-log DB_URL``: retrain the router on logged requests with feedback.

router/ never imports gateway/, so the request log is read here: each logged request that
has feedback and a stored prompt becomes a row ``{"question": prompt, "scores": {model:
score}}`` (one model per request; several requests with the same prompt share a row, a
model's repeated scores averaged). Those rows, repeated ``--log-weight`` times, are added to
the base dataset (default: the shipped benchmark rows), written to a temporary file and
handed to the router's ``train`` with ``--promote``: OUT is a router directory, and
OUT/current moves to the new version only if it is not worse (router/promote.py).
``--reload-url`` then asks a running gateway to reload it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.config import RequestLogConfig
    from gateway.settings import Settings

Handler = Callable[[argparse.Namespace], int]
RELOAD_PATH = "/admin/router/reload"
RELOAD_TIMEOUT_S = 60.0


class RetrainError(Exception):
    """Retraining from the log cannot go ahead; the message says why."""


@dataclass
class LogRows:
    """Training rows made from the log, and what was left out."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    used: int = 0
    without_prompt: int = 0
    unknown_model: dict[str, int] = field(default_factory=dict)


def parse_since(text: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since needs unix seconds or an ISO date/time like 2026-01-31T00:00, got {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def read_feedback(url: str, since: float | None) -> list[tuple[Any, Any]]:
    """(RequestRecord, Feedback) pairs from the request log at ``url``, oldest first."""
    from gateway.request_log import open_request_log

    log = open_request_log(url)
    await log.start()
    try:
        return await log.feedback_rows(since=since)
    finally:
        await log.aclose()


def rows_from_feedback(pairs: Sequence[tuple[Any, Any]], models: Sequence[str]) -> LogRows:
    """One partial-label row per distinct prompt; models outside ``models`` are skipped."""
    result = LogRows()
    known = set(models)
    by_question: dict[str, dict[str, list[float]]] = {}
    for record, feedback in pairs:
        if not record.prompt:
            result.without_prompt += 1
        elif record.model not in known:
            result.unknown_model[record.model] = result.unknown_model.get(record.model, 0) + 1
        else:
            by_question.setdefault(record.prompt, {}).setdefault(record.model, []).append(feedback.score)
            result.used += 1
    result.rows = [
        {"question": q, "scores": {m: sum(v) / len(v) for m, v in scores.items()}}
        for q, scores in by_question.items()
    ]
    return result


def describe(log_rows: LogRows, total: int) -> str:
    parts = [f"{total} logged requests with feedback; {log_rows.used} used ({len(log_rows.rows)} questions)"]
    if log_rows.without_prompt:
        parts.append(
            f"{log_rows.without_prompt} skipped: no stored prompt (the gateway keeps prompts "
            "only with request_log.store_prompts: true)"
        )
    for model, count in sorted(log_rows.unknown_model.items()):
        parts.append(f"{count} skipped: model {model!r} is not in the models file")
    return "; ".join(parts)


def _shipped_data() -> Path:
    import router

    return Path(router.__file__).resolve().parent / "data"


def _fill_base_defaults(args: argparse.Namespace) -> None:
    data = _shipped_data()
    if args.data is None:
        args.data = data / "train.json"
        if args.tasks is None:
            args.tasks = data / "tasks.jsonl"
    if args.models is None:
        args.models = data / "models.json"


def _log_url(args: argparse.Namespace, request_log: RequestLogConfig, settings: Settings) -> str:
    return str(args.from_log) if args.from_log else settings.request_log_url(request_log)


def _check_prompts_are_stored(args: argparse.Namespace, request_log: RequestLogConfig) -> None:
    if args.config is not None and not request_log.store_prompts:
        print(
            f"note: {args.config} has request_log.store_prompts off: requests logged since then "
            "carry no prompt and cannot become training rows",
            file=sys.stderr,
        )


def build_rows(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    """Base rows plus the log's rows (each ``--log-weight`` times); refuses when the log gives none."""
    from fleet.config import RequestLogConfig, load_fleet
    from router.data import load_prices

    _fill_base_defaults(args)
    request_log = load_fleet(args.config).request_log if args.config else RequestLogConfig()
    _check_prompts_are_stored(args, request_log)
    pairs = asyncio.run(read_feedback(_log_url(args, request_log, settings), args.since))
    log_rows = rows_from_feedback(pairs, list(load_prices(args.models)))
    print(describe(log_rows, len(pairs)), file=sys.stderr)
    if not log_rows.rows:
        raise RetrainError(
            "no usable feedback in the request log (a usable row needs feedback, a stored prompt "
            "and a model the models file lists); nothing to retrain on"
        )
    base = json.loads(Path(args.data).read_text(encoding="utf-8"))
    if not isinstance(base, list):
        raise RetrainError(f"{args.data}: expected a JSON array of rows")
    return base + log_rows.rows * args.log_weight


def reload_gateway(url: str, settings: Settings) -> str:
    """POST URL/admin/router/reload (the first admin key of SMALLFLEET_ADMIN_KEYS); the loaded version."""
    import httpx

    from gateway.access import admin_secret

    key = admin_secret(settings)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.post(url.rstrip("/") + RELOAD_PATH, headers=headers, timeout=RELOAD_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise RetrainError(f"cannot reach {url} to reload the router: {exc}") from None
    if response.status_code != 200:
        raise RetrainError(f"{url} refused to reload the router ({response.status_code}): {response.text}")
    return str(response.json().get("version"))


def _current(out: Path) -> Path | None:
    from router.promote import current_artifact

    return current_artifact(out)


def run_train(args: argparse.Namespace, train: Handler) -> int:
    """The ``train`` command with the log options; ``train`` is the router's own handler."""
    from gateway.request_log import RequestLogUnavailable, SchemaTooNew
    from router import RouterError

    expected = (RetrainError, RouterError, RequestLogUnavailable, SchemaTooNew, ValueError, OSError)
    try:
        return _run_train(args, train)
    except expected as exc:  # ConfigError and unsupported log URLs are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_train(args: argparse.Namespace, train: Handler) -> int:
    from gateway.settings import Settings

    settings: Settings | None = None  # the environment, read once and only if needed
    if args.from_log is not None:
        args.promote = True
    if args.reload_url and not args.promote:
        raise RetrainError("--reload-url goes with --promote or --from-log (OUT is a router directory)")
    before = _current(args.out) if args.promote else None
    if args.from_log is None:
        code = train(args)
    else:
        with tempfile.TemporaryDirectory(prefix="smallfleet-retrain-") as tmp:
            merged = Path(tmp) / "rows.json"
            settings = Settings.from_environ()
            merged.write_text(json.dumps(build_rows(args, settings)), encoding="utf-8")
            args.data = merged
            code = train(args)
    after = _current(args.out) if args.promote else None
    if code == 0 and args.reload_url and after is not None and after != before:
        version = reload_gateway(args.reload_url, settings or Settings.from_environ())
        print(f"gateway at {args.reload_url} now serves router {version}")
    return code


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """Give the router's ``train`` parser the request-log options and route it through run_train."""
    parser.add_argument(
        "--from-log", nargs="?", const="", metavar="DB_URL",
        help="add logged requests with feedback as training rows (sqlite:///PATH or postgresql://...; "
        "no value: the --config fleet's request log); implies --promote. Default base data: the "
        "shipped benchmark rows, models and tasks",
    )  # fmt: skip
    parser.add_argument("--since", type=parse_since, help="only requests logged at or after this time")
    parser.add_argument(
        "--log-weight", type=int, default=1, choices=range(1, 101), metavar="N",
        help="repeat each logged row N times (1-100, default 1)",
    )  # fmt: skip
    parser.add_argument("--config", help="fleet YAML: its request log is the default --from-log DB_URL")
    parser.add_argument("--reload-url", help="after a promotion, POST URL/admin/router/reload")
    router_train: Handler = parser.get_default("func")
    parser.set_defaults(func=lambda args: run_train(args, router_train))
