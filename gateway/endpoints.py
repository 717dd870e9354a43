"""The HTTP endpoints: parse and validate, hand over to :class:`~gateway.service.Gateway`, answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from backends.errors import PayloadTooLarge, RequestError, SmallfleetError, UnsupportedParameter
from backends.features import Feature, features_used
from backends.types import GenerationRequest, ResponseFormat, SamplingParams, Tool, ToolChoice
from backends.types import Message as ChatTurn
from fleet.composites import member_names
from fleet.config import ConfigError, FleetConfig, RouteConfig
from gateway.access import AccessPolicy
from gateway.answer import Ask
from gateway.auth import Unauthorized, bearer_key
from gateway.auto import ALPHA_HEADER, FleetRouter, is_auto
from gateway.errors import request_error_from_validation
from gateway.health import HealthPoller
from gateway.heap import refreeze_heap
from gateway.keys import ADMIN_KEYS_ENV, ApiKey, KeyLimits, KeyStore, KeyTable
from gateway.limits import InputLimits, Limiter
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    CreateKeyRequest,
    FeedbackRequest,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    RouterReloadRequest,
    model_list_json,
)
from gateway.request_log import Feedback
from gateway.responses_api import ResponsesRequest, ResponsesShape
from gateway.service import JSON_MEDIA_TYPE, Gateway
from gateway.shapes import CompletionShape

_ALPHA_HEADER = ALPHA_HEADER.encode("latin-1")
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", ChatCompletionRequest, CompletionRequest, ResponsesRequest)


def header(request: Request, name: bytes) -> str | None:
    """``request.headers.get(name)`` (``name`` lower-case, as ASGI gives header names), read from
    the scope without building Starlette's ``Headers``."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, within ``limit`` bytes. What ``request.stream()`` does, without its generator:
    a client gone before the end is Starlette's ``ClientDisconnect``, and the stream counts as
    consumed."""
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    if hasattr(request, "_body") or request._stream_consumed:
        body = bytearray()
        async for piece in request.stream():  # read before (or twice): as Starlette does
            body += piece
            if len(body) > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return bytes(body)
    receive = request.receive
    pieces: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            piece = message.get("body", b"")
            if piece:
                pieces.append(piece)
                size += len(piece)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            if not message.get("more_body", False):
                request._stream_consumed = True
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        elif message["type"] == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()


def parse(model: type[M], body: bytes) -> M:
    if not body:
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise request_error_from_validation(exc) from None


def _chosen_on(request: Request) -> Callable[[str], None]:
    """Keeps the chosen model's name on the request, for the headers of an error answer."""
    state = request.scope["state"]  # what request.state wraps, without making the wrapper

    def keep(name: str) -> None:
        state["model"] = name

    return keep


def _sampling(parsed: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
    if isinstance(parsed, ChatCompletionRequest):
        logprobs, top = bool(parsed.logprobs), parsed.top_logprobs or 0
    else:  # the legacy API's logprobs is the number of alternatives wanted
        logprobs, top = parsed.logprobs is not None, parsed.logprobs or 0
    if parsed.logit_bias and is_auto(parsed.model):
        raise UnsupportedParameter(
            "logit_bias names token ids of one model's vocabulary: name the model instead of auto",
            param="logit_bias",
        )
    return SamplingParams(
        max_tokens=parsed.token_limit,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop_sequences(),
        seed=parsed.seed,
        logprobs=logprobs,
        top_logprobs=top,
        frequency_penalty=parsed.frequency_penalty,
        presence_penalty=parsed.presence_penalty,
        logit_bias=parsed.token_bias(),
    )


def _chat_generation(parsed: ChatCompletionRequest) -> GenerationRequest:
    """The chat request as backends take it (every field the client sent, in their terms)."""
    tools = tuple(
        Tool(t.function.name, t.function.description, t.function.parameters or {}, bool(t.function.strict))
        for t in parsed.tools or ()
    )
    choice = parsed.tool_choice
    if isinstance(choice, NamedToolChoice):
        tool_choice = ToolChoice("function", choice.function.name)
    else:
        tool_choice = ToolChoice(choice or "auto")
    fmt = parsed.response_format
    response_format = None
    if isinstance(fmt, JsonObjectFormat):
        response_format = ResponseFormat("json_object")
    elif isinstance(fmt, JsonSchemaFormat):
        spec = fmt.json_schema
        schema = spec.json_schema or {}
        response_format = ResponseFormat("json_schema", schema, spec.name, bool(spec.strict))
    messages = tuple(
        ChatTurn(m.role, m.text(), tool_calls=m.calls(), tool_call_id=m.tool_call_id, name=m.name)
        for m in parsed.messages
    )
    return GenerationRequest(
        messages=messages,
        params=_sampling(parsed),
        n=parsed.n,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parsed.parallel_tool_calls is not False,
        response_format=response_format,
        vendor_fields=parsed.vendor_fields(),
    )


def _shape(parsed: ChatCompletionRequest | CompletionRequest) -> CompletionShape:
    return CompletionShape(chat=isinstance(parsed, ChatCompletionRequest), include_usage=parsed.include_usage)


def _last_user_text(parsed: ChatCompletionRequest) -> str:
    """What the router judges a chat by: its last user turn."""
    for message in reversed(parsed.messages):
        if message.role == "user":
            return message.text()
    return parsed.messages[-1].text()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON_MEDIA_TYPE)


class Endpoints:
    def __init__(
        self,
        gateway: Gateway,
        config: FleetConfig,
        admin_keys: KeyStore,
        *,
        keys: KeyStore,
        limiter: Limiter,
        health: HealthPoller,
        key_table: KeyTable | None = None,
        input_limits: InputLimits | None = None,
        openapi: dict[str, Any] | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.admin_keys = admin_keys
        self.access = access or AccessPolicy()
        self.keys = keys
        self.limiter = limiter
        self.health_poller = health
        self.key_table = key_table
        self.input_limits = input_limits or InputLimits()
        self.openapi = openapi or {}
        self.created = int(time.time())
        self._reload_lock = asyncio.Lock()
        # Tells the other replicas of a reload (gateway/shared): called with (artifact, version).
        self.on_router_reload: Callable[[str, str], Awaitable[None]] | None = None

    # -- completions ------------------------------------------------------
    @staticmethod
    def _ask(
        request: Request,
        parsed: ChatCompletionRequest | CompletionRequest | ResponsesRequest,
        question: str,
        started: float,
        needs: dict[Feature, str],
    ) -> Ask:
        state = request.scope["state"]  # what request.state wraps, without making the wrapper
        return Ask(
            request_id=state["request_id"],
            model=parsed.model,
            question=question,
            started=started,
            alpha_header=header(request, _ALPHA_HEADER),
            n=parsed.n,
            needs=needs,
            max_tokens=parsed.token_limit,
            api_key_id=state.get("api_key_id"),
            details=parsed.wants_details,
        )

    async def chat_completions(self, request: Request) -> Any:
        started = time.perf_counter()
        try:
            parsed = await self._read(request, ChatCompletionRequest)
            generation = _chat_generation(parsed)
        except SmallfleetError as exc:
            self._count_rejection(exc)
            raise
        ask = self._ask(request, parsed, _last_user_text(parsed), started, features_used(generation))
        shape = _shape(parsed)
        return await self.gateway.answer(
            ask, generation, request.receive, stream=parsed.stream, shape=shape, chosen=_chosen_on(request)
        )

    async def completions(self, request: Request) -> Any:
        started = time.perf_counter()
        try:
            parsed = await self._read(request, CompletionRequest)
            generation = GenerationRequest(
                prompt=parsed.prompt_text(),
                params=_sampling(parsed),
                n=parsed.n,
                vendor_fields=parsed.vendor_fields(),
            )
        except SmallfleetError as exc:
            self._count_rejection(exc)
            raise
        ask = self._ask(request, parsed, parsed.prompt_text(), started, features_used(generation))
        shape = _shape(parsed)
        return await self.gateway.answer(
            ask, generation, request.receive, stream=parsed.stream, shape=shape, chosen=_chosen_on(request)
        )

    async def responses(self, request: Request) -> Any:
        """``POST /v1/responses`` (gateway/responses_api.py): the chat path, in the Responses shape."""
        started = time.perf_counter()
        try:
            parsed = await self._read(request, ResponsesRequest)
            generation = parsed.generation()
        except SmallfleetError as exc:
            self._count_rejection(exc)
            raise
        ask = self._ask(request, parsed, parsed.question(), started, features_used(generation))
        shape = ResponsesShape(parsed)
        return await self.gateway.answer(
            ask, generation, request.receive, stream=parsed.stream, shape=shape, chosen=_chosen_on(request)
        )

    def _count_rejection(self, exc: SmallfleetError) -> None:
        """A request refused before the gateway chose a member for it (it counts its own)."""
        code = exc.code or exc.error_type
        self.gateway.metrics.observe_rejection(model=None, status=exc.status_code, code=code)

    async def _read(self, request: Request, model: type[R]) -> R:
        """The request's body parsed as ``model`` and checked against the input limits: the one
        place a completion request's input is checked before a member is chosen (what depends on
        the member, its context and choices, is checked in gateway/choosing.py)."""
        limits = self.config.limits
        parsed = parse(model, await read_body(request, limits.max_body_bytes))
        turns, field = parsed.turns
        if turns > limits.max_messages:
            what = "input items" if field == "input" else field
            raise RequestError(f"{turns} {what}; the limit is {limits.max_messages}", param=field)
        self.input_limits.check_max_tokens(parsed.token_limit, parsed.token_limit_param)
        parsed.refuse_unsupported()
        return parsed

    # -- feedback ---------------------------------------------------------
    async def feedback(self, request: Request) -> Response:
        parsed = parse(FeedbackRequest, await read_body(request, self.config.limits.max_body_bytes))
        feedback = Feedback(parsed.request_id, parsed.score, parsed.label, parsed.comment)
        result = await self.gateway.feedback(feedback)  # 404 unknown id, 409 conflicting feedback
        record = result.record
        return _json(
            {
                "object": "feedback",
                "request_id": record.request_id,
                "score": parsed.score,
                "route": record.route,
                "model": record.model,
                "duplicate": result.duplicate,
            }
        )

    # -- models -----------------------------------------------------------
    def _model_json(self, name: str) -> dict[str, Any]:
        route = self.config.route(name)
        if route is not None:
            return self._composite_json(route)
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
            "features": sorted(self.gateway.fleet.get(name).features),
        }

    def _composite_json(self, route: RouteConfig) -> dict[str, Any]:
        """A route of the fleet config (plan_solve, diverse): a model id like any other."""
        member = self.gateway.fleet.get(route.name)
        return {
            "id": route.name,
            "object": "model",
            "created": self.created,
            "owned_by": "smallfleet",
            "backend": route.type,
            "route": True,
            "members": list(member_names(route)),
            "max_choices": member.max_choices,
            "context_length": member.context_length,
            "features": sorted(member.features),
        }

    def _route_json(self, route: str, router: FleetRouter) -> dict[str, Any]:
        return {
            "id": route,
            "object": "model",
            "created": self.created,
            "owned_by": "smallfleet",
            "router_version": router.version,
            "candidates": list(router.candidates),
        }

    async def list_models(self, request: Request) -> Response:
        models = [self._model_json(name) for name in self.gateway.fleet.names()]
        router = self.gateway.router
        if router is not None:
            models += [self._route_json(route, router) for route in router.routes]
        return _json(model_list_json(models))

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.gateway.fleet.get(name)  # 404 in OpenAI's shape if unknown
        return _json(self._model_json(name))

    # -- operations -------------------------------------------------------
    async def health(self, request: Request) -> Response:
        last = self.health_poller.last
        models = {
            name: {"ok": h.ok, "detail": h.detail, "queue_depth": h.queue_depth} for name, h in last.items()
        }
        healthy = self.health_poller.healthy
        router = self.gateway.router
        return _json(
            {
                "status": "ok" if healthy else "degraded",
                "models": models,
                "router_version": router.version if router is not None else None,
            }
        )

    async def metrics(self, request: Request) -> Response:
        await self.health_poller.local_queue_depths()
        return Response(self.gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def _check_admin(self, request: Request) -> None:
        """An admin key (SMALLFLEET_ADMIN_KEYS) when any is set; without one, local clients only
        if ``access.admin_loopback`` says so (gateway/access.py), else nobody."""
        if self.admin_keys:
            key = bearer_key(request.scope)
            if not key or not self.admin_keys.accepts(key):
                raise Unauthorized("this endpoint needs an admin key: 'Authorization: Bearer <admin key>'")
            return
        if not self.access.admin_loopback:
            raise Unauthorized(
                f"admin endpoints are closed: set {ADMIN_KEYS_ENV}, or allow local clients with "
                "access.admin_loopback (smallfleet serve --admin-loopback)"
            )
        if not self.access.origin(request.scope).local:
            raise Unauthorized(
                "without admin keys, admin endpoints answer only clients on this machine that reach "
                "the gateway directly, not through a proxy"
            )

    async def reload_router(self, request: Request) -> Response:
        self._check_admin(request)
        body = await read_body(request, self.config.limits.max_body_bytes)
        parsed = parse(RouterReloadRequest, body) if body else RouterReloadRequest()
        version = await self.reload(parsed.artifact)
        return _json({"object": "router", "version": version})

    async def reload(self, artifact: str | None = None, *, publish: bool = True) -> str:
        """Load a router artifact and swap it in; requests already routed are unaffected.
        ``publish``: tell the other replicas through the shared store, if there is one."""
        path = artifact or self.config.router.artifact
        if not path:
            raise RequestError("no router artifact configured; pass one as 'artifact'", param="artifact")
        async with self._reload_lock:
            try:
                fresh = await asyncio.to_thread(FleetRouter.load, path, self.config.names())
            except ConfigError as exc:
                raise RequestError(str(exc), param="artifact") from None
            if self._swap_router(fresh):
                refreeze_heap()  # the previous router may be cyclic garbage frozen at start-up
            if publish and self.on_router_reload is not None:
                await self.on_router_reload(path, fresh.version)
        return fresh.version

    def _swap_router(self, fresh: FleetRouter) -> bool:
        """Serve ``fresh``; close the router it replaces (False when there was none)."""
        previous, self.gateway.router = self.gateway.router, fresh
        self.gateway.metrics.set_router_version(fresh.version, previous.version if previous else None)
        if previous is None:
            return False
        previous.close()
        return True

    # -- API keys ---------------------------------------------------------
    def _table(self) -> KeyTable:
        if self.key_table is None:
            raise RequestError("this gateway's request log cannot store API keys", param=None)
        return self.key_table

    def _key_json(self, key: ApiKey) -> dict[str, Any]:
        limits = self.keys.limits_of(key)
        return {
            "id": key.id,
            "object": "api_key",
            "source": key.source,
            "created_at": int(key.created_at),
            "revoked": key.revoked_at is not None,
            "limits": {"rpm": limits.rpm, "tpm": limits.tpm, "budget": limits.budget},
            "usage": self.limiter.report(key),
        }

    async def create_key(self, request: Request) -> Response:
        self._check_admin(request)
        parsed = parse(CreateKeyRequest, await read_body(request, self.config.limits.max_body_bytes))
        limits = KeyLimits(parsed.rpm, parsed.tpm, parsed.budget)
        key, secret = await self.keys.create(self._table(), parsed.name, limits)
        return _json({**self._key_json(key), "key": secret}, status=201)

    async def list_keys(self, request: Request) -> Response:
        self._check_admin(request)
        keys = self.keys.all()
        for key in keys:
            await self.limiter.refresh(key)  # usage across replicas, with a shared store
        return _json({"object": "list", "data": [self._key_json(k) for k in keys]})

    async def revoke_key(self, request: Request) -> Response:
        self._check_admin(request)
        key = await self.keys.revoke(self._table(), request.path_params["key_id"])
        return _json(self._key_json(key))

    async def openapi_json(self, request: Request) -> Response:
        return _json(self.openapi)

    def completion_endpoints(self) -> dict[str, Callable[[Request], Awaitable[Any]]]:
        """The completion endpoints (``POST`` only), by path."""
        return {
            "/v1/chat/completions": self.chat_completions,
            "/v1/completions": self.completions,
            "/v1/responses": self.responses,
        }

    def completion_routes(self) -> list[HttpRoute]:
        """The completion endpoints as routes: the app serves their POSTs on its fast path
        (gateway/fast_path.py) and matches them first otherwise (a request is matched against
        each route in turn until one fits)."""
        endpoints = self.completion_endpoints().items()
        return [HttpRoute(path, endpoint, methods=["POST"]) for path, endpoint in endpoints]

    def routes(self) -> list[HttpRoute]:
        """Every other endpoint."""
        return [
            HttpRoute("/v1/feedback", self.feedback, methods=["POST"]),
            HttpRoute("/v1/models", self.list_models, methods=["GET"]),
            HttpRoute("/v1/models/{name:path}", self.get_model, methods=["GET"]),
            HttpRoute("/health", self.health, methods=["GET"]),
            HttpRoute("/metrics", self.metrics, methods=["GET"]),
            HttpRoute("/openapi.json", self.openapi_json, methods=["GET"]),
            HttpRoute("/admin/router/reload", self.reload_router, methods=["POST"]),
            HttpRoute("/admin/keys", self.create_key, methods=["POST"]),
            HttpRoute("/admin/keys", self.list_keys, methods=["GET"]),
            HttpRoute("/admin/keys/{key_id}", self.revoke_key, methods=["DELETE"]),
        ]
