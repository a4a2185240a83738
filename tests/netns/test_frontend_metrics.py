"""The frontend's ``/metrics`` against a real gateway BIRD, scraped from inside the frontend's namespace.

Real: the FE daemon (``meridio run frontend --metrics-enabled``) and its BIRD, a gateway BIRD (BGP v4/v6
with BFD 50 ms x 3), the NSP process, the kernel's interface counters. Test double: the LB's
``StreamAvailabilityService`` (``LbAvailabilityDouble``). Freezing the gateway's BIRD (SIGSTOP) takes
both sessions down; the scrape must show it, with one flap each.
"""
from __future__ import annotations

import os
import signal
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meridio.kernel import netns as netnsmod
from tests.support import frontend as testing
from tests.support.frontend import FeEnv, eventually, gateway_item

PORT = 2224
VIPS = {"vip-v4": "203.0.113.10/32", "vip-v6": "2001:db8:f::10/128"}
GATEWAYS = ("gw-v4", "gw-v6")
LABELS = {"trench": "trench-a", "attractor": "attr-a"}
_FETCH = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def env(fe_env: FeEnv) -> FeEnv:
    return fe_env


def scrape(env: FeEnv, port: int = PORT) -> Samples:
    """``/metrics`` of frontend 0, fetched over loopback inside its namespace (``{}`` if it does not answer)."""
    done = netnsmod.run(env.segment.fe_nss[0], [sys.executable, "-c", _FETCH, f"http://127.0.0.1:{port}/metrics"],
                        check=False, timeout=10)
    if done.returncode != 0:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(done.stdout) for s in family.samples}


def per_gateway(samples: Samples, name: str) -> dict[str, float]:
    """``{gateway: value}`` of one per-gateway family."""
    return {dict(labels)["gateway"]: value for (n, labels), value in samples.items()
            if n == name and {**dict(labels), **LABELS} == dict(labels)}


def one(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted({**LABELS, **labels}.items()))))


def start(env: FeEnv, *extra: str) -> None:
    env.start_gateway()
    env.start_nsp(testing.nsp_config(vips=VIPS, gateways=[
        gateway_item("gw-v4", env.segment.gw_v4), gateway_item("gw-v6", env.segment.gw_v6)]))
    env.start_frontend(0, extra=extra)


def test_session_metrics_follow_a_frozen_gateway_with_one_flap_each(env: FeEnv) -> None:
    start(env, "--metrics-enabled", "true", "--metrics-port", str(PORT))
    env.lbs[0].set_available(True)

    def all_up() -> Samples | None:
        s = scrape(env)
        up = (per_gateway(s, "meridio_frontend_bgp_session_up"), per_gateway(s, "meridio_frontend_bfd_session_up"))
        return s if up == ({"gw-v4": 1.0, "gw-v6": 1.0},) * 2 and one(s, "meridio_frontend_announced_vips") else None

    s = eventually(all_up, 30, interval=0.3, message="both BGP and BFD sessions up in /metrics, VIPs announced")
    assert one(s, "meridio_frontend_announced_vips") == 2.0
    assert one(s, "meridio_frontend_gateway_connectivity") == 1.0
    assert per_gateway(s, "meridio_frontend_bgp_session_flaps_total") == {"gw-v4": 0.0, "gw-v6": 0.0}
    for gw in GATEWAYS:
        assert (one(s, "meridio_frontend_gateway_routes", gateway=gw, kind="imported") or 0) >= 1, gw
        assert (one(s, "meridio_frontend_gateway_routes", gateway=gw, kind="exported") or 0) >= 1, gw
    assert (one(s, "meridio_frontend_bird_applies_total", result="ok") or 0) >= 1
    assert (one(s, "meridio_frontend_bird_apply_duration_seconds_count") or 0) >= 1
    ext0 = [v for (n, labels), v in s.items()
            if n == "meridio_interface_receive_packets_total" and dict(labels).get("interface") == "ext0"]
    assert ext0 and ext0[0] > 0, "the external interface's counters are exported"

    os.kill(env.gateway.pid, signal.SIGSTOP)
    try:
        def all_down() -> Samples | None:
            s = scrape(env)
            return s if set(per_gateway(s, "meridio_frontend_bgp_session_up").values()) == {0.0} else None

        s = eventually(all_down, 15, interval=0.2, message="both BGP sessions down in /metrics")
        assert per_gateway(s, "meridio_frontend_bgp_session_flaps_total") == {"gw-v4": 1.0, "gw-v6": 1.0}
        eventually(lambda: per_gateway(scrape(env), "meridio_frontend_bfd_session_flaps_total") ==
                   {"gw-v4": 1.0, "gw-v6": 1.0}, 5, interval=0.2, message="one BFD flap each")
        eventually(lambda: one(scrape(env), "meridio_frontend_announced_vips") == 0.0, 10, interval=0.2,
                   message="no VIP announced without gateways")
    finally:
        os.kill(env.gateway.pid, signal.SIGCONT)

    s = eventually(all_up, 30, interval=0.3, message="the sessions up again")
    assert per_gateway(s, "meridio_frontend_bgp_session_flaps_total") == {"gw-v4": 1.0, "gw-v6": 1.0}


def test_a_metrics_port_in_use_is_logged_and_the_frontend_works_without_metrics(env: FeEnv) -> None:
    blocker = env.procs.start([sys.executable, "-c", "import socket, time\n"
                               "s = socket.socket(socket.AF_INET6)\n"
                               f"s.bind(('::', {PORT})); s.listen(); print('listening', flush=True)\n"
                               "time.sleep(120)"], ns=env.segment.fe_nss[0], name="blocker")
    eventually(lambda: "listening" in env.procs.output(blocker), 10, message="the port taken")
    start(env, "--metrics-enabled", "true", "--metrics-port", str(PORT))
    eventually(lambda: env.established(0, *GATEWAYS), 20, message="both BGP sessions Established")
    failed = [e for e in env.fe_events(0) if e.get("message") == "metricsNotServed"]
    assert failed and str(PORT) in failed[0]["error"]
    assert env.frontends[0].poll() is None
