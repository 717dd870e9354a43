"""deploy/grafana: every panel's query returns data from a real Prometheus scraping a live gateway.

A gateway in front of the stub upstream (models named like the routing benchmark's, the
router's default artifact, and one backend on a closed port so error series exist) serves
real traffic through the official ``openai`` client and takes feedback. A throwaway
``prometheus`` (Debian's package; ``scripts/prometheus_for_tests.sh`` installs it) scrapes it
every second. Then every target of every panel runs through Prometheus' HTTP API with the
dashboard variables filled in, and must succeed with at least one finite value.

Traffic comes in two rounds with a scrape between them: a series that first appears in
round one only gets a non-zero ``rate()`` once round two moves it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import router
from fleet.config import FleetConfig, parse_fleet
from gateway.app import create_app
from tests.conftest import REPO, LiveServer, free_port, stub_upstream_process

DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
INSTALL_SCRIPT = "scripts/prometheus_for_tests.sh"
BENCHMARK_MODELS = (
    "gemma-2-9b-it",
    "llama-3.1-8b-instruct",
    "llama-3.1-nemotron-51b-instruct",
    "qwen2.5-7b-instruct",
)
BROKEN = "broken-backend"
AUTO_ROUTES = ("auto", "auto:quality", "auto:cheap")
QUESTIONS = (
    "Janet has 3 apples and buys 5 more. How many apples does she have now?",
    "Write a Python function that reverses a string.",
    "Which planet is known as the red planet?",
    "Translate 'good morning' into French.",
)
SCORES = itertools.cycle((1.0, 0.0, 0.75, 0.5, 0.25, 1.0, 0.9))
# What Grafana would put in place of each dashboard variable. Windows are long enough to
# span both traffic rounds and many 1 s scrapes.
VARIABLES = {
    "${datasource}": "prometheus",
    "$__rate_interval": "1m",
    "$__range": "1m",
    "$__interval": "5s",
    "$route": ".*",
    "$model": ".*",
}
SCRAPE_SECONDS = 1
METRIC_NAME = re.compile(r"\bsmallfleet_[a-z0-9_]+")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
WAIT_SECONDS = 30.0


# -- dashboards ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    def where(self) -> str:
        return f"{self.dashboard} / {self.panel!r}: {self.expr}"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def fill(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def queries(path: Path) -> list[PanelQuery]:
    dashboard = load(path)
    return [
        PanelQuery(dashboard["title"], panel["title"], fill(target["expr"]))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


# -- prometheus ---------------------------------------------------------------------------------
def prometheus_binary() -> str:
    found = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/local/bin")
    if found is None:
        pytest.fail(f"no 'prometheus' binary: run {INSTALL_SCRIPT} first (it installs Debian's package)")
    return found


class Prometheus:
    """A throwaway Prometheus server scraping one target every second."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: {SCRAPE_SECONDS}s}}\n"
            f"scrape_configs:\n  - job_name: smallfleet\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @contextlib.contextmanager
    def running(self) -> Iterator[Prometheus]:
        with (self.workdir / "prometheus.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_ready(proc)
                yield self
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self.http.close()

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not self._answers("/-/ready"):
            if proc.poll() is not None:
                log = (self.workdir / "prometheus.log").read_text(errors="replace")
                raise AssertionError(f"prometheus exited with {proc.returncode}:\n{log[-3000:]}")
            assert time.monotonic() < deadline, f"prometheus not ready within {WAIT_SECONDS} s"
            time.sleep(0.2)

    def _answers(self, path: str) -> bool:
        try:
            return self.http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/api/v1/query", params={"query": expr}).json()
        return body

    def _scalar(self, expr: str) -> float:
        result = self.query(expr).get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else math.nan

    def last_scrape(self) -> float:
        """When the latest successful scrape started (0 if the latest one failed or none ran)."""
        # timestamp() must wrap the bare selector: any operator in between gives the query's time.
        started = self._scalar('timestamp(up{job="smallfleet"})')
        return started if self._scalar('up{job="smallfleet"}') == 1 else 0.0

    def wait_for_scrape_after(self, moment: float) -> None:
        """Until a successful scrape has started after ``moment`` (so it saw everything before)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while self.last_scrape() <= moment:
            assert time.monotonic() < deadline, f"no scrape of the gateway within {WAIT_SECONDS} s"
            time.sleep(0.2)


# -- the gateway and its traffic ----------------------------------------------------------------
def fleet(stub_url: str) -> FleetConfig:
    priced = {"input": 0.5, "output": 1.5}
    models: list[dict[str, Any]] = [
        {"name": name, "backend": "openai", "base_url": stub_url, "price": priced, "context_length": 4096}
        for name in BENCHMARK_MODELS
    ]
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: every call fails
    models.append({"name": BROKEN, "backend": "openai", "base_url": closed, "price": priced})
    return parse_fleet({"models": models, "router": {"artifact": str(router.DEFAULT_ARTIFACT)}})


def ask(client: openai.OpenAI, model: str, question: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=8
    )
    raw.parse()
    return raw.headers["x-request-id"]


def ask_streaming(client: openai.OpenAI, model: str, question: str) -> str:
    with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        for _ in raw.parse():
            pass
        return raw.headers["x-request-id"]


def complete(client: openai.OpenAI, model: str, question: str) -> str:
    raw = client.completions.with_raw_response.create(model=model, prompt=question, max_tokens=8)
    raw.parse()
    return raw.headers["x-request-id"]


def fail(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model=BROKEN, messages=[{"role": "user", "content": "hello?"}], max_tokens=8, stream=stream
        )


def serve_round(client: openai.OpenAI, gateway: httpx.Client, scores: dict[str, list[float]]) -> None:
    """One round of traffic over every route, both endpoints, streamed or not; then feedback.

    ``scores`` collects each feedback score under the route the gateway says answered.
    """
    answered: list[str] = []
    for route, question in zip(AUTO_ROUTES + BENCHMARK_MODELS, itertools.cycle(QUESTIONS)):
        answered.append(ask(client, route, question))
        answered.append(ask_streaming(client, route, question))
    answered.append(complete(client, "auto", QUESTIONS[0]))
    answered.append(complete(client, BENCHMARK_MODELS[0], QUESTIONS[1]))
    fail(client, stream=False)
    fail(client, stream=True)
    for request_id in answered:
        score = next(SCORES)
        response = gateway.post("/v1/feedback", json={"request_id": request_id, "score": score})
        assert response.status_code == 200, response.text
        scores.setdefault(response.json()["route"], []).append(score)


@dataclass(frozen=True)
class Scraped:
    prometheus: Prometheus
    scores: dict[str, list[float]]  # feedback sent, by route


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """Prometheus after two rounds of traffic, each seen by at least one scrape."""
    prometheus_binary()  # fail before starting anything
    with contextlib.ExitStack() as stack:
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        monkeypatch.setenv("SMALLFLEET_STATE", str(tmp_path_factory.mktemp("state")))
        stub_url = stack.enter_context(stub_upstream_process())
        server = stack.enter_context(LiveServer(create_app(fleet(stub_url))))
        prom = stack.enter_context(
            Prometheus(server.url.removeprefix("http://"), tmp_path_factory.mktemp("prometheus")).running()
        )
        client = stack.enter_context(
            openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        )
        gateway = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        scores: dict[str, list[float]] = {}
        prom.wait_for_scrape_after(0.0)
        for _ in range(2):
            serve_round(client, gateway, scores)
            prom.wait_for_scrape_after(time.time())
        yield Scraped(prom, scores)


@pytest.fixture
def prometheus(scraped: Scraped) -> Prometheus:
    return scraped.prometheus


# -- tests --------------------------------------------------------------------------------------
def test_dashboards_are_grafana_models_on_the_datasource_variable() -> None:
    assert {p.stem for p in DASHBOARDS} >= {"overview", "routes", "router", "backends"}
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        dashboard = load(path)
        assert dashboard["schemaVersion"] >= 39
        assert "datasource" in {v["name"] for v in dashboard["templating"]["list"]}
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate panel ids"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
            assert panel["targets"] and panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def finite_values(result: dict[str, Any]) -> list[float]:
    data = result.get("data", {})
    samples = data.get("result", []) if data.get("resultType") in ("vector", "matrix") else []
    values = [float(s["value"][1]) for s in samples if "value" in s]
    return [v for v in values if math.isfinite(v)]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_data(path: Path, prometheus: Prometheus) -> None:
    problems = []
    for query in queries(path):
        result = prometheus.query(query.expr)
        if result.get("status") != "success":
            problems.append(f"query error {result.get('error')!r} in {query.where()}")
        elif not finite_values(result):
            problems.append(f"no data in {query.where()} -> {result['data']['result']}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_metric_a_panel_names_is_one_the_gateway_exposes(path: Path, prometheus: Prometheus) -> None:
    """Catches a misspelt name even where ``or vector(0)`` would hide it (from the scrape's HELP/TYPE)."""
    exposed = set(prometheus.http.get("/api/v1/metadata").json()["data"])
    unknown = [
        f"{name} in {query.where()}"
        for query in queries(path)
        for name in METRIC_NAME.findall(query.expr)
        if name not in exposed and HISTOGRAM_SERIES.sub("", name) not in exposed
    ]
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_variables_list_values(path: Path, prometheus: Prometheus) -> None:
    for variable in load(path)["templating"]["list"]:
        if variable["type"] != "query":
            continue
        metric, label = variable["query"]["query"].removeprefix("label_values(").rstrip(")").split(", ")
        values = prometheus.http.get(f"/api/v1/label/{label}/values", params={"match[]": metric}).json()
        assert values["status"] == "success" and values["data"], f"{path.stem}: ${variable['name']} is empty"


def test_quality_per_route_is_the_mean_feedback_score_of_that_route(scraped: Scraped) -> None:
    expr = "sum by (route) (smallfleet_feedback_score_sum) / sum by (route) (smallfleet_feedback_score_count)"
    result = scraped.prometheus.query(expr)["data"]["result"]
    quality = {s["metric"]["route"]: float(s["value"][1]) for s in result}
    expected = {route: sum(scores) / len(scores) for route, scores in scraped.scores.items()}
    assert set(expected) == set(AUTO_ROUTES + BENCHMARK_MODELS)
    assert quality == pytest.approx(expected)
