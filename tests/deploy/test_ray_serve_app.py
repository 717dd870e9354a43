"""The Ray Serve app builder's args, the serve configs, and the ingress app in-process.

The ingress is driven over ``httpx.ASGITransport`` with handles that call a ModelServer in
this process, so the gateway's whole path (routing, SSE, errors, metrics) runs without Ray.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from backends.errors import ContextLengthExceeded
from backends.fake import FakeBackend
from deploy.rayserve.app import AppArgs, deployment_name, merged, model_options
from deploy.rayserve.ingress import GatewayIngress
from deploy.rayserve.model import ModelServer
from fleet.config import LlamaCppModel, parse_fleet
from tests.conftest import asgi_client

RAY_CONFIGS = Path(__file__).resolve().parents[2] / "deploy" / "ray"
FLEET = {
    "models": [
        {
            "name": "tiny",
            "backend": "llama_cpp",
            "gguf": "packaged:smollm2-135m-instruct-q4_1",
            "max_queue": 3,
        },
        {"name": "remote", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"},
    ]
}


class LocalHandle:
    """A DeploymentHandle stand-in that calls a ModelServer in this process."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def options(self, *, stream: bool) -> LocalHandle:
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.server, name)

        class Call:
            @staticmethod
            def remote(*args: Any) -> Any:
                result = method(*args)
                if isinstance(result, AsyncIterator):
                    return _Stream(result)
                return _Awaitable(result)

        return Call


class _Awaitable:
    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def __await__(self) -> Any:
        return self.coro.__await__()

    def cancel(self) -> None:
        self.coro.close()


class _Stream:
    def __init__(self, gen: AsyncIterator[Any]) -> None:
        self.gen = gen

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.gen

    def cancel(self) -> None:
        pass


# -- builder args ------------------------------------------------------------------------------
def test_args_default_to_the_embedded_fleet_and_refuse_unknown_models() -> None:
    default = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert [m.name for m in AppArgs().fleet_config().models] == default
    with pytest.raises(ValidationError, match="nope"):
        AppArgs.model_validate({"fleet": FLEET, "models": {"nope": {}}})
    with pytest.raises(ValidationError, match="extra"):
        AppArgs.model_validate({"fleet": FLEET, "replicas": 3})


def test_model_options_merge_over_defaults() -> None:
    model = parse_fleet(FLEET).models[0]
    assert isinstance(model, LlamaCppModel)
    options = model_options(
        model, {"ray_actor_options": {"num_gpus": 0}, "autoscaling_config": {"max_replicas": 9}}
    )
    assert options["max_ongoing_requests"] == 4  # the backend's queue + the running request
    assert options["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0}
    assert options["autoscaling_config"]["max_replicas"] == 9
    assert options["autoscaling_config"]["min_replicas"] == 1
    assert options["graceful_shutdown_timeout_s"] > 0 and options["health_check_period_s"] > 0
    fixed = merged(options, {"num_replicas": 2})
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert deployment_name("qwen2.5:coder/0.5b") == "model-qwen2.5_coder_0.5b"


@pytest.mark.parametrize("name", ["serve_config.yaml", "serve_config.vllm.yaml"])
def test_serve_configs_are_valid_serve_deploy_schemas(name: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((RAY_CONFIGS / name).read_text()))
    ours = [a for a in config.applications if a.import_path == "deploy.rayserve.app:build_app"]
    assert len(ours) == 1
    args = AppArgs.model_validate(ours[0].args)
    assert args.fleet_config().models


def test_build_app_binds_one_deployment_per_in_process_model() -> None:
    from deploy.rayserve.app import build_app

    app = build_app({"fleet": FLEET, "insecure_no_auth": True})
    ingress = app._bound_deployment  # noqa: SLF001 - no public accessor for what was bound
    assert ingress.name == "gateway"
    fleet, handles = ingress.init_args
    assert list(handles) == ["tiny"]  # the openai model is called directly by the ingress
    assert handles["tiny"]._bound_deployment.name == "model-tiny"  # noqa: SLF001
    assert ingress.init_kwargs == {"insecure_no_auth": True}


# -- the ingress app ---------------------------------------------------------------------------
def test_ingress_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMALLFLEET_API_KEYS", raising=False)
    with pytest.raises(RuntimeError, match="SMALLFLEET_API_KEYS"):
        GatewayIngress(parse_fleet(FLEET), {}).__serve_build_asgi_app__()


async def test_ingress_serves_the_gateway_over_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLFLEET_API_KEYS", "sk-test-key-1")
    fake = FakeBackend("tiny", reply="hello over ray", context_length=321)
    app = GatewayIngress(
        parse_fleet(FLEET), {"tiny": LocalHandle(ModelServer(fake))}
    ).__serve_build_asgi_app__()
    auth = {"Authorization": "Bearer sk-test-key-1"}
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    async with asgi_client(app) as client:
        answer = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "hello over ray"
        assert answer.headers["x-smallfleet-model"] == "tiny"
        streamed = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
        assert streamed.text.count("data: ") > 3 and streamed.text.rstrip().endswith("data: [DONE]")
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 401
        models = (await client.get("/v1/models", headers=auth)).json()["data"]
        assert {m["id"]: m["context_length"] for m in models}["tiny"] == 321
        fake.error = ContextLengthExceeded("prompt too long", param="messages")
        refused = await client.post("/v1/chat/completions", json=body, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
        assert "smallfleet_requests_total{" in (await client.get("/metrics")).text


def test_rayservice_example_embeds_a_valid_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    service = yaml.safe_load((RAY_CONFIGS / "rayservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    args = AppArgs.model_validate(config.applications[0].args)
    assert [m.name for m in args.fleet_config().models] == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    for spec in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        env = {e["name"] for c in spec["template"]["spec"]["containers"] for e in c["env"]}
        assert "SMALLFLEET_API_KEYS" in env
