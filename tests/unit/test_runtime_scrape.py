"""What the local runtime scrapes: component metrics settings, scrape targets, Prometheus's files."""
from __future__ import annotations

import json

import pytest

from meridio.runtime.local import environment as envmod
from meridio.runtime.local import scrape
from meridio.runtime.local.monitor import runtime_families
from meridio.runtime.local.supervisor import ProcessState, ProcessStatus


def test_each_component_gets_its_own_prefix_and_port_and_the_example_target_none() -> None:
    assert scrape.metrics_env("lb") == {"NSM_METRICS_ENABLED": "true", "NSM_METRICS_PORT": "2223"}
    assert scrape.metrics_env("frontend") == {"NFE_METRICS_ENABLED": "true", "NFE_METRICS_PORT": "2224"}
    assert scrape.metrics_env("example-target") == {}
    ports = [port for _, port in scrape.METRICS_PORTS.values()]
    assert len(set(ports)) == len(ports)


def test_targets_are_the_processes_with_metrics_labelled_by_pod_and_node() -> None:
    got = scrape.targets([
        ("fe-1", "frontend", "ns-fe-1", {"node": "node-1"}),
        ("fe-1", "lb", "ns-fe-1", {"node": "node-1"}),
        ("tgt-1", "example-target", "ns-tgt-1", {}),
        ("gw", "bird", None, {}),
    ])
    assert [(t.pod, t.component, t.port, t.path) for t in got] == [
        ("fe-1", "frontend", 2224, "/pods/fe-1/frontend/metrics"), ("fe-1", "lb", 2223, "/pods/fe-1/lb/metrics")]
    assert got[1].labels == {"pod": "fe-1", "component": "lb", "node": "node-1"}


def test_file_sd_points_every_target_at_the_runtime_with_its_path() -> None:
    [t] = scrape.targets([("fe-1", "lb", "ns", {"node": "node-1"})])
    entries = json.loads(scrape.file_sd([t], "127.0.0.1:4321"))
    assert entries == [{"targets": ["127.0.0.1:4321"],
                        "labels": {"__metrics_path__": "/pods/fe-1/lb/metrics", "pod": "fe-1", "component": "lb",
                                   "node": "node-1"}}]


def test_prometheus_config_scrapes_the_runtime_and_the_targets_file() -> None:
    config = json.loads(scrape.prometheus_config(runtime_address="127.0.0.1:4321", targets_file="/s/targets.json",
                                                 interval_s=5, environment="e2e"))
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs[scrape.RUNTIME_JOB]["static_configs"] == [{"targets": ["127.0.0.1:4321"]}]
    assert jobs[scrape.PODS_JOB]["file_sd_configs"][0]["files"] == ["/s/targets.json"]


def test_runtime_families_count_restarts_and_running_processes() -> None:
    statuses = [ProcessStatus("p/lb", "p", "lb", 10, ProcessState.RUNNING, 2, None, 0.0, "/l"),
                ProcessStatus("p/frontend", "p", "frontend", None, ProcessState.BACKOFF, 5, 1, 0.0, "/l")]
    fams = {f.name: f for f in runtime_families(statuses)}
    assert [(s.labels["component"], s.value) for s in fams["meridio_runtime_process_up"].samples] == [
        ("frontend", 0.0), ("lb", 1.0)]
    assert [(s.name, s.value) for s in fams["meridio_runtime_process_restarts"].samples] == [
        ("meridio_runtime_process_restarts_total", 5), ("meridio_runtime_process_restarts_total", 2)]


def test_monitoring_section_defaults_and_errors_name_the_field() -> None:
    base = {"name": "x", "nodes": ["node-1"]}
    assert envmod.parse(base).monitoring == envmod.Monitoring()
    env = envmod.parse({**base, "monitoring": {"prometheus": True, "prometheus-port": 9091, "scrape-interval": "10s"}})
    assert (env.monitoring.prometheus, env.monitoring.prometheus_port, env.monitoring.scrape_interval_s) == (
        True, 9091, 10.0)
    for bad, message in (({"prometheus": "yes"}, "monitoring.prometheus: 'yes' must be true or false"),
                         ({"port": 70000}, "monitoring.port: 70000 must be an integer between 0 and 65535"),
                         ({"scrape-interval": "100ms"}, "monitoring.scrape-interval: must be between 1s and 5m"),
                         ({"other": 1}, "monitoring.other: unknown field")):
        with pytest.raises(envmod.EnvironmentSpecError, match=message.replace("(", r"\(")):
            envmod.parse({**base, "monitoring": bad})


def test_gateway_families_report_each_session_and_the_vip_routes() -> None:
    from meridio.runtime.local import protocol as proto
    from meridio.runtime.local.monitor import gateway_families
    routers = [proto.Router("gw-a1", "trench-a", "vlan-100", sessions=(
        proto.Session("FE4_1", "169.254.100.1", "up", "Established", "Up"),
        proto.Session("FE4_2", "169.254.100.2", "start", "Active", "Down"),
        proto.Session("FE6_1", "2001:db8:100::1", "up", "Established", "")),
        routes={"203.0.113.1/32": ("169.254.100.1",), "2001:db8:a1::1/128": ("2001:db8:100::1",)})]
    fams = {f.name: f for f in gateway_families(routers)}
    bgp = {s.labels["neighbor"]: s.value for s in fams["meridio_gateway_bgp_session_up"].samples}
    assert bgp == {"169.254.100.1": 1.0, "169.254.100.2": 0.0, "2001:db8:100::1": 1.0}
    bfd = {s.labels["neighbor"]: s.value for s in fams["meridio_gateway_bfd_session_up"].samples}
    assert bfd == {"169.254.100.1": 1.0, "169.254.100.2": 0.0}  # no BFD session: no sample
    [routes] = fams["meridio_gateway_vip_routes"].samples
    assert (routes.labels, routes.value) == ({"router": "gw-a1", "trench": "trench-a"}, 2)
