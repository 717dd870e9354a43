"""``POST /v1/embeddings``: the fleet's embedding models (``embeddings:`` in the fleet config).

OpenAI's shape: ``input`` is a string or a list of strings (token-id arrays are refused: the
gateway would have to know which tokenizer the client used), ``encoding_format`` is ``float``
(the default) or ``base64`` (little-endian float32, as the openai client decodes it; the client
asks for it unless told otherwise), ``dimensions`` is honoured only where the model allows it
(backends/embeddings.py says which do), ``user`` is accepted. Any other field is refused with a
400 naming it. Usage and cost are accounted like a completion's: the request log, the per-key
limits (``gateway/limits.py`` admits ``/v1/embeddings`` too) and ``smallfleet_embedding_*``
metrics.

Embedding models also appear in ``GET /v1/models``: :meth:`EmbeddingsApi.routes` wraps the chat
endpoints' model listing, and is registered before it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from backends.embeddings import Embedder, Embeddings, check_dimensions
from backends.errors import ModelNotFound, RequestError, SmallfleetError
from fleet.config import FleetConfig
from gateway.endpoints import Endpoints, read_body
from gateway.errors import request_error_from_validation
from gateway.request_log import RequestRecord
from gateway.service import JSON_MEDIA_TYPE, Gateway

EncodingFormat = Literal["float", "base64"]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``, fields in the order of OpenAI's reference; nothing else accepted."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    input: str | list[Any]
    model: str = Field(min_length=1)
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self, max_inputs: int) -> list[str]:
        """The texts to embed, or a 400 naming what is wrong with ``input``."""
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts:
            raise RequestError("input is an empty list; send a string or a list of strings", param="input")
        if len(texts) > max_inputs:
            raise RequestError(f"input has {len(texts)} texts; the limit is {max_inputs}", param="input")
        for index, text in enumerate(texts):
            where = "input" if isinstance(self.input, str) else f"input[{index}]"
            if isinstance(text, int | list) and not isinstance(text, bool):
                raise RequestError(
                    "token-id input is not supported: send the text (the gateway cannot know which "
                    "tokenizer made the ids)",
                    param="input",
                )
            if not isinstance(text, str):
                raise RequestError(f"{where} must be a string, got {type(text).__name__}", param=where)
            if not text:
                raise RequestError(f"{where} is an empty string", param=where)
        return texts


_FIELDS = ", ".join(EmbeddingRequest.model_fields)


def parse_request(body: bytes) -> EmbeddingRequest:
    if not body:
        raise RequestError("request body is empty; expected a JSON object")
    try:
        return EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        unknown = [e for e in exc.errors(include_url=False) if e["type"] == "extra_forbidden"]
        if unknown:
            field = ".".join(str(part) for part in unknown[0]["loc"])
            raise RequestError(
                f"unknown field {field!r}: /v1/embeddings takes {_FIELDS}", param=field
            ) from None
        raise request_error_from_validation(exc) from None


def encode_vector(vector: np.ndarray, encoding_format: EncodingFormat) -> Any:
    """One embedding as the client asked: floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")
    return vector.astype(np.float32, copy=False)  # orjson writes float32 arrays as floats


def embeddings_json(model: str, result: Embeddings, encoding_format: EncodingFormat) -> bytes:
    vectors = np.ascontiguousarray(result.vectors, dtype=np.float32)
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(row, encoding_format)}
            for i, row in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


class EmbeddingsApi:
    """The embedding models' endpoint; owns their lifecycle (``start`` / ``aclose``)."""

    def __init__(self, gateway: Gateway, config: FleetConfig, embedders: Mapping[str, Embedder]) -> None:
        self.gateway = gateway
        self.config = config
        self.embedders = dict(embedders)

    async def start(self) -> None:
        await asyncio.gather(*(embedder.start() for embedder in self.embedders.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(e.aclose() for e in self.embedders.values()), return_exceptions=True)

    def embedder(self, name: str) -> Embedder:
        embedder = self.embedders.get(name)
        if embedder is not None:
            return embedder
        served = ", ".join(self.embedders) or "none (declare them under 'embeddings:' in the fleet config)"
        kind = "a chat model" if name in self.gateway.fleet else "not served here"
        raise ModelNotFound(f"model {name!r} is {kind}; embedding models: {served}", param="model")

    async def embeddings(self, request: Request) -> Response:
        started = time.perf_counter()
        model: str | None = None
        asked = False  # whether a model was asked: then the request log has the request too
        try:
            parsed = parse_request(await read_body(request, self.config.limits.max_body_bytes))
            embedder = self.embedder(parsed.model)
            model = request.state.model = parsed.model
            texts = parsed.texts(self.config.limits.max_embedding_inputs)
            check_dimensions(embedder, parsed.dimensions)
            asked = True
            result = await embedder.embed(texts, parsed.dimensions)
        except SmallfleetError as exc:
            self._account(request, model, started, exc.status_code, logged=asked)
            raise
        self._account(request, parsed.model, started, 200, result=result, inputs=len(texts))
        body = embeddings_json(parsed.model, result, parsed.encoding_format)
        return Response(body, media_type=JSON_MEDIA_TYPE, headers={"x-smallfleet-model": parsed.model})

    def _account(
        self,
        request: Request,
        model: str | None,
        started: float,
        status: int,
        *,
        result: Embeddings | None = None,
        inputs: int = 0,
        logged: bool = True,
    ) -> None:
        """Metrics; and for a request a model was asked, the request log and per-key usage."""
        seconds = time.perf_counter() - started
        tokens = result.prompt_tokens if result is not None else 0
        config = self.config.embedding(model) if model is not None else None
        cost = config.price.cost(tokens) if config is not None else 0.0
        self.gateway.metrics.observe_embedding(
            model=model, status=status, seconds=seconds, inputs=inputs, tokens=tokens, cost=cost
        )
        if not logged or model is None:
            return
        record = RequestRecord(
            request_id=request.state.request_id,
            created_at=time.time() - seconds,
            route=model,
            model=model,
            cluster=None,
            alpha=None,
            router_version=None,
            prompt_tokens=tokens,
            completion_tokens=0,
            cost=cost,
            latency_s=seconds,
            ttft_s=None,
            status=status,
            api_key_id=getattr(request.state, "api_key_id", None),
        )
        self.gateway.accounting.log(record)

    # -- GET /v1/models --------------------------------------------------------------------------
    def model_json(self, name: str, created: int) -> dict[str, Any]:
        config = self.config.embedding(name)
        assert config is not None
        embedder = self.embedders[name]
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "smallfleet",
            "backend": config.backend,
            "embedding": {
                "dimensions": embedder.dimensions,
                "supports_dimensions": embedder.supports_dimensions,
                "max_input_tokens": embedder.max_input_tokens,
            },
        }

    def routes(self, chat: Endpoints) -> list[HttpRoute]:
        """``POST /v1/embeddings``, and the model listing with the embedding models added to the
        chat endpoints' (register these before ``chat.routes()``)."""

        async def list_models(request: Request) -> Response:
            listing = orjson.loads((await chat.list_models(request)).body)
            listing["data"] += [self.model_json(name, chat.created) for name in self.embedders]
            return Response(orjson.dumps(listing), media_type=JSON_MEDIA_TYPE)

        async def get_model(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in self.embedders:
                return await chat.get_model(request)
            return Response(orjson.dumps(self.model_json(name, chat.created)), media_type=JSON_MEDIA_TYPE)

        return [
            HttpRoute("/v1/embeddings", self.embeddings, methods=["POST"]),
            HttpRoute("/v1/models", list_models, methods=["GET"]),
            HttpRoute("/v1/models/{name:path}", get_model, methods=["GET"]),
        ]
