"""The issue's end-to-end conduit scenarios: real NSP, IPAM, LB, proxy, TAPA and example targets.

Real: every process (``meridio run nsp|ipam|lb|proxy|tapa``, ``meridio example-target``), the kernel
(namespaces, veths, bridge, nftables, policy routing), traffic from a client namespace through the LB
(``meridio.runtime.local.traffic``, mconnect-like, 400 connections per check). Faked: only the
frontend's FRONTEND registration that unblocks the LB (conduit_support.FakeFrontendAnnouncer): these
tests do not exercise BGP. Both IPv4 and IPv6 VIPs are checked.
"""
from __future__ import annotations

import os
import signal

import pytest

from meridio.kernel import netns as netnsmod
from tests.conftest import wait_for
from tests.netns.conduit_support import CONFIG, VIP4, VIP6, addresses, conduit_env, links  # noqa: F401

pytestmark = pytest.mark.netns

TCP_PORT, UDP_PORT = 4000, 4003  # flow-a-tcp -> stream-a-i, flow-a-udp -> stream-a-ii

NEW_VIP4, NEW_VIP6 = "203.0.113.2/32", "2001:db8::2/128"
CONFIG_NEW_VIP = (CONFIG
                  .replace("    vips: [vip-a-1-v4, vip-a-1-v6]\n    priority: 1\n    stream: stream-a-i\n",
                           "    vips: [vip-a-1-v4, vip-a-1-v6, vip-a-2-v4, vip-a-2-v6]\n    priority: 1\n"
                           "    stream: stream-a-i\n")
                  .replace("  - {name: vip-a-9-v4,",
                           "  - {name: vip-a-2-v4, address: 203.0.113.2/32, trench: trench-a}\n"
                           "  - {name: vip-a-2-v6, address: 2001:db8::2/128, trench: trench-a}\n"
                           "  - {name: vip-a-9-v4,"))
assert CONFIG_NEW_VIP.count("vip-a-2-v4") == 2

# A second conduit (its own LB and proxy), with stream-a-iv on VIPs outside the first conduit's.
C2_VIP4, C2_VIP6 = "198.51.100.1/32", "2001:db8:3::1/128"
CONFIG_TWO_CONDUITS = (CONFIG
                       .replace("conduits: |\n  items:\n",
                                "conduits: |\n  items:\n  - name: conduit-a-2\n    trench: trench-a\n")
                       .replace("streams: |\n  items:\n",
                                "streams: |\n  items:\n  - {name: stream-a-iv, conduit: conduit-a-2, "
                                "max-targets: 100}\n")
                       .replace("flows: |\n  items:\n",
                                "flows: |\n  items:\n  - name: flow-c2-tcp\n"
                                "    source-subnets: [0.0.0.0/0, 0:0:0:0:0:0:0:0/0]\n"
                                "    destination-port-ranges: [\"4000\"]\n    source-port-ranges: [\"0-65535\"]\n"
                                "    protocols: [tcp]\n    vips: [vip-c2-v4, vip-c2-v6]\n    priority: 1\n"
                                "    stream: stream-a-iv\n")
                       .replace("vips: |\n  items:\n",
                                "vips: |\n  items:\n"
                                "  - {name: vip-c2-v4, address: 198.51.100.1/32, trench: trench-a}\n"
                                "  - {name: vip-c2-v6, address: 2001:db8:3::1/128, trench: trench-a}\n"))
assert CONFIG_TWO_CONDUITS.count("conduit-a-2") == 2 and CONFIG_TWO_CONDUITS.count("vip-c2-v4") == 2


def _add_second_conduit(env, node: str) -> None:  # type: ignore[no-untyped-def]
    """conduit-a-2's LB pod (real LB) and proxy on ``node``; the client routes each conduit's VIPs only to
    its own LB, as BGP announcements by each attractor's frontends would."""
    factory = env.netns
    env.conduit, env.netns = "conduit-a-2", (lambda name: factory(f"{name}-c2"))
    try:
        env.add_lb("lb-2", real=True)
        env.add_proxy(node)
    finally:
        env.conduit, env.netns = "conduit-a-1", factory
    lb1, lb2 = env._lb_ext["lb-1"], env._lb_ext["lb-2"]
    for version, prefix, via in ((4, "203.0.113.0/24", lb1[0]), (6, "2001:db8::/64", lb1[1]),
                                 (4, "198.51.100.0/24", lb2[0]), (6, "2001:db8:3::/64", lb2[1])):
        netnsmod.run(env.client(), ["ip", f"-{version}", "route", "replace", prefix, "via", via])


def _wait_streams(pod, expected: dict[str, str], timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: pod.statuses() == expected, timeout, 0.2, message=f"{pod.name} streams {expected}")


def _hosts(env, vip: str, port: int = TCP_PORT, *, udp: bool = False, nconn: int = 400,  # type: ignore[no-untyped-def]
           timeout: float = 20.0) -> dict[str, int]:
    result = env.traffic(vip, port, nconn=nconn, udp=udp, timeout=timeout)
    return dict(result["hosts"])


def _assert_all_reach(env, names: set[str], *, port: int = TCP_PORT, udp: bool = False) -> None:  # type: ignore[no-untyped-def]
    for vip in (VIP4, VIP6):
        result = env.traffic(vip, port, nconn=400, udp=udp, timeout=30.0)
        assert set(result["hosts"]) == names, (vip, result)
        assert result["lost"] == 0 and sum(result["hosts"].values()) == 400, (vip, result)


def _wait_reach(env, names: set[str], *, port: int = TCP_PORT, udp: bool = False, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Until the LB sends new connections to exactly ``names`` (the LB follows NSP asynchronously)."""
    def ok() -> bool:
        return all(set(_hosts(env, vip, port, udp=udp, nconn=40, timeout=3.0)) == names for vip in (VIP4, VIP6))
    wait_for(ok, timeout, 0.2, message=f"traffic to reach exactly {names}")


@pytest.fixture
def bed(conduit_env):  # type: ignore[no-untyped-def]
    env = conduit_env()
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    return env


def test_open_brings_400_connections_close_stops_them_reopen_brings_them_back(bed) -> None:  # type: ignore[no-untyped-def]
    t1 = bed.add_target_pod("target-1", "node-1")
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    _wait_reach(bed, {"target-1"})
    _assert_all_reach(bed, {"target-1"})
    t1.target("close", "stream-a-i")
    _wait_streams(t1, {})
    _wait_reach(bed, set())
    for vip in (VIP4, VIP6):
        assert _hosts(bed, vip, nconn=400, timeout=3.0) == {}
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    _wait_reach(bed, {"target-1"})
    _assert_all_reach(bed, {"target-1"})


def test_two_streams_on_one_target_each_carry_their_flows(bed) -> None:  # type: ignore[no-untyped-def]
    t1 = bed.add_target_pod("target-1", "node-1")
    t2 = bed.add_target_pod("target-2", "node-1")
    t1.target("open", "stream-a-i")
    t1.target("open", "stream-a-ii")
    t2.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN", "stream-a-ii": "OPEN"})
    _wait_streams(t2, {"stream-a-i": "OPEN"})
    _wait_reach(bed, {"target-1", "target-2"})
    _assert_all_reach(bed, {"target-1", "target-2"})
    _assert_all_reach(bed, {"target-1"}, port=UDP_PORT, udp=True)


def test_max_targets_one_leaves_the_second_target_unavailable_and_without_traffic(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(config=CONFIG.replace("{name: stream-a-i, conduit: conduit-a-1, max-targets: 100}",
                                            "{name: stream-a-i, conduit: conduit-a-1, max-targets: 1}"))
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    t1 = env.add_target_pod("target-1", "node-1")
    t2 = env.add_target_pod("target-2", "node-1")
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    t2.target("open", "stream-a-i")
    t2.target("open", "stream-a-ii")
    _wait_streams(t2, {"stream-a-i": "UNAVAILABLE", "stream-a-ii": "OPEN"})
    _wait_reach(env, {"target-1"})
    _assert_all_reach(env, {"target-1"})
    _assert_all_reach(env, {"target-2"}, port=UDP_PORT, udp=True)
    t1.target("close", "stream-a-i")
    _wait_streams(t2, {"stream-a-i": "OPEN", "stream-a-ii": "OPEN"})
    _wait_reach(env, {"target-2"})


def test_a_vip_added_to_a_flow_at_runtime_appears_on_the_target_interface_and_carries_traffic(bed) -> None:  # type: ignore[no-untyped-def]
    t1 = bed.add_target_pod("target-1", "node-1")
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    bed.write_config(CONFIG_NEW_VIP)
    wait_for(lambda: {NEW_VIP4, NEW_VIP6} <= addresses(t1.ns, "nsm-0"), 20, 0.2, message="new VIPs on nsm-0")
    for vip in (NEW_VIP4, NEW_VIP6):
        wait_for(lambda: set(_hosts(bed, vip, nconn=40, timeout=3.0)) == {"target-1"}, 30, 0.2,
                 message=f"traffic to {vip}")
        result = bed.traffic(vip, TCP_PORT, nconn=400, timeout=30.0)
        assert result["hosts"] == {"target-1": 400} and result["lost"] == 0, result


def test_two_conduits_on_one_target_get_two_interfaces_and_each_carries_its_vips(conduit_env) -> None:  # type: ignore[no-untyped-def]
    env = conduit_env(config=CONFIG_TWO_CONDUITS)
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    _add_second_conduit(env, "node-1")
    t1 = env.add_target_pod("target-1", "node-1")
    t2 = env.add_target_pod("target-2", "node-1")
    t1.target("open", "stream-a-i")
    t1.target("open", "stream-a-iv", conduit="conduit-a-2")
    t2.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN", "stream-a-iv": "OPEN"})
    _wait_streams(t2, {"stream-a-i": "OPEN"})
    assert {"nsm-0", "nsm-1"} <= set(links(t1.ns))
    _wait_reach(env, {"target-1", "target-2"})
    _assert_all_reach(env, {"target-1", "target-2"})
    for vip in (C2_VIP4, C2_VIP6):
        wait_for(lambda: set(_hosts(env, vip, nconn=40, timeout=3.0)) == {"target-1"}, 30, 0.2,
                 message=f"traffic to {vip}")
        result = env.traffic(vip, TCP_PORT, nconn=400, timeout=30.0)
        assert result["hosts"] == {"target-1": 400} and result["lost"] == 0, result


def test_targets_stay_through_an_nsp_restart_and_the_tapas_recover(conduit_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NSM_ANNOUNCE_REFRESH", "2s")  # the LB's own announcement, below the short keepalive
    env = conduit_env(entry_timeout="10s")
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1")
    pods = [env.add_target_pod(f"target-{i}", "node-1", extra_tapa=("--nsp-entry-timeout", "2s")) for i in (1, 2)]
    for pod in pods:
        pod.target("open", "stream-a-i")
        _wait_streams(pod, {"stream-a-i": "OPEN"})
    _wait_reach(env, {"target-1", "target-2"})
    env.nsp.proc.send_signal(signal.SIGKILL)
    env.nsp.proc.wait(5)
    for pod in pods:
        _wait_streams(pod, {"stream-a-i": "UNAVAILABLE"})
    _assert_all_reach(env, {"target-1", "target-2"})  # the data path does not need the NSP
    env.nsp.restart()
    for pod in pods:
        _wait_streams(pod, {"stream-a-i": "OPEN"})
    _assert_all_reach(env, {"target-1", "target-2"})


def test_a_killed_tapas_target_leaves_the_lb_after_the_keepalive_and_the_proxy_reclaims_its_link(  # type: ignore[no-untyped-def]
        conduit_env, monkeypatch) -> None:
    # A short NSP keepalive; everything that registers refreshes below it (the fake frontend every 5 s).
    monkeypatch.setenv("NSM_ANNOUNCE_REFRESH", "2s")
    env = conduit_env(entry_timeout="8s")
    env.add_lb("lb-1", real=True)
    env.add_proxy("node-1", orphan_timeout="2s")
    pods = [env.add_target_pod(f"target-{i}", "node-1", extra_tapa=("--nsp-entry-timeout", "1s")) for i in (1, 2)]
    for pod in pods:
        pod.target("open", "stream-a-i")
        _wait_streams(pod, {"stream-a-i": "OPEN"})
    _wait_reach(env, {"target-1", "target-2"})
    assert pods[1].tapa is not None
    pods[1].tapa.send_signal(signal.SIGKILL)
    pods[1].tapa.wait(5)
    _wait_reach(env, {"target-1"}, timeout=30)
    _assert_all_reach(env, {"target-1"})
    wait_for(lambda: "nsm-0" not in links(pods[1].ns), 30, 0.2, message="the dead TAPA's link reclaimed")


def test_a_proxy_restart_keeps_links_routes_and_targets(bed) -> None:  # type: ignore[no-untyped-def]
    pods = [bed.add_target_pod(f"target-{i}", "node-1") for i in (1, 2)]
    for pod in pods:
        pod.target("open", "stream-a-i")
        _wait_streams(pod, {"stream-a-i": "OPEN"})
    _wait_reach(bed, {"target-1", "target-2"})
    before = {pod.name: links(pod.ns)["nsm-0"]["ifindex"] for pod in pods}
    proxy = bed.proxies["node-1"]
    proxy.stop(signal.SIGKILL)
    _assert_all_reach(bed, {"target-1", "target-2"})  # forwarding is in the kernel: no proxy process needed
    proxy.start()
    _assert_all_reach(bed, {"target-1", "target-2"})
    for pod in pods:
        assert pod.statuses() == {"stream-a-i": "OPEN"}
        assert links(pod.ns)["nsm-0"]["ifindex"] == before[pod.name]


def test_sigterm_to_the_tapa_unregisters_its_target_and_removes_its_link(bed) -> None:  # type: ignore[no-untyped-def]
    pods = [bed.add_target_pod(f"target-{i}", "node-1") for i in (1, 2)]
    for pod in pods:
        pod.target("open", "stream-a-i")
        _wait_streams(pod, {"stream-a-i": "OPEN"})
    _wait_reach(bed, {"target-1", "target-2"})
    assert pods[1].tapa is not None
    assert bed.procs.stop(pods[1].tapa) == 0
    assert "nsm-0" not in links(pods[1].ns)  # disconnected before the TAPA exited
    _wait_reach(bed, {"target-1"}, timeout=10)  # unregistered: no keepalive to wait for (60 s here)
    _assert_all_reach(bed, {"target-1"})


def test_a_restarted_tapa_takes_over_the_link_its_predecessor_left(bed) -> None:  # type: ignore[no-untyped-def]
    t1 = bed.add_target_pod("target-1", "node-1")
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    ifindex = links(t1.ns)["nsm-0"]["ifindex"]
    assert t1.tapa is not None
    t1.tapa.send_signal(signal.SIGKILL)
    t1.tapa.wait(5)
    os.unlink(t1.socket)  # the killed TAPA's socket file: start_tapa waits for the new one to appear
    t1.start_tapa()
    t1.target("open", "stream-a-i")
    _wait_streams(t1, {"stream-a-i": "OPEN"})
    assert links(t1.ns)["nsm-0"]["ifindex"] == ifindex and "nsm-1" not in links(t1.ns)
    _wait_reach(bed, {"target-1"})
    _assert_all_reach(bed, {"target-1"})
