"""The fleet models an evaluation runs: a backend plus what the tables report about it.

router/ never imports gateway/, so the CLI gets its models from a :data:`FleetLoader`.
The gateway can inject one built on its validated config (gateway/fleet_eval.py); without it,
:func:`load_fleet_yaml` reads the same YAML minimally, building llama_cpp and openai backends
from ``backends`` alone and ignoring what evaluation does not need (routes, limits, resilience).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backends.base import Backend
from backends.types import Completion
from router._errors import DataError

EVALUABLE_BACKENDS = ("llama_cpp", "openai")


@dataclass(frozen=True)
class EvalModel:
    """One fleet model to evaluate.

    ``price_input``/``price_output`` are the config's cost units per 1M tokens; ``in_process``
    says whether generation runs in this process (then its CPU time is the model's compute).
    A route (a composite of models) has no price of its own: ``member_prices`` holds its
    members' (input, output) prices by name, and each answer costs its inner calls at those.
    """

    name: str
    backend: Backend
    gguf: str | None = None
    sha256: str | None = None
    params: float | None = None
    quant: str | None = None
    price_input: float = 0.0
    price_output: float = 0.0
    in_process: bool = False
    member_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def config_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self.price_input * prompt_tokens + self.price_output * completion_tokens) / 1e6

    def completion_cost(self, completion: Completion) -> float:
        """The configured cost of an answer: a route's inner calls each at its own model's price."""
        trace = completion.trace
        if trace is None or not self.member_prices:
            return self.config_cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        cost = 0.0
        for call in trace.calls:
            price_input, price_output = self.member_prices.get(call.model, (0.0, 0.0))
            usage = call.usage
            cost += (price_input * usage.prompt_tokens + price_output * usage.completion_tokens) / 1e6
        return cost


FleetLoader = Callable[[Path | None], list[EvalModel]]


def default_fleet_path() -> Path:
    """The gateway's embedded default fleet YAML, located without importing the gateway."""
    spec = importlib.util.find_spec("gateway")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("no --config given and gateway/default_fleet.yaml is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "default_fleet.yaml"


def load_fleet_yaml(path: Path | None) -> list[EvalModel]:
    """The llama_cpp and openai models of a fleet YAML (the default fleet when ``path`` is None)."""
    source = path or default_fleet_path()
    try:
        document = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{source}: not valid YAML: {exc}") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list) or not models:
        raise DataError(f"{source}: models: a non-empty list is required")
    return [
        _eval_model(entry, index, source.parent)
        for index, entry in enumerate(models)
        if isinstance(entry, dict) and entry.get("backend") in EVALUABLE_BACKENDS
    ]


def _field(entry: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    value = entry.get(key)
    if value is not None and not isinstance(value, kind):
        raise DataError(f"{where}.{key}: wrong type {type(value).__name__}")
    return value


def _eval_model(entry: dict[str, Any], index: int, base: Path) -> EvalModel:
    where = f"models[{index}]"
    name = _field(entry, "name", where, str)
    if not name:
        raise DataError(f"{where}.name: Field required")
    price = _field(entry, "price", where, dict) or {}
    common: dict[str, Any] = {
        "name": name,
        "params": _field(entry, "params", where, (int, float, str)),
        "quant": _field(entry, "quant", where, str),
        "price_input": float(price.get("input", 0.0)),
        "price_output": float(price.get("output", 0.0)),
    }
    if common["params"] is not None:
        common["params"] = float(common["params"])
    if entry["backend"] == "llama_cpp":
        return _llama_cpp_model(entry, where, base, common)
    return _openai_model(entry, where, common)


def _llama_cpp_model(entry: dict[str, Any], where: str, base: Path, common: dict[str, Any]) -> EvalModel:
    from backends.gguf_store import PACKAGED_PREFIX
    from backends.llama_cpp import LlamaCppBackend

    gguf = _field(entry, "gguf", where, str)
    if not gguf:
        raise DataError(f"{where}.gguf: Field required")
    if not gguf.startswith(PACKAGED_PREFIX) and not Path(gguf).is_absolute():
        gguf = str(base / gguf)
    sha256 = _field(entry, "sha256", where, str)
    backend = LlamaCppBackend(
        common["name"],
        gguf,
        sha256=sha256,
        context_length=_field(entry, "context_length", where, int) or 4096,
        threads=_field(entry, "threads", where, int),
    )
    return EvalModel(backend=backend, gguf=gguf, sha256=sha256, in_process=True, **common)


def _openai_model(entry: dict[str, Any], where: str, common: dict[str, Any]) -> EvalModel:
    from backends.openai_http import OpenAIHTTPBackend

    base_url = _field(entry, "base_url", where, str)
    if not base_url:
        raise DataError(f"{where}.base_url: Field required")
    key_env = _field(entry, "api_key_env", where, str)
    backend = OpenAIHTTPBackend(
        common["name"],
        base_url,
        upstream_model=_field(entry, "upstream_model", where, str),
        api_key=os.environ.get(key_env) if key_env else None,
        context_length=_field(entry, "context_length", where, int),
    )
    return EvalModel(backend=backend, **common)
