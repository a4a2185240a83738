"""The monitoring we ship: the Grafana dashboard, valid PromQL (checked by Prometheus's own promtool) over metrics the
components really export (every name appears in the product's source); the PodMonitor."""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "meridio-dashboard.json"
_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def _stem(name: str) -> str:
    name = name.removeprefix("meridio_")
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_metric_the_dashboard_queries_is_exported_by_the_product() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "meridio").rglob("*.py"))
    names = {n for e in _exprs() for n in re.findall(r"\bmeridio_[a-z_]+", e)}
    assert len(names) >= 10
    # The interface families are named in common/metrics.py as f"interface_{counter}" over a table.
    missing = sorted(n for n in names if f'"{_stem(n)}"' not in source
                     and not (_stem(n).startswith("interface_") and 'f"interface_{name}"' in source
                              and f'"{_stem(n).removeprefix("interface_")}"' in source))
    assert not missing, f"queried but not exported: {missing}"


def test_every_panel_expression_parses_with_promtool(tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian package prometheus) is missing: ./run.sh setup installs it")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": e.replace("$__rate_interval", "1m").replace("$trench", ".*")}
        for i, e in enumerate(_exprs())]}]}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_podmonitor_scrapes_one_named_port_per_component_with_its_label() -> None:
    import yaml

    from meridio.runtime.local import scrape
    doc = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "monitoring" / "podmonitor.yaml").read_text())
    assert doc["kind"] == "PodMonitor"
    endpoints = doc["spec"]["podMetricsEndpoints"]
    components = [next(r["replacement"] for r in e["relabelings"] if r.get("targetLabel") == "component")
                  for e in endpoints]
    assert sorted(components) == sorted(scrape.METRICS_PORTS)
    ports = [e["port"] for e in endpoints]
    assert len(set(ports)) == len(ports) and all(len(p) <= 15 for p in ports)  # IANA_SVC_NAME
