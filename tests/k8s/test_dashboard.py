"""The Grafana dashboard asks only for metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from itk_gateway.metrics import GatewayMetrics

COMPONENT = Path(__file__).resolve().parents[2] / "k8s" / "components" / "grafana-dashboard"
DASHBOARD = COMPONENT / "infinitetalk-gateway.json"


def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    metrics = GatewayMetrics(lambda: {"RUNNING": 1}, lambda: {"known": 2, "ready": 1})
    metrics.chunk_seconds.observe(3.0)
    metrics.video_seconds.inc(2.0)
    metrics.webhook_deliveries.labels("delivered").inc()
    exported = {line.split("{")[0].split(" ")[0] for line in metrics.render().decode().splitlines()
                if line and not line.startswith("#")}
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    asked = {name for query in queries for name in re.findall(r"\bitk_[a-z_]+", query)}
    assert asked and asked <= exported, asked - exported
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Jobs by status", "Pieces pending and running", "Piece latency", "Generator endpoints ready",
            "GPU seconds per video second"} <= titles
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
