"""The fleet config: which models to serve and how, validated.

A YAML file (format in DESIGN.md) becomes a :class:`FleetConfig`. Unknown or
duplicate fields, duplicate model names and wrong types are refused with a
:class:`ConfigError` whose message names the field, e.g.
``models[1].gguf: Field required``. Routes (``plan_solve``, ``diverse``, ``cascade``;
docs/composite-routes.md) are built from the fleet's models and named apart from them;
embedding models (``embeddings:``, served at ``/v1/embeddings``) are named apart from both.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backends import embeddings, llama_cpp, openai_http, resilience
from backends.composite import cascade, diverse, plan_solve
from backends.features import Feature

# Every default a backend also has is imported from the backend that uses it (written once).
# These are the config's own: nothing below the gateway uses them.
RESERVED_MODEL_PREFIX = "auto"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_MESSAGES = 1024
DEFAULT_STATE_PREFIX = "smallfleet"
StateOnError = Literal["open", "closed"]
DEFAULT_STATE_ON_ERROR: StateOnError = "open"
DEFAULT_STATE_TIMEOUT = 0.25  # seconds per store operation
DEFAULT_STATE_POLL_INTERVAL = 0.5
STATE_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class ConfigError(ValueError):
    """A fleet config that cannot be served; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.:\-/]*$")]


class Price(_Strict):
    """Cost units per 1M tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self.input * prompt_tokens + self.output * completion_tokens) / 1e6


class RetryConfig(_Strict):
    """Retries of failures before the first token (see docs/resilience.md)."""

    attempts: int = Field(
        default=resilience.DEFAULT_RETRY_ATTEMPTS, ge=1, le=10, description="tries in all; 1 never retries"
    )
    base_delay: float = Field(
        default=resilience.DEFAULT_RETRY_BASE_DELAY, ge=0, le=60, description="seconds before the first retry"
    )
    max_delay: float = Field(
        default=resilience.DEFAULT_RETRY_MAX_DELAY, ge=0, le=600, description="longest backoff, seconds"
    )
    jitter: float = Field(
        default=resilience.DEFAULT_RETRY_JITTER, ge=0, le=1, description="random fraction of each backoff"
    )
    max_retry_after: float = Field(
        default=resilience.DEFAULT_MAX_RETRY_AFTER, ge=0, le=3600,
        description="a longer Retry-After is not waited for",
    )


class CircuitBreakerConfig(_Strict):
    enabled: bool = True
    failure_threshold: int = Field(
        default=resilience.DEFAULT_FAILURE_THRESHOLD, ge=1, le=10_000, description="failures in a row to open"
    )
    cool_down: float = Field(
        default=resilience.DEFAULT_COOL_DOWN, ge=0, le=86_400, description="seconds open before a probe"
    )


class StreamTimeoutsConfig(_Strict):
    first_token: float = Field(
        default=resilience.DEFAULT_FIRST_TOKEN_TIMEOUT, gt=0, description="seconds to the first chunk"
    )
    idle: float = Field(
        default=resilience.DEFAULT_IDLE_TIMEOUT, gt=0, description="longest gap between two stream chunks"
    )
    total: float = Field(
        default=resilience.DEFAULT_TOTAL_TIMEOUT, gt=0, description="whole call, retries included"
    )


class ResilienceConfig(_Strict):
    """Per model: retries, circuit breaker, stream timeouts; ``enabled: false`` turns all off."""

    enabled: bool = True
    retry: RetryConfig | None = Field(
        default=None,
        description=f"default: {resilience.DEFAULT_RETRY_ATTEMPTS} attempts for openai models, "
        "1 (no retries) for llama_cpp",
    )
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    timeouts: StreamTimeoutsConfig = StreamTimeoutsConfig()
    deadline: bool | None = Field(
        default=None,
        description="held to the request's first-token deadline (deadline: in the fleet config); "
        "default: true for openai models, false for llama_cpp (in process a slow first token is a "
        "busy model, and abandoning it wastes its work)",
    )


class DeadlineConfig(_Strict):
    """A request's time budget to its first token, across retries and fallbacks (docs/resilience.md)."""

    first_token: float | None = Field(
        default=resilience.DEFAULT_FIRST_TOKEN_DEADLINE,
        gt=0,
        le=86_400,
        description="seconds from arrival to the first token; null: none",
    )
    hand_over: float = Field(
        default=resilience.DEFAULT_HAND_OVER, gt=0, le=86_400,
        description="longest wait for one model's first token while another candidate could answer",
    )


NO_RETRIES = RetryConfig(attempts=1)


def _check_not_reserved(name: str) -> None:
    if name == RESERVED_MODEL_PREFIX or name.startswith(RESERVED_MODEL_PREFIX + ":"):
        raise ValueError(f"name {name!r} is reserved for the router")


class _ModelBase(_Strict):
    name: ModelName
    params: float | None = Field(default=None, gt=0, description="parameter count")
    quant: str | None = Field(default=None, description="GGUF type, e.g. Q4_K_M")
    price: Price = Price()
    resilience: ResilienceConfig = ResilienceConfig()
    fallbacks: list[ModelName] = Field(
        default_factory=list, description="models that answer, in order, when this one fails"
    )

    def retry_config(self) -> RetryConfig:
        """The configured retries, else this kind of backend's default."""
        return self.resilience.retry or RetryConfig()

    def held_to_deadline(self) -> bool:
        """Whether the request's first-token deadline may cut this model short (else its own timeouts)."""
        return self.resilience.deadline if self.resilience.deadline is not None else True

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _ModelBase:
        _check_not_reserved(self.name)
        return self


class LlamaCppModel(_ModelBase):
    backend: Literal["llama_cpp"]
    gguf: str = Field(min_length=1, description="a path, or packaged:<name>")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    context_length: int = Field(default=llama_cpp.DEFAULT_CONTEXT_LENGTH, gt=0, le=1 << 20)
    threads: int | None = Field(default=None, gt=0)
    max_queue: int = Field(default=llama_cpp.DEFAULT_MAX_QUEUE, ge=0, le=10_000)

    def retry_config(self) -> RetryConfig:
        # In process, a failure is a bug or a full queue: retrying it soon does not help.
        return self.resilience.retry or NO_RETRIES

    def held_to_deadline(self) -> bool:
        # In process, a slow first token is a busy model: it cannot hang, only queue.
        return bool(self.resilience.deadline)


class Timeouts(_Strict):
    connect: float = Field(default=openai_http.DEFAULT_CONNECT_TIMEOUT, gt=0)
    read: float = Field(default=openai_http.DEFAULT_READ_TIMEOUT, gt=0)
    total: float = Field(default=openai_http.DEFAULT_TOTAL_TIMEOUT, gt=0)


class OpenAIModel(_ModelBase):
    backend: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="ends in /v1 for most servers")
    upstream_model: str | None = Field(default=None, description="model name on that server")
    api_key_env: str | None = Field(default=None, description="environment variable with its key")
    context_length: int | None = Field(default=None, gt=0)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=openai_http.DEFAULT_MAX_CONNECTIONS, gt=0)
    features: list[Feature] | None = Field(
        default=None,
        description="what the server honours beyond text (default: all; docs/api.md): requests using "
        "anything else are refused, or routed elsewhere by auto",
    )


ModelConfig = Annotated[LlamaCppModel | OpenAIModel, Field(discriminator="backend")]


# -- routes: composites built from the fleet's models (backends/composite) -------------------
MAX_ROUTE_SAMPLES = 32


class _RouteBase(_Strict):
    name: ModelName

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _RouteBase:
        _check_not_reserved(self.name)
        return self

    def member_names(self) -> list[tuple[str, str]]:
        """(field path relative to the route, model name) of every model it is built from."""
        raise NotImplementedError


class PlanSolveTimeouts(_Strict):
    planner: float = Field(
        default=plan_solve.DEFAULT_PLANNER_TIMEOUT, gt=0,
        description="seconds for the plan; then it solves directly"
    )
    solver: float = Field(
        default=plan_solve.DEFAULT_SOLVER_TIMEOUT, gt=0, description="seconds for the whole answer"
    )


class PlanSolveRoute(_RouteBase):
    """A planner model writes a short numbered plan; a solver model follows it and answers."""

    type: Literal["plan_solve"]
    planner: ModelName
    solver: ModelName
    plan_max_tokens: int = Field(
        default=plan_solve.DEFAULT_PLAN_MAX_TOKENS, ge=8, le=4096, description="a longer plan is dropped"
    )
    max_steps: int = Field(
        default=plan_solve.DEFAULT_MAX_STEPS, ge=1, le=50, description="a plan with more steps is dropped"
    )
    planner_temperature: float = Field(default=plan_solve.DEFAULT_PLANNER_TEMPERATURE, ge=0, le=2)
    planner_prompt: str | None = Field(default=None, min_length=1, description="may use {max_steps}")
    solver_prompt: str | None = Field(default=None, min_length=1, description="must use {plan}")
    timeouts: PlanSolveTimeouts = PlanSolveTimeouts()

    @field_validator("solver_prompt")
    @classmethod
    def _solver_prompt_has_plan(cls, value: str | None) -> str | None:
        if value is not None and "{plan}" not in value:
            raise ValueError("must contain {plan}, where the plan goes")
        return value

    def member_names(self) -> list[tuple[str, str]]:
        return [("planner", self.planner), ("solver", self.solver)]


class DiverseSample(_Strict):
    """``count`` samples from ``model``; seeds follow one another from ``seed`` when it is set."""

    model: ModelName
    count: int = Field(default=1, ge=1, le=MAX_ROUTE_SAMPLES)
    temperature: float | None = Field(default=None, ge=0, le=2, description="default: the request's")
    top_p: float | None = Field(default=None, ge=0, le=1, description="default: the request's")
    seed: int | None = Field(default=None, description="default: the request's seed + the sample's position")


class DiverseRoute(_RouteBase):
    """Samples across models, temperatures and seeds; near-duplicates dropped; vote or n choices."""

    type: Literal["diverse"]
    samples: list[DiverseSample] = Field(min_length=1)
    dedupe_threshold: float = Field(
        default=diverse.DEFAULT_DEDUPE_THRESHOLD,
        gt=0,
        le=1,
        description="cosine similarity at which two samples are duplicates",
    )
    count_duplicates: bool = Field(
        default=diverse.DEFAULT_COUNT_DUPLICATES,
        description="every sample votes; false: near-duplicates vote once"
    )
    timeout: float = Field(
        default=diverse.DEFAULT_SAMPLE_TIMEOUT, gt=0, description="seconds per sample, queueing included"
    )

    @field_validator("samples")
    @classmethod
    def _bounded(cls, value: list[DiverseSample]) -> list[DiverseSample]:
        total = sum(sample.count for sample in value)
        if total > MAX_ROUTE_SAMPLES:
            raise ValueError(f"{total} samples in all; at most {MAX_ROUTE_SAMPLES}")
        return value

    @property
    def sample_count(self) -> int:
        return sum(sample.count for sample in self.samples)

    def member_names(self) -> list[tuple[str, str]]:
        return [(f"samples[{i}].model", sample.model) for i, sample in enumerate(self.samples)]


class CascadeRoute(_RouteBase):
    """A small model answers first (greedy, with token log-probabilities); below a confidence
    threshold the request goes to a larger model instead (backends/composite/cascade.py)."""

    type: Literal["cascade"]
    first: ModelName
    then: ModelName
    threshold: float = Field(
        le=0, description="token log-probability (by signal) under which the first answer is escalated"
    )
    signal: cascade.Signal = Field(
        default=cascade.DEFAULT_SIGNAL,
        description="mean: over the first answer's tokens; min: its least likely token"
    )
    timeout: float = Field(
        default=cascade.DEFAULT_STEP_TIMEOUT, gt=0, description="seconds for each model's answer"
    )

    def member_names(self) -> list[tuple[str, str]]:
        return [("first", self.first), ("then", self.then)]


RouteConfig = Annotated[PlanSolveRoute | DiverseRoute | CascadeRoute, Field(discriminator="type")]
ROUTE_TYPES = ("plan_solve", "diverse", "cascade")


# -- embedding models: served at /v1/embeddings (backends/embeddings.py) ---------------------------
MAX_EMBEDDING_INPUTS = 2048  # texts in one request, as OpenAI allows


class EmbeddingPrice(_Strict):
    """Cost units per 1M input tokens (an embedding has no output tokens)."""

    input: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int) -> float:
        return self.input * prompt_tokens / 1e6


class _EmbeddingBase(_Strict):
    name: ModelName
    price: EmbeddingPrice = EmbeddingPrice()

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _EmbeddingBase:
        _check_not_reserved(self.name)
        return self


class StaticEmbeddingModel(_EmbeddingBase):
    """The router's shipped static sentence embedding (model2vec; no torch)."""

    backend: Literal["static"]
    embedding: str | None = Field(
        default=None, min_length=1, description="one under router/embedding/; default: the router's"
    )

    @field_validator("embedding")
    @classmethod
    def _shipped(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from router.embedding import EMBEDDING_ROOT

        shipped = sorted(p.name for p in EMBEDDING_ROOT.iterdir() if (p / "model.safetensors").is_file())
        if value not in shipped:
            raise ValueError(f"no shipped static embedding {value!r}; shipped: {', '.join(shipped)}")
        return value


class LlamaCppEmbeddingModel(_EmbeddingBase):
    """A GGUF through llama-cpp-python with ``embedding=True``."""

    backend: Literal["llama_cpp"]
    gguf: str = Field(min_length=1, description="a path, or packaged:<name>")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    context_length: int = Field(
        default=embeddings.DEFAULT_LLAMA_CONTEXT, gt=0, le=1 << 20, description="longest text, in tokens"
    )
    pooling: embeddings.Pooling = Field(
        default=embeddings.DEFAULT_POOLING,
        description="auto: the GGUF's own, or mean for a GGUF that declares none"
    )
    matryoshka: bool = Field(default=False, description="trained so fewer dimensions may be asked for")
    threads: int | None = Field(default=None, gt=0)
    max_queue: int = Field(default=embeddings.DEFAULT_MAX_QUEUE, ge=0, le=10_000)


class OpenAIEmbeddingModel(_EmbeddingBase):
    """A remote OpenAI-compatible ``/v1/embeddings``."""

    backend: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="ends in /v1 for most servers")
    upstream_model: str | None = Field(default=None, description="model name on that server")
    api_key_env: str | None = Field(default=None, description="environment variable with its key")
    dimensions: int | None = Field(default=None, gt=0, description="the model's own number of dimensions")
    matryoshka: bool = Field(default=False, description="pass a request's dimensions on to the server")
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=embeddings.DEFAULT_MAX_CONNECTIONS, gt=0)


EmbeddingModelConfig = Annotated[
    StaticEmbeddingModel | LlamaCppEmbeddingModel | OpenAIEmbeddingModel, Field(discriminator="backend")
]


class RouterConfig(_Strict):
    artifact: str | None = None


class RequestLogConfig(_Strict):
    """Where requests are logged; with no ``url`` the gateway's settings choose (gateway/settings.py:
    ``SMALLFLEET_DB_URL``, else SQLite in the state directory)."""

    url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://...; default: SMALLFLEET_DB_URL, else SQLite in the "
        "state dir",
    )
    store_prompts: bool = Field(default=False, description="keep the prompt text (needed to retrain)")


def check_state_url(url: str, where: str) -> str:
    """A Redis URL (``redis://``, ``rediss://`` or ``unix://``); the message never echoes a password."""
    if not url.startswith(STATE_URL_SCHEMES):
        scheme = url.partition("://")[0] + "://" if "://" in url else repr(url.split("@")[-1][:40])
        raise ConfigError(f"{where}: expected a redis://, rediss:// or unix:// URL, got {scheme}")
    return url


class StateConfig(_Strict):
    """The store every gateway replica shares (docs/deploy.md, "Several replicas")."""

    url: str | None = Field(
        default=None,
        repr=False,  # it may carry a password
        description="redis://host:port/db (or rediss://, unix://); default: SMALLFLEET_STATE_URL",
    )
    on_error: StateOnError = Field(
        default=DEFAULT_STATE_ON_ERROR,
        description="store unreachable: open = per-process limits, closed = 503 for keyed requests",
    )
    timeout: float = Field(
        default=DEFAULT_STATE_TIMEOUT, gt=0, le=10, description="seconds per store operation"
    )
    poll_interval: float = Field(
        default=DEFAULT_STATE_POLL_INTERVAL, gt=0, le=60,
        description="seconds between checks for new keys and router versions"
    )
    prefix: str = Field(
        default=DEFAULT_STATE_PREFIX, pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="key prefix"
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            return check_state_url(url, "url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("url: ")) from None


class AccessConfig(_Strict):
    """Who may do what without a key, and whose forwarded headers to believe (docs/security.md)."""

    admin_loopback: bool = Field(
        default=False,
        description="with no admin key set, let clients on this machine that reach the gateway "
        "directly (not through a proxy) use /admin/*",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of proxies whose Forwarded / X-Forwarded-For are believed",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for index, entry in enumerate(entries):
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"[{index}] {entry!r} is not an IP address or network") from None
        return entries


class RequestLimitsConfig(_Strict):
    """The fleet YAML's ``limits:``: how large one request may be. Per-key limits (rpm, tpm, budget)
    are gateway/keys.py's ``KeyLimits``; the ``max_tokens`` ceiling is ``SMALLFLEET_MAX_TOKENS``."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)
    max_messages: int = Field(default=DEFAULT_MAX_MESSAGES, gt=0)
    max_embedding_inputs: int = Field(default=MAX_EMBEDDING_INPUTS, gt=0, description="texts per request")


class FleetConfig(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(default_factory=list)
    embeddings: list[EmbeddingModelConfig] = Field(default_factory=list)
    router: RouterConfig = RouterConfig()
    request_log: RequestLogConfig = RequestLogConfig()
    limits: RequestLimitsConfig = RequestLimitsConfig()
    state: StateConfig = StateConfig()
    deadline: DeadlineConfig = DeadlineConfig()
    access: AccessConfig = AccessConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> FleetConfig:
        seen: set[str] = set()
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(f"models[{index}].name: duplicate model name {model.name!r}")
            seen.add(model.name)
        return self

    @model_validator(mode="after")
    def _known_fallbacks(self) -> FleetConfig:
        names = {model.name for model in self.models}
        for index, model in enumerate(self.models):
            where = f"models[{index}].fallbacks"
            for name in model.fallbacks:
                if name == model.name:
                    raise ValueError(f"{where}: model {name!r} cannot fall back to itself")
                if name not in names:
                    raise ValueError(f"{where}: {name!r} is not a model of this fleet")
            if len(set(model.fallbacks)) != len(model.fallbacks):
                raise ValueError(f"{where}: a model is listed twice")
        return self

    @model_validator(mode="after")
    def _routes_use_models(self) -> FleetConfig:
        models = {model.name for model in self.models}
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            where = f"routes[{index}]"
            if route.name in models:
                raise ValueError(f"{where}.name: {route.name!r} is already a model's name")
            if route.name in seen:
                raise ValueError(f"{where}.name: duplicate route name {route.name!r}")
            seen.add(route.name)
            for field, name in route.member_names():
                if name not in models:
                    raise ValueError(f"{where}.{field}: {name!r} is not a model of this fleet")
            if isinstance(route, DiverseRoute):
                self._samples_fit_queues(route, where)
        return self

    @model_validator(mode="after")
    def _embedding_names(self) -> FleetConfig:
        """Embedding models are named apart from the chat models, the routes and each other."""
        taken = {model.name: "a model's" for model in self.models}
        taken.update((route.name, "a route's") for route in self.routes)
        for index, embedding in enumerate(self.embeddings):
            if embedding.name in taken:
                whose = taken[embedding.name]
                raise ValueError(f"embeddings[{index}].name: {embedding.name!r} is already {whose} name")
            taken[embedding.name] = "an embedding model's"
        return self

    def _samples_fit_queues(self, route: DiverseRoute, where: str) -> None:
        """A diverse route sends its samples at once: an in-process model must be able to queue
        them all (one running plus ``max_queue`` waiting), or some fail with 429 on an idle server."""
        wanted: dict[str, int] = {}
        for sample in route.samples:
            wanted[sample.model] = wanted.get(sample.model, 0) + sample.count
        for model in self.models:
            if isinstance(model, LlamaCppModel) and wanted.get(model.name, 0) > model.max_queue + 1:
                raise ValueError(
                    f"{where}.samples: {wanted[model.name]} samples of {model.name!r}, which holds at "
                    f"most {model.max_queue + 1} requests at once (max_queue {model.max_queue}); raise its "
                    "max_queue or draw fewer"
                )

    def route(self, name: str) -> RouteConfig | None:
        return next((route for route in self.routes if route.name == name), None)

    def embedding(self, name: str) -> EmbeddingModelConfig | None:
        return next((model for model in self.embeddings if model.name == name), None)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``('models', 0, 'llama_cpp', 'gguf')`` -> ``models[0].gguf``."""
    path = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(previous, int) and part in ("llama_cpp", "openai", "static", *ROUTE_TYPES):
            pass  # the discriminator's tag, not a field
        else:
            path += f".{part}" if path else str(part)
        previous = part
    return path or "(top level)"


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{_field_path(tuple(error['loc']))}: {message}")
    return "; ".join(lines)


def _resolve_relative_paths(raw: dict[str, Any], base: Path) -> None:
    router = raw.get("router")
    artifact = router.get("artifact") if isinstance(router, dict) else None
    if isinstance(artifact, str) and not Path(artifact).expanduser().is_absolute():
        raw["router"]["artifact"] = str(base / artifact)
    listed = [raw[key] for key in ("models", "embeddings") if isinstance(raw.get(key), list)]
    for model in (entry for entries in listed for entry in entries):
        if isinstance(model, dict) and isinstance(model.get("gguf"), str):
            gguf = model["gguf"]
            if not gguf.startswith("packaged:") and not Path(gguf).expanduser().is_absolute():
                model["gguf"] = str(base / gguf)


def parse_fleet(raw: Any, *, base_dir: Path | None = None, source: str = "config") -> FleetConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'models' list at the top level")
    if base_dir is not None:
        _resolve_relative_paths(raw, base_dir)
    try:
        return FleetConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def load_fleet(path: str | Path) -> FleetConfig:
    """Read and validate a fleet YAML file; relative GGUF paths are relative to it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read fleet config {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_fleet(raw, base_dir=path.parent.resolve(), source=str(path))


def default_fleet() -> FleetConfig:
    """The embedded default fleet: small GGUF models shipped by PyPI packages.

    Relative paths in it (the router artifact) are relative to the fleet package, so the
    fleet's router, shipped in router/artifacts/, is found in a checkout and an install alike.
    """
    package = importlib.resources.files("fleet")
    text = package.joinpath("default_fleet.yaml").read_text()
    return parse_fleet(yaml.safe_load(text), base_dir=Path(str(package)), source="embedded default fleet")
