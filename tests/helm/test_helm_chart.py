"""The Helm chart: lint and render it with real Helm (helm-python-sdk), then validate every manifest.

Core resources are validated against the Kubernetes OpenAPI schemas in strict mode
(kubernetes-validate); the ServiceMonitor (a Prometheus Operator CRD) is checked by hand.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from fleet.config import parse_fleet

CHART = Path(__file__).resolve().parents[2] / "helm" / "smallfleet"
KUBE_VERSIONS = ("1.30.0", "1.37.0")  # the oldest we claim and the newest schemas we have
RELEASE = "sf"
NAMESPACE = "llm"

VLLM_ON_GPU: dict[str, Any] = {
    "models": [
        {
            "name": "qwen2.5-7b",
            "engine": "vllm",
            "hfModel": "Qwen/Qwen2.5-7B-Instruct-AWQ",
            "contextLength": 8192,
            "extraArgs": ["--quantization=awq"],
            "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3},
        },
        {"name": "smollm2-135m", "engine": "llama_cpp", "gguf": {"packaged": "smollm2-135m-instruct-q4_1"}},
    ],
    "vllm": {"hfTokenSecret": "hf-token"},
}
NO_SERVICE_MONITOR: dict[str, Any] = {"monitoring": {"serviceMonitor": {"enabled": False}}}
SEVERAL_MODELS: dict[str, Any] = {
    "models": [
        {
            "name": "smollm2-135m",
            "engine": "llama_cpp",
            "params": 135e6,
            "quant": "Q4_1",
            "gguf": {"packaged": "smollm2-135m-instruct-q4_1"},
        },
        {
            "name": "qwen2.5-coder-0.5b",
            "engine": "llama_cpp",
            "params": 494e6,
            "quant": "Q4_K_M",
            "price": {"input": 0.03, "output": 0.03},
            "gguf": {"packaged": "qwen2.5-coder-0.5b-instruct-q4_k_m"},
            "threads": 4,
            "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 5},
        },
        {
            "name": "custom-1b",
            "engine": "llama_cpp",
            "gguf": {"volume": {"claimName": "gguf-models", "path": "custom-1b-q4_k_m.gguf"}},
            "contextLength": 2048,
        },
    ],
    "fleet": {"limits": {"max_messages": 64}, "router": {"artifact": "/var/lib/smallfleet/router/current"}},
    "apiKeys": {"existingSecret": "my-keys"},
    "requestLog": {"url": "postgresql://smallfleet@db/smallfleet"},
    "router": {"persistence": {"enabled": True}},
    "retrain": {"enabled": True},
    "monitoring": {"serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}}},
}
INSECURE_NO_DASHBOARDS: dict[str, Any] = {
    "apiKeys": {"insecureNoAuth": True},
    "gateway": {"autoscaling": {"enabled": False}, "replicas": 1},
    "monitoring": {"dashboards": {"enabled": False}},
}
SHARED_STATE_REDIS: dict[str, Any] = {"state": {"redis": {"enabled": True}}}
SHARED_STATE_URL: dict[str, Any] = {
    "state": {"url": "redis://:s3cret@redis.infra:6379/2", "onError": "closed", "timeout": 0.5}
}
VARIANTS = {
    "default": {},
    "vllm-on-gpu": VLLM_ON_GPU,
    "no-servicemonitor": NO_SERVICE_MONITOR,
    "several-models": SEVERAL_MODELS,
    "insecure-no-dashboards": INSECURE_NO_DASHBOARDS,
    "shared-state-redis": SHARED_STATE_REDIS,
    "shared-state-url": SHARED_STATE_URL,
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (Kubernetes would keep only the last one)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in by_kind(docs, kind) if d["metadata"]["name"] == name)


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield request.param, render(VARIANTS[request.param])


@pytest.mark.parametrize("name", list(VARIANTS))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(str(CHART), VARIANTS[name], strict=True, kube_version="v1.37.0", namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes_schemas(
    variant: tuple[str, list[dict[str, Any]]], kube_version: str
) -> None:
    _, docs = variant
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc, docs)
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


def check_service_monitor(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """The parts of monitoring.coreos.com/v1 ServiceMonitor the chart uses, checked by hand."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec = doc["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    assert set(spec["namespaceSelector"]) == {"matchNames"}
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    selected = [s for s in by_kind(docs, "Service") if matches(spec["selector"]["matchLabels"], s)]
    assert len(selected) == 1 and selected[0]["metadata"]["name"] == f"{RELEASE}-smallfleet-gateway"
    service_ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
        assert endpoint["interval"].endswith("s") and endpoint["scrapeTimeout"].endswith("s")


def matches(selector: dict[str, str], service: dict[str, Any]) -> bool:
    labels = service["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_and_services_line_up(variant: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = variant
    deployments = by_kind(docs, "Deployment")
    for deployment in deployments:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for service in by_kind(docs, "Service"):
        backing = [
            d
            for d in deployments
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(backing) == 1, service["metadata"]["name"]
        container_ports = {
            p["name"] for c in backing[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        target = named(docs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"]


def test_fleet_configmap_is_a_valid_fleet_pointing_at_the_model_services(
    variant: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = variant
    raw = yaml.safe_load(named(docs, "ConfigMap", f"{RELEASE}-smallfleet-fleet")["data"]["fleet.yaml"])
    fleet = parse_fleet(raw, source="rendered fleet.yaml")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    expected = [m["name"] for m in VARIANTS[name].get("models", [{"name": "smollm2-135m"}])]
    assert [m.name for m in fleet.models] == expected
    for model in fleet.models:
        assert model.backend == "openai"
        host, port = model.base_url.removeprefix("http://").removesuffix("/v1").split(":")
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
        assert model.upstream_model == model.name


def test_dashboards_are_configmaps_for_grafanas_sidecar(variant: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = variant
    dashboards = [c for c in by_kind(docs, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]
    if name == "insecure-no-dashboards":
        assert dashboards == []
        return
    assert len(dashboards) == len(list((CHART / "dashboards").glob("*.json"))) >= 1
    for config_map in dashboards:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        for text in config_map["data"].values():
            assert json.loads(text)["panels"]


def test_default_release_runs_the_gateway_with_keys_and_probes() -> None:
    docs = render({})
    gateway = named(docs, "Deployment", f"{RELEASE}-smallfleet-gateway")["spec"]["template"]["spec"]
    container = gateway["containers"][0]
    assert container["command"] == ["smallfleet"]
    assert container["args"][:3] == ["serve", "--config=/etc/smallfleet/fleet.yaml", "--host=0.0.0.0"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SMALLFLEET_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == f"{RELEASE}-smallfleet-api-keys"
    assert {"startupProbe", "livenessProbe", "readinessProbe", "resources"} <= set(container)
    assert (
        by_kind(docs, "Secret")
        and by_kind(docs, "ServiceMonitor")
        and by_kind(docs, "HorizontalPodAutoscaler")
    )
    model = named(docs, "Deployment", f"{RELEASE}-smallfleet-model-smollm2-135m")["spec"]["template"]["spec"]
    assert model["initContainers"][0]["args"] == ["packaged:smollm2-135m-instruct-q4_1", "/models/model.gguf"]
    assert model["containers"][0]["command"] == ["python", "-m", "llama_cpp.server"]
    assert not by_kind(docs, "CronJob")


def test_vllm_variant_requests_a_gpu() -> None:
    docs = render(VLLM_ON_GPU)
    pod = named(docs, "Deployment", f"{RELEASE}-smallfleet-model-qwen2-5-7b")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"][0] == "Qwen/Qwen2.5-7B-Instruct-AWQ"
    assert "--served-model-name=qwen2.5-7b" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert named(docs, "HorizontalPodAutoscaler", f"{RELEASE}-smallfleet-model-qwen2-5-7b")


def test_no_servicemonitor_variant_has_none() -> None:
    assert not by_kind(render(NO_SERVICE_MONITOR), "ServiceMonitor")


def test_retraining_cronjob_reads_the_request_log() -> None:
    docs = render(SEVERAL_MODELS)
    job = by_kind(docs, "CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["args"][:3] == ["train", "--from-log", "$(DB_URL)"]
    assert {e["name"] for e in container["env"]} >= {"DB_URL"}
    claim = next(v for v in job["volumes"] if v["name"] == "router")["persistentVolumeClaim"]["claimName"]
    assert named(docs, "PersistentVolumeClaim", claim)
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("api-keys")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gatway": {}}, "gatway"),
        ({"models": [{"name": "m", "engine": "llama_cpp"}]}, "gguf"),
        ({"models": [{"name": "m", "engine": "vllm"}]}, "hfModel"),
        ({"models": []}, "models"),
        ({"gateway": {"port": "8000"}}, "port"),
        ({"state": {"url": "localhost:6379"}}, "url"),
        ({"state": {"onError": "maybe"}}, "onError"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def test_retraining_without_a_request_log_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="request log"):
        render({"retrain": {"enabled": True}})


def _gateway_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = named(docs, "Deployment", f"{RELEASE}-smallfleet-gateway")["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def _fleet(docs: list[dict[str, Any]]) -> Any:
    raw = yaml.safe_load(named(docs, "ConfigMap", f"{RELEASE}-smallfleet-fleet")["data"]["fleet.yaml"])
    return parse_fleet(raw, source="rendered fleet.yaml")


def test_without_a_store_the_replicas_share_nothing_and_the_notes_say_so() -> None:
    docs = render({})
    assert "SMALLFLEET_STATE_URL" not in _gateway_env(docs)
    assert _fleet(docs).state.url is None
    assert not [d for d in docs if d["metadata"]["name"].endswith("-redis")]
    notes = helm.Chart.load(str(CHART)).render({}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert "no shared store" in next(text for path, text in notes.items() if path.endswith("NOTES.txt"))


def test_an_existing_redis_reaches_the_gateway_through_a_secret() -> None:
    docs = render(SHARED_STATE_URL)
    ref = _gateway_env(docs)["SMALLFLEET_STATE_URL"]["valueFrom"]["secretKeyRef"]
    secret = named(docs, "Secret", ref["name"])
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == "redis://:s3cret@redis.infra:6379/2"
    state = _fleet(docs).state
    assert (state.on_error, state.timeout) == ("closed", 0.5)
    assert "s3cret" not in named(docs, "ConfigMap", f"{RELEASE}-smallfleet-fleet")["data"]["fleet.yaml"]
    assert not by_kind(docs, "NetworkPolicy")
    existing = render({"state": {"existingSecret": "my-redis", "secretKey": "url"}})
    assert _gateway_env(existing)["SMALLFLEET_STATE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-redis",
        "key": "url",
    }
    assert not [s for s in by_kind(existing, "Secret") if s["metadata"]["name"].endswith("-state")]


def test_the_charts_own_redis_has_a_password_a_service_and_a_network_policy() -> None:
    docs = render(SHARED_STATE_REDIS)
    name = f"{RELEASE}-smallfleet-redis"
    pod = named(docs, "Deployment", name)["spec"]["template"]["spec"]
    redis = pod["containers"][0]
    secret = named(docs, "Secret", f"{RELEASE}-smallfleet-state")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    url = base64.b64decode(secret["data"]["state-url"]).decode()
    assert len(password) == 32 and url == f"redis://:{password}@{name}:6379/0"
    assert redis["args"][redis["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "redis-password",
    }
    assert redis["args"][redis["args"].index("--maxmemory-policy") + 1] == "noeviction"
    assert named(docs, "Service", name)["spec"]["ports"][0]["port"] == 6379
    policy = named(docs, "NetworkPolicy", name)["spec"]
    assert (
        policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "gateway"
    )
    assert (
        _gateway_env(docs)["SMALLFLEET_STATE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == secret["metadata"]["name"]
    )
    assert _fleet(docs).state.on_error == "open"


def test_an_existing_redis_and_the_charts_own_are_refused_together() -> None:
    with pytest.raises(helm.HelmError, match="not both"):
        render({"state": {"url": "redis://r:6379", "redis": {"enabled": True}}})
