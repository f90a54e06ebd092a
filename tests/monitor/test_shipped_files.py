"""The shipped Prometheus rules and Grafana dashboard name only metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from wardgate.config import GatewayConfig
from wardgate.gateway.service import Gateway

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "examples" / "monitoring"
_NAME = re.compile(r"\bwardgate_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported(tmp_path: Path) -> set[str]:
    config = GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path / 'gw.db'}",
            "auth": {"secret_file": str(tmp_path / "secret"), "secret_env": "WG_SHIP_NO_SECRET"},
            "models": [
                {
                    "name": "echo",
                    "backend": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "tags": {"deployment": "on_prem"},
                }
            ],
        }
    )
    text = Gateway(config).metrics.render().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_alert_rules_parse_and_use_exported_metrics(tmp_path: Path) -> None:
    rules = yaml.safe_load((FILES / "prometheus-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 8 and all(r.get("alert") for g in rules["groups"] for r in g["rules"])
    names = {base(n) for e in exprs for n in _NAME.findall(e)}
    assert names - {base(n) for n in exported(tmp_path)} == set()
    assert "wardgate_monitor_alerts" in names and "wardgate_webhook_deliveries" in names


def test_dashboard_is_grafana_json_over_exported_metrics(tmp_path: Path) -> None:
    dash = json.loads((FILES / "grafana-dashboard.json").read_text())
    assert dash["uid"] == "wardgate" and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {base(n) for e in exprs for n in _NAME.findall(e)}
    assert names - {base(n) for n in exported(tmp_path)} == set()
    assert {"wardgate_monitor_alerts", "wardgate_requests", "wardgate_circuit_open"} <= names
