"""The ASGI application: ``create_app(config)`` builds it; importing does nothing.

The app's lifespan owns every backend (models loaded at start, clients closed
at stop) and the health poller. Middleware order is written down in
:func:`_middleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.base import Backend
from backends.errors import ModelNotFound, PayloadTooLarge, RequestError, SmallfleetError
from backends.types import GenerationRequest, Health, SamplingParams
from backends.types import Message as ChatTurn
from gateway.auth import ApiKeyMiddleware, ApiKeys
from gateway.config import FleetConfig
from gateway.errors import MethodNotAllowed, NotFound, error_bytes, request_error_from_validation
from gateway.fleet import Fleet
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from gateway.protocol import ChatCompletionRequest, CompletionRequest, model_list_json
from gateway.routing import ALPHA_HEADER, FleetRouter, is_auto
from gateway.service import JSON_MEDIA_TYPE, Answer, Gateway

HEALTH_POLL_SECONDS = 10.0
_REQUEST_ID_MAX = 128


# -- middleware -------------------------------------------------------------
class RequestIdMiddleware:
    """Gives every request an id (the client's ``x-request-id`` if sane) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= _REQUEST_ID_MAX and candidate.isprintable():
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _middleware(api_keys: ApiKeys) -> list[Middleware]:
    """Outermost first: the request id wraps everything, so even a 401 carries it."""
    return [Middleware(RequestIdMiddleware), Middleware(ApiKeyMiddleware, keys=api_keys)]


# -- errors -----------------------------------------------------------------
def _error_response(request: Request, exc: BaseException) -> Response:
    status, body = error_bytes(exc)
    headers = {}
    model = getattr(request.state, "model", None)
    if model:
        headers["x-smallfleet-model"] = model
    return Response(body, status_code=status, media_type=JSON_MEDIA_TYPE, headers=headers)


async def _on_smallfleet_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        mapped: SmallfleetError = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    elif exc.status_code == 404:
        mapped = NotFound(f"no such endpoint: {request.method} {request.url.path}")
    else:
        mapped = RequestError(str(exc.detail))
        mapped.status_code = exc.status_code
    return _error_response(request, mapped)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return _error_response(request, exc)


# -- request reading --------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def _parse(model: type[ChatCompletionRequest] | type[CompletionRequest], body: bytes) -> Any:
    if not body:
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise request_error_from_validation(exc) from None


def _sampling(parsed: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
    return SamplingParams(
        max_tokens=parsed.token_limit,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop_sequences(),
        seed=parsed.seed,
    )


# -- endpoints --------------------------------------------------------------
def _last_user_text(parsed: ChatCompletionRequest) -> str:
    """What the router judges a chat by: its last user turn."""
    for message in reversed(parsed.messages):
        if message.role == "user":
            return message.text()
    return parsed.messages[-1].text()


class Endpoints:
    def __init__(self, gateway: Gateway, config: FleetConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.router: FleetRouter | None = None
        self.created = int(time.time())
        self.health_cache: dict[str, Health] = {}

    async def _answer(self, request: Request, model: str, question: str, started: float) -> Answer:
        """Which member answers: the named one, or the router's choice for ``auto``."""
        if not is_auto(model):
            member = self.gateway.fleet.get(model)
            request.state.model = member.name
            return Answer(request.state.request_id, member.name, member, started)
        if self.router is None:
            raise ModelNotFound(
                f"model {model!r} needs a router artifact (router.artifact in the fleet config)",
                param="model",
            )
        alpha = self.router.alpha_for(model, request.headers.get(ALPHA_HEADER))
        decision_started = time.perf_counter()
        decision = await self.router.decide(question, alpha)
        self.gateway.metrics.observe_decision(
            route=model,
            model=decision.model,
            cluster="ood" if decision.out_of_distribution else str(decision.cluster),
            seconds=time.perf_counter() - decision_started,
        )
        member = self.gateway.fleet.get(decision.model)
        request.state.model = member.name
        headers = (
            ("x-smallfleet-cluster", "ood" if decision.out_of_distribution else str(decision.cluster)),
            ("x-smallfleet-alpha", f"{decision.alpha:g}"),
            ("x-smallfleet-router-version", decision.artifact_version),
        )
        return Answer(request.state.request_id, model, member, started, headers)

    async def chat_completions(self, request: Request) -> Any:
        started = time.perf_counter()
        body = await read_body(request, self.config.limits.max_body_bytes)
        parsed: ChatCompletionRequest = _parse(ChatCompletionRequest, body)
        if len(parsed.messages) > self.config.limits.max_messages:
            raise RequestError(
                f"{len(parsed.messages)} messages; the limit is {self.config.limits.max_messages}",
                param="messages",
            )
        answer = await self._answer(request, parsed.model, _last_user_text(parsed), started)
        self.gateway.check_token_limit(answer.member, parsed.token_limit)
        generation = GenerationRequest(
            messages=tuple(ChatTurn(m.role, m.text()) for m in parsed.messages),
            params=_sampling(parsed),
            model=answer.member.name,
        )
        return await self.gateway.respond(
            answer, generation, request.receive, stream=parsed.stream, include_usage=parsed.include_usage
        )

    async def completions(self, request: Request) -> Any:
        started = time.perf_counter()
        body = await read_body(request, self.config.limits.max_body_bytes)
        parsed: CompletionRequest = _parse(CompletionRequest, body)
        answer = await self._answer(request, parsed.model, parsed.prompt_text(), started)
        self.gateway.check_token_limit(answer.member, parsed.token_limit)
        generation = GenerationRequest(
            prompt=parsed.prompt_text(), params=_sampling(parsed), model=answer.member.name
        )
        return await self.gateway.respond(
            answer, generation, request.receive, stream=parsed.stream, include_usage=parsed.include_usage
        )

    def _model_json(self, name: str) -> dict[str, Any]:
        model = next(m for m in self.config.models if m.name == name)
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "smallfleet",
            "backend": model.backend,
            "params": model.params,
            "quant": model.quant,
            "context_length": self.gateway.fleet.get(name).context_length,
        }

    async def list_models(self, request: Request) -> Response:
        models = [self._model_json(name) for name in self.gateway.fleet.names()]
        if self.router is not None:
            models += [
                {
                    "id": route,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "smallfleet",
                    "router_version": self.router.version,
                    "candidates": list(self.router.candidates),
                }
                for route in self.router.routes
            ]
        return Response(orjson.dumps(model_list_json(models)), media_type=JSON_MEDIA_TYPE)

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.gateway.fleet.get(name)  # 404 in OpenAI's shape if unknown
        return Response(orjson.dumps(self._model_json(name)), media_type=JSON_MEDIA_TYPE)

    async def health(self, request: Request) -> Response:
        models = {
            name: {"ok": h.ok, "detail": h.detail, "queue_depth": h.queue_depth}
            for name, h in self.health_cache.items()
        }
        healthy = all(h.ok for h in self.health_cache.values()) and bool(self.health_cache)
        payload = {"status": "ok" if healthy else "degraded", "models": models}
        return Response(orjson.dumps(payload), media_type=JSON_MEDIA_TYPE)

    async def metrics(self, request: Request) -> Response:
        for member in self.gateway.fleet:
            health = await member.backend.health() if member.owned_by == "llama_cpp" else None
            if health is not None:
                self.gateway.metrics.backend_queue_depth.labels(member.name).set(health.queue_depth)
        return Response(self.gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def poll_health(self) -> None:
        for member in self.gateway.fleet:
            try:
                health = await asyncio.wait_for(member.backend.health(), timeout=5.0)
            except (TimeoutError, SmallfleetError) as exc:
                health = Health(ok=False, detail=f"health check failed: {exc}")
            self.health_cache[member.name] = health
            self.gateway.metrics.backend_up.labels(member.name).set(1 if health.ok else 0)
            self.gateway.metrics.backend_queue_depth.labels(member.name).set(health.queue_depth)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{name:path}", self.get_model, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]


async def _poll_forever(endpoints: Endpoints, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await endpoints.poll_health()


def create_app(
    config: FleetConfig,
    *,
    backends: Mapping[str, Backend] | None = None,
    api_keys: ApiKeys | None = None,
    router: FleetRouter | None = None,
    health_poll_seconds: float = HEALTH_POLL_SECONDS,
) -> Starlette:
    """Build the gateway for ``config``.

    ``backends`` replaces some models' backends (tests); ``router`` is an already
    loaded router (the CLI loads it first to report a bad artifact cleanly),
    otherwise the lifespan loads ``config.router.artifact`` if one is set.
    """
    fleet = Fleet.from_config(config, backends)
    gateway = Gateway(fleet, GatewayMetrics())
    endpoints = Endpoints(gateway, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        endpoints.router = router
        if endpoints.router is None and config.router.artifact:
            artifact = config.router.artifact
            endpoints.router = await asyncio.to_thread(FleetRouter.load, artifact, fleet.names())
        await fleet.start()
        await endpoints.poll_health()
        poller = asyncio.create_task(_poll_forever(endpoints, health_poll_seconds))
        try:
            yield
        finally:
            poller.cancel()
            await fleet.aclose()
            if endpoints.router is not None:
                endpoints.router.close()

    app = Starlette(
        routes=endpoints.routes(),
        middleware=_middleware(api_keys or ApiKeys()),
        exception_handlers={
            SmallfleetError: _on_smallfleet_error,
            HTTPException: _on_http_exception,
            Exception: _on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
