"""Observability against the default environment: a real Prometheus (Debian's) scrapes every component
through the runtime, and its HTTP API shows what happened: traffic per target, scale-in, runtime state."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pathlib
import signal
import time
import urllib.parse
from typing import Any

from meridio.kernel import netns as netnsmod
from meridio.runtime.local import client
from meridio.runtime.local.layout import StateLayout, state_root
from tests.e2e.framework import E2E, TARGETS_A, VIP1, _until, namespace_pids, wait_baseline


def _ports(e2e: E2E) -> client.MonitoringPorts:
    ports = client.monitoring_ports(StateLayout(state_root(e2e.env.name)))
    assert ports is not None and ports.prometheus_url, "the e2e environment runs with a Prometheus"
    return ports


def query(e2e: E2E, promql: str) -> list[dict[str, Any]]:
    url = f"{_ports(e2e).prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, body = client.http_get(url)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def scraped_after(e2e: E2E, moment: float, selector: str, timeout: float = 30) -> None:
    """Wait until every series of ``selector`` has a sample scraped after ``moment`` (wall clock)."""
    def fresh() -> bool:
        got = query(e2e, f"timestamp({selector})")
        return bool(got) and all(float(r["value"][1]) > moment for r in got)
    _until(f"a scrape of {selector} after the traffic", fresh, timeout, interval=1)


def hits_by_identifier(e2e: E2E, stream: str) -> dict[str, float]:
    rows = query(e2e, f'sum by (identifier) (meridio_lb_target_hit_packets_total{{stream="{stream}"}})')
    return {r["metric"]["identifier"]: float(r["value"][1]) for r in rows}


def identifiers_by_pod(e2e: E2E, trench: str, stream: str) -> dict[str, str]:
    """Target pod -> its identifier in the stream, matched through the addresses the NSP registered."""
    registered = e2e.status()["streams"][trench]
    by_ip = {ipaddress.ip_address(ip.split("/")[0]): t["identifier"] for t in registered if t["stream"] == stream
             for ip in t["ips"]}
    out = {}
    for pod in TARGETS_A:
        done = netnsmod.run(e2e.naming.pod_ns(pod), ["ip", "-j", "addr"])
        for link in json.loads(done.stdout):
            for addr in link.get("addr_info", []):
                ident = by_ip.get(ipaddress.ip_address(addr["local"]))
                if ident is not None:
                    out[pod] = ident
    return out


def test_prometheus_scrapes_the_runtime_and_every_pod_component(e2e: E2E) -> None:
    wait_baseline(e2e)
    expected = {(p["name"], c["component"]) for p in e2e.status()["pods"] for c in p["containers"]
                if c["component"] in ("lb", "frontend", "nsp", "ipam", "proxy", "tapa")}

    missing: set[tuple[str, str]] = set()

    def all_up() -> bool:
        rows = query(e2e, 'up{job="meridio-pods"}')
        missing.clear()
        missing.update(expected - {(r["metric"]["pod"], r["metric"]["component"]) for r in rows if r["value"][1] == "1"})
        return not missing
    try:
        _until(f"Prometheus scraping all {len(expected)} pod components", all_up, 60, interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not scraped: {sorted(missing)}") from None
    running = query(e2e, 'meridio_runtime_process_up{component="lb"}')
    assert len(running) == 6 and all(r["value"][1] == "1" for r in running)


def test_target_hit_counters_rise_by_the_datagrams_each_target_received(e2e: E2E) -> None:
    wait_baseline(e2e)
    ids = identifiers_by_pod(e2e, "trench-a", "stream-a-i")
    assert sorted(ids) == sorted(TARGETS_A), ids
    scraped_after(e2e, time.time(), 'meridio_lb_target_hit_packets_total{stream="stream-a-i"}')
    before = hits_by_identifier(e2e, "stream-a-i")
    report = e2e.traffic("trench-a", VIP1[4], 4003, udp=True, nconn=400)  # one datagram per exchange
    assert report["lost"] == 0 and len(report["hosts"]) == 4, report
    scraped_after(e2e, time.time(), 'meridio_lb_target_hit_packets_total{stream="stream-a-i"}')
    after = hits_by_identifier(e2e, "stream-a-i")
    for pod, received in report["hosts"].items():
        ident = ids[pod]
        rise = after[ident] - before.get(ident, 0.0)
        assert abs(rise - received) <= max(1, 0.01 * received), (pod, ident, rise, received, report)


def test_a_scale_in_shows_in_the_streams_target_count(e2e: E2E) -> None:
    wait_baseline(e2e)
    selector = 'meridio_lb_stream_targets{stream="stream-a-i"}'

    def counts() -> set[str]:
        return {r["value"][1] for r in query(e2e, selector)}
    _until("every LB reporting 4 targets", lambda: counts() == {"4"}, 60, interval=1)
    e2e.scale("target-a", 2)
    try:
        _until("every LB reporting 2 targets", lambda: counts() == {"2"}, 90, interval=1)
    finally:
        e2e.scale("target-a", 4)
        wait_baseline(e2e)


def _addresses(e2e: E2E, pod: str) -> set[str]:
    done = netnsmod.run(e2e.naming.pod_ns(pod), ["ip", "-j", "addr"])
    return {a["local"] for link in json.loads(done.stdout) for a in link.get("addr_info", [])}


def test_bgp_sessions_of_a_frozen_frontend_drop_to_0_on_both_sides_and_come_back(e2e: E2E) -> None:
    wait_baseline(e2e)
    pod = "stateless-lb-frontend-attractor-a-1-0"
    mine = _addresses(e2e, pod)

    def sessions() -> dict[str, str]:
        rows = query(e2e, 'meridio_gateway_bgp_session_up{router="gw-a1"}')
        return {r["metric"]["neighbor"]: r["value"][1] for r in rows if r["metric"]["neighbor"] in mine}
    _until(f"{pod}'s sessions up at gw-a1 (IPv4 and IPv6)", lambda: list(sessions().values()) == ["1", "1"], 60, 1)
    others = query(e2e, 'meridio_gateway_bgp_session_up{router="gw-a1"} == 1')
    assert len(others) == 4, others  # both FEs of attractor-a-1, both families
    bird = next(p for p in namespace_pids(e2e.naming.pod_ns(pod))
                if pathlib.Path(f"/proc/{p}/comm").read_text().strip() == "bird")
    own = f'meridio_frontend_bgp_session_up{{pod="{pod}"}}'
    assert {r["value"][1] for r in query(e2e, own)} == {"1"}
    os.kill(bird, signal.SIGSTOP)  # BFD goes silent: the gateway drops the sessions after 5 x 300 ms
    try:
        _until(f"{pod}'s sessions at 0 in Prometheus", lambda: list(sessions().values()) == ["0", "0"], 30, 1)
        still = query(e2e, 'meridio_gateway_bgp_session_up{router="gw-a1"} == 1')
        assert len(still) == 2, still  # the other replica keeps its sessions
        # The frontend itself sees it once its BIRD has missed several queries (2 s timeout each).
        _until(f"{pod}'s own session gauge at 0", lambda: {r["value"][1] for r in query(e2e, own)} == {"0"}, 60, 1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(bird, signal.SIGCONT)
    _until(f"{pod}'s sessions back at 1", lambda: list(sessions().values()) == ["1", "1"], 120, 1)
    _until(f"{pod}'s own session gauge back at 1", lambda: {r["value"][1] for r in query(e2e, own)} == {"1"}, 60, 1)
    flaps = query(e2e, f'meridio_frontend_bgp_session_flaps_total{{pod="{pod}"}}')
    assert flaps and all(float(r["value"][1]) >= 1 for r in flaps), flaps
    wait_baseline(e2e)
