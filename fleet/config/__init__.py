"""The fleet config: which models to serve and how, validated.

A YAML file (format in DESIGN.md) becomes a :class:`FleetConfig`. Unknown or
duplicate fields, duplicate model names and wrong types are refused with a
:class:`ConfigError` whose message names the field, e.g.
``models[1].gguf: Field required``. Routes (``plan_solve``, ``diverse``, ``cascade``;
docs/composite-routes.md) are built from the fleet's models and named apart from them;
embedding models (``embeddings:``, served at ``/v1/embeddings``) are named apart from both.

One module per section of the file: ``models`` (chat models, resilience, the deadline),
``routes``, ``embeddings``, ``serving`` (router, request log, state, access, limits), and
``fleet_file`` (the whole file and how it is read). Every default a backend also has is imported
from the backend that uses it (written once). Import from here.
"""

from fleet.config.base import RESERVED_MODEL_PREFIX, ConfigError, ModelName, Price
from fleet.config.embeddings import (
    MAX_EMBEDDING_INPUTS,
    EmbeddingModelConfig,
    EmbeddingPrice,
    LlamaCppEmbeddingModel,
    OpenAIEmbeddingModel,
    StaticEmbeddingModel,
)
from fleet.config.fleet_file import (
    FleetConfig,
    default_fleet,
    describe_validation_error,
    load_fleet,
    parse_fleet,
)
from fleet.config.models import (
    NO_RETRIES,
    CircuitBreakerConfig,
    DeadlineConfig,
    LlamaCppModel,
    ModelConfig,
    OpenAIModel,
    ResilienceConfig,
    RetryConfig,
    StreamTimeoutsConfig,
    TimeoutsConfig,
)
from fleet.config.routes import (
    MAX_ROUTE_SAMPLES,
    ROUTE_TYPES,
    CascadeRoute,
    DiverseRoute,
    DiverseSample,
    PlanSolveRoute,
    PlanSolveTimeouts,
    RouteConfig,
)
from fleet.config.serving import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_STATE_ON_ERROR,
    DEFAULT_STATE_POLL_INTERVAL,
    DEFAULT_STATE_PREFIX,
    DEFAULT_STATE_TIMEOUT,
    STATE_URL_SCHEMES,
    AccessConfig,
    RequestLimitsConfig,
    RequestLogConfig,
    RouterConfig,
    StateConfig,
    StateOnError,
    check_state_url,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_MESSAGES", "DEFAULT_STATE_ON_ERROR",
    "DEFAULT_STATE_POLL_INTERVAL", "DEFAULT_STATE_PREFIX", "DEFAULT_STATE_TIMEOUT",
    "MAX_EMBEDDING_INPUTS", "MAX_ROUTE_SAMPLES", "NO_RETRIES", "RESERVED_MODEL_PREFIX", "ROUTE_TYPES",
    "STATE_URL_SCHEMES", "AccessConfig", "CascadeRoute", "CircuitBreakerConfig", "ConfigError",
    "DeadlineConfig", "DiverseRoute", "DiverseSample", "EmbeddingModelConfig", "EmbeddingPrice",
    "FleetConfig", "LlamaCppEmbeddingModel", "LlamaCppModel", "ModelConfig", "ModelName",
    "OpenAIEmbeddingModel", "OpenAIModel", "PlanSolveRoute", "PlanSolveTimeouts", "Price",
    "RequestLimitsConfig", "RequestLogConfig", "ResilienceConfig", "RetryConfig", "RouteConfig",
    "RouterConfig", "StateConfig", "StateOnError", "StaticEmbeddingModel", "StreamTimeoutsConfig",
    "TimeoutsConfig", "check_state_url", "default_fleet", "describe_validation_error", "load_fleet",
    "parse_fleet",
]
