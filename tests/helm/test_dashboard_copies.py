"""The chart ships the same Grafana dashboards as deploy/grafana (Helm cannot read outside the chart)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_chart_dashboards_are_exact_copies_of_deploy_grafana():
    sources = sorted((REPO / "deploy" / "grafana").glob("*.json"))
    copies = sorted((REPO / "helm" / "smallfleet" / "dashboards").glob("*.json"))
    assert [f"smallfleet-{s.name}" for s in sources] == [c.name for c in copies]
    for source in sources:
        copy = REPO / "helm" / "smallfleet" / "dashboards" / f"smallfleet-{source.name}"
        assert copy.read_bytes() == source.read_bytes(), f"refresh {copy} from {source}"
