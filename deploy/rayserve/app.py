"""The Ray Serve application builder: ``import_path: deploy.rayserve.app:build_app``.

One deployment per in-process (``llama_cpp``) fleet model, named ``model-<name>``, plus the
ingress ``gateway`` holding a handle to each. Ray-only settings live in the builder's args
(the ``args:`` of a serve config), never in the fleet YAML:

    fleet:    the fleet: a mapping (inline fleet YAML), a path to a fleet YAML, or omitted
              for the embedded default fleet
    models:   {<model name>: <serve.deployment options>}  e.g. autoscaling_config,
              ray_actor_options, max_ongoing_requests; merged over MODEL_DEFAULTS
    ingress:  <serve.deployment options> for the gateway, merged over INGRESS_DEFAULTS
    insecure_no_auth: serve without API keys (as ``smallfleet serve --insecure-no-auth``);
              otherwise the ingress refuses to start unless SMALLFLEET_API_KEYS is set
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from fleet.config import FleetConfig, LlamaCppModel, default_fleet, load_fleet, parse_fleet

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Health checks: Serve calls check_health every period; a replica failing it is replaced.
# Graceful shutdown: a stopping replica takes no new requests and waits (up to the timeout)
# for running ones, then Serve calls __del__, which closes the model.
_LIFECYCLE: dict[str, Any] = {
    "health_check_period_s": 10,
    "health_check_timeout_s": 30,
    "graceful_shutdown_wait_loop_s": 2,
    "graceful_shutdown_timeout_s": 60,
}
MODEL_DEFAULTS: dict[str, Any] = {
    **_LIFECYCLE,
    "autoscaling_config": {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 2,
        "upscale_delay_s": 30,
        "downscale_delay_s": 300,
    },
    "ray_actor_options": {"num_cpus": 1},
}
INGRESS_DEFAULTS: dict[str, Any] = {
    **_LIFECYCLE,
    "num_replicas": 1,
    "max_ongoing_requests": 256,
    "ray_actor_options": {"num_cpus": 0.5},
}


class AppArgs(BaseModel):
    """The builder's args, validated: unknown keys and unknown model names are refused."""

    model_config = ConfigDict(extra="forbid")

    fleet: dict[str, Any] | str | None = None
    models: dict[str, dict[str, Any]] = {}
    ingress: dict[str, Any] = {}
    insecure_no_auth: bool = False

    def fleet_config(self) -> FleetConfig:
        if self.fleet is None:
            return default_fleet()
        if isinstance(self.fleet, dict):
            return parse_fleet(dict(self.fleet), base_dir=PROJECT_ROOT, source="args.fleet")
        path = Path(self.fleet).expanduser()
        return load_fleet(path if path.is_absolute() or path.exists() else PROJECT_ROOT / path)

    @model_validator(mode="after")
    def _known_models(self) -> AppArgs:
        names = {m.name for m in self.fleet_config().models}
        unknown = sorted(set(self.models) - names)
        if unknown:
            raise ValueError(f"models: {', '.join(unknown)} not in the fleet ({', '.join(sorted(names))})")
        return self


def deployment_name(model: str) -> str:
    """A Serve deployment name for a fleet model: ``model-`` plus its name in safe characters."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``defaults``, one level of nested dicts merged (ray_actor_options...)."""
    result = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    if "num_replicas" in overrides and "autoscaling_config" not in overrides:
        result.pop("autoscaling_config", None)  # a fixed replica count replaces autoscaling
    return result


def model_options(model: LlamaCppModel, overrides: dict[str, Any]) -> dict[str, Any]:
    # Let the backend's own FIFO queue (max_queue) decide about 429s on each replica.
    defaults = {**MODEL_DEFAULTS, "max_ongoing_requests": model.max_queue + 1}
    if model.threads:
        defaults["ray_actor_options"] = {"num_cpus": model.threads}
    return merged(defaults, overrides)


def build_app(args: dict[str, Any] | AppArgs | None = None) -> Any:
    """Build the Serve application (``serve run`` / ``serve deploy`` call this with the config's args)."""
    from ray import serve

    from deploy.rayserve.ingress import GatewayIngress
    from deploy.rayserve.model import ModelDeployment

    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    fleet = parsed.fleet_config()
    handles = {}
    for model in fleet.models:
        if isinstance(model, LlamaCppModel):
            options = model_options(model, parsed.models.get(model.name, {}))
            deployment = serve.deployment(ModelDeployment, name=deployment_name(model.name))
            handles[model.name] = deployment.options(**options).bind(model.model_dump())
    ingress = serve.deployment(serve.ingress()(GatewayIngress), name="gateway")
    return ingress.options(**merged(INGRESS_DEFAULTS, parsed.ingress)).bind(
        fleet, handles, insecure_no_auth=parsed.insecure_no_auth
    )
