"""The gateway's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Request bodies come from the pydantic models of :mod:`gateway.protocol` (one
source of truth for what is accepted); responses are written out here, in
OpenAI's shapes. ``tests/gateway/test_openapi_fuzz.py`` checks the running gateway against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.embeddings_api import EmbeddingRequest
from gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    CreateKeyRequest,
    FeedbackRequest,
    RouterReloadRequest,
)
from gateway.responses_api import ResponsesRequest

REF = "#/components/schemas/{model}"
JSON = "application/json"

_NULLABLE_STR = {"type": ["string", "null"]}
_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        k: {"type": "integer", "minimum": 0} for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
}
_FINISH = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
# One server-sent event: ``data:`` holds a chunk's JSON (or ``[DONE]``, which always ends the stream).
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}


def _completion(obj: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": obj},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "minItems": 1, "items": choice},
            "usage": {"$ref": "#/components/schemas/Usage"},
            "smallfleet": {
                "type": "object",
                "description": "a composite route's answer: what it did (docs/composite-routes.md)",
            },
        },
    }


def _choice(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["index", "finish_reason", *extra],
        "properties": {
            "index": {"type": "integer"},
            "logprobs": {"type": ["object", "null"]},
            "finish_reason": _FINISH,
            **extra,
        },
    }


RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Usage": _USAGE,
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": _NULLABLE_STR,
                    "code": _NULLABLE_STR,
                },
            }
        },
    },
    "ChatCompletion": _completion(
        "chat.completion",
        _choice(
            {
                "message": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"const": "assistant"},
                        "content": _NULLABLE_STR,
                        "tool_calls": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        ),
    ),
    "TextCompletion": _completion("text_completion", _choice({"text": {"type": "string"}})),
    "Response": {
        "type": "object",
        "required": ["id", "object", "created_at", "status", "model", "output", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"enum": ["completed", "incomplete"]},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object", "required": ["type", "id"]}},
            "usage": {"type": "object"},
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer", "minimum": 0},
                        "embedding": {
                            "description": "floats, or base64 of little-endian float32 (encoding_format)",
                            "oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}],
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {k: _COUNT for k in ("prompt_tokens", "total_tokens")},
            },
        },
    },
    "Feedback": {
        "type": "object",
        "required": ["object", "request_id", "score", "route", "model", "duplicate"],
        "properties": {
            "object": {"const": "feedback"},
            "request_id": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "route": {"type": "string"},
            "model": {"type": "string"},
            "duplicate": {"type": "boolean"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "models"],
        "properties": {"status": {"enum": ["ok", "degraded"]}, "models": {"type": "object"}},
    },
    "RouterReloaded": {
        "type": "object",
        "required": ["object", "version"],
        "properties": {"object": {"const": "router"}, "version": {"type": "string"}},
    },
    "ApiKey": {
        "type": "object",
        "required": ["id", "object", "source", "created_at", "revoked", "limits", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "api_key"},
            "source": {"enum": ["env", "admin"]},
            "created_at": {"type": "integer"},
            "revoked": {"type": "boolean"},
            "limits": {"type": "object"},
            "usage": {"type": "object"},
            "key": {"type": "string", "description": "the secret; only in the answer to POST /admin/keys"},
        },
    },
    "ApiKeyList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}},
        },
    },
}

_ERROR_CONTENT = {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
_ERROR_TEXT = {
    "400": "the request is invalid (the error's param names the field)",
    "401": "missing or invalid API key",
    "404": "unknown model, route or request id",
    "405": "method not allowed",
    "409": "conflict",
    "413": "request body too large",
    "429": "a key's rate limit or budget",
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: {"description": _ERROR_TEXT[s], "content": _ERROR_CONTENT} for s in statuses}


def _ok(schema: str, status: str = "200", *, stream: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if stream:
        content["text/event-stream"] = {"schema": _SSE_EVENT}
    return {status: {"description": "OK", "content": content}}


_EXAMPLES: dict[str, dict[str, Any]] = {
    "ChatCompletionRequest": {
        "model": "auto",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 16,
    },
    "CompletionRequest": {"model": "auto", "prompt": "Once upon a time", "max_tokens": 16},
    "ResponsesRequest": {"model": "auto", "input": "Hello", "max_output_tokens": 16},
    "EmbeddingRequest": {"model": "minilm-static", "input": ["Hello", "Hi there"]},
    "FeedbackRequest": {"request_id": "0123abcd", "score": 1.0},
    "CreateKeyRequest": {"name": "team-a", "rpm": 60, "tpm": 100000, "budget": 10.0},
}


def _body(
    model: type[BaseModel], *, required: bool = True, example_model: str | None = None
) -> dict[str, Any]:
    example = _EXAMPLES.get(model.__name__)
    if example is not None:
        example = {**example, "model": example_model} if example_model and "model" in example else example
        media: dict[str, Any] = {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
            "example": example,
        }
        return {"required": required, "content": {JSON: media}}
    return {
        "required": required,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }


def _request_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    models = (
        ChatCompletionRequest,
        CompletionRequest,
        ResponsesRequest,
        EmbeddingRequest,
        FeedbackRequest,
        RouterReloadRequest,
        CreateKeyRequest,
    )
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _paths(example_model: str | None) -> dict[str, Any]:
    completion_errors = _errors("400", "401", "404", "413", "429")
    return {
        "/v1/chat/completions": {
            "post": {
                "operationId": "createChatCompletion",
                "requestBody": _body(ChatCompletionRequest, example_model=example_model),
                "responses": {**_ok("ChatCompletion", stream=True), **completion_errors},
            }
        },
        "/v1/completions": {
            "post": {
                "operationId": "createCompletion",
                "requestBody": _body(CompletionRequest, example_model=example_model),
                "responses": {**_ok("TextCompletion", stream=True), **completion_errors},
            }
        },
        "/v1/responses": {
            "post": {
                "operationId": "createResponse",
                "requestBody": _body(ResponsesRequest, example_model=example_model),
                "responses": {**_ok("Response", stream=True), **completion_errors},
            }
        },
        "/v1/embeddings": {
            "post": {
                "operationId": "createEmbedding",
                "requestBody": _body(EmbeddingRequest),
                "responses": {**_ok("EmbeddingList"), **completion_errors},
            }
        },
        "/v1/models": {
            "get": {"operationId": "listModels", "responses": {**_ok("ModelList"), **_errors("401")}}
        },
        "/v1/models/{name}": {
            "get": {
                "operationId": "retrieveModel",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {**_ok("Model"), **_errors("401", "404")},
            }
        },
        "/v1/feedback": {
            "post": {
                "operationId": "createFeedback",
                "requestBody": _body(FeedbackRequest),
                "responses": {**_ok("Feedback"), **_errors("400", "401", "404", "409", "413")},
            }
        },
        "/health": {"get": {"operationId": "health", "security": [], "responses": _ok("Health")}},
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "security": [],
                "responses": {
                    "200": {"description": "Prometheus text format", "content": {"text/plain": {}}}
                },
            }
        },
        "/admin/router/reload": {
            "post": {
                "operationId": "reloadRouter",
                "requestBody": _body(RouterReloadRequest, required=False),
                "responses": {**_ok("RouterReloaded"), **_errors("400", "401", "413")},
            }
        },
        "/admin/keys": {
            "get": {"operationId": "listKeys", "responses": {**_ok("ApiKeyList"), **_errors("401")}},
            "post": {
                "operationId": "createKey",
                "requestBody": _body(CreateKeyRequest),
                "responses": {**_ok("ApiKey", "201"), **_errors("400", "401", "409", "413")},
            },
        },
        "/admin/keys/{key_id}": {
            "delete": {
                "operationId": "revokeKey",
                "parameters": [
                    {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {**_ok("ApiKey"), **_errors("401", "404", "409")},
            }
        },
    }


def openapi_document(example_model: str | None = None) -> dict[str, Any]:
    """The whole document; built on demand (cheap), nothing at import time.

    ``example_model`` names a served model for the request examples (default ``auto``).
    """
    return {
        "openapi": "3.1.0",
        "info": {"title": "smallfleet", "version": "1", "description": "OpenAI-compatible gateway"},
        "security": [{}, {"bearerAuth": []}],
        "paths": _paths(example_model),
        "components": {
            "schemas": {**RESPONSE_SCHEMAS, **_request_schemas()},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
