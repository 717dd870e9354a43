"""The request path's metric updates are held in plain dicts and added when the registry is read
(gateway/metrics.py): whoever reads it (a scrape, a collect) sees every update."""

from __future__ import annotations

import pytest

from gateway import metrics as metrics_module
from gateway.metrics import GatewayMetrics


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_answers_counted_as_they_end_are_read_at_a_scrape_or_a_collect():
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe_answer(route="auto", model="m", status=200, seconds=0.02, prompt_tokens=3,
                               completion_tokens=5, cost=0.5, cluster="c1")
    metrics.observe_answer(route="auto", model="m", status=502, seconds=0.3, code="upstream_error")
    metrics.observe_key_answer("k", status=200, prompt_tokens=3, completion_tokens=5, cost=0.5)
    assert sample(metrics, "smallfleet_requests_total", route="auto", model="m", status="200") == 3
    assert sample(metrics, "smallfleet_request_errors_total", route="auto", model="m", code="upstream_error") == 1
    assert sample(metrics, "smallfleet_tokens_total", route="auto", model="m", direction="output") == 15
    assert sample(metrics, "smallfleet_cost_total", route="auto", model="m", cluster="c1") == 1.5
    assert sample(metrics, "smallfleet_request_duration_seconds_count", route="auto", model="m") == 4
    assert sample(metrics, "smallfleet_key_requests_total", key="k", status="200") == 1
    metrics.observe_key_answer("k", status=200, prompt_tokens=1, completion_tokens=0, cost=0.0)
    page = metrics.render().decode()
    assert 'smallfleet_key_requests_total{key="k",status="200"} 2.0' in page
    assert 'smallfleet_key_tokens_total{direction="input",key="k"} 4.0' in page
    assert 'smallfleet_requests_total{model="m",route="auto",status="200"} 3.0' in page


def test_the_in_flight_gauge_reads_the_requests_still_running():
    metrics = GatewayMetrics()
    gauge = metrics.in_flight("m")
    assert metrics.in_flight("m") is gauge
    gauge.inc()
    gauge.inc()
    assert sample(metrics, "smallfleet_backend_in_flight", model="m") == 2
    gauge.dec()
    assert sample(metrics, "smallfleet_backend_in_flight", model="m") == 1
    gauge.dec()
    assert 'smallfleet_backend_in_flight{model="m"} 0.0' in metrics.render().decode()


def test_observations_are_added_anyway_once_many_are_held(monkeypatch):
    monkeypatch.setattr(metrics_module, "MAX_PENDING_OBSERVATIONS", 10)
    metrics = GatewayMetrics()
    for _ in range(10):
        metrics.observe(metrics.request_duration, ("r", "m"), 0.01)
    assert metrics._observations == []  # added to the histogram without a read
    assert metrics.child(metrics.request_duration, "r", "m")._sum.get() == pytest.approx(0.1)
