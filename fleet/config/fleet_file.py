"""The whole fleet file: :class:`FleetConfig`, and reading it from YAML with errors that name the
field."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from fleet.config.base import ConfigError, Strict
from fleet.config.embeddings import EmbeddingModelConfig
from fleet.config.models import DeadlineConfig, LlamaCppModel, ModelConfig
from fleet.config.routes import ROUTE_TYPES, DiverseRoute, RouteConfig
from fleet.config.serving import (
    AccessConfig,
    RequestLimitsConfig,
    RequestLogConfig,
    RouterConfig,
    StateConfig,
)


class FleetConfig(Strict):
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

    def names(self) -> list[str]:
        """What the fleet serves by name, models then routes: what `auto` may choose among. The one
        list of a router's candidates: ``smallfleet serve`` and every reload load the router with it."""
        return [model.name for model in self.models] + [route.name for route in self.routes]

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
